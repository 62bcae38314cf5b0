#!/usr/bin/env bash
# Package the chart as a release publishes it: the controller image pinned by the digest the
# release pushed, signed and attested, and the controller's own provenance in its values, so the
# chart's Deployment passes the gate it installs. .github/workflows/release.yml runs this;
# tests/chart/test_release.py runs it with release-like values and checks the rendering with
# `kubectl-provenance check`.
#
# Environment, every one required and checked:
#   VERSION           the release, semver without the leading v (chart version and appVersion)
#   IMAGE_REPOSITORY  registry/repository of the image
#   IMAGE_DIGEST      sha256:<64 hex>, the image index the release pushed
#   GIT_SHA           the full commit SHA (40 or 64 hex)
#   BUILD_ID          the CI build (the workflow run id)
#   PIPELINE_URL      https URL of that build
#   BUILD_TIMESTAMP   RFC 3339 with an offset
# HELM (default bin/helm) and PYTHON (default .venv/bin/python, which has ruamel.yaml) are the
# tools; the chart is edited with ruamel.yaml's round trip so every comment of values.yaml stays.
#
# Usage: hack/chart-release.sh OUT_DIR   (prints the path of the packaged .tgz)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?usage: chart-release.sh OUT_DIR}"
helm="${HELM:-${root}/bin/helm}"
python="${PYTHON:-${root}/.venv/bin/python}"
[[ -x "${helm}" ]] || bash "${root}/hack/tools.sh" helm >&2

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
cp -R "${root}/charts/provenance-controller" "${work}/"
chart="${work}/provenance-controller"

"${python}" - "${chart}" <<'PY'
import os
import re
import sys
from pathlib import Path

from ruamel.yaml import YAML

# Each value is checked here, before it reaches a published chart: a release must not ship
# claims the gate would refuse. The rules are the gate's (controller/policy) and the schema's.
RULES = {
    "VERSION": r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?",
    "IMAGE_REPOSITORY": r"[a-z0-9.\-]+(:[0-9]+)?(/[a-z0-9._\-]+)+",
    "IMAGE_DIGEST": r"sha256:[0-9a-f]{64}",
    "GIT_SHA": r"[0-9a-f]{40}|[0-9a-f]{64}",
    "BUILD_ID": r"[A-Za-z0-9][A-Za-z0-9._:/\-]{0,255}",
    "PIPELINE_URL": r"https://[^/@\s]+/\S*",
    "BUILD_TIMESTAMP": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
}
values = {}
problems = []
for name, rule in RULES.items():
    value = os.environ.get(name, "")
    if not re.fullmatch(rule, value):
        problems.append(f"{name}={value!r} does not match {rule}")
    values[name] = value
if problems:
    sys.exit("chart-release.sh: " + "; ".join(problems))

chart = Path(sys.argv[1])
yaml = YAML()
yaml.preserve_quotes = True
yaml.width = 100

meta = yaml.load(chart / "Chart.yaml")
meta["version"] = values["VERSION"]
meta["appVersion"] = values["VERSION"]
yaml.dump(meta, chart / "Chart.yaml")

doc = yaml.load(chart / "values.yaml")
doc["image"]["repository"] = values["IMAGE_REPOSITORY"]
doc["image"]["tag"] = values["VERSION"]
doc["image"]["digest"] = values["IMAGE_DIGEST"]
doc["provenance"]["gitSha"] = values["GIT_SHA"]
doc["provenance"]["buildId"] = values["BUILD_ID"]
doc["provenance"]["pipelineUrl"] = values["PIPELINE_URL"]
doc["provenance"]["buildTimestamp"] = values["BUILD_TIMESTAMP"]
yaml.dump(doc, chart / "values.yaml")
PY

# The schema and the templates judge the filled values before anything is packaged.
"${helm}" lint --strict "${chart}" >&2
mkdir -p "${out}"
"${helm}" package "${chart}" --destination "${out}" >&2
echo "${out}/provenance-controller-${VERSION}.tgz"
