"""The pipeline stages after the policy checks: signature verification, then the ledger.

Each adapts one long-lived component (`ImageVerifier`, `Ledger`) to `admission.Stage`. They sit
here rather than in their packages so that signatures and ledger know nothing of each other.
"""

from __future__ import annotations

import dataclasses
import logging

from pydantic import ValidationError

from controller.admission import Outcome
from controller.config import Config
from controller.ledger import (
    AttestationRecord,
    Ledger,
    LedgerError,
    SignatureRecord,
    VerifiedImage,
    build_admission_entry,
)
from controller.policy.violations import Decision, Reason, Violation
from controller.review import WorkloadRequest
from controller.signatures import ImageEvidence, ImageVerifier

logger = logging.getLogger("provenance.stages")


class SignatureStage:
    """Verify signatures and attestations of every pinned image; violations join the decision."""

    def __init__(self, verifier: ImageVerifier, config: Config, *,
                 reserve_seconds: float = 0.0) -> None:
        self._verifier = verifier
        self._config = config
        self._reserve = reserve_seconds
        """Time kept back for the stages after this one (the ledger append), so that a slow
        registry cannot leave the ledger without time and turn an admission into a denial."""

    async def run(self, request: WorkloadRequest, outcome: Outcome, *,
                  deadline: float) -> Outcome:
        # An UPDATE that changes neither the template nor the provenance deploys nothing new:
        # its images were judged when they were admitted. Re-verifying would deny label edits
        # and the deployment controller's own revision bumps whenever a registry is down.
        if not self._config.signatures.enabled or not outcome.deploys:
            return outcome
        claims = outcome.claims
        # The namespace decides the environment when it is mapped; the annotation cannot move a
        # workload out of a stricter rule (EnvironmentCheck reports a contradiction).
        environment = (self._config.environment_for_namespace(request.namespace)
                       or claims.get("environment"))
        result = await self._verifier.verify(
            request, git_sha=claims.get("git-sha"), build_id=claims.get("build-id"),
            pipeline_url=claims.get("pipeline-url"), branch=claims.get("branch"),
            environment=environment,
            deadline=deadline - self._reserve)
        decision = outcome.decision.with_violations(result.violations)
        if result.notes:
            decision = dataclasses.replace(decision, notes=decision.notes + result.notes)
        return dataclasses.replace(outcome, decision=decision, evidence=result.evidence)


def _ledger_image(evidence: ImageEvidence) -> VerifiedImage:
    """The verifier's evidence for one image, as the ledger records it.

    `verified` means the image's rule was met in full (signature threshold, and the attested
    commit where an attestation is required); an audit-mode admission that waived a failure
    records `verified: false` and the entry's `waived` codes say which.
    """
    checked = evidence.requirement != "none"
    signature = SignatureRecord(
        verified=evidence.verified, formats=evidence.signature_formats,
        key_ids=evidence.key_ids) if checked else None
    attestation = AttestationRecord(
        verified=evidence.verified, commit_sha=evidence.attestation_commit,
        key_ids=evidence.key_ids,
    ) if evidence.requirement == "attestation" else None
    return VerifiedImage(digest=evidence.digest, signature=signature, attestation=attestation)


class LedgerStage:
    """Append every admitted workload to the ledger before answering; deny if it cannot.

    Not recorded: denials, dryRun requests (never a side effect), UPDATEs that change neither
    what runs nor the provenance annotations (nothing is being deployed; the deployment
    controller's own revision bumps are such updates), and objects controllers derive from an
    admitted template unless `ledger.record_derived` asks for them.
    """

    def __init__(self, ledger: Ledger, config: Config) -> None:
        self._ledger = ledger
        self._config = config

    async def run(self, request: WorkloadRequest, outcome: Outcome, *,
                  deadline: float) -> Outcome:
        if not outcome.decision.allowed or request.dry_run or not outcome.deploys:
            return outcome
        if outcome.role == "derived" and not self._config.ledger.record_derived:
            return outcome
        images = {ev.image: _ledger_image(ev) for ev in outcome.evidence}
        waived = tuple(sorted({str(v.reason) for v in outcome.decision.violations}))
        try:
            entry = build_admission_entry(request, self._config, images=images, waived=waived,
                                          claims=outcome.claims)
            receipt = await self._ledger.append(entry, deadline=deadline)
        except (LedgerError, ValidationError) as exc:
            logger.error("ledger append failed: %s", exc, extra={"admission_uid": request.uid})
            reason = (f"{exc.error_count()} field(s) exceed the ledger's bounds"
                      if isinstance(exc, ValidationError) else str(exc))
            # Nothing admitted goes unrecorded: deny, even in audit mode.
            violation = Violation(
                Reason.LEDGER_UNAVAILABLE,
                f"the admission could not be recorded in the audit ledger ({reason})",
                "retry the apply; nothing was deployed", "ledger")
            return dataclasses.replace(outcome, decision=Decision(
                violations=(*outcome.decision.violations, violation), enforce=True,
                notes=outcome.decision.notes))
        return dataclasses.replace(outcome, recorded_seq=receipt.seq)
