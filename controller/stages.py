"""The pipeline stages after the policy checks: signature verification, then the ledger.

Each adapts one long-lived component (`ImageVerifier`, `Ledger`) to `admission.Stage`. They sit
here rather than in their packages so that signatures and ledger know nothing of each other.
"""

from __future__ import annotations

import dataclasses
import logging

from controller.admission import Outcome
from controller.config import Config
from controller.policy.provenance import read_claims
from controller.review import DeploymentRequest
from controller.signatures import ImageVerifier

logger = logging.getLogger("provenance.stages")


class SignatureStage:
    """Verify signatures and attestations of every pinned image; violations join the decision."""

    def __init__(self, verifier: ImageVerifier, config: Config) -> None:
        self._verifier = verifier
        self._config = config

    async def run(self, request: DeploymentRequest, outcome: Outcome, *,
                  deadline: float) -> Outcome:
        if not self._config.signatures.enabled:
            return outcome
        claims = read_claims(request, self._config.annotations)
        # The namespace decides the environment when it is mapped; the annotation cannot move a
        # Deployment out of a stricter rule (EnvironmentCheck reports a contradiction).
        environment = (self._config.environment_for_namespace(request.namespace)
                       or claims.get("environment"))
        result = await self._verifier.verify(
            request, git_sha=claims.get("git-sha"), build_id=claims.get("build-id"),
            pipeline_url=claims.get("pipeline-url"), environment=environment,
            deadline=deadline)
        decision = outcome.decision.with_violations(result.violations)
        if result.notes:
            decision = dataclasses.replace(decision, notes=decision.notes + result.notes)
        return dataclasses.replace(outcome, decision=decision, evidence=result.evidence)
