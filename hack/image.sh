#!/usr/bin/env bash
# Build the controller image with its provenance: `make image` runs this.
#
# Build arguments (each becomes an OCI label and a PROVENANCE_* variable read by /version):
#   VERSION       IMAGE_TAG, else `git describe --tags --always --dirty`
#   REVISION      the full commit (`git rev-parse HEAD`)
#   CREATED       the commit time in RFC 3339 UTC (reproducible; SOURCE_DATE_EPOCH wins if set)
#   SOURCE        SOURCE_URL, else the `origin` remote, else the project URL
#   BUILD_ID      BUILD_ID, else the CI's own (GITHUB_RUN_ID, CI_PIPELINE_ID, BUILD_NUMBER), else "local"
#   PIPELINE_URL  PIPELINE_URL, else the CI run URL (GitHub Actions, GitLab CI), else "unknown"
# Environment: IMAGE (default provenance-controller), IMAGE_TAG, BASE_IMAGE, DOCKER (docker or
# podman), PUSH=1 to push, DRY_RUN=1 to print the command instead of running it.
# PRINT_BUILD_ARGS=1 prints the build arguments, one KEY=value a line, for a builder that runs
# elsewhere (the release workflow's docker/build-push-action), so both builds label alike.
# The base image (BASE_IMAGE, else the Dockerfile's default) must be pinned by digest
# (name@sha256:<64 hex>); ALLOW_UNPINNED_BASE=1 overrides that, for trying a new base locally.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "${root}"

docker="${DOCKER:-docker}"
image="${IMAGE:-provenance-controller}"

revision="$(git rev-parse HEAD)"
# The controller's own image must come from a commit, as the gate demands of everyone else: a
# dirty tree would make the revision label a lie.
if [[ -n "$(git status --porcelain --untracked-files=no)" && "${ALLOW_DIRTY:-0}" != 1 ]]; then
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    echo "image.sh: warning: uncommitted changes; a real build would refuse (ALLOW_DIRTY=1)" >&2
  else
    echo "image.sh: uncommitted changes: the image would not be commit ${revision}; commit them, or set ALLOW_DIRTY=1" >&2
    exit 1
  fi
fi
# The base is part of what ships: a tag can be moved to other bytes after the build, the red
# flag the gate denies in everyone else's Deployments.
base_image="${BASE_IMAGE:-$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile | head -1)}"
if [[ ! "${base_image}" =~ @sha256:[0-9a-f]{64}$ ]]; then
  if [[ "${ALLOW_UNPINNED_BASE:-0}" == 1 ]]; then
    echo "image.sh: warning: base image ${base_image:-<none>} is not pinned by digest (ALLOW_UNPINNED_BASE=1)" >&2
  else
    echo "image.sh: base image ${base_image:-<none>} is not pinned by digest: use name@sha256:<digest> (docs/supply-chain.md), or set ALLOW_UNPINNED_BASE=1" >&2
    exit 1
  fi
fi
version="${IMAGE_TAG:-$(git describe --tags --always --dirty)}"
if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
  created="$(date -u -d "@${SOURCE_DATE_EPOCH}" +%Y-%m-%dT%H:%M:%SZ)"
else
  created="$(TZ=UTC git show -s --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ HEAD)"
fi
source_url="${SOURCE_URL:-$(git remote get-url origin 2>/dev/null || echo https://github.com/provenance-dev/provenance-controller)}"
# Never bake credentials from a remote URL (https://user:token@host/...) into a label.
source_url="$(sed -E 's#(https?://)[^/@]+@#\1#' <<<"${source_url}")"

build_id="${BUILD_ID:-${GITHUB_RUN_ID:-${CI_PIPELINE_ID:-${BUILD_NUMBER:-local}}}}"
if [[ -n "${PIPELINE_URL:-}" ]]; then
  pipeline_url="${PIPELINE_URL}"
elif [[ -n "${GITHUB_RUN_ID:-}" ]]; then
  pipeline_url="${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY}/actions/runs/${GITHUB_RUN_ID}"
elif [[ -n "${CI_PIPELINE_URL:-}" ]]; then
  pipeline_url="${CI_PIPELINE_URL}"
else
  pipeline_url="unknown"
fi

argv=("${docker}" build
  --build-arg "VERSION=${version}"
  --build-arg "REVISION=${revision}"
  --build-arg "CREATED=${created}"
  --build-arg "SOURCE=${source_url}"
  --build-arg "BUILD_ID=${build_id}"
  --build-arg "PIPELINE_URL=${pipeline_url}")
[[ -n "${BASE_IMAGE:-}" ]] && argv+=(--build-arg "BASE_IMAGE=${BASE_IMAGE}")
argv+=(--tag "${image}:${version}" --file Dockerfile .)

if [[ "${PRINT_BUILD_ARGS:-0}" == 1 ]]; then
  for ((i = 0; i < ${#argv[@]}; i++)); do
    [[ "${argv[i]}" == --build-arg ]] && printf '%s\n' "${argv[i + 1]}"
  done
  exit 0
fi
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%q ' "${argv[@]}"
  echo
  exit 0
fi
command -v "${docker}" >/dev/null || { echo "image.sh: ${docker} not found (set DOCKER=podman?)" >&2; exit 1; }
"${argv[@]}"
if [[ "${PUSH:-0}" == 1 ]]; then
  "${docker}" push "${image}:${version}"
fi
echo "built ${image}:${version} (revision ${revision}, build ${build_id})" >&2
