"""Where the provenance values come from: the CI system's environment, then git, then flags.

Precedence, lowest first: git, the CI system's variables, `PROVENANCE_*` variables, flags.

Each CI system is detected by the variable it documents as its marker (`GITHUB_ACTIONS=true`,
`GITLAB_CI=true`, `JENKINS_URL`, `TF_BUILD=True`) and read through its own documented variable
names. Without a CI system, a plain git checkout gives the commit and the branch. Flags override
both. Nothing here writes anything: `collect` returns a `BuildInfo` or raises `BuildInfoError`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from controller.config import AnnotationConfig, Config
from controller.policy.checks import FULL_SHA, AnnotationsCheck, CheckContext, is_timestamp_like
from controller.policy.provenance import Claims
from controller.review import request_from_manifest
from controller.stamp.errors import BuildInfoError

GIT_TIMEOUT_SECONDS = 10.0
"""A git call that takes longer than this is treated as failed (a hung credential prompt)."""

FIELDS = (
    "git_sha", "branch", "build_id", "build_timestamp", "pipeline_url", "deployed_by",
    "environment",
)
"""The `BuildInfo` fields that become annotations, in annotation order."""


@dataclass(frozen=True, slots=True)
class BuildInfo:
    """The provenance of one build, as stamp writes it. `None` means "not known"."""

    system: str = "none"
    """Which source supplied the values: `github-actions`, `gitlab-ci`, `jenkins`,
    `azure-pipelines`, `git` or `none`."""
    git_sha: str | None = None
    """The full commit SHA (40 or 64 lower-case hex)."""
    branch: str | None = None
    """The branch (or tag) the build ran for."""
    build_id: str | None = None
    """The CI system's id of this run."""
    build_timestamp: str | None = None
    """When the build ran, RFC 3339 UTC."""
    pipeline_url: str | None = None
    """The https URL of the CI run."""
    deployed_by: str | None = None
    """Who triggered the deployment; the gate compares it with the authenticated user."""
    environment: str | None = None
    """The target environment (`production`, `staging`)."""

    def annotations(self) -> dict[str, str]:
        """Short annotation name (`git-sha`) → value, for every known value."""
        out: dict[str, str] = {}
        for name in FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name.replace("_", "-")] = value
        return out

    def env(self) -> dict[str, str]:
        """The values as `PROVENANCE_GIT_SHA=...` variables, for an app's /version endpoint."""
        return {f"PROVENANCE_{name.upper()}": getattr(self, name)
                for name in FIELDS if getattr(self, name) is not None}

    def overridden(self, **values: str | None) -> BuildInfo:
        """A copy with every given non-None value replacing the detected one."""
        given = {k: v for k, v in values.items() if v is not None}
        unknown = set(given) - set(FIELDS)
        if unknown:
            raise TypeError(f"unknown BuildInfo fields: {sorted(unknown)}")
        return dataclasses.replace(self, **given)


