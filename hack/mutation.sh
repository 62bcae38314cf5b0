#!/usr/bin/env bash
# `make mutation`: mutmut over the security-relevant modules ([tool.mutmut] in pyproject.toml),
# against the unit tests only (no control plane: `-m "not e2e"`; the registry tests still run
# their real docker-registry and referrers-registry). Not part of `make test`: it runs the
# covering tests once per mutant, which takes minutes, not seconds.
#
# Prints every mutant that was not killed, with its change, and ends with the line
#   mutation score: N% (K of M killed)
# where M counts every mutant generated and K those the tests killed (a mutant that made the
# tests time out counts as killed: it was detected). Exits non-zero below MUTATION_MIN. The same
# report is written to docs/mutation-report.txt.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "${root}"
venv="${root}/.venv"
min="${MUTATION_MIN:-90}"
children="${MUTATION_CHILDREN:-$(nproc)}"

"${venv}/bin/python" -m pip show mutmut >/dev/null 2>&1 ||
  "${venv}/bin/python" -m pip install -q "mutmut==3.8.1"

# A fresh run every time: a score from cached results of older code would not be this code's.
rm -rf mutants
# The tests find the Go-built tools in <root>/bin; mutmut runs them from mutants/, so point
# mutants/bin at the real ones instead of copying hundreds of megabytes.
mkdir -p mutants/bin mutants/registries
for tool in cosign referrers-registry; do
  [[ -x "bin/${tool}" ]] || { echo "bin/${tool} is missing: run make tools" >&2; exit 1; }
  ln -s "${root}/bin/${tool}" "mutants/bin/${tool}"
done

# One docker-registry and one referrers-registry for the whole run, shared by every pytest
# session mutmut starts (tests/fixtures/registry.py reads these variables): starting and
# filling a registry per mutant cost more than the tests themselves.
read -r registry_host registry_pid referrers_host referrers_pid < <("${venv}/bin/python" -c '
from pathlib import Path
from tests.fixtures.registry import start_referrers_registry, start_registry
plain = start_registry(Path("mutants/registries").resolve())
referrers = start_referrers_registry(Path("mutants/registries").resolve())
print(plain.host, plain.process.pid, referrers.host, referrers.process.pid)
')
trap 'kill "${registry_pid}" "${referrers_pid}" 2>/dev/null || true' EXIT
export PROVENANCE_TEST_REGISTRY="${registry_host}"
export PROVENANCE_TEST_REFERRERS_REGISTRY="${referrers_host}"

start=$SECONDS
# hack/mutmut_run.py is mutmut's own command line with its string and argument operators kept
# off prose (messages) and logging calls; see its docstring for why.
mutmut=("${venv}/bin/python" "${root}/hack/mutmut_run.py")
"${mutmut[@]}" run --max-children "${children}" >mutants/run.log 2>&1 || {
  tail -40 mutants/run.log >&2; echo "mutmut run failed (mutants/run.log)" >&2; exit 1; }
# The report goes to stdout and to docs/mutation-report.txt (MUTATION_REPORT), which is kept
# under version control so that a change in the score or the survivors shows in review.
report="${MUTATION_REPORT:-docs/mutation-report.txt}"
header="# make mutation on $(git rev-parse --short HEAD 2>/dev/null || echo '?') ($(date -u +%FT%RZ)),"
header+=" ${children} children on $(nproc) cores; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
{ echo "${header}"; "${mutmut[@]}" report "${min}" "$((SECONDS - start))"; } | tee "${report}"
