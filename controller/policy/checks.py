"""The policy checks. Each is a small object that returns every violation it finds.

A check never raises for a bad workload: violations are data, so that one answer can list all of
them. The checks are pure and synchronous (no I/O), so the offline `check` command and the webhook
run the very same code.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit

from controller.config import Config
from controller.errors import ImageReferenceError
from controller.images import parse_reference
from controller.policy.provenance import Claims
from controller.policy.violations import Reason, Violation
from controller.review import WorkloadRequest

FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})")
# A build id that is only a date or a timestamp identifies no build: the seed's red flag
# "a version that is only a timestamp". Bare numbers are CI run ids (GitHub's and GitLab's have
# 10-11 digits), so only a number that reads as a date in 2000-2099 counts as a timestamp.
_DATED = re.compile(
    r"(?P<y>20\d{2})-?(?P<m>\d{2})-?(?P<d>\d{2})"
    r"(?:[T_ .-]?\d{2}[:.-]?\d{2}(?:[:.-]?\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?")


def is_timestamp_like(value: str) -> bool:
    """True if `value` is only a date or date-time (`20261120-1015`, `2026-11-20T10:15:00Z`)."""
    match = _DATED.fullmatch(value)
    if match is None:
        return False
    try:
        dt.date(int(match["y"]), int(match["m"]), int(match["d"]))
    except ValueError:
        return False
    return True


ENVIRONMENT = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
"""Unicode category Cc is exactly C0, DEL and C1 (a test checks it against unicodedata); a
character class is six times faster than asking unicodedata per character."""


def has_control_characters(value: str) -> bool:
    """Any Unicode control character (category Cc: C0, DEL and C1, e.g. U+0085)."""
    return _CONTROL.search(value) is not None


Role = Literal["authored", "derived", "debug"]
"""Who is behind a request, which decides what is judged:
- `authored`: a person or pipeline wrote the object; every check applies;
- `derived`: a controller identity (`Config.derived`) made it from an admitted template; the
  person was judged there, so actor and environment are not, and annotations are checked for
  form but not required;
- `debug`: a person added ephemeral containers to a running Pod (`kubectl debug`); the Pod's
  provenance describes its workload, not the debugger, so deployed-by is not matched, but the
  debugger must be authorised for the environment and every image must pass."""


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What every check may read besides the request."""

    config: Config
    claims: Claims
    now: dt.datetime
    role: Role = "authored"


class Check(Protocol):
    """One policy rule. The engine runs the checks only over a request that deploys something
    (`provenance.claims_changed`): an UPDATE that changes nothing that runs is not judged."""

    def __call__(self, request: WorkloadRequest, ctx: CheckContext) -> Iterable[Violation]: ...


def _ann(ctx: CheckContext, name: str) -> str:
    return f"annotation {ctx.config.annotations.key(name)}"


