"""The admission pipeline, free of kopf: typed request → checks → signatures → decision → ledger.

The webhook edge (controller.webhook) parses the AdmissionReview and calls `Admission.review`;
everything here can be called by a test without a cluster.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from controller.config import Config
from controller.ledger.models import BreakGlass, Rollback
from controller.policy.checks import Role
from controller.policy.engine import evaluate, role_of
from controller.policy.provenance import Claims, claims_changed, read_claims
from controller.policy.violations import Decision, Reason, Violation
from controller.review import WorkloadRequest
from controller.signatures import ImageEvidence

logger = logging.getLogger("provenance.admission")


@dataclass(frozen=True)
class Outcome:
    """What the pipeline knows about one request so far."""

    decision: Decision
    """The verdict so far; later stages may add violations or notes."""
    claims: Claims
    """The provenance annotations, read once (`read_claims`) for every stage."""
    deploys: bool
    """False for an UPDATE that changes neither the pod template nor the provenance
    (`claims_changed`): nothing is deployed, so actor checks, re-verification and the ledger
    are skipped."""
    role: Role = "authored"
    """Who is behind the request (`checks.Role`); derived objects are recorded only when the
    ledger is configured to (`ledger.record_derived`)."""
    evidence: tuple[ImageEvidence, ...] = field(default=())
    """Per-image verification evidence, for the ledger."""
    recorded_seq: int | None = None
    """The ledger sequence number of this admission, once it is durable."""
    break_glass: BreakGlass | None = None
    """Set when violations were waived by break glass (`stages.BreakGlassStage`)."""
    rollback: Rollback | None = None
    """Set when the request restores an earlier admitted template (`stages.RollbackStage`)."""


class Stage(Protocol):
    """A later pipeline stage (signature verification, ledger append).

    `run` receives the outcome so far and returns the outcome to continue with. It must finish
    before `deadline` (a `time.monotonic()` value) and must fail closed: a stage that cannot decide
    adds a violation rather than letting the request through.
    """

    async def run(self, request: WorkloadRequest, outcome: Outcome, *,
                  deadline: float) -> Outcome: ...


@dataclass
class Admission:
    """Judges one request at a time; long-lived, shared by every request."""

    config: Config
    stages: tuple[Stage, ...] = ()
    """Run in order after the policy checks: verification first, the ledger last."""
    budget_seconds: float = 8.0
    """Time allowed for the whole review; below the webhook's timeoutSeconds so that the API
    server hears our denial rather than its own timeout."""
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    async def review(self, request: WorkloadRequest) -> Outcome:
        """The outcome for `request`, never raising: an internal failure is a denial."""
        deadline = time.monotonic() + self.budget_seconds
        try:
            outcome = judge(request, self.config, now=self.clock())
            if outcome.decision.exempt_reason:
                return outcome
            for stage in self.stages:
                outcome = await stage.run(request, outcome, deadline=deadline)
            return outcome
        except Exception:
            # Fail closed, even in audit mode: we could not say what was admitted.
            logger.exception("admission review failed", extra={"admission_uid": request.uid})
            return Outcome(Decision(violations=(Violation(
                Reason.INTERNAL_ERROR,
                f"the controller could not evaluate this {request.kind.kind}",
                "retry; if it persists, read the controller's log for this request uid",
                request.uid),), enforce=True), claims=Claims({}), deploys=False)


def judge(request: WorkloadRequest, config: Config, *, now: dt.datetime) -> Outcome:
    """The policy checks' outcome, with the claims, `deploys` and role every later stage reads
    (`evaluate` reads the same from the same request)."""
    return Outcome(evaluate(request, config, now=now),
                   claims=read_claims(request, config.annotations),
                   deploys=claims_changed(request, config.annotations),
                   role=role_of(request, config))
