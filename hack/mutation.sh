#!/usr/bin/env bash
# `make mutation`: mutmut over the security-relevant modules ([tool.mutmut] in pyproject.toml),
# against the unit tests only (no control plane: `-m "not e2e"`; the registry tests still run
# their real docker-registry and referrers-registry). Not part of `make test`: it runs the
# covering tests once per mutant, which takes minutes, not seconds.
#
# Prints every mutant that was not killed, with its change, and ends with the line
#   mutation score: N% (K of M killed)
# where M counts every mutant generated and K those the tests killed (a mutant that made the
# tests time out counts as killed: it was detected). Exits non-zero below MUTATION_MIN.
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
mkdir -p mutants/bin
for tool in cosign referrers-registry; do
  [[ -x "bin/${tool}" ]] || { echo "bin/${tool} is missing: run make tools" >&2; exit 1; }
  ln -s "${root}/bin/${tool}" "mutants/bin/${tool}"
done

start=$SECONDS
"${venv}/bin/mutmut" run --max-children "${children}" >mutants/run.log 2>&1 || {
  tail -40 mutants/run.log >&2; echo "mutmut run failed (mutants/run.log)" >&2; exit 1; }
"${venv}/bin/mutmut" export-cicd-stats >/dev/null
"${venv}/bin/python" - "${min}" "$((SECONDS - start))" <<'PY'
import json
import subprocess
import sys

minimum, seconds = float(sys.argv[1]), int(sys.argv[2])
stats = json.load(open("mutants/mutmut-cicd-stats.json"))
lines = subprocess.run([".venv/bin/mutmut", "results"], capture_output=True, text=True,
                       check=True).stdout.splitlines()
survivors = [line.strip().rsplit(": ", 1) for line in lines if ": " in line]
for name, status in survivors:
    diff = subprocess.run([".venv/bin/mutmut", "show", name], capture_output=True,
                          text=True, check=False).stdout
    change = [d for d in diff.splitlines()
              if d[:1] in "+-" and not d.startswith(("+++", "---"))]
    print(f"{status}: {name}")
    for d in change[:6]:
        print(f"    {d.strip()[:150]}")
total = int(stats["total"])
killed = int(stats["killed"]) + int(stats["timeout"])
score = 100.0 * killed / total if total else 0.0
print(f"{len(survivors)} not killed ({stats['survived']} survived, {stats['no_tests']} with no "
      f"covering test, {stats['suspicious']} suspicious, {stats['skipped']} skipped); "
      f"{seconds} s")
print(f"mutation score: {score:.1f}% ({killed} of {total} killed)")
sys.exit(0 if score >= minimum else 1)
PY
