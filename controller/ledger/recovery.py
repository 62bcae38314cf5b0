"""`ledger recover`: the explicit, recorded restart of the writers after a cut.

A writer refuses a chain that is shorter than the signed head beside the key, whose segment
named there is gone or recreated, or whose tail is not signed by the ledger key; every admission
is then denied. Nothing restarts on its own: an operator who can read the key runs this, with a
reason. It verifies the ledger, and appends one signed `recovered` entry that names the
operator (as the API server authenticated them), the reason, what verification found, and the
head that was expected against the one found. The chain continues from what is stored, so every
admission recorded after the recovery is as verifiable as before; what was lost stays visible in
the recovery entry and in any checkpoint saved off-cluster.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from controller.kube import KubeApi, KubeApiError
from controller.ledger.anchor import parse_anchor
from controller.ledger.chain import utc_timestamp
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import LedgerCorrupt, LedgerError
from controller.ledger.keys import load_signer
from controller.ledger.models import RecoveredEntry
from controller.ledger.store import Ledger
from controller.ledger.verify import load_chain, verify_segments

MAX_PROBLEM_CHARS = 4096


@dataclass(frozen=True)
class RecoveryResult:
    """What `recover` found, and the entry it recorded (None: nothing needed recovering)."""

    problems: tuple[str, ...]
    entry: RecoveredEntry | None


async def whoami(api: KubeApi) -> str:
    """The caller's username, as the API server authenticates it (a SelfSubjectReview)."""
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    try:
        review = await api.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                   body=body)
    except KubeApiError as exc:
        raise LedgerError(f"cannot tell who you are (SelfSubjectReview: {exc.status} "
                          f"{exc.message}); a recovery must name its operator") from exc
    username = ((review.get("status") or {}).get("userInfo") or {}).get("username")
    if not isinstance(username, str) or not username:
        raise LedgerError("the API server named no user for these credentials")
    return username


async def recover(api: KubeApi, config: LedgerConfig, *, reason: str, chain: str | None = None,
                  dry_run: bool = False) -> RecoveryResult:
    """Verify `chain` (default: the configured one); if it needs recovering, record that."""
    chain = chain or config.chain
    signer = await load_signer(api, config)
    data = await load_chain(api, config.namespace, chain,
                            key_namespace=config.checkpoint_key_namespace,
                            ledger_chain=config.chain)
    if data.anchor_error is not None:
        raise LedgerError(f"cannot read the signed heads beside the key: {data.anchor_error}")
    report = verify_segments(data, chain=chain, verifier=signer.verifier,
                             max_entry_bytes=config.max_entry_bytes)
    problems = tuple(str(p)[:MAX_PROBLEM_CHARS] for p in report.problems)
    anchor = parse_anchor(data.anchors[chain], chain=chain) \
        if data.anchors and chain in data.anchors else None
    if report.ok:
        return RecoveryResult(problems, None)
    writer = Ledger(api, config, signer=signer, chain=chain, periodic_checkpoints=False,
                    trust_stored_tail=True)
    try:
        await writer.start()
    except LedgerCorrupt as exc:
        raise LedgerError(f"{exc}. A segment that is not the ledger key's cannot be built on: "
                          "export the ledger (`ledger export`), delete the foreign segment(s), "
                          "and run recover again") from exc
    try:
        entry = RecoveredEntry(
            reason=reason, operator=await whoami(api), found_size=writer.size,
            found_head=writer.head, expected_size=anchor.checkpoint.size if anchor else None,
            expected_head=anchor.checkpoint.head if anchor else None,
            problems=problems[:64], recovered_at=utc_timestamp())
        if not dry_run:
            await writer.append(entry, deadline=time.monotonic() + 30)
            await writer.checkpoint(force_publish=True)
    finally:
        await writer.close()
    return RecoveryResult(problems, entry)
