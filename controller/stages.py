"""The pipeline stages after the policy checks: signature verification, break glass, the ledger.

Each adapts one long-lived component (`ImageVerifier`, `Ledger`) to `admission.Stage`. They sit
here rather than in their packages so that signatures and ledger know nothing of each other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

from pydantic import ValidationError

from controller.admission import Outcome
from controller.config import Config
from controller.ledger import (
    AttestationRecord,
    BreakGlass,
    Ledger,
    LedgerError,
    Rollback,
    SignatureRecord,
    VerifiedImage,
    build_admission_entry,
)
from controller.ledger.query import AdmissionView, rollback_source
from controller.ledger.reader import LedgerReader
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


class RollbackStage:
    """Admit `kubectl rollout undo` (or re-applying an older manifest) by someone other than the
    original deployer, as a rollback on the record.

    An UPDATE of a kind with revisions whose new template is that of an earlier admitted,
    persisted ledger entry of the same object (`query.rollback_source`, from a chain that
    verifies) is a rollback when the user may deploy to the workload's environment, by its rule
    or the `rollback` list. Then the `deployed-by` mismatch is not held against it, and the
    outcome carries `rollback` for the ledger. Its images are verified again by the signature
    stage under today's trust (a revoked key still denies), and every other check still
    applies. The ledger is read only for such candidates, and only for users who could roll back.
    """

    _BLOCKING = frozenset({Reason.ACTOR_MISMATCH, Reason.ACTOR_NOT_AUTHORISED})

    def __init__(self, reader: LedgerReader, config: Config, *,
                 reserve_seconds: float = 1.0) -> None:
        self._reader = reader
        self._config = config
        self._reserve = reserve_seconds
        """Kept for the stages after this one (verification, the ledger append)."""

    async def run(self, request: WorkloadRequest, outcome: Outcome, *,
                  deadline: float) -> Outcome:
        if not self._candidate(request, outcome):
            return outcome
        blocking = [v for v in outcome.decision.violations if v.reason in self._BLOCKING]
        if not blocking or not self._may_roll_back(request, blocking):
            return outcome
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic() - self._reserve)):
                started = self._reader.clock()
                source = self._source(request, await self._reader.views())
                if source is None:
                    # A shared read from before this object's latest entries finds nothing;
                    # only a read made after the request arrived may say "not a rollback".
                    source = self._source(request, await self._reader.views(newer_than=started))
        except (LedgerError, TimeoutError) as exc:
            # The denial stands; say why the rollback could not be recognised.
            logger.warning("rollback check could not read the ledger: %s", exc,
                           extra={"admission_uid": request.uid})
            note = f"provenance: not recognised as a rollback: the ledger could not be read ({exc})"
            return dataclasses.replace(outcome, decision=dataclasses.replace(
                outcome.decision, notes=(*outcome.decision.notes, note)))
        if source is None:
            return outcome
        entry = source.entry
        record = Rollback(restored_from=source.seq, restored_leaf=source.stored.leaf,
                          restored_chain=source.chain if "-lane" in source.chain else None,
                          original_deployer=entry.actor.username,
                          original_commit=entry.provenance.commit_sha)
        decision = outcome.decision
        kept = tuple(v for v in decision.violations if v.reason not in self._BLOCKING)
        note = (f"provenance: rollback by {request.user.username} to ledger entry {source.ref} "
                f"(commit {(entry.provenance.commit_sha or '-')[:12]}, first deployed by "
                f"{entry.actor.username})")
        return dataclasses.replace(outcome, rollback=record, decision=Decision(
            violations=kept, enforce=decision.enforce, exempt_reason=decision.exempt_reason,
            notes=(*decision.notes, note)))

    def _source(self, request: WorkloadRequest, views: list[AdmissionView]) -> AdmissionView | None:
        return rollback_source(
            views, kind=request.kind.kind, namespace=request.namespace, name=request.name,
            uid=request.object.metadata.uid, template_hash=request.template_hash,
            allow_failed=self._config.rollback.allow_failed_rollouts)

    def _candidate(self, request: WorkloadRequest, outcome: Outcome) -> bool:
        return (self._config.rollback.enabled and outcome.role == "authored"
                and outcome.deploys and request.operation == "UPDATE"
                and request.subresource is None and request.kind.revisions is not None
                and request.old_template_hash != request.template_hash)

    def _may_roll_back(self, request: WorkloadRequest, blocking: list[Violation]) -> bool:
        """The environment rule (no ActorNotAuthorised was raised) or the rollback list."""
        cfg = self._config.rollback
        user = request.user
        listed = user.username in cfg.users or bool(set(user.groups) & set(cfg.groups))
        return listed or all(v.reason != Reason.ACTOR_NOT_AUTHORISED for v in blocking)


class BreakGlassStage:
    """Let an emergency admission through the violations it names, on the record.

    It applies when the workload carries the `break-glass` annotation (the reason) and
    `break-glass-waive` (the codes), and all of these hold: the request is authored and deploys
    something, the reason is 10 to `max_reason_length` characters, the authenticated user is
    listed for the workload's environment, and every named code is waivable there. Then the
    violations with those codes are removed and the outcome carries `break_glass` for the
    ledger. If any of it fails, the admission is denied with `BreakGlassRefused` saying why, next
    to the violations it would have waived. Without the annotations it does nothing.
    """

    def __init__(self, config: Config, *,
                 on_break_glass: Callable[[WorkloadRequest, BreakGlass], None] | None = None
                 ) -> None:
        self._config = config
        self._notify = on_break_glass
        """Called for every admitted break glass (metrics, a Kubernetes Event): someone must
        be told, and the ledger alone tells nobody."""

    async def run(self, request: WorkloadRequest, outcome: Outcome, *,
                  deadline: float) -> Outcome:
        claims = outcome.claims
        reason = claims.get("break-glass")
        codes = claims.get("break-glass-waive")
        if reason is None and codes is None:
            return outcome
        problem = self._refusal(request, outcome, reason or "", codes or "")
        decision = outcome.decision
        if problem:
            key = self._config.annotations.key("break-glass")
            return dataclasses.replace(outcome, decision=decision.with_violations((Violation(
                Reason.BREAK_GLASS_REFUSED, f"break glass refused: {problem}",
                "see the break_glass configuration, or deploy normally",
                f"annotation {key}"),)))
        waived = _codes(codes or "")
        kept = tuple(v for v in decision.violations if str(v.reason) not in waived)
        let_through = tuple(sorted({str(v.reason) for v in decision.violations} & waived))
        record = BreakGlass(reason=reason or "", username=request.user.username,
                            waived=let_through)
        logger.warning("break glass by %s for %s %s/%s: waived %s (%s)", request.user.username,
                       request.kind.kind, request.namespace, request.name,
                       ",".join(let_through) or "nothing", reason,
                       extra={"admission_uid": request.uid})
        if self._notify is not None and not request.dry_run and (not kept or not decision.enforce):
            self._notify(request, record)
        note = (f"provenance: break glass by {request.user.username}: waived "
                f"{', '.join(let_through) or 'nothing'}; this admission is recorded as such")
        return dataclasses.replace(outcome, break_glass=record, decision=Decision(
            violations=kept, enforce=decision.enforce, exempt_reason=decision.exempt_reason,
            notes=(*decision.notes, note)))

    def _refusal(self, request: WorkloadRequest, outcome: Outcome, reason: str,
                 codes: str) -> str:
        cfg = self._config.break_glass
        environment = (self._config.environment_for_namespace(request.namespace)
                       or outcome.claims.get("environment"))
        rule = cfg.rule_for(environment)
        where = f"environment {environment!r}" if environment else "this namespace"
        if outcome.role != "authored" or not outcome.deploys:
            return "only a person's deploy can break glass"
        if not 10 <= len(reason.strip()) <= cfg.max_reason_length:
            return (f"the reason must be 10 to {cfg.max_reason_length} characters and say why")
        wanted = _codes(codes)
        if not wanted:
            return "name the reason codes to waive in break-glass-waive"
        if rule is None:
            return f"no break glass is configured for {where}"
        user = request.user
        if user.username not in rule.users and not set(user.groups) & set(rule.groups):
            return f"user {user.username!r} may not break glass in {where}"
        refused = sorted(wanted - set(rule.waivable))
        if refused:
            return f"{', '.join(refused)} may not be waived in {where}"
        return ""


def _codes(text: str) -> set[str]:
    return {c.strip() for c in text.split(",") if c.strip()}


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
                                          claims=outcome.claims,
                                          break_glass=outcome.break_glass,
                                          rollback=outcome.rollback)
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
