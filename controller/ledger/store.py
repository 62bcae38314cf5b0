"""The writer: lossless, idempotent, group-committed appends to ConfigMap segments.

One `Ledger` per controller process. Appends are queued and a single committer task writes them,
so admissions that arrive together share one API write (group commit). Each write is a merge
patch that carries the segment's `resourceVersion`: the API server applies it only if nobody
wrote in between (optimistic concurrency). On 409 the committer re-reads the segment, takes in
what other replicas wrote, drops entries that are already recorded (idempotency key, e.g. the
admission uid), renumbers the rest and retries with jitter, until each entry's deadline.

A write either happens entirely or not at all, so a writer killed mid-append leaves no gap and
no partial entry: its entries are either in the chain or not, and an admission is only allowed
after its entry's write returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from controller import metrics
from controller.kube import KubeApi, KubeApiError
from controller.ledger.chain import (
    GENESIS,
    CheckpointSigner,
    leaf_hash,
    next_head,
    record_bytes,
    record_bytes_from,
)
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import (
    LedgerClosed,
    LedgerCorrupt,
    LedgerDeadlineExceeded,
    LedgerError,
    LedgerUnavailable,
)
from controller.ledger.models import (
    AppendReceipt,
    Checkpoint,
    CheckpointEntry,
    Entry,
    Record,
    SealEntry,
    entry_key,
)
from controller.ledger.segments import (
    ANNOTATION_SEGMENT,
    LABEL_STATE,
    MERGE_PATCH,
    Segment,
    checkpoint_map_name,
    configmaps_path,
    list_segments,
    segment_labels,
    segment_name,
)

log = logging.getLogger(__name__)

CONTENTION_MEMORY = 1.0
"""Seconds after a conflict during which this writer assumes other replicas are writing."""
COURTESY_PAUSE = 0.008
"""The pause after a write while contended: about one re-read of a segment on loopback."""
UNAVAILABLE_PAUSE = (0.05, 0.5)
"""The first and the longest pause between attempts while the API server fails (unreachable,
5xx, 429): a refused connection fails in microseconds, and retrying at the conflict pace would
spin a CPU until the entry's deadline."""
CLOSE_GRACE_SECONDS = 2.0
"""How long `close()` lets a write already in flight finish before cancelling it. SIGTERM must
stop the process within a few seconds even when the API server does not answer."""
BATCH_SIZE_WINDOW = 1024
"""How many recent batch sizes `LedgerStats` keeps; the histogram metric keeps the distribution
of all of them in fixed memory."""

EntryFactory = Callable[[int, bytes], Entry]
"""Builds an entry once its sequence number and previous head are known (checkpoints)."""


def _retrieve(future: asyncio.Future[AppendReceipt]) -> None:
    # A caller that gave up at its deadline no longer awaits the future; mark its exception
    # as seen so asyncio does not log "exception was never retrieved" for it.
    if not future.cancelled():
        future.exception()


def idempotency_key(entry: Entry) -> str:
    return entry.idempotency_key


@dataclass
class _Pending:
    entry: Entry | EntryFactory
    key: str | None
    deadline: float
    future: asyncio.Future[AppendReceipt]
    payload: dict[str, Any] | None = None
    """The entry dumped to JSON data, once."""


@dataclass
class _Tail:
    """What this writer believes the newest segment looks like."""

    segment: int
    exists: bool
    uid: str = ""
    rv: str = ""
    sealed: bool = False
    next_seq: int = 0
    head: bytes = GENESIS
    bytes_used: int = 0
    count: int = 0
    prev_uid: str = ""
    """When this segment does not exist yet: the uid of the sealed one before it."""
    prev_count: int = 0
    """... and how many entries that one holds."""


@dataclass
class _Built:
    """Records prepared for one write."""

    seq: int
    head: bytes
    used: int
    data: dict[str, str] = field(default_factory=dict)
    receipts: list[AppendReceipt] = field(default_factory=list)
    full: bool = False
    """Some of the batch did not fit: this write fills (and seals) the segment."""


