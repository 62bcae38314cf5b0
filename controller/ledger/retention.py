"""Retention: keep the newest N segments of each writer lane, export the rest, delete them.

Policy:
- `retention_keep_segments: 0` (the default) keeps everything. At ~2 KiB an admission (its entry,
  a seal and a signed head per write), 10,000 admissions take ~20 MiB of etcd, so most clusters
  never prune. A segment is one write, so N counts writes, not a size.
- Otherwise `ledger prune --keep N --export FILE` first verifies the whole chain (a chain that
  does not verify is evidence, and is never pruned), exports the pruned records as JSON lines,
  records `pruned-before` in the checkpoint ConfigMap, and deletes the older segments oldest first.
- The cut is always at a segment that starts with a seal entry carrying a signed checkpoint, so the
  kept chain is verifiable from that checkpoint on. A crash part-way leaves old segments behind
  that verification ignores; running prune again deletes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controller.kube import KubeApi, KubeApiError
from controller.ledger.chain import CheckpointVerifier
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import LedgerError
from controller.ledger.models import Record, SealEntry
from controller.ledger.segments import (
    MERGE_PATCH,
    Segment,
    checkpoint_map_name,
    configmaps_path,
)
from controller.ledger.verify import StoredRecord, load_chain, verify_segments


@dataclass(frozen=True)
class PruneResult:
    """What `prune` did."""

    cut: int | None
    """The first kept segment; None when nothing was pruned."""
    deleted: tuple[int, ...]
    exported_records: int


async def prune(
    api: KubeApi,
    config: LedgerConfig,
    *,
    keep_segments: int,
    export: Callable[[list[StoredRecord]], None] | None,
    verifier: CheckpointVerifier | None = None,
    chain: str | None = None,
) -> PruneResult:
    """Prune all but the newest `keep_segments` segments of `chain` (a writer lane; default
    the configured chain), as the module docstring says."""
    if keep_segments < 1:
        raise LedgerError("keep at least one sealed segment")
    chain = chain or config.chain
    data = await load_chain(api, config.namespace, chain,
                            key_namespace=config.checkpoint_key_namespace,
                            ledger_chain=config.chain)
    report = verify_segments(data, chain=chain, verifier=verifier,
                             max_entry_bytes=config.max_entry_bytes)
    if not report.ok:
        raise LedgerError(f"the chain does not verify ({report.problems[0]}); not pruning")
    cmap = data.checkpoint_map or {}
    pruned_before = int(cmap.get("pruned-before", "0") or 0)
    sealed = [s for s in data.segments if s.sealed and s.number >= pruned_before]
    if len(sealed) <= keep_segments:
        return PruneResult(None, (), 0)
    by_number = {s.number: s for s in data.segments}
    cut = sealed[-keep_segments].number
    while cut > pruned_before and not _starts_with_checkpoint(by_number.get(cut)):
        cut -= 1
    if cut <= pruned_before:
        return PruneResult(None, (), 0)
    doomed = [s for s in data.segments if s.number < cut]
    doomed_numbers = {s.number for s in doomed}
    records = [r for r in report.records if r.segment in doomed_numbers]
    if export is not None:
        export(records)
    await _set_pruned_before(api, config, chain, cut)
    deleted = []
    for seg in doomed:
        try:
            await api.request("DELETE", configmaps_path(config.namespace, seg.name))
        except KubeApiError as exc:
            if exc.status != 404:
                raise
        deleted.append(seg.number)
    return PruneResult(cut, tuple(deleted), len(records))


def _starts_with_checkpoint(seg: Segment | None) -> bool:
    if seg is None:
        return False
    entries = seg.entries()
    if not entries:
        return False
    record = Record.model_validate_json(entries[0][2])
    return isinstance(record.entry, SealEntry) and record.entry.checkpoint is not None


async def _set_pruned_before(api: KubeApi, config: LedgerConfig, chain: str, cut: int) -> None:
    path = configmaps_path(config.namespace, checkpoint_map_name(chain))
    try:
        await api.request("PATCH", path, body={"data": {"pruned-before": str(cut)}},
                          content_type=MERGE_PATCH)
    except KubeApiError as exc:
        if exc.status != 404:
            raise
        raise LedgerError("no checkpoint ConfigMap: the chain was never checkpointed, so it "
                          "cannot be pruned") from exc
