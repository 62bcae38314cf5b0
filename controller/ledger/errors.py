"""The ledger's error tree: one base (`LedgerError`), split by what the caller must do.

- `LedgerUnavailable` and its subclasses: the entry could not be made durable; the admission must
  be denied ("not recorded, retry").
- `DryRunNotRecorded`: a programming error on the caller's side; dryRun never reaches the ledger.
- `TamperError`: verification found the stored chain inconsistent; it carries a `TamperKind` so
  the CLI can give each kind its own exit code.
"""

from __future__ import annotations

from enum import StrEnum

from controller.errors import ProvenanceError


class LedgerError(ProvenanceError):
    """Base of every error the ledger raises on purpose."""


class DryRunNotRecorded(LedgerError):
    """A dryRun request was handed to the ledger; it must never write."""


class LedgerUnavailable(LedgerError):
    """The entry is not known to be durable: the admission it belongs to must be denied."""


class LedgerDeadlineExceeded(LedgerUnavailable):
    """The entry could not be written before the admission deadline."""


class LedgerClosed(LedgerUnavailable):
    """The ledger was closed (shutdown) before the entry was written."""


class LedgerCorrupt(LedgerError):
    """What is stored cannot be appended to (unparseable segment, broken seal); an operator must
    run `ledger verify`."""


class TamperKind(StrEnum):
    """What verification found. The CLI maps each to a distinct exit code; never renumber."""

    EDITED_ENTRY = "EditedEntry"
    REORDERED_ENTRIES = "ReorderedEntries"
    DELETED_ENTRY = "DeletedEntry"
    DELETED_SEGMENT = "DeletedSegment"
    RECREATED_SEGMENT = "RecreatedSegment"
    UNSEALED_SEGMENT = "UnsealedSegment"
    TRUNCATED = "Truncated"
    CHECKPOINT_MISMATCH = "CheckpointMismatch"
    BAD_SIGNATURE = "BadCheckpointSignature"
    MALFORMED = "MalformedEntry"
    DUPLICATE_ENTRY = "DuplicateEntry"
    UNSIGNED_SEGMENT = "UnsignedSegment"
    """A segment without a valid signed head by the ledger key: forged, or written by hand."""
    RELABELLED_SEGMENT = "RelabelledSegment"
    """A segment whose labels were changed, which hides it from label selectors."""


class TamperError(LedgerError):
    """One inconsistency in the stored chain."""

    def __init__(self, kind: TamperKind, message: str, *, seq: int | None = None,
                 segment: int | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        """What kind of tampering (or damage) this is."""
        self.message = message
        self.seq = seq
        """The first sequence number concerned, when one is known."""
        self.segment = segment
        """The segment concerned, when one is known."""
