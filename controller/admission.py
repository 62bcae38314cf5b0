"""The admission pipeline, free of kopf: typed request → checks → signatures → decision → ledger.

The webhook edge (controller.webhook) parses the AdmissionReview and calls `Admission.review`;
everything here can be called by a test without a cluster.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from controller.config import Config
from controller.policy.engine import evaluate
from controller.policy.violations import Decision, Reason, Violation
from controller.review import DeploymentRequest

logger = logging.getLogger("provenance.admission")


class Stage(Protocol):
    """A later pipeline stage (signature verification, ledger append).

    `run` receives the decision so far and returns the decision to continue with. It must finish
    before `deadline` (a `time.monotonic()` value) and must fail closed: a stage that cannot decide
    adds a violation rather than letting the request through.
    """

    async def run(self, request: DeploymentRequest, decision: Decision, *,
                  deadline: float) -> Decision: ...


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

    async def review(self, request: DeploymentRequest) -> Decision:
        """The decision for `request`, never raising: an internal failure is a denial."""
        deadline = time.monotonic() + self.budget_seconds
        try:
            decision = evaluate(request, self.config, now=self.clock())
            if decision.exempt_reason:
                return decision
            for stage in self.stages:
                decision = await stage.run(request, decision, deadline=deadline)
            return decision
        except Exception:
            # Fail closed, even in audit mode: we could not say what was admitted.
            logger.exception("admission review failed", extra={"admission_uid": request.uid})
            return Decision(violations=(Violation(
                Reason.INTERNAL_ERROR, "the controller could not evaluate this Deployment",
                "retry; if it persists, read the controller's log for this request uid",
                request.uid),), enforce=True)
