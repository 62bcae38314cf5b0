# syntax=docker/dockerfile:1
# provenance-controller image. Built by `make image` (hack/image.sh), which fills the build
# arguments from git and the CI environment. The same facts become OCI labels (what a registry
# shows) and PROVENANCE_CONTROLLER_* environment variables (what the running controller reports at
# /version): the controller's image carries the provenance it demands of every Deployment.

# The base, pinned by digest as the gate demands of every image: a tag can be moved under us.
# This is the multi-arch index digest of python:3.12-slim-bookworm (Python 3.12.7, Debian 12),
# as pinned by public Dockerfiles that pin the same tag (docs/supply-chain.md names them); the
# registry was not reachable from where it was pinned, so it was not re-checked there. How to
# bump it: docs/supply-chain.md. hack/image.sh refuses an unpinned BASE_IMAGE unless
# ALLOW_UNPINNED_BASE=1.
ARG BASE_IMAGE=python:3.12-slim-bookworm@sha256:032c52613401895aa3d418a4c563d2d05f993bc3ecc065c8f4e2280978acd249

# --- build: install the locked dependencies and the package into a self-contained virtualenv --
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first, from the locks only, so a source change reuses this layer. Every file is
# checked against the lock's hashes (hack/install-locked.sh: --require-hashes, wheels only).
COPY hack/install-locked.sh ./hack/
COPY requirements.lock requirements-build.lock ./
RUN bash hack/install-locked.sh deps /opt/venv
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN bash hack/install-locked.sh project /opt/venv \
    && /opt/venv/bin/python -m compileall -q /opt/venv

# --- runtime: the virtualenv on a clean slim base, as a numeric non-root user ----------------
FROM ${BASE_IMAGE} AS runtime
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/provenance-dev/provenance-controller
ARG BUILD_ID=unknown
ARG PIPELINE_URL=unknown
LABEL org.opencontainers.image.title="provenance-controller" \
      org.opencontainers.image.description="Admits a Deployment only when it can prove where it came from" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      dev.provenance.build-id="${BUILD_ID}" \
      dev.provenance.pipeline-url="${PIPELINE_URL}"
# Read by controller.version for /version; PROVENANCE_CONTROLLER_ENVIRONMENT is set by the chart per install.
ENV PROVENANCE_CONTROLLER_VERSION="${VERSION}" \
    PROVENANCE_CONTROLLER_COMMIT="${REVISION}" \
    PROVENANCE_CONTROLLER_BUILT_AT="${CREATED}" \
    PROVENANCE_CONTROLLER_SOURCE="${SOURCE}" \
    PROVENANCE_CONTROLLER_BUILD_ID="${BUILD_ID}" \
    PROVENANCE_CONTROLLER_PIPELINE_URL="${PIPELINE_URL}" \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
# 65532 is the conventional "nonroot" id (distroless); the chart's securityContext uses it too.
USER 65532:65532
WORKDIR /tmp
EXPOSE 9443 8080
ENTRYPOINT ["provenance-controller"]
CMD ["--config", "/etc/provenance-controller/config.yaml"]
