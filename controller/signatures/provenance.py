"""SLSA provenance: the facts the controller compares with a Deployment's annotations.

Two predicate versions are read:
- v1 (`https://slsa.dev/provenance/v1`): the commit is `buildDefinition.resolvedDependencies[]`
  `.digest.gitCommit`; the build id and run URL are `runDetails.metadata.invocationId`.
- v0.2 (`https://slsa.dev/provenance/v0.2`): the commit is `materials[].digest.sha1` (or
  `gitCommit`) and `invocation.configSource.digest.sha1`; the build id and run URL are
  `metadata.buildInvocationId`, plus `invocation.environment` keys that CI systems set
  (`GITHUB_RUN_ID`, `CI_PIPELINE_ID`, `CI_JOB_URL`, `BUILD_URL`, ...).

Matching rules (documented in the README):
- commit: the git-sha annotation must equal one of the attested commits (full 40 or 64 hex,
  case-insensitive). An abbreviated sha never matches.
- build id: equal to an attested build id, or to the path segment that follows `runs`,
  `pipelines`, `builds`, `jobs`, `run` or `build` in an attested invocation URL (`12345` matches
  `.../actions/runs/12345/attempts/1`; `1` and `runs` do not).
- pipeline URL: equal to an attested invocation URL, or a prefix of one ending on a path
  boundary (`.../runs/12345` matches `.../runs/12345/attempts/1`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

SLSA_V1 = "https://slsa.dev/provenance/v1"
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_TYPES = frozenset({SLSA_V1, SLSA_V02})
_HEX = frozenset("0123456789abcdef")
_ENV_BUILD_IDS = ("GITHUB_RUN_ID", "CI_PIPELINE_ID", "CI_JOB_ID", "BUILD_ID", "BUILD_NUMBER")
_ENV_URLS = ("CI_PIPELINE_URL", "CI_JOB_URL", "BUILD_URL")
_MAX_ITEMS = 256
_RUN_SEGMENTS = frozenset({"runs", "run", "pipelines", "builds", "build", "jobs"})
"""URL path segments after which CI systems put the run id (GitHub, GitLab, Buildkite, ...)."""


@dataclass(frozen=True, slots=True)
class Provenance:
    """What one verified SLSA attestation says about how the image was built."""

    predicate_type: str
    commits: tuple[str, ...]
    """Lower-case hex commit ids."""
    build_ids: tuple[str, ...]
    invocation_urls: tuple[str, ...]
    builder_id: str = ""

    @property
    def commit(self) -> str | None:
        """The first attested commit, for evidence."""
        return self.commits[0] if self.commits else None

    def has_commit(self, sha: str) -> bool:
        """True if `sha` equals an attested commit (case-insensitive, never abbreviated)."""
        return sha.lower() in self.commits

    def has_build_id(self, build_id: str) -> bool:
        """True if `build_id` is an attested build id or the run id in an invocation URL."""
        if build_id in self.build_ids:
            return True
        for url in self.invocation_urls:
            parts = urlsplit(url).path.split("/")
            if any(build_id == parts[i + 1] for i, part in enumerate(parts[:-1])
                   if part in _RUN_SEGMENTS):
                return True
        return False

    def has_pipeline_url(self, url: str) -> bool:
        """True if `url` is an invocation URL or its prefix on a path boundary."""
        stem = url.rstrip("/")
        return any(u == url or u.rstrip("/") == stem or u.startswith(stem + "/")
                   for u in self.invocation_urls)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value[:_MAX_ITEMS] if isinstance(value, list) else []


def _commit(value: Any) -> str | None:
    if isinstance(value, str) and len(value) in (40, 64) and set(value.lower()) <= _HEX:
        return value.lower()
    return None


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def extract_provenance(predicate_type: str, predicate: Mapping[str, Any] | None) -> Provenance:
    """Read the commit, build ids and run URLs out of a SLSA v1 or v0.2 predicate."""
    pred = _dict(predicate)
    commits: list[str] = []
    build_ids: list[str] = []
    urls: list[str] = []
    builder = ""
    if predicate_type == SLSA_V1:
        definition = _dict(pred.get("buildDefinition"))
        for dep in _list(definition.get("resolvedDependencies")):
            digest = _dict(_dict(dep).get("digest"))
            for field in ("gitCommit", "sha1"):
                if (sha := _commit(digest.get(field))) is not None:
                    commits.append(sha)
        run = _dict(pred.get("runDetails"))
        builder = str(_dict(run.get("builder")).get("id", ""))[:1024]
        invocation = _dict(run.get("metadata")).get("invocationId")
        if isinstance(invocation, str) and invocation:
            build_ids.append(invocation)
            if _is_url(invocation):
                urls.append(invocation)
    elif predicate_type == SLSA_V02:
        for material in _list(pred.get("materials")):
            digest = _dict(_dict(material).get("digest"))
            for field in ("sha1", "gitCommit"):
                if (sha := _commit(digest.get(field))) is not None:
                    commits.append(sha)
        invocation = _dict(pred.get("invocation"))
        config_digest = _dict(_dict(invocation.get("configSource")).get("digest"))
        if (sha := _commit(config_digest.get("sha1"))) is not None:
            commits.append(sha)
        environment = _dict(invocation.get("environment"))
        for key in _ENV_BUILD_IDS:
            if isinstance(environment.get(key), str | int):
                build_ids.append(str(environment[key]))
        for key in _ENV_URLS:
            if _is_url(environment.get(key)):
                urls.append(environment[key])
        build_invocation = _dict(pred.get("metadata")).get("buildInvocationId")
        if isinstance(build_invocation, str) and build_invocation:
            build_ids.append(build_invocation)
            if _is_url(build_invocation):
                urls.append(build_invocation)
        builder = str(_dict(pred.get("builder")).get("id", ""))[:1024]
    return Provenance(
        predicate_type=predicate_type,
        commits=_unique(commits),
        build_ids=_unique(build_ids),
        invocation_urls=_unique(urls),
        builder_id=builder,
    )
