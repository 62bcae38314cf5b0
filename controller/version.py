"""The controller's own provenance, as the image that runs it was built.

The Dockerfile turns its build arguments (commit, build id, pipeline URL, build time) into both OCI
labels and these environment variables, so `/version` answers for the running binary with the same
facts a registry shows for the image. The controller dogfoods what it asks of every Deployment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import metadata

ENV_VERSION = "PROVENANCE_CONTROLLER_VERSION"
ENV_COMMIT = "PROVENANCE_CONTROLLER_COMMIT"
ENV_BUILD_ID = "PROVENANCE_CONTROLLER_BUILD_ID"
ENV_BUILT_AT = "PROVENANCE_CONTROLLER_BUILT_AT"
ENV_SOURCE = "PROVENANCE_CONTROLLER_SOURCE"
ENV_PIPELINE_URL = "PROVENANCE_CONTROLLER_PIPELINE_URL"
ENV_ENVIRONMENT = "PROVENANCE_CONTROLLER_ENVIRONMENT"

BUILD_ENV_VARS = (
    ENV_VERSION, ENV_COMMIT, ENV_BUILD_ID, ENV_BUILT_AT, ENV_SOURCE, ENV_PIPELINE_URL,
)
"""The variables the Dockerfile bakes into the image; ENV_ENVIRONMENT is set per install."""

UNKNOWN = "unknown"
"""What a field reads when the build did not supply it (a local `pip install -e`)."""


def _package_version() -> str:
    try:
        return metadata.version("provenance-controller")
    except metadata.PackageNotFoundError:
        return UNKNOWN


@dataclass(frozen=True, slots=True)
class BuildInfo:
    """Where the running controller came from."""

    version: str
    """Release version (the image tag); the installed package version when unset."""
    commit: str
    """Full git commit the image was built from."""
    build: str
    """The CI build id that produced the image."""
    built_at: str
    """RFC 3339 time the image was built."""
    environment: str
    """The environment this installation serves (set by the chart, not the build)."""
    pipeline_url: str
    """Link to the CI run that built the image."""
    source: str
    """The source repository URL."""

    def as_dict(self) -> dict[str, str]:
        """The JSON body of `/version`."""
        return asdict(self)


def build_info(environ: Mapping[str, str] | None = None) -> BuildInfo:
    """Read the build facts from `environ` (default: the process environment)."""
    env = os.environ if environ is None else environ

    def get(name: str, default: str = UNKNOWN) -> str:
        # An empty build arg means "not supplied"; report it as unknown rather than "".
        return env.get(name, "").strip() or default

    return BuildInfo(
        version=get(ENV_VERSION, _package_version()),
        commit=get(ENV_COMMIT),
        build=get(ENV_BUILD_ID),
        built_at=get(ENV_BUILT_AT),
        environment=get(ENV_ENVIRONMENT),
        pipeline_url=get(ENV_PIPELINE_URL),
        source=get(ENV_SOURCE),
    )
