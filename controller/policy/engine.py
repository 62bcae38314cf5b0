"""Run the checks over one request and decide. Pure: no I/O, no clock of its own."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from controller.config import Config
from controller.policy.checks import DEFAULT_CHECKS, Check, CheckContext, Role
from controller.policy.provenance import claims_changed, read_claims
from controller.policy.violations import Decision, Violation
from controller.review import WorkloadRequest
from controller.workloads import JUDGED_SUBRESOURCES


def exemption(request: WorkloadRequest, config: Config) -> str:
    """Why this request is not judged at all, or "" when it is."""
    if request.namespace in config.exempt_namespaces:
        return f"namespace {request.namespace} is exempt"
    if request.subresource and request.subresource not in JUDGED_SUBRESOURCES.get(
            request.kind.plural, ()):
        # The webhook configuration matches only these; this is the second line.
        return f"subresource {request.subresource} is not judged"
    if request.operation not in ("CREATE", "UPDATE"):
        return f"operation {request.operation} is not judged"
    return ""


def role_of(request: WorkloadRequest, config: Config) -> Role:
    """Who is behind `request` (`checks.Role`), from the authenticated user alone."""
    if config.is_controller(request.user.username):
        return "derived"
    if request.subresource:
        return "debug"
    return "authored"


def evaluate(
    request: WorkloadRequest,
    config: Config,
    *,
    now: dt.datetime,
    checks: Sequence[Check] = DEFAULT_CHECKS,
) -> Decision:
    """The decision over `request`: every violation at once, in check order."""
    enforce = config.mode == "enforce"
    reason = exemption(request, config)
    if reason:
        return Decision(enforce=enforce, exempt_reason=reason)
    if not claims_changed(request, config.annotations):
        # An UPDATE that changes neither what runs nor a provenance annotation deploys nothing:
        # a ReplicaSet scaled, a revision annotation, a label on a derived Pod, a finalizer
        # removed. Judging it would only stop a workload that predates the gate (or a Pod whose
        # template carried no provenance) from being scaled down, labelled or cleaned up.
        return Decision(enforce=enforce)
    ctx = CheckContext(config=config, claims=read_claims(request, config.annotations), now=now,
                       role=role_of(request, config))
    violations: list[Violation] = []
    for check in checks:
        violations.extend(check(request, ctx))
    return Decision(violations=tuple(violations), enforce=enforce)
