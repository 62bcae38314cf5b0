"""Violations and decisions: what every check produces and what the webhook answers with."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Reason(StrEnum):
    """Stable reason codes. They appear in denials, metrics labels and `check` output; never
    rename one, only add."""

    MISSING_ANNOTATION = "MissingAnnotation"
    INVALID_GIT_SHA = "InvalidGitSha"
    INVALID_BUILD_ID = "InvalidBuildId"
    INVALID_TIMESTAMP = "InvalidBuildTimestamp"
    FUTURE_TIMESTAMP = "FutureBuildTimestamp"
    INVALID_PIPELINE_URL = "InvalidPipelineUrl"
    VALUE_TOO_LONG = "AnnotationTooLong"
    INVALID_ANNOTATION = "InvalidAnnotation"
    IMAGE_NOT_PINNED = "ImageNotPinned"
    INVALID_IMAGE = "InvalidImageReference"
    INVALID_DIGEST = "InvalidDigest"
    ACTOR_MISMATCH = "ActorMismatch"
    ACTOR_NOT_AUTHORISED = "ActorNotAuthorised"
    BRANCH_NOT_ALLOWED = "BranchNotAllowed"
    BUILD_TOO_OLD = "BuildTooOld"
    # Signature and attestation verification (controller.signatures).
    SIGNATURE_MISSING = "SignatureMissing"
    SIGNATURE_UNTRUSTED = "SignatureUntrusted"
    SIGNATURE_INVALID = "SignatureInvalid"
    SIGNATURE_WRONG_DIGEST = "SignatureForOtherDigest"
    SIGNATURE_THRESHOLD = "SignatureThresholdNotMet"
    ATTESTATION_MISSING = "AttestationMissing"
    ATTESTATION_INVALID = "AttestationInvalid"
    ATTESTATION_COMMIT_MISMATCH = "AttestationCommitMismatch"
    ATTESTATION_BUILD_MISMATCH = "AttestationBuildMismatch"
    REGISTRY_ERROR = "RegistryError"
    BREAK_GLASS_REFUSED = "BreakGlassRefused"
    # Keyless signatures: which field of a verified certificate was not what a signer names,
    # and which certificate claim contradicts the workload's annotations.
    SIGNER_IDENTITY_MISMATCH = "SignerIdentityMismatch"
    SIGNER_ISSUER_MISMATCH = "SignerIssuerMismatch"
    SIGNER_REPOSITORY_MISMATCH = "SignerRepositoryMismatch"
    SIGNER_REF_MISMATCH = "SignerRefMismatch"
    SIGNER_CLAIM_MISMATCH = "SignerClaimMismatch"
    """Workflow path, workflow SHA, trigger or runner environment."""
    CERTIFICATE_COMMIT_MISMATCH = "CertificateCommitMismatch"
    CERTIFICATE_REF_MISMATCH = "CertificateRefMismatch"
    # The ledger (controller.ledger).
    LEDGER_UNAVAILABLE = "LedgerUnavailable"
    # The controller could not decide; it fails closed.
    INTERNAL_ERROR = "InternalError"


@dataclass(frozen=True, slots=True)
class Violation:
    """One problem with the workload, with a stable code and a one-line hint on how to fix it."""

    reason: Reason
    """The stable code."""
    message: str
    """What is wrong, naming the annotation, container or image concerned."""
    hint: str
    """One line on how to fix it."""
    subject: str = ""
    """What the violation is about (`annotation provenance.dev/git-sha`, `container app`, ...)."""

    def render(self) -> str:
        """One line, readable in what kubectl prints."""
        return f"[{self.reason}] {self.message} (fix: {self.hint})"


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict over a whole request: every violation at once, never only the first."""

    violations: tuple[Violation, ...] = ()
    """Every problem found, in a stable order."""
    enforce: bool = True
    """False in audit mode: violations become warnings and the request is admitted."""
    exempt_reason: str = ""
    """Set when the request was not judged at all (exempt namespace, subresource)."""
    notes: tuple[str, ...] = field(default=())
    """Extra warnings that are not violations (for example, audit-mode notices)."""

    @property
    def allowed(self) -> bool:
        """Admitted when there is nothing wrong, or when only auditing."""
        return not self.violations or not self.enforce

    def message(self, subject: str = "workload") -> str:
        """The denial message: what was denied (`StatefulSet`), a count, one line per violation."""
        lines = [f"provenance-controller denied this {subject} ({len(self.violations)} problem"
                 f"{'s' if len(self.violations) != 1 else ''}):"]
        lines.extend(f"  - {v.render()}" for v in self.violations)
        return "\n".join(lines)

    def warnings(self) -> list[str]:
        """Warnings returned to the client (audit mode, notes)."""
        out = list(self.notes)
        if not self.enforce:
            out.extend(f"provenance (audit): {v.render()}" for v in self.violations)
        return out

    def with_violations(self, extra: Iterable[Violation]) -> Decision:
        """A new decision with more violations appended (later pipeline stages)."""
        return Decision(
            violations=self.violations + tuple(extra),
            enforce=self.enforce,
            exempt_reason=self.exempt_reason,
            notes=self.notes,
        )