class AnnotationsCheck:
    """Required annotations are present; every present one is well formed and bounded."""

    def __call__(self, request: WorkloadRequest, ctx: CheckContext) -> Iterator[Violation]:
        cfg = ctx.config.annotations
        claims = ctx.claims
        for required in cfg.required if ctx.role == "authored" else ():
            if not claims.get(required):
                subject = _ann(ctx, required)
                yield Violation(
                    Reason.MISSING_ANNOTATION, f"required {subject} is missing or empty",
                    f"set {cfg.key(required)} (kubectl-provenance stamp writes it)", subject)
        for name, value in sorted(claims.values.items()):
            if len(value) > cfg.max_value_length:
                yield Violation(
                    Reason.VALUE_TOO_LONG,
                    f"{_ann(ctx, name)} is {len(value)} characters long",
                    f"keep it under {cfg.max_value_length} characters", _ann(ctx, name))
                continue
            if has_control_characters(value):
                reason = Reason.INVALID_BUILD_ID if name == "build-id" else \
                    Reason.INVALID_ANNOTATION
                yield Violation(reason, f"{_ann(ctx, name)} contains control characters",
                                "remove them", _ann(ctx, name))
            elif value:
                yield from self._well_formed(name, value, ctx)

    def _well_formed(self, name: str, value: str, ctx: CheckContext) -> Iterator[Violation]:
        cfg = ctx.config.annotations
        subject = _ann(ctx, name)
        if name == "git-sha":
            if not FULL_SHA.fullmatch(value) or set(value) == {"0"}:
                what = ("a short SHA" if re.fullmatch(r"[0-9a-fA-F]{4,39}", value)
                        else "not a lower-case hex commit SHA")
                yield Violation(
                    Reason.INVALID_GIT_SHA, f"{subject} is {what}: {value[:80]!r}",
                    "use the full 40-character commit SHA (git rev-parse HEAD), never a branch, "
                    "tag or short SHA", subject)
        elif name == "build-id":
            if len(value) > cfg.max_build_id_length:
                yield Violation(
                    Reason.INVALID_BUILD_ID, f"{subject} is longer than "
                    f"{cfg.max_build_id_length} characters", "use the CI system's run id", subject)
            elif value.strip() != value:
                yield Violation(
                    Reason.INVALID_BUILD_ID, f"{subject} has leading or trailing whitespace",
                    "use the CI system's run id", subject)
            elif is_timestamp_like(value):
                yield Violation(
                    Reason.INVALID_BUILD_ID, f"{subject} is only a timestamp: {value!r}",
                    "use the CI system's build or run id, which names one build", subject)
        elif name == "build-timestamp":
            yield from self._timestamp(value, subject, ctx)
        elif name == "pipeline-url":
            parts = urlsplit(value)
            # Any userinfo is refused, even an empty one (`https://:@host`): `username` and
            # `password` are then empty strings, which a truthiness test would let through.
            if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
                yield Violation(
                    Reason.INVALID_PIPELINE_URL,
                    f"{subject} is not an https URL without credentials: {value[:120]!r}",
                    "use the https URL of the CI run", subject)
        elif name == "environment" and not ENVIRONMENT.fullmatch(value):
            yield Violation(
                Reason.INVALID_ANNOTATION, f"{subject} is not a lower-case name: "
                f"{value[:64]!r}", "use a name such as production or staging", subject)

    def _timestamp(self, value: str, subject: str, ctx: CheckContext) -> Iterator[Violation]:
        hint = "use RFC 3339 UTC, e.g. 2026-01-31T12:00:00Z (date -u +%Y-%m-%dT%H:%M:%SZ)"
        if not RFC3339.fullmatch(value):
            yield Violation(Reason.INVALID_TIMESTAMP,
                            f"{subject} is not RFC 3339: {value[:64]!r}", hint, subject)
            return
        try:
            stamp = dt.datetime.fromisoformat(value.replace("z", "Z"))  # a lower-case t is taken
        except ValueError:
            yield Violation(Reason.INVALID_TIMESTAMP,
                            f"{subject} is not a valid date and time: {value!r}", hint, subject)
            return
        skew = dt.timedelta(seconds=ctx.config.annotations.max_clock_skew_seconds)
        if stamp > ctx.now + skew:
            yield Violation(Reason.FUTURE_TIMESTAMP, f"{subject} {value} is in the future",
                            "set it from the build's clock when the build ran", subject)


class DigestPinningCheck:
    """Every image, in every kind of container, is pinned by a sha256 digest."""

    def __call__(self, request: WorkloadRequest, ctx: CheckContext) -> Iterator[Violation]:
        for container in request.containers:
            subject = f"{container.label} image {container.image[:200]!r}"
            try:
                ref = parse_reference(container.image)
            except ImageReferenceError as exc:
                yield Violation(Reason.INVALID_IMAGE, f"{container.label}: {exc}",
                                "use registry/repository@sha256:<64 hex>", subject)
                continue
            if ref.digest is None:
                yield Violation(
                    Reason.IMAGE_NOT_PINNED,
                    f"{container.label} uses {container.image!r}, a tag, not a digest",
                    "pin it as name@sha256:<digest> (kubectl-provenance stamp --pin-digests)",
                    subject)
            elif ref.pinned_digest is None:
                yield Violation(
                    Reason.INVALID_DIGEST,
                    f"{container.label} has digest {ref.digest[:80]!r}, which is not sha256 "
                    "with 64 lower-case hex", "use the sha256 digest the registry reports",
                    subject)