@dataclass
class LedgerStats:
    """Counters of this writer, for the benchmark and tests; fixed size however long it runs.

    The same events are exported as `provenance_ledger_*` metrics (`controller.metrics`).
    """

    writes: int = 0
    conflicts: int = 0
    retries: int = 0
    entries: int = 0
    duplicates: int = 0
    seals: int = 0
    corrupt_tails: int = 0
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=BATCH_SIZE_WINDOW))
    """The sizes of the most recent `BATCH_SIZE_WINDOW` writes."""


class Ledger:
    """A long-lived appender to one chain. Call `start()` before `append`, `close()` at the end."""

    def __init__(
        self,
        api: KubeApi,
        config: LedgerConfig,
        *,
        signer: CheckpointSigner | None = None,
        periodic_checkpoints: bool = True,
    ) -> None:
        self.api = api
        self.config = config
        self.signer = signer
        self.stats = LedgerStats()
        self._periodic = periodic_checkpoints
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._inflight: dict[str, asyncio.Future[AppendReceipt]] = {}
        self._index: dict[str, AppendReceipt] = {}
        self._tail: _Tail | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._contended_at = -CONTENTION_MEMORY
        self._closed = False
        self._last_checkpoint_size = -1

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the chain's tail, then run the committer (and the periodic checkpoint task)."""
        await self._ensure_namespace()
        try:
            await self._discover()
        except LedgerCorrupt:
            self._count_corrupt_tail()
            raise
        self._tasks.append(asyncio.create_task(self._run(), name="ledger-committer"))
        if self._periodic and self.signer is not None:
            self._tasks.append(asyncio.create_task(self._checkpoints(), name="ledger-checkpoint"))

    async def close(self, *, grace: float = CLOSE_GRACE_SECONDS) -> None:
        """Stop the background tasks within about `grace` seconds.

        A write already sent may finish inside the grace period; it is not retried. Entries
        still queued, or whose write was cut short, fail with `LedgerClosed` (their admissions
        are denied, never answered "allowed" without a record).
        """
        self._closed = True
        self._queue.put_nowait(None)
        for task in self._tasks:
            if task.get_name() == "ledger-checkpoint":
                task.cancel()
        work = [*self._tasks, *self._side_tasks]
        if work:
            _, late = await asyncio.wait(work, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*work, return_exceptions=True)
        self._tasks.clear()
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None and not item.future.done():
                item.future.set_exception(LedgerClosed("the ledger is shutting down"))

    # -- the public append -----------------------------------------------------------------------

    async def append(self, entry: Entry, *, deadline: float | None = None) -> AppendReceipt:
        """Make `entry` durable, or raise a `LedgerUnavailable` (deny the admission).

        `deadline` is absolute, on `time.monotonic()`; the default is now plus
        `append_deadline_seconds`. Idempotent: an entry whose key (the admission uid for
        admissions) is already recorded returns the existing receipt with `duplicate=True`.
        """
        if self._closed:
            raise LedgerClosed("the ledger is closed")
        if not self._tasks:
            raise LedgerError("Ledger.start() was not called")
        if deadline is None:
            deadline = time.monotonic() + self.config.append_deadline_seconds
        key = idempotency_key(entry)
        if key in self._index:
            self.stats.duplicates += 1
            return self._index[key].model_copy(update={"duplicate": True})
        payload = entry.model_dump(mode="json")
        size = len(record_bytes_from(payload, seq=10**12, prev=GENESIS.hex()))
        if size > self.config.max_entry_bytes:
            raise LedgerUnavailable(
                f"the ledger entry is {size} bytes, over the {self.config.max_entry_bytes} limit")
        existing = self._inflight.get(key)
        if existing is None:
            existing = asyncio.get_running_loop().create_future()
            self._inflight[key] = existing
            existing.add_done_callback(lambda _f: self._inflight.pop(key, None))
            existing.add_done_callback(_retrieve)
            await self._queue.put(_Pending(entry, key, deadline, existing, payload))
        return await self._wait(existing, deadline)

    async def append_factory(self, factory: EntryFactory, *, deadline: float) -> AppendReceipt:
        """Append an entry built from its own sequence number and previous head."""
        future: asyncio.Future[AppendReceipt] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        await self._queue.put(_Pending(factory, None, deadline, future))
        return await self._wait(future, deadline)

    async def _wait(self, future: asyncio.Future[AppendReceipt], deadline: float) -> AppendReceipt:
        remaining = deadline - time.monotonic()
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=max(remaining, 0.001))
        except TimeoutError:
            raise LedgerDeadlineExceeded(
                "the ledger entry could not be written before the admission deadline") from None

    def receipt_for(self, key: str) -> AppendReceipt | None:
        """The receipt of a recently recorded idempotency key, if this writer has seen it."""
        return self._index.get(key)

    @property
    def size(self) -> int:
        """The chain size this writer last saw."""
        return self._tail.next_seq if self._tail else 0

    # -- the committer ---------------------------------------------------------------------------

    async def _run(self) -> None:
        window = self.config.group_commit_window_ms / 1000
        while not self._stopping:
            first = await self._queue.get()
            if first is None:
                return
            if window:
                await asyncio.sleep(window)
            batch = [first]
            self._drain(batch)
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                # close() ran out of patience: whatever was not written is not recorded.
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(LedgerClosed("the ledger is shutting down"))
                raise
            except LedgerClosed as exc:
                log.warning("ledger write abandoned at shutdown: %s", exc)
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
            except Exception as exc:
                if isinstance(exc, LedgerCorrupt):
                    self._count_corrupt_tail()
                log.exception("ledger commit failed")
                self._tail = None  # re-discover from the API server next time
                error = exc if isinstance(exc, LedgerUnavailable) else LedgerUnavailable(
                    f"the ledger could not be written: {exc}")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)

    async def _courtesy(self) -> None:
        """After a write, while other replicas are contending, pause about one round trip.

        The writer that just won holds the fresh resourceVersion; without a pause it wins the
        next round too, while the others re-read, and their admissions starve (p99 of seconds
        with three replicas). The pause lets a re-read loser land its write; this writer's own
        next batch grows meanwhile, so throughput does not suffer.
        """
        if time.monotonic() - self._contended_at < CONTENTION_MEMORY:
            await asyncio.sleep(COURTESY_PAUSE)

    def _drain(self, batch: list[_Pending]) -> None:
        """Move queued entries into `batch`, up to the batch limit (group commit)."""
        while len(batch) < self.config.group_commit_max_entries and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                self._stopping = True
                return
            batch.append(item)

    async def _commit(self, batch: list[_Pending]) -> None:
        """Write every entry of `batch`; the list is updated in place, so that on an error the
        caller fails exactly the entries that are still waiting."""
        attempt = 0
        stale = False
        while True:
            now = time.monotonic()
            # Deadlines first: while re-reads keep failing (API server gone), `_settle` below is
            # never reached, and a batch nobody awaits any more must not be retried forever.
            batch[:] = [i for i in batch if not self._expired(i, now)]
            if not batch:
                return
            timeout = max(i.deadline for i in batch) - now
            try:
                # Re-read first, then drop what is already recorded: after a write whose
                # response was lost, the re-read finds our own entries, and they must not be
                # written a second time.
                if self._tail is None:
                    await self._discover()
                elif stale:
                    await self._refresh()
                stale = False
                batch[:] = self._settle(batch)
                if not batch:
                    return
                tail = self._tail
                assert tail is not None
                if not tail.exists:
                    del batch[:await self._create_segment(tail, batch)]
                    continue
                if tail.sealed:
                    self._tail = _Tail(segment=tail.segment + 1, exists=False,
                                       next_seq=tail.next_seq, head=tail.head,
                                       prev_uid=tail.uid, prev_count=tail.count)
                    continue
                written = await self._write(tail, batch, timeout)
                if written == 0:
                    await self._seal(tail, timeout)
                    continue
                del batch[:written]
                attempt = 0
                await self._courtesy()
            except KubeApiError as exc:
                if exc.status in (401, 403):
                    raise LedgerUnavailable(
                        f"the controller may not write the ledger: {exc.message}") from exc
                # 409 (someone else wrote), 422 (sealed meanwhile), 404, 5xx, 429, unreachable:
                # re-read and try again within the deadline. The re-read itself spaces the
                # attempts out; jitter is added only when conflicts repeat, and kept short,
                # because a long sleep lets the other replicas win the next round too.
                if self._closed:
                    raise LedgerClosed(f"the ledger is shutting down ({exc.reason})") from exc
                if exc.status == 409:
                    self.stats.conflicts += 1
                    metrics.record_ledger_conflict()
                    self._contended_at = time.monotonic()
                attempt += 1
                self.stats.retries += 1
                metrics.record_ledger_retry()
                stale = True
                if exc.status != 409:
                    first, longest = UNAVAILABLE_PAUSE
                    pause = min(longest, first * 2 ** min(attempt - 1, 4))
                    pause = random.uniform(pause / 2, pause)  # noqa: S311
                    await asyncio.sleep(min(pause, max(0.0, timeout)))
                elif attempt > 1:
                    pause = random.uniform(0, min(0.02, 0.001 * 2 ** min(attempt, 5)))  # noqa: S311
                    await asyncio.sleep(min(pause, max(0.0, timeout)))
                # Entries that arrived meanwhile join this write instead of waiting for it.
                self._drain(batch)

    @staticmethod
    def _expired(item: _Pending, now: float) -> bool:
        """Done already, or past its deadline (then failed here)."""
        if item.future.done():
            return True
        if item.deadline <= now:
            item.future.set_exception(LedgerDeadlineExceeded(
                "the ledger entry could not be written before the admission deadline"))
            return True
        return False

    def _count_corrupt_tail(self) -> None:
        self.stats.corrupt_tails += 1
        metrics.record_ledger_tail_failure()

    def _settle(self, batch: list[_Pending]) -> list[_Pending]:
        """Fail what is past its deadline, answer what is already recorded, keep the rest."""
        now = time.monotonic()
        live = []
        for item in batch:
            if item.future.done():
                continue
            if item.deadline <= now:
                item.future.set_exception(LedgerDeadlineExceeded(
                    "the ledger entry could not be written before the admission deadline"))
            elif item.key is not None and item.key in self._index:
                self.stats.duplicates += 1
                item.future.set_result(
                    self._index[item.key].model_copy(update={"duplicate": True}))
            else:
                live.append(item)
        return live

    def _build(self, batch: list[_Pending], *, seq: int, head: bytes, used: int,
               segment: int, first: bool) -> _Built:
        """Records for as many of `batch` as fit in the segment, chained from `head`."""
        built = _Built(seq=seq, head=head, used=used)
        limit = self.config.segment_max_bytes
        for item in batch:
            if item.payload is not None:
                raw = record_bytes_from(item.payload, seq=built.seq, prev=built.head.hex())
            else:
                entry = item.entry(built.seq, built.head) if callable(item.entry) else item.entry
                raw = record_bytes(Record(seq=built.seq, prev=built.head.hex(), entry=entry))
            key = entry_key(built.seq)
            if built.used + len(key) + len(raw) > limit and not (first and not built.data):
                built.full = True
                break
            leaf = leaf_hash(raw)
            built.head = next_head(built.head, leaf)
            built.data[key] = raw.decode()
            built.used += len(key) + len(raw)
            built.receipts.append(AppendReceipt(seq=built.seq, leaf=leaf.hex(),
                                                head=built.head.hex(), segment=segment))
            built.seq += 1
        return built

    def _settled_by(self, batch: list[_Pending], built: _Built) -> None:
        """Hand out receipts for what a successful write stored."""
        for item, receipt in zip(batch, built.receipts, strict=False):
            if item.key is not None:
                self._index[item.key] = receipt
            if not item.future.done():
                item.future.set_result(receipt)
        self.stats.writes += 1
        self.stats.entries += len(built.receipts)
        self.stats.batch_sizes.append(len(built.receipts))
        metrics.record_ledger_write(entries=len(built.receipts))

    async def _write(self, tail: _Tail, batch: list[_Pending], timeout: float) -> int:
        """Write as many of `batch` as fit; return how many (0: the segment is full)."""
        built = self._build(batch, seq=tail.next_seq, head=tail.head, used=tail.bytes_used,
                            segment=tail.segment, first=tail.count == 0)
        if not built.data:
            return 0
        patch: dict[str, Any] = {"metadata": {"resourceVersion": tail.rv}, "data": built.data}
        if built.full:
            # The segment is full: seal it in the same write, rather than rewriting the whole
            # object a second time just to set `immutable`.
            patch["immutable"] = True
            patch["metadata"]["labels"] = {LABEL_STATE: "sealed"}
        path = configmaps_path(self.config.namespace, segment_name(self.config.chain, tail.segment))
        obj = await self.api.request("PATCH", path, body=patch, content_type=MERGE_PATCH,
                                     timeout=max(timeout, 0.05))
        tail.rv = str(obj["metadata"]["resourceVersion"])
        tail.next_seq, tail.head, tail.bytes_used = built.seq, built.head, built.used
        tail.count += len(built.data)
        if built.full:
            tail.sealed = True
            self.stats.seals += 1
        self._settled_by(batch, built)
        return len(built.receipts)

    async def _seal(self, tail: _Tail, timeout: float) -> None:
        """Make the full segment immutable; the next write opens the next segment."""
        patch = {"metadata": {"resourceVersion": tail.rv,
                              "labels": {LABEL_STATE: "sealed"}},
                 "immutable": True}
        path = configmaps_path(self.config.namespace, segment_name(self.config.chain, tail.segment))
        obj = await self.api.request("PATCH", path, body=patch, content_type=MERGE_PATCH,
                                     timeout=max(timeout, 0.05))
        tail.rv = str(obj["metadata"]["resourceVersion"])
        tail.sealed = True
        self.stats.seals += 1

    async def _create_segment(self, tail: _Tail, batch: list[_Pending]) -> int:
        """Create the tail segment with as much of `batch` as fits; return how many.

        Every segment after the first starts with the seal entry of its predecessor, whose uid
        and size this writer learnt when it saw it sealed. Creation by name makes a racing
        writer fail cleanly (409 AlreadyExists); it then takes the winner's segment.
        """
        data: dict[str, str] = {}
        checkpoint: Checkpoint | None = None
        seq, head, used = tail.next_seq, tail.head, 0
        if tail.segment > 0:
            if not tail.prev_uid:
                prev = await self.get_segment(tail.segment - 1)
                if prev is None:
                    # Opening a segment after a deleted one would graft a new chain onto a
                    # cut one.
                    raise LedgerCorrupt(
                        f"ledger segment {segment_name(self.config.chain, tail.segment - 1)} "
                        "disappeared; run `ledger verify`")
                if not prev.sealed:
                    await self._discover()  # our view is stale
                    return 0
                tail.prev_uid, tail.prev_count = prev.uid, len(prev.entries())
            if self.signer is not None:
                checkpoint = self.signer.sign(chain=self.config.chain, size=seq, head=head)
            seal = SealEntry(segment=tail.segment - 1, segment_uid=tail.prev_uid,
                             entries=tail.prev_count, checkpoint=checkpoint)
            raw = record_bytes(Record(seq=seq, prev=head.hex(), entry=seal))
            data[entry_key(seq)] = raw.decode()
            used = len(entry_key(seq)) + len(raw)
            head, seq = next_head(head, leaf_hash(raw)), seq + 1
        built = self._build(batch, seq=seq, head=head, used=used, segment=tail.segment,
                            first=not data)
        data.update(built.data)
        body = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": segment_name(self.config.chain, tail.segment),
                "namespace": self.config.namespace,
                "labels": segment_labels(self.config.chain, sealed=False),
                "annotations": {ANNOTATION_SEGMENT: str(tail.segment)},
            },
            "data": data,
        }
        try:
            obj = await self.api.request("POST", configmaps_path(self.config.namespace),
                                         body=body)
        except KubeApiError as exc:
            if exc.status != 409:
                raise
            # Another replica opened it first (AlreadyExists): take its version.
            await self._refresh()
            return 0
        seg = Segment.from_object(obj, chain=self.config.chain)
        assert seg is not None
        self._tail = _Tail(segment=seg.number, exists=True, uid=seg.uid,
                           rv=seg.resource_version, next_seq=built.seq, head=built.head,
                           bytes_used=seg.size, count=len(data))
        if built.receipts:
            self._settled_by(batch, built)
        if checkpoint is not None:
            self._background(self._publish_checkpoint(checkpoint))
        return len(built.receipts)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run best-effort work off the commit path; `close()` waits for it."""
        task = asyncio.create_task(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- reading ---------------------------------------------------------------------------------

    async def get_segment(self, number: int) -> Segment | None:
        """Segment `number` as stored now, or None when it does not exist."""
        path = configmaps_path(self.config.namespace, segment_name(self.config.chain, number))
        try:
            obj = await self.api.request("GET", path)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise
        return Segment.from_object(obj, chain=self.config.chain)

    async def _discover(self) -> None:
        """Find the newest segment (cheaply, through the open-state label) and index it."""
        ns, chain = self.config.namespace, self.config.chain
        candidates = await list_segments(self.api, ns, chain, state="open")
        if not candidates:
            # No open segment: a new chain, or a writer died between sealing and opening.
            candidates = await list_segments(self.api, ns, chain)
        if not candidates:
            self._tail = _Tail(segment=0, exists=False)
            return
        newest = candidates[-1]
        self._tail = None
        first = max(0, newest.number - self.config.idempotency_segments + 1)
        for number in range(first, newest.number):
            older = await self.get_segment(number)
            if older is not None:
                self._absorb(older)
        self._absorb(newest)

    async def _refresh(self) -> None:
        """Re-read the tail segment after a conflict, taking in other writers' entries."""
        tail = self._tail
        if tail is None:
            await self._discover()
            return
        seg = await self.get_segment(tail.segment)
        if seg is None:
            if tail.exists:
                # The segment we were appending to is gone: never continue silently.
                self._tail = None
                raise LedgerCorrupt(
                    f"ledger segment {segment_name(self.config.chain, tail.segment)} "
                    "disappeared; run `ledger verify`")
            return
        self._absorb(seg)

    def _absorb(self, seg: Segment) -> None:
        """Take in a segment read from the API server: index its keys and move the tail."""
        tail = self._tail
        if tail is not None and tail.exists and tail.segment == seg.number \
                and tail.uid != seg.uid:
            # We never delete a segment we append to; someone else did and recreated it.
            self._tail = None
            raise LedgerCorrupt(f"ledger segment {seg.name} was deleted and recreated; "
                                "run `ledger verify`")
        same = tail is not None and tail.exists and tail.segment == seg.number
        if tail is not None and seg.number < tail.segment:
            return
        entries = seg.entries()
        if same:
            assert tail is not None
            start_seq, head = tail.next_seq, tail.head
        else:
            start_seq = entries[0][0] if entries else (tail.next_seq if tail else 0)
            if tail is not None and tail.next_seq == start_seq:
                head = tail.head
            elif entries:
                head = bytes.fromhex(self._record(entries[0][2]).prev)
            else:
                head = GENESIS
        seq, count, used = start_seq, 0, seg.size
        for entry_seq, _key, raw in entries:
            count += 1
            if entry_seq < start_seq:
                continue
            if entry_seq != seq:
                raise LedgerCorrupt(f"ledger segment {seg.name} skips from {seq} to {entry_seq}")
            record = self._record(raw)
            if record.seq != seq or record.prev != head.hex():
                raise LedgerCorrupt(
                    f"ledger segment {seg.name}: entry {seq} does not extend the chain")
            leaf = leaf_hash(raw.encode())
            head = next_head(head, leaf)
            key = record.entry.idempotency_key
            self._index[key] = AppendReceipt(seq=seq, leaf=leaf.hex(), head=head.hex(),
                                             segment=seg.number)
            seq += 1
        self._tail = _Tail(segment=seg.number, exists=True, uid=seg.uid,
                           rv=seg.resource_version, sealed=seg.sealed, next_seq=seq, head=head,
                           bytes_used=used, count=count)
        self._prune_index(seg.number)

    def _record(self, raw: str) -> Record:
        try:
            return Record.model_validate_json(raw)
        except ValidationError as exc:
            raise LedgerCorrupt(f"a stored ledger entry does not parse: {exc}") from exc

    def _prune_index(self, newest: int) -> None:
        oldest = newest - self.config.idempotency_segments + 1
        if any(r.segment < oldest for r in self._index.values()):
            self._index = {k: r for k, r in self._index.items() if r.segment >= oldest}

    # -- checkpoints -----------------------------------------------------------------------------

    async def checkpoint(self, *, deadline: float | None = None) -> Checkpoint | None:
        """Sign the current chain into the log and the checkpoint ConfigMap; None without a key."""
        signer = self.signer
        if signer is None:
            return None
        made: list[Checkpoint] = []

        def build(seq: int, prev: bytes) -> Entry:
            cp = signer.sign(chain=self.config.chain, size=seq, head=prev)
            made.append(cp)
            return CheckpointEntry(checkpoint=cp)

        await self.append_factory(build, deadline=deadline or time.monotonic() + 10)
        self._last_checkpoint_size = made[-1].size
        await self._publish_checkpoint(made[-1])
        return made[-1]

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.config.checkpoint_interval_seconds)
            if self._tail is None or self._tail.next_seq <= self._last_checkpoint_size + 1:
                continue
            try:
                await self.checkpoint()
            except (LedgerError, KubeApiError):
                log.warning("periodic ledger checkpoint failed", exc_info=True)

    async def _publish_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Best effort: keep the newest checkpoint in `<chain>-checkpoints` for export."""
        assert self.signer is not None
        ns, name = self.config.namespace, checkpoint_map_name(self.config.chain)
        value = checkpoint.model_dump_json()
        try:
            obj: dict[str, Any] = await self.api.request("GET", configmaps_path(ns, name))
        except KubeApiError as exc:
            if exc.status != 404:
                log.warning("cannot read the ledger checkpoint map: %s", exc)
                return
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": ns,
                                 "labels": {"provenance.dev/ledger-chain": self.config.chain,
                                            "provenance.dev/ledger-role": "checkpoints"}},
                    "data": {"latest": value,
                             "public-key": self.signer.verifier.public_pem().decode()}}
            with contextlib.suppress(KubeApiError):
                await self.api.request("POST", configmaps_path(ns), body=body)
            return
        current = (obj.get("data") or {}).get("latest")
        if current:
            try:
                if Checkpoint.model_validate_json(current).size >= checkpoint.size:
                    return
            except ValidationError:
                pass
        patch = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                 "data": {"latest": value,
                          "public-key": self.signer.verifier.public_pem().decode()}}
        with contextlib.suppress(KubeApiError):
            await self.api.request("PATCH", configmaps_path(ns, name), body=patch,
                                   content_type=MERGE_PATCH)

    async def _ensure_namespace(self) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": self.config.namespace}}
        try:
            await self.api.request("POST", "/api/v1/namespaces", body=body)
        except KubeApiError as exc:
            # 409: it exists (the chart creates it); 403: we may not create namespaces, which
            # is the production setup, and the first write will say so if it is really absent.
            if exc.status not in (403, 409):
                raise
