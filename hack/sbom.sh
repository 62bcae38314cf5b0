#!/usr/bin/env bash
# A CycloneDX SBOM of the controller image's Python environment: `make sbom` runs this.
#
# No Docker engine is needed: the environment is built the way the image's build stage builds
# /opt/venv (hack/install-locked.sh: the hash-checked lock, then the project's wheel), in a
# scratch venv, and cyclonedx-py (cyclonedx-bom, from the dev extras) describes it, with the
# project as the root component and reproducible output. cyclonedx-py validates what it writes
# against the CycloneDX schema and fails on an invalid document.
#
# The image runs Python 3.12; SBOM_PYTHON picks the interpreter that builds the scratch venv
# (default python3). The release workflow runs this under 3.12, as the image does. The lock is
# universal, so the packages are the same on any supported Python; pip's own version is the
# interpreter's bundled one.
#
# Usage: hack/sbom.sh [OUT]   (default sbom.cdx.json)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-sbom.cdx.json}"
sbom_python="${SBOM_PYTHON:-python3}"
cyclonedx="${CYCLONEDX_PY:-${root}/.venv/bin/cyclonedx-py}"
spec_version="${CYCLONEDX_SPEC_VERSION:-1.6}"

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
venv="${work}/venv"
PYTHON="${sbom_python}" bash "${root}/hack/install-locked.sh" deps "${venv}"
PYTHON="${sbom_python}" bash "${root}/hack/install-locked.sh" project "${venv}"

"${cyclonedx}" environment \
  --pyproject "${root}/pyproject.toml" \
  --mc-type application \
  --spec-version "${spec_version}" \
  --output-format JSON \
  --output-reproducible \
  --validate \
  --output-file "${out}" \
  "${venv}/bin/python"
echo "wrote ${out}: CycloneDX ${spec_version}, $("${sbom_python}" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["components"]))' "${out}") components" >&2
