#!/usr/bin/env bash
# Provision the real binaries the tests and `make dev` drive: etcd, kube-apiserver, kubectl,
# cosign, crane and helm; and actionlint, which `make test` runs over .github/workflows. This machine reaches the Go module proxy but not GitHub release
# downloads, so everything is built from Go modules at pinned versions. Builds are cached under
# ~/.cache/provenance-controller/tools/<name>-<version>/ so a second run (or CI on a fresh clone of
# the same machine) only copies files. bin/ is git-ignored.
#
# A user with internet access can skip the control-plane build entirely:
#   export KUBEBUILDER_ASSETS="$(setup-envtest use -p path 1.34.x)"
# and this script will take etcd and kube-apiserver from there.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
# Bumped when the set of binaries built from KUBE_VERSION changes, so stale caches rebuild.
KUBE_BUILD_REV=2
ETCD_VERSION="${ETCD_VERSION:-v3.5.21}"
COSIGN_VERSION="${COSIGN_VERSION:-v3.1.1}"
CRANE_VERSION="${CRANE_VERSION:-v0.20.7}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
# A local Sigstore for the keyless end-to-end tests (tests/fixtures/sigstore.py): Fulcio, a CT log,
# Rekor v2 on local (POSIX) storage, and the RFC 3161 timestamp authority. Part of `all`: their
# cold builds add minutes to a cold `make tools`, well inside CI's limit (README: the figures).
FULCIO_VERSION="${FULCIO_VERSION:-v1.8.8}"
REKOR_TILES_VERSION="${REKOR_TILES_VERSION:-v2.3.0}"  # v2.4 needs go 1.27
TSA_VERSION="${TSA_VERSION:-v2.1.3}"  # v2.1.4 onwards need go 1.27
# Fulcio embeds an SCT from a certificate transparency log in every certificate, and a verifier
# that fails closed refuses a certificate without one: TesseraCT is a CT log on local (POSIX)
# storage, with no Trillian and no database.
TESSERACT_VERSION="${TESSERACT_VERSION:-v0.1.1}"

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${root}/bin"
cache="${PROVENANCE_TOOLS_CACHE:-${HOME}/.cache/provenance-controller/tools}"
mkdir -p "${bin}" "${cache}"

log() { printf '[tools] %s\n' "$*" >&2; }

# which=all|control-plane|registry|cosign|crane|helm|actionlint|referrers-registry|sigstore
# (several may be given as one word, comma-separated)
want="${1:-all}"
# Whole words only: "registry" must not match "referrers-registry".
wants() { [[ "${want}" == all || ",${want}," == *",$1,"* ]]; }

# --- Go toolchain ----------------------------------------------------------------------------
if ! command -v go >/dev/null 2>&1; then
  log "go not found; installing golang-go from Debian"
  apt-get update -qq && apt-get install -y -qq golang-go >/dev/null
fi

# install_cached NAME VERSION BUILD_FUNCTION: run BUILD_FUNCTION into the cache dir unless a
# completed build (marked by .done) is already there, then copy the binaries into bin/.
install_cached() {
  local name="$1" version="$2" fn="$3"
  local dir="${cache}/${name}-${version}"
  if [[ ! -f "${dir}/.done" ]]; then
    log "building ${name} ${version} (cold cache; this can take several minutes)"
    rm -rf "${dir}" && mkdir -p "${dir}"
    local start=$SECONDS
    "${fn}" "${dir}" "${version}"
    touch "${dir}/.done"
    log "built ${name} ${version} in $((SECONDS - start))s"
  fi
  find "${dir}" -maxdepth 1 -type f -perm -u+x -exec cp -f {} "${bin}/" \;
}

# --- etcd and kube-apiserver -----------------------------------------------------------------
build_etcd() {
  local out="$1" version="$2" mod
  mod="$(mktemp -d)"
  cat >"${mod}/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (cd "${mod}" && go mod init tools.local/etcd >/dev/null 2>&1 &&
    go get "go.etcd.io/etcd/server/v3@${version}" >/dev/null 2>&1 &&
    go mod tidy >/dev/null 2>&1 &&
    CGO_ENABLED=0 go build -trimpath -o "${out}/etcd" .)
  rm -rf "${mod}"
}

