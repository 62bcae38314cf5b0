"""The audit ledger: every admitted workload in a tamper-evident, ConfigMap-backed hash chain.

Public surface (everything else is internal to the package):
- `LedgerConfig`: the configuration (`Config.ledger`).
- `build_admission_entry(request, config, *, images, now)`: the entry for an admitted request.
- `Ledger(api, config, signer=..., chain=...)`: `await start()`, `await append(entry,
  deadline=...)`, `await checkpoint()`, `await close()`. Every write is signed; appends raise
  `LedgerUnavailable` (deny the admission), and a tail it may not extend `LedgerCorrupt`.
- `load_signer(api, config, create=...)`: the ledger key from its Secret.
- `lanes.LaneClaim`: the writer lane (a chain of its own) a replica holds through a Lease.
- `verify.load_ledger` and `verify_ledger`: every lane read and verified as one ledger.
- `follow.LedgerFollower`: the ledger followed in bounded memory (the controller's scan).
- `recovery.recover`: `ledger recover`, the recorded restart after a cut.
- `Reconciler(ledger)`: `await observe(body)`, `await sweep(now)`.
- `cli.add_subcommands(subparsers)`: `kubectl-provenance ledger ...`.
"""

from controller.ledger.chain import CheckpointSigner, CheckpointVerifier
from controller.ledger.config import LedgerConfig
from controller.ledger.entries import build_admission_entry, build_outcome_entry
from controller.ledger.errors import (
    DryRunNotRecorded,
    LedgerCorrupt,
    LedgerDeadlineExceeded,
    LedgerError,
    LedgerUnavailable,
    TamperError,
    TamperKind,
)
from controller.ledger.keys import load_signer
from controller.ledger.models import (
    AdmissionEntry,
    AppendReceipt,
    AttestationRecord,
    BreakGlass,
    OutcomeEntry,
    Rollback,
    SignatureRecord,
    VerifiedImage,
)
from controller.ledger.reconcile import Reconciler
from controller.ledger.store import Ledger

__all__ = [
    "AdmissionEntry",
    "AppendReceipt",
    "AttestationRecord",
    "BreakGlass",
    "CheckpointSigner",
    "CheckpointVerifier",
    "DryRunNotRecorded",
    "Ledger",
    "LedgerConfig",
    "LedgerCorrupt",
    "LedgerDeadlineExceeded",
    "LedgerError",
    "LedgerUnavailable",
    "OutcomeEntry",
    "Reconciler",
    "Rollback",
    "SignatureRecord",
    "TamperError",
    "TamperKind",
    "VerifiedImage",
    "build_admission_entry",
    "build_outcome_entry",
    "load_signer",
]