def _get(env: Mapping[str, str], *names: str) -> str | None:
    """The first of `names` set to a non-blank value."""
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def _strip_ref(ref: str | None) -> str | None:
    if ref is None:
        return None
    for prefix in ("refs/heads/", "refs/tags/", "refs/remotes/origin/", "origin/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def _github(env: Mapping[str, str]) -> BuildInfo:
    run_id = _get(env, "GITHUB_RUN_ID")
    attempt = _get(env, "GITHUB_RUN_ATTEMPT")
    server = _get(env, "GITHUB_SERVER_URL") or "https://github.com"
    repository = _get(env, "GITHUB_REPOSITORY")
    url = None
    if run_id and repository:
        # The same URL GitHub's SLSA generator writes as the attestation's invocation id.
        url = f"{server.rstrip('/')}/{repository}/actions/runs/{run_id}"
        if attempt:
            url += f"/attempts/{attempt}"
    return BuildInfo(
        system="github-actions",
        git_sha=_get(env, "GITHUB_SHA"),
        branch=_get(env, "GITHUB_REF_NAME") or _strip_ref(_get(env, "GITHUB_REF")),
        # The bare run id: the verifier matches it as a path segment of the attested invocation
        # URL (`.../actions/runs/<id>/attempts/<n>`); the attempt is in pipeline-url.
        build_id=run_id,
        pipeline_url=url,
        # The one who started this attempt (a re-run by someone else deploys as them).
        deployed_by=_get(env, "GITHUB_TRIGGERING_ACTOR", "GITHUB_ACTOR"),
    )


def _gitlab(env: Mapping[str, str]) -> BuildInfo:
    return BuildInfo(
        system="gitlab-ci",
        git_sha=_get(env, "CI_COMMIT_SHA"),
        branch=_get(env, "CI_COMMIT_REF_NAME"),
        build_id=_get(env, "CI_PIPELINE_ID"),
        build_timestamp=_get(env, "CI_PIPELINE_CREATED_AT"),
        pipeline_url=_get(env, "CI_PIPELINE_URL"),
        deployed_by=_get(env, "GITLAB_USER_LOGIN"),
        environment=_get(env, "CI_ENVIRONMENT_NAME"),
    )


def _jenkins(env: Mapping[str, str]) -> BuildInfo:
    # The git plugin sets GIT_BRANCH as the remote branch (`origin/main`); GIT_LOCAL_BRANCH is set
    # only when a local branch is checked out; multibranch pipelines set BRANCH_NAME.
    branch = _get(env, "GIT_LOCAL_BRANCH") or _strip_ref(_get(env, "GIT_BRANCH")) or _get(
        env, "BRANCH_NAME")
    return BuildInfo(
        system="jenkins",
        git_sha=_get(env, "GIT_COMMIT"),
        branch=branch,
        build_id=_get(env, "BUILD_ID", "BUILD_NUMBER"),
        pipeline_url=_get(env, "BUILD_URL"),
        # BUILD_USER_ID comes from the build-user-vars plugin; timer- and SCM-triggered builds
        # have no user, so `--deployed-by` is needed there.
        deployed_by=_get(env, "BUILD_USER_ID", "CHANGE_AUTHOR"),
    )


def _azure(env: Mapping[str, str]) -> BuildInfo:
    build_id = _get(env, "BUILD_BUILDID")
    collection = _get(env, "SYSTEM_COLLECTIONURI")
    project = _get(env, "SYSTEM_TEAMPROJECT")
    url = None
    if build_id and collection and project:
        url = (f"{collection.rstrip('/')}/{quote(project, safe='')}/_build/results"
               f"?buildId={build_id}")
    # BUILD_SOURCEBRANCHNAME is only the last path segment (`feature/x` gives `x`); the full
    # branch is BUILD_SOURCEBRANCH without `refs/heads/`.
    full = _get(env, "BUILD_SOURCEBRANCH")
    branch = (_strip_ref(full) if full and full.startswith("refs/heads/")
              else _get(env, "BUILD_SOURCEBRANCHNAME"))
    return BuildInfo(
        system="azure-pipelines",
        git_sha=_get(env, "BUILD_SOURCEVERSION"),
        branch=branch,
        build_id=build_id,
        pipeline_url=url,
        # The e-mail, not the display name: with Entra ID the cluster's username is the UPN,
        # and "Ada Lovelace" would never match the authenticated user.
        deployed_by=_get(env, "BUILD_REQUESTEDFOREMAIL") or _get(env, "BUILD_REQUESTEDFOR"),
        environment=_get(env, "ENVIRONMENT_NAME"),
    )


_SYSTEMS: tuple[tuple[str, Callable[[Mapping[str, str]], bool],
                      Callable[[Mapping[str, str]], BuildInfo]], ...] = (
    ("github-actions", lambda e: e.get("GITHUB_ACTIONS") == "true", _github),
    ("gitlab-ci", lambda e: e.get("GITLAB_CI") == "true", _gitlab),
    ("azure-pipelines", lambda e: e.get("TF_BUILD", "").lower() == "true", _azure),
    ("jenkins", lambda e: bool(e.get("JENKINS_URL") or e.get("JENKINS_HOME")), _jenkins),
)
"""Detection order: the first marker found wins (a Jenkins agent running inside another CI is
rare, and the more specific markers come first)."""


def detect_ci(env: Mapping[str, str]) -> BuildInfo | None:
    """The values the CI system in `env` provides, or None outside every known CI system."""
    for _name, present, read in _SYSTEMS:
        if present(env):
            return read(env)
    return None


@dataclass(frozen=True, slots=True)
class GitState:
    """What a plain git checkout says about itself."""

    sha: str | None
    branch: str | None
    dirty_paths: tuple[str, ...]
    """Tracked files with uncommitted changes (untracked files are ignored: build outputs and the
    rendered manifests being stamped are usually untracked), relative to `top`."""
    top: Path | None = None
    """The work tree's top directory."""
    status_ok: bool = True
    """False when `git status` failed: the tree's state is unknown, which is not clean."""


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def read_git(cwd: Path) -> GitState | None:
    """The checkout at `cwd`, or None when it is not inside a git work tree (or git is absent)."""
    inside = _git(cwd, "rev-parse", "--is-inside-work-tree")
    if inside is None or inside.strip() != "true":
        return None
    sha = (_git(cwd, "rev-parse", "--verify", "-q", "HEAD") or "").strip() or None
    branch = (_git(cwd, "symbolic-ref", "-q", "--short", "HEAD") or "").strip() or None
    status = _git(cwd, "status", "--porcelain=v1", "--untracked-files=no")
    top = (_git(cwd, "rev-parse", "--show-toplevel") or "").strip()
    dirty = tuple(line[3:] for line in (status or "").splitlines() if line.strip())
    return GitState(sha=sha, branch=branch, dirty_paths=dirty,
                    top=Path(top) if top else None, status_ok=status is not None)


def rfc3339(moment: dt.datetime) -> str:
    """`2026-01-31T12:00:00Z`: UTC, whole seconds, the form the gate documents."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _qualified_build_id(info: BuildInfo) -> str | None:
    # The gate rejects a build id that is only a timestamp; a CI number that happens to read
    # as a date (an Azure build id of 20260115, say) would look like one. Prefixing the CI
    # system's name keeps it naming exactly one build and makes it pass.
    build_id = info.build_id
    if build_id is not None and is_timestamp_like(build_id) and info.system not in (
            "none", "git"):
        return f"{info.system.split('-')[0]}-{build_id}"
    return build_id


def _is_stamped(path: Path, stamped: Sequence[Path]) -> bool:
    resolved = path.resolve()
    for target in stamped:
        target = target.resolve()
        if resolved == target or target in resolved.parents:
            return True
    return False


def collect(
    *,
    env: Mapping[str, str],
    cwd: Path,
    now: dt.datetime,
    overrides: Mapping[str, str | None] | None = None,
    allow_dirty: bool = False,
    required: Sequence[str] = ("git-sha",),
    annotations: AnnotationConfig | None = None,
    stamped: Sequence[Path] = (),
) -> BuildInfo:
    """The provenance for this build: CI environment, else git; flags in `overrides` win.

    Raises `BuildInfoError` for a missing or short SHA, a dirty working tree (unless
    `allow_dirty`), a missing value named in `required` (short annotation names), or any value
    the gate's annotation check would reject under `annotations` (the default prefix and limits
    when None).
    """
    git = read_git(cwd)
    info = detect_ci(env)
    if info is None:
        info = BuildInfo(system="git" if git is not None else "none")
    if git is not None:
        # Fill what the CI system does not give from the checkout itself.
        info = dataclasses.replace(
            info, git_sha=info.git_sha or git.sha, branch=info.branch or git.branch)
    if info.build_timestamp is None:
        info = dataclasses.replace(info, build_timestamp=rfc3339(now))
    info = dataclasses.replace(info, build_id=_qualified_build_id(info))
    # `PROVENANCE_*` variables (what `--print-env` prints) override detection, so that values
    # exported once in a job (`eval "$(kubectl-provenance stamp --print-env)"`) are stamped
    # unchanged later, timestamp included; flags override both.
    info = info.overridden(**{name: _get(env, f"PROVENANCE_{name.upper()}") for name in FIELDS})
    info = info.overridden(**dict(overrides or {}))

    # 1. The commit: full and lower-case, or nothing is stamped at all.
    sha = info.git_sha
    if sha is None:
        raise BuildInfoError(
            "no git SHA: not in a known CI system and not in a git checkout; pass --git-sha "
            "with the full commit SHA")
    if not FULL_SHA.fullmatch(sha.lower()) or set(sha) == {"0"}:
        raise BuildInfoError(
            f"git SHA {sha[:80]!r} is not a full commit SHA (40 or 64 hex characters); a short "
            "SHA, branch or tag names no single commit: use git rev-parse HEAD")
    info = dataclasses.replace(info, git_sha=sha.lower())
    # 2. The working tree: a dirty tree means the image was not built from that commit.
    if git is not None and not git.status_ok and not allow_dirty:
        raise BuildInfoError(
            "cannot tell whether the working tree is clean (git status failed); fix the "
            "checkout, or pass --allow-dirty")
    # The manifests being stamped in place are not the build's sources: a second stamp of the
    # same files (say, to add --pin-digests) must not be refused for the first one's edits.
    dirty = [p for p in (git.dirty_paths if git is not None else ())
             if not _is_stamped(git.top / p if git is not None and git.top else Path(p), stamped)]
    if dirty and not allow_dirty:
        shown = ", ".join(dirty[:5]) + (" ..." if len(dirty) > 5 else "")
        raise BuildInfoError(
            f"the working tree has uncommitted changes ({shown}): what is deployed would not be "
            f"commit {info.git_sha}; commit them, or pass --allow-dirty")
    # 3. Every value the gate requires.
    values = info.annotations()
    missing = [name for name in required if not values.get(name)]
    if missing:
        flags = ", ".join(f"--{name}" for name in missing)
        raise BuildInfoError(
            f"no value for {', '.join(missing)} (detected CI: {info.system}); pass {flags}")
    # 4. Every value as the gate will judge it: never write what it would reject.
    problems = annotation_problems(info, annotations or AnnotationConfig(), now=now)
    if problems:
        raise BuildInfoError("the gate would reject these values:\n" + "\n".join(
            f"  {p}" for p in problems))
    return info


def annotation_problems(info: BuildInfo, annotations: AnnotationConfig, *,
                        now: dt.datetime) -> list[str]:
    """What the gate's annotation check says about these values, one rendered line each."""
    config = Config(annotations=annotations.model_copy(update={"required": ()}))
    placeholder = request_from_manifest(
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "stamp"}},
        username="stamp")
    ctx = CheckContext(config=config, claims=Claims(info.annotations()), now=now)
    return [v.render() for v in AnnotationsCheck()(placeholder, ctx)]