# k8s.io/kubernetes publishes its staging modules as v0.0.0 with replaces to ./staging, which a
# dependent module cannot see. Rewrite each of them to the published v0.<minor>.<patch>.
build_kube() {
  local out="$1" version="$2" mod gomod staging
  version="${version%-r*}"
  staging="v0.${version#v1.}"
  mod="$(mktemp -d)"
  gomod="$(cd "${mod}" && go mod download -json "k8s.io/kubernetes@${version}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  {
    echo "module tools.local/kube"
    echo
    echo "go $(awk '/^go /{print $2; exit}' "${gomod}")"
    echo
    echo "require k8s.io/kubernetes ${version}"
    echo
    echo "replace ("
    grep -Eo '^\s*k8s.io/[a-z0-9-]+ => ./staging/src/k8s.io/[a-z0-9-]+' "${gomod}" |
      awk -v v="${staging}" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"${mod}/go.mod"
  cat >"${mod}/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
  (cd "${mod}" && go mod tidy >/dev/null &&
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${version}" \
      -o "${out}/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kubectl)
  rm -rf "${mod}"
}

go_install_into() {
  local out="$1" pkg="$2"
  GOBIN="${out}" CGO_ENABLED=0 go install -trimpath "${pkg}"
}
build_cosign() { go_install_into "$1" "github.com/sigstore/cosign/v3/cmd/cosign@$2"; }
build_crane() { go_install_into "$1" "github.com/google/go-containerregistry/cmd/crane@$2"; }
build_helm() { go_install_into "$1" "helm.sh/helm/v3/cmd/helm@$2"; }
build_actionlint() { go_install_into "$1" "github.com/rhysd/actionlint/cmd/actionlint@$2"; }
build_fulcio() { go_install_into "$1" "github.com/sigstore/fulcio@$2"; }
build_rekor_tiles() {
  # The POSIX backend: the log's tiles in a local directory, no cloud services, no database.
  go_install_into "$1" "github.com/sigstore/rekor-tiles/v2/cmd/rekor-server/posix@$2"
  mv "$1/posix" "$1/rekor-server-posix"
}
build_tsa() { go_install_into "$1" "github.com/sigstore/timestamp-authority/v2/cmd/timestamp-server@$2"; }
build_tesseract() {
  go_install_into "$1" "github.com/transparency-dev/tesseract/cmd/tesseract/posix@$2"
  mv "$1/posix" "$1/tesseract-posix"
}

# go-containerregistry's registry with the OCI 1.1 referrers API on (hack/referrers-registry).
# Keyed by the module version and a hash of the source, so an edit to main.go rebuilds.
REFERRERS_SRC="${root}/hack/referrers-registry/main.go"
referrers_version() {
  echo "${CRANE_VERSION}-$(sha256sum "${REFERRERS_SRC}" | cut -c1-12)"
}
build_referrers_registry() {
  local out="$1" version="$2" mod
  mod="$(mktemp -d)"
  cp "${REFERRERS_SRC}" "${mod}/main.go"
  (cd "${mod}" && go mod init tools.local/referrers-registry >/dev/null 2>&1 &&
    go get "github.com/google/go-containerregistry@${version%-*}" >/dev/null 2>&1 &&
    go mod tidy >/dev/null 2>&1 &&
    CGO_ENABLED=0 go build -trimpath -o "${out}/referrers-registry" .)
  rm -rf "${mod}"
}

if wants control-plane; then
  if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "${KUBEBUILDER_ASSETS}/kube-apiserver" && -x "${KUBEBUILDER_ASSETS}/etcd" ]]; then
    log "using etcd and kube-apiserver from KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS}"
    cp -f "${KUBEBUILDER_ASSETS}/etcd" "${KUBEBUILDER_ASSETS}/kube-apiserver" "${bin}/"
    [[ -x "${KUBEBUILDER_ASSETS}/kubectl" ]] && cp -f "${KUBEBUILDER_ASSETS}/kubectl" "${bin}/"
  else
    install_cached etcd "${ETCD_VERSION}" build_etcd
  fi
  if [[ ! -x "${bin}/kube-apiserver" || ! -x "${bin}/kubectl" || ! -x "${bin}/kube-controller-manager" ]]; then
    install_cached kube "${KUBE_VERSION}-r${KUBE_BUILD_REV}" build_kube
  fi
fi
if wants registry && ! command -v docker-registry >/dev/null 2>&1; then
  log "installing Debian's docker-registry (the real OCI registry the tests run)"
  if [[ $(id -u) -ne 0 ]]; then
    log "not root: install it yourself with: sudo apt-get install docker-registry"; exit 1
  fi
  apt-get update -qq && apt-get install -y -qq docker-registry >/dev/null
fi
# actionlint runs shellcheck over every `run:` script when it is on the PATH; make workflow-lint
# requires it, so a script error cannot pass for want of the checker.
if wants actionlint && ! command -v shellcheck >/dev/null 2>&1; then
  log "installing Debian's shellcheck (actionlint checks the workflows' scripts with it)"
  if [[ $(id -u) -ne 0 ]]; then
    log "not root: install it yourself with: sudo apt-get install shellcheck"; exit 1
  fi
  apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null
fi
wants cosign && install_cached cosign "${COSIGN_VERSION}" build_cosign
wants crane && install_cached crane "${CRANE_VERSION}" build_crane
wants helm && install_cached helm "${HELM_VERSION}" build_helm
wants actionlint && install_cached actionlint "${ACTIONLINT_VERSION}" build_actionlint
if wants sigstore; then
  install_cached fulcio "${FULCIO_VERSION}" build_fulcio
  install_cached rekor-tiles "${REKOR_TILES_VERSION}" build_rekor_tiles
  install_cached timestamp-authority "${TSA_VERSION}" build_tsa
  install_cached tesseract "${TESSERACT_VERSION}" build_tesseract
fi
wants referrers-registry && install_cached referrers-registry "$(referrers_version)" \
  build_referrers_registry

log "tools ready in ${bin}: $(ls "${bin}" | tr '\n' ' ')"
