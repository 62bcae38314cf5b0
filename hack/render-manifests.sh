#!/usr/bin/env bash
# Regenerate what is derived from the chart and the controller's models:
#   1. charts/provenance-controller/values.schema.json `$defs`: the JSON schema of the
#      configuration file, generated from the pydantic models, so `helm install` rejects a bad
#      `config:` value with the same rules the controller applies at start-up;
#   2. manifests/provenance-controller.yaml: the static install, `helm template` with default
#      values into namespace provenance-system.
# `make manifests` runs this; `make manifests-check` runs it and fails on `git diff`.
#
# Usage: hack/render-manifests.sh [--out DIR]   (DIR: write both files there instead, for tests)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
chart="${root}/charts/provenance-controller"
out=""
if [[ "${1:-}" == "--out" ]]; then out="$2"; fi
schema_out="${out:-${chart}}/values.schema.json"
manifests_out="${out:-${root}/manifests}/provenance-controller.yaml"

helm="${HELM:-${root}/bin/helm}"
[[ -x "${helm}" ]] || bash "${root}/hack/tools.sh" helm >&2
python="${PYTHON:-${root}/.venv/bin/python}"
# Rendered for this Kubernetes version; the chart itself accepts any >= 1.22.
kube_version="${KUBE_VERSION:-1.34.0}"
namespace=provenance-system

mkdir -p "$(dirname "${schema_out}")" "$(dirname "${manifests_out}")"

# --- 1. the configuration schema ------------------------------------------------------------
"${python}" - "${chart}/values.schema.json" "${schema_out}" <<'PY'
import json
import sys

from pydantic.json_schema import models_json_schema

from controller.config import Config

source, target = sys.argv[1], sys.argv[2]
models = [Config]
sections = {}
# `signatures:` and `ledger:` join Config as fields; until they do, take them from their modules.
for field, module, name in (("signatures", "controller.signatures.config", "SignatureConfig"),
                            ("ledger", "controller.ledger.config", "LedgerConfig")):
    if field not in Config.model_fields:
        model = getattr(__import__(module, fromlist=[name]), name)
        models.append(model)
        sections[field] = name
_, top = models_json_schema([(m, "validation") for m in models],
                            ref_template="#/$defs/{model}")
defs = top["$defs"]


def tidy(node):
    """Drop pydantic's generated titles; close maps keyed by pattern (environments) too."""
    if isinstance(node, dict):
        out = {k: tidy(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
        if "patternProperties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [tidy(v) for v in node]
    return node


chart_config = json.loads(json.dumps(defs["Config"]))
# The chart renders exempt_namespaces from webhook.exemptNamespaces (they must agree with the
# webhook's namespaceSelector), so it is not a value.
chart_config["properties"].pop("exempt_namespaces", None)
for field, name in sections.items():
    chart_config["properties"][field] = {"$ref": f"#/$defs/{name}"}
chart_config["description"] = (
    "The controller's configuration file (controller.config.Config), minus exempt_namespaces.")
defs["ChartConfig"] = chart_config
del defs["Config"]

with open(source, encoding="utf-8") as f:
    schema = json.load(f)
schema["$defs"] = tidy(dict(sorted(defs.items())))
with open(target, "w", encoding="utf-8") as f:
    json.dump(schema, f, indent=2, ensure_ascii=False)
    f.write("\n")
PY

# --- 2. the static manifests ----------------------------------------------------------------
{
  cat <<HEADER
# provenance-controller: static install, rendered from charts/provenance-controller with default
# values by hack/render-manifests.sh. Do not edit; run \`make manifests\`.
#
#   kubectl apply -f manifests/provenance-controller.yaml
#
# Self-managed TLS (the controller issues and rotates its certificate), 2 replicas, enforce mode,
# failurePolicy Fail. For anything else, install the chart with your values.
---
apiVersion: v1
kind: Namespace
metadata:
  name: ${namespace}
  labels:
    app.kubernetes.io/part-of: provenance-controller
HEADER
  # --skip-tests: the helm test hook pod is not part of an install.
  "${helm}" template provenance-controller "${chart}" --namespace "${namespace}" \
    --kube-version "${kube_version}" --skip-tests
} >"${manifests_out}.tmp"
mv "${manifests_out}.tmp" "${manifests_out}"
echo "rendered ${schema_out#"${root}/"} and ${manifests_out#"${root}/"}" >&2
