#!/usr/bin/env bash
# End-to-end on a real cluster, for users with Docker: `make kind-e2e`.
#
#   1. create a kind cluster (reused if it exists);
#   2. build the image with its provenance (hack/image.sh) and load it into the cluster;
#   3. `helm install` the chart with that image (self-managed TLS, default policy) and wait;
#   4. `helm test`: the webhook answers over its Service, verified against its CA;
#   5. smoke checks through the real API server: examples/tagged.yaml is denied, an exempt
#      namespace is not judged, /version reports the image's build, /metrics counted the denial.
#
# Environment: CLUSTER (default provenance-e2e), KEEP=1 to keep the cluster afterwards,
# KIND / KUBECTL / HELM to use other binaries (default: from PATH, then bin/).
# Cannot run on machines without a Docker engine (the CI sandbox of this repository is one).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "${root}"
cluster="${CLUSTER:-provenance-e2e}"
tag="e2e-$(git rev-parse --short HEAD)"
image="provenance-controller"
ns=provenance-system
release=pc

pick() { command -v "$1" 2>/dev/null || { [[ -x "bin/$1" ]] && echo "bin/$1"; } || { echo "kind-e2e: $1 not found" >&2; exit 1; }; }
kind="${KIND:-$(pick kind)}"
kubectl="${KUBECTL:-$(pick kubectl)}"
helm="${HELM:-$(pick helm)}"
log() { printf '[kind-e2e] %s\n' "$*" >&2; }

if ! "${kind}" get clusters | grep -qx "${cluster}"; then
  log "creating kind cluster ${cluster}"
  "${kind}" create cluster --name "${cluster}" --wait 120s
fi
cleanup() {
  if [[ "${KEEP:-0}" != 1 ]]; then
    log "deleting kind cluster ${cluster} (KEEP=1 keeps it)"
    "${kind}" delete cluster --name "${cluster}"
  fi
}
trap cleanup EXIT
export KUBECONFIG="$(mktemp)"
"${kind}" get kubeconfig --name "${cluster}" >"${KUBECONFIG}"

log "building ${image}:${tag}"
IMAGE="${image}" IMAGE_TAG="${tag}" BUILD_ID="${BUILD_ID:-kind-e2e}" bash hack/image.sh
"${kind}" load docker-image "${image}:${tag}" --name "${cluster}"

log "installing the chart"
"${helm}" upgrade --install "${release}" charts/provenance-controller --namespace "${ns}" \
  --create-namespace --set image.repository="${image}" --set image.tag="${tag}" \
  --set image.pullPolicy=Never --set environment=kind-e2e --wait --timeout 3m
"${kubectl}" -n "${ns}" rollout status deployment/"${release}-provenance-controller" --timeout=120s

log "helm test"
"${helm}" test "${release}" --namespace "${ns}" --logs

log "a Deployment without provenance is denied"
if out="$("${kubectl}" apply -f examples/tagged.yaml --dry-run=server 2>&1)"; then
  echo "${out}" >&2; log "FAIL: examples/tagged.yaml was admitted"; exit 1
fi
grep -q "provenance-controller denied" <<<"${out}" || { echo "${out}" >&2; log "FAIL: unexpected error"; exit 1; }

log "an exempt namespace is not judged"
"${kubectl}" -n kube-system create deployment exempt-probe --image=registry.k8s.io/pause:3.10 --dry-run=server >/dev/null

log "/version and /metrics (every replica, through the API server's pod proxy)"
denials=0
for pod in $("${kubectl}" -n "${ns}" get pods --field-selector=status.phase=Running \
    -l "app.kubernetes.io/name=provenance-controller,app.kubernetes.io/instance=${release}" -o jsonpath='{.items[*].metadata.name}'); do
  proxy="/api/v1/namespaces/${ns}/pods/${pod}:8080/proxy"
  version="$("${kubectl}" get --raw "${proxy}/version")"
  echo "${pod}: ${version}"
  grep -q "\"commit\": *\"$(git rev-parse HEAD)\"" <<<"${version}" || { log "FAIL: /version does not name HEAD"; exit 1; }
  grep -q '"environment": *"kind-e2e"' <<<"${version}" || { log "FAIL: /version environment"; exit 1; }
  n="$("${kubectl}" get --raw "${proxy}/metrics" |
    awk '/^provenance_admissions_total\{.*verdict="denied"/ {s += $2} END {print int(s)}')"
  denials=$((denials + n))
done
[[ "${denials}" -ge 1 ]] || { log "FAIL: no denial counted in /metrics"; exit 1; }
log "passed (${denials} denial(s) counted)"