class ActorCheck:
    """The annotated deployer is checked against the authenticated user, never trusted alone."""

    def __call__(self, request: WorkloadRequest, ctx: CheckContext) -> Iterator[Violation]:
        annotated = ctx.claims.get("deployed-by")
        username = request.user.username
        if ctx.role != "authored" or not annotated:
            return  # a missing annotation is reported by AnnotationsCheck
        rule = ctx.config.actor
        subject = _ann(ctx, "deployed-by")
        if annotated == username:
            return
        if rule.rule == "ci-allowlist" and username in rule.ci_accounts:
            return
        allowed = (" or deploy through an allow-listed CI account"
                   if rule.rule == "ci-allowlist" else "")
        yield Violation(
            Reason.ACTOR_MISMATCH,
            f"{subject} says {annotated[:120]!r} but the request was made by {username!r}",
            f"set deployed-by to the authenticated user{allowed}", subject)


class EnvironmentCheck:
    """Only authorised users deploy to a restricted environment; the annotation cannot lie."""

    def __call__(self, request: WorkloadRequest, ctx: CheckContext) -> Iterator[Violation]:
        config = ctx.config
        from_ns = config.environment_for_namespace(request.namespace)
        annotated = ctx.claims.get("environment")
        subject = _ann(ctx, "environment")
        if from_ns and annotated and annotated != from_ns:
            yield Violation(
                Reason.INVALID_ANNOTATION,
                f"{subject} says {annotated[:64]!r} but namespace {request.namespace!r} belongs "
                f"to environment {from_ns!r}", f"set it to {from_ns}", subject)
        environment = from_ns or annotated
        if ctx.role == "derived" or environment is None or environment not in config.environments:
            return
        rule = config.environments[environment]
        user = request.user
        if user.username in rule.users or set(user.groups) & set(rule.groups):
            return
        yield Violation(
            Reason.ACTOR_NOT_AUTHORISED,
            f"user {user.username!r} may not deploy to environment {environment!r}",
            "deploy through the pipeline or an account listed for this environment",
            f"environment {environment}")


class BuildRulesCheck:
    """An environment's rules about the build itself: which branches, and how old a build, may be
    deployed there (`EnvironmentRule.branches`, `max_build_age_seconds`).

    Judged on what a person deploys (authored, and deploying something); a missing branch or
    build-timestamp fails a rule that needs it, since the rule cannot be shown to hold.
    """

    def __call__(self, request: WorkloadRequest, ctx: CheckContext) -> Iterator[Violation]:
        config = ctx.config
        environment = config.environment_for_namespace(request.namespace) or ctx.claims.get(
            "environment")
        if ctx.role != "authored" or environment is None or environment not in config.environments:
            return
        rule = config.environments[environment]
        branch = ctx.claims.get("branch")
        if rule.branches and not any(fnmatch.fnmatchcase(branch or "", p) for p in rule.branches):
            got = f"{branch[:120]!r}" if branch else "no branch annotation"
            yield Violation(
                Reason.BRANCH_NOT_ALLOWED,
                f"environment {environment!r} takes builds of {', '.join(rule.branches)}, "
                f"not {got}", "deploy a build of an allowed branch", _ann(ctx, "branch"))
        if rule.max_build_age_seconds is not None:
            yield from self._age(rule.max_build_age_seconds, environment, ctx)

    def _age(self, limit: int, environment: str, ctx: CheckContext) -> Iterator[Violation]:
        subject = _ann(ctx, "build-timestamp")
        value = ctx.claims.get("build-timestamp")
        stamp = _parse_timestamp(value) if value else None
        if stamp is None:
            yield Violation(
                Reason.BUILD_TOO_OLD,
                f"environment {environment!r} limits build age, and {subject} is missing or "
                "not RFC 3339", "set the build-timestamp (kubectl-provenance stamp writes it)",
                subject)
        elif (ctx.now - stamp).total_seconds() > limit:
            age = ctx.now - stamp
            yield Violation(
                Reason.BUILD_TOO_OLD,
                f"the build is {age.days}d {age.seconds // 3600}h old; environment "
                f"{environment!r} takes builds at most {limit}s old",
                "rebuild and redeploy, or roll back through the gate", subject)


def _parse_timestamp(value: str) -> dt.datetime | None:
    if not RFC3339.fullmatch(value):
        return None
    try:
        # Python 3.11's parser takes a lower-case `t` but not a lower-case `z`.
        return dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None


DEFAULT_CHECKS: tuple[Check, ...] = (
    AnnotationsCheck(), DigestPinningCheck(), ActorCheck(), EnvironmentCheck(),
    BuildRulesCheck())
"""Every check, in the order their violations are listed."""
