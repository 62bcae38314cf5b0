"""Following the ledger in a long-lived process, in memory that does not grow with it.

The controller's periodic scan (`provenance_unrecorded_workloads`) needs, for every workload, its
recent admissions. Reading and verifying the whole ledger every few minutes, as `ledger verify`
does once, costs memory in proportion to the ledger: the parsed records of 5,000 entries kept
~20 MiB that the process never gave back. `LedgerFollower` reads each segment once, in chunks of
`CHUNK_SEGMENTS`, verifies each chunk with `verify_segments` (anchored, after the first, at the
signed head its first seal carries, which must be the head the previous chunk ended with), folds
the admissions into an index of at most `KEEP_PER_WORKLOAD` per workload, and drops the records.
So what it holds is proportional to the number of workloads, not to the ledger's length.

It does not re-read segments it has verified: segments are immutable, the writers refuse a cut
tail, and `ledger verify` reads everything. A chunk that does not verify is not taken in; the
report says why, and the next refresh tries it again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from controller.kube import KubeApi, KubeApiError
from controller.ledger.anchor import read_anchors
from controller.ledger.chain import GENESIS, CheckpointVerifier
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import TamperKind
from controller.ledger.lanes import lane_index
from controller.ledger.models import AdmissionEntry, OutcomeEntry
from controller.ledger.query import AdmissionView
from controller.ledger.segments import Segment, get_segment, read_checkpoint_map
from controller.ledger.verify import ChainData, StoredRecord, VerifyReport, verify_segments

CHUNK_SEGMENTS = 200
"""Segments read and verified together: the most records held at once."""
KEEP_PER_WORKLOAD = 4
"""Admissions kept per (kind, namespace, name), the newest: what the scan matches against."""
MAX_WORKLOADS = 100_000
"""Workload names kept; the least recently admitted go first beyond it."""


@dataclass
class _Lane:
    next_segment: int | None = None
    """The next segment to read; None until the first is found."""
    size: int = 0
    head: str = GENESIS.hex()


@dataclass
class FollowedIndex:
    """The newest admissions of each workload, oldest first, with their outcomes."""

    by_name: OrderedDict[tuple[str, str, str], list[AdmissionView]] = field(
        default_factory=OrderedDict)
    start: str | None = None
    """The time of the oldest record read (the install, unless pruned)."""
    pruned: bool = False
    segments: int = 0


class LedgerFollower:
    """`await refresh()`: take in what was appended since; `index` is the result."""

    def __init__(self, api: KubeApi, config: LedgerConfig, *,
                 verifier: CheckpointVerifier | None) -> None:
        self.api = api
        self.config = config
        self.verifier = verifier
        self.index = FollowedIndex()
        self._lanes: dict[str, _Lane] = {}
        self._by_ref: dict[tuple[str, int], AdmissionView] = {}
        self._by_uid: dict[str, AdmissionView] = {}

    async def refresh(self) -> VerifyReport:
        """Read, verify and index every new segment of every lane; the report has the problems
        of what could not be taken in (`ok` when everything new verified)."""
        report = VerifyReport()
        try:
            anchors = await read_anchors(self.api, self.config) or {}
        except KubeApiError as exc:
            anchors = {}
            report.notes.append(f"the signed heads beside the key could not be read: {exc}")
        names = {self.config.chain, *self._lanes,
                 *(k for k in anchors if lane_index(self.config.chain, k) is not None)}
        for lane in sorted(names):
            await self._refresh_lane(lane, anchors, report)
        return report

    async def _refresh_lane(self, lane: str, anchors: dict[str, str],
                            report: VerifyReport) -> None:
        state = self._lanes.setdefault(lane, _Lane())
        if state.next_segment is None:
            cmap = await read_checkpoint_map(self.api, self.config.namespace, lane) or {}
            pruned = cmap.get("pruned-before", "")
            state.next_segment = int(pruned) if pruned.isdigit() else 0
            self.index.pruned = self.index.pruned or state.next_segment > 0
        while True:
            chunk: list[Segment] = []
            while len(chunk) < CHUNK_SEGMENTS:
                seg = await self._get(lane, state.next_segment + len(chunk))
                if seg is None:
                    break
                chunk.append(seg)
            if not chunk:
                return
            first = chunk[0].number
            last_chunk = len(chunk) < CHUNK_SEGMENTS
            data = ChainData(chunk, {"pruned-before": str(first)} if first > 0 else None,
                             anchors=anchors if last_chunk else None)
            checked = verify_segments(data, chain=lane, verifier=self.verifier,
                                      max_entry_bytes=self.config.max_entry_bytes)
            starts_at = checked.records[0].record if checked.records else None
            if state.size and starts_at is not None and (
                    starts_at.seq != state.size or starts_at.prev != state.head):
                checked.add(TamperKind.EDITED_ENTRY,
                            f"segment {first} does not continue the chain where segment "
                            f"{first - 1} ended when it was read")
            if not checked.ok:
                for problem in checked.problems:
                    report.add(problem.kind, f"chain {lane}: {problem.message}",
                               seq=problem.seq, segment=problem.segment)
                return  # not taken in; the next refresh reads it again
            self._fold(checked.records)
            self.index.segments += len(chunk)
            state.next_segment = first + len(chunk)
            state.size, state.head = checked.size, checked.head
            report.size += len(checked.records)
            if last_chunk:
                return

    async def _get(self, lane: str, number: int) -> Segment | None:
        return await get_segment(self.api, self.config.namespace, lane, number)

    def _fold(self, records: list[StoredRecord]) -> None:
        """Take admissions and outcomes in, as `query.admissions` groups them, keeping the
        newest `KEEP_PER_WORKLOAD` of each workload."""
        for stored in records:
            entry = stored.record.entry
            if self.index.start is None and isinstance(entry, AdmissionEntry):
                self.index.start = entry.deploy_timestamp
            if isinstance(entry, AdmissionEntry):
                ref = (stored.chain, stored.seq)
                first = self._by_uid.get(entry.admission_uid)
                if first is not None and first.entry.template_hash == entry.template_hash:
                    self._by_ref[ref] = first
                    first.duplicates.append(stored)
                    continue
                view = AdmissionView(stored, entry)
                self._by_ref[ref] = self._by_uid[entry.admission_uid] = view
                key = (entry.kind, entry.namespace, entry.name)
                views = self.index.by_name.setdefault(key, [])
                self.index.by_name.move_to_end(key)
                views.append(view)
                views.sort(key=lambda v: (v.entry.deploy_timestamp, v.chain, v.seq))
                while len(views) > KEEP_PER_WORKLOAD:
                    self._drop(views.pop(0))
                while len(self.index.by_name) > MAX_WORKLOADS:
                    _key, gone = self.index.by_name.popitem(last=False)
                    for old in gone:
                        self._drop(old)
            elif isinstance(entry, OutcomeEntry):
                target = self._by_ref.get((entry.ref_chain or stored.chain, entry.ref_seq))
                if target is not None and entry.ref_leaf in {
                        target.stored.leaf, *(d.leaf for d in target.duplicates)}:
                    target.outcomes.append((stored.seq, entry))

    def _drop(self, view: AdmissionView) -> None:
        for stored in (view.stored, *view.duplicates):
            self._by_ref.pop((stored.chain, stored.seq), None)
        if self._by_uid.get(view.entry.admission_uid) is view:
            del self._by_uid[view.entry.admission_uid]
