#!/usr/bin/env bash
# Install provenance-controller into a virtualenv from the hash-checked locks: the one install
# that the image's build stage runs (Dockerfile) and `make sbom` repeats, so the SBOM describes
# what the image ships.
#
#   hack/install-locked.sh deps VENV      the runtime dependencies, requirements.lock
#   hack/install-locked.sh project VENV   the project's own wheel, built with
#                                         requirements-build.lock's setuptools, then `pip check`
# (two steps so the image keeps its dependency layer when only the source changes)
#
# Every download is checked against the lock's hashes (--require-hashes), is a wheel
# (--only-binary :all:, so no sdist's setup.py runs at build time) and brings nothing unlocked
# (--no-deps; `pip check` then proves the locked set is complete). The build tools live in a
# venv of their own beside VENV, so setuptools never reaches the runtime.
# Environment: PYTHON (default python3), the interpreter that creates the virtualenvs.
set -euo pipefail

step="${1:?usage: install-locked.sh deps|project VENV}"
venv="${2:?usage: install-locked.sh deps|project VENV}"
src="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
locked=(--require-hashes --only-binary :all: --no-deps --no-input --disable-pip-version-check)

case "${step}" in
  deps)
    "${python}" -m venv "${venv}"
    # Pythons before 3.12 seed every venv with setuptools; the image's 3.12 does not, and the
    # runtime must hold the lock and pip, nothing else.
    "${venv}/bin/python" -m pip uninstall --quiet --yes setuptools 2>/dev/null || true
    "${venv}/bin/python" -m pip install --quiet "${locked[@]}" -r "${src}/requirements.lock"
    ;;
  project)
    work="$(mktemp -d)"
    build_venv="${work}/build-venv" dist="${work}/dist" tree="${work}/src"
    # Build from a copy of exactly what the image's build context holds, so neither a stale
    # build/ directory nor an untracked file of a working tree can reach the wheel.
    mkdir -p "${tree}"
    cp -R "${src}/pyproject.toml" "${src}/README.md" "${src}/controller" "${tree}/"
    find "${tree}" -name __pycache__ -prune -exec rm -rf {} +
    "${python}" -m venv "${build_venv}"
    "${build_venv}/bin/python" -m pip install --quiet "${locked[@]}" \
      -r "${src}/requirements-build.lock"
    # --no-build-isolation: build with the locked setuptools above, never an unpinned download.
    "${build_venv}/bin/python" -m pip wheel --quiet --no-deps --no-build-isolation --no-index \
      --wheel-dir "${dist}" "${tree}"
    "${venv}/bin/python" -m pip install --quiet --no-deps --no-index "${dist}"/*.whl
    # --no-deps installed nothing the lock left out; pip check proves the lock was complete.
    if ! report="$("${venv}/bin/python" -m pip check)"; then
      echo "install-locked.sh: the locked set is incomplete: ${report}" >&2
      exit 1
    fi
    # The runtime holds exactly the lock, pip and the project: anything else came from somewhere
    # the hashes did not check.
    "${venv}/bin/python" - "${src}/requirements.lock" <<'PY'
import re
import sys
from importlib import metadata

def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()

# pip's own copy of packaging: the runtime venv has nothing else to parse markers with.
from pip._vendor.packaging.requirements import Requirement

locked = set()
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        if re.match(r"[A-Za-z0-9]", line):
            req = Requirement(line.rstrip().rstrip("\\").strip())
            if req.marker is None or req.marker.evaluate():
                locked.add(norm(req.name))
installed = {norm(d.metadata["Name"]) for d in metadata.distributions()}
expected = locked | {"pip", "provenance-controller"}
if installed != expected:
    sys.exit(f"install-locked.sh: the venv is not the lock: extra {sorted(installed - expected)}, "
             f"missing {sorted(expected - installed)}")
PY
    rm -rf "${work}"
    ;;
  *)
    echo "install-locked.sh: unknown step ${step} (deps or project)" >&2
    exit 2
    ;;
esac
