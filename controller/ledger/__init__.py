"""The audit ledger: every admitted workload in a tamper-evident, ConfigMap-backed hash chain.

Public surface (everything else is internal to the package):
- `LedgerConfig`: the configuration (`Config.ledger`).
- `build_admission_entry(request, config, *, images, now)`: the entry for an admitted request.
- `Ledger(api, config, signer=...)`: `await start()`, `await append(entry, deadline=...)`,
  `await checkpoint()`, `await close()`. Appends raise `LedgerUnavailable` (deny the admission).
- `load_signer(api, config, create=...)`: the checkpoint key from its Secret.
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
