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
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from controller import metrics
from controller.kube import KubeApi, KubeApiError
from controller.ledger.anchor import read_anchor, write_anchor
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
    AnchorHead,
    AppendReceipt,
    Checkpoint,
    CheckpointEntry,
    Entry,
    Record,
    RecoveredEntry,
    SealEntry,
    entry_key,
)
from controller.ledger.segments import (
    ANNOTATION_SEGMENT,
    HEAD_KEY,
    MERGE_PATCH,
    Segment,
    checkpoint_map_name,
    configmaps_path,
    get_segment,
    list_segments,
    segment_labels,
    segment_name,
)

log = logging.getLogger(__name__)

UNAVAILABLE_PAUSE = (0.05, 0.5)
"""The first and the longest pause between attempts while the API server fails (unreachable,
5xx, 429): a refused connection fails in microseconds, and retrying at the conflict pace would
spin a CPU until the entry's deadline."""
CLOSE_GRACE_SECONDS = 2.0
"""How long `close()` lets a write already in flight finish before cancelling it. SIGTERM must
stop the process within a few seconds even when the API server does not answer."""
LAZY_WAIT = 0.25
"""How long a lazy entry (an outcome) waits for a write to ride along with."""
CORRUPT_EVENT_INTERVAL = 60.0
"""Seconds between two reports (`on_corrupt`, an Event) of a refused tail."""
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
    """The newest segment of this writer's chain, as this writer verified it."""

    segment: int = -1
    """Its number; -1 while the chain is empty."""
    uid: str = ""
    next_seq: int = 0
    head: bytes = GENESIS
    count: int = 0
    signed: Checkpoint | None = None
    """Its signed head (None only for the empty chain)."""
    recovered: bool = False
    """A `recovered` entry was read in it or since the discovery began: an operator accepted
    a cut, and the chain may be shorter than what this writer saw before."""


@dataclass
class _Built:
    """Records prepared for one write."""

    seq: int
    head: bytes
    used: int
    data: dict[str, str] = field(default_factory=dict)
    receipts: list[AppendReceipt] = field(default_factory=list)
    full: bool = False
    """Some of the batch did not fit: the rest goes into the next segment."""


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
    """A long-lived appender to one chain. Call `start()` before `append`, `close()` at the end.

    Every write is signed with `signer`, the ledger key kept outside the ledger namespace; a
    tail that is not signed by it is never extended.
    """

    def __init__(
        self,
        api: KubeApi,
        config: LedgerConfig,
        *,
        signer: CheckpointSigner,
        periodic_checkpoints: bool = True,
        chain: str | None = None,
        on_corrupt: Callable[[str], None] | None = None,
        trust_stored_tail: bool = False,
    ) -> None:
        self.api = api
        self.config = config
        self.signer = signer
        self.chain = chain or config.chain
        """The chain this writer appends to: the configured chain, or one writer lane of it."""
        self._trusted = {signer.verifier.key_id: signer.verifier}
        """Keys whose signed heads this writer extends: its own."""
        self.on_corrupt = on_corrupt
        """Told (with the reason) each time a tail is refused; the runtime posts an Event."""
        self._trust_stored_tail = trust_stored_tail
        """Only for `ledger recover`: continue from the newest stored segment (still verified
        and signed) even though the signed head beside the key says the chain was longer."""
        self.stats = LedgerStats()
        self._periodic = periodic_checkpoints
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._inflight: dict[str, asyncio.Future[AppendReceipt]] = {}
        self._index: OrderedDict[str, AppendReceipt] = OrderedDict()
        self._tail: _Tail | None = None
        self._seen: _Tail | None = None
        """The longest tail this writer verified on its chain: a rediscovered chain shorter than
        it was cut (the copy beside the key may lag by a write or two), unless recovered."""
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._closed = False
        self._last_checkpoint_size = -1
        self._corrupt_reported_at = -CORRUPT_EVENT_INTERVAL
        self._fenced: str | None = None
        """Why this writer may not write now (its lane is not held), or None."""
        self._lazy: list[_Pending] = []
        self._lazy_timer: asyncio.TimerHandle | None = None
        self._anchor_next: AnchorHead | None = None
        self._anchor_written_at = -1.0
        self._anchor_task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load and verify the chain's tail, then run the committer (and periodic checkpoints).

        `LedgerCorrupt` when the tail is not one this writer may extend (unsigned, foreign key,
        cut): nothing is written until an operator runs `ledger recover`.
        """
        await self._ensure_namespace()
        try:
            await self._discover()
        except LedgerCorrupt as exc:
            self._corrupt(exc)
            raise
        except KubeApiError as exc:
            if exc.status in (401, 403):
                raise LedgerUnavailable(
                    f"the controller may not read the ledger: {exc.message}") from exc
            raise
        self._tasks.append(asyncio.create_task(self._run(), name="ledger-committer"))
        if self._periodic:
            self._tasks.append(asyncio.create_task(self._checkpoints(), name="ledger-checkpoint"))

    async def close(self, *, grace: float = CLOSE_GRACE_SECONDS) -> None:
        """Stop the background tasks within about `grace` seconds.

        A write already sent may finish inside the grace period; it is not retried. Entries
        still queued, or whose write was cut short, fail with `LedgerClosed` (their admissions
        are denied, never answered "allowed" without a record).
        """
        self._closed = True
        if self._lazy_timer is not None:
            self._lazy_timer.cancel()
            self._lazy_timer = None
        for waiting in self._lazy:
            self._queue.put_nowait(waiting)
        self._lazy.clear()
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

    async def append(self, entry: Entry, *, deadline: float | None = None,
                     lazy: bool = False) -> AppendReceipt:
        """Make `entry` durable, or raise a `LedgerUnavailable` (deny the admission).

        `deadline` is absolute, on `time.monotonic()`; the default is now plus
        `append_deadline_seconds`. Idempotent: an entry whose key (the admission uid for
        admissions) is already recorded returns the existing receipt with `duplicate=True`.
        `lazy` entries (outcomes nobody waits on) ride along with the next write, or are written
        after `LAZY_WAIT` seconds: one etcd write for an admission and the outcome before it.
        """
        if self._closed:
            raise LedgerClosed("the ledger is closed")
        if not self._tasks:
            raise LedgerError("Ledger.start() was not called")
        if self._fenced is not None:
            raise LedgerUnavailable(self._fenced)
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
            pending = _Pending(entry, key, deadline, existing, payload)
            if lazy:
                self._lazy.append(pending)
                if self._lazy_timer is None:
                    self._lazy_timer = asyncio.get_running_loop().call_later(
                        LAZY_WAIT, self._flush_lazy)
            else:
                await self._queue.put(pending)
        return await self._wait(existing, deadline)

    def _flush_lazy(self) -> None:
        """Nothing else was written for `LAZY_WAIT` seconds: write the lazy entries alone."""
        self._lazy_timer = None
        for item in self._lazy:
            self._queue.put_nowait(item)
        self._lazy.clear()

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

    @property
    def head(self) -> str:
        """The chain head this writer last saw (hex)."""
        return (self._tail.head if self._tail else GENESIS).hex()

    @property
    def tail_segment(self) -> int:
        """The newest segment number this writer knows of (-1: none yet)."""
        return self._tail.segment if self._tail else -1

    def fence(self, reason: str) -> None:
        """Stop writing (the lane was lost): appends fail until `switch` names a lane again."""
        self._fenced = reason
        log.warning("ledger writer stopped: %s", reason)

    def switch(self, chain: str) -> None:
        """Write `chain` from now on (a lane claimed again); its tail is read and verified
        before the next write."""
        self.chain = chain
        self._tail = None
        self._seen = None
        self._fenced = None
        log.info("ledger writer appends to chain %s", chain)

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
                    self._corrupt(exc)
                else:
                    log.exception("ledger commit failed")
                self._tail = None  # re-discover (and re-verify) from the API server next time
                error = LedgerUnavailable(f"the ledger could not be written: {exc}")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)

    def _drain(self, batch: list[_Pending]) -> None:
        """Move queued (and lazy) entries into `batch`, up to the batch limit (group commit)."""
        while self._lazy and len(batch) < self.config.group_commit_max_entries:
            batch.append(self._lazy.pop(0))
        if not self._lazy and self._lazy_timer is not None:
            self._lazy_timer.cancel()
            self._lazy_timer = None
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
            if self._fenced is not None:
                raise LedgerUnavailable(self._fenced)
            try:
                # Re-read first, then drop what is already recorded: after a write whose
                # response was lost, the re-read finds our own entries, and they must not be
                # written a second time.
                if self._tail is None:
                    await self._discover()
                elif stale:
                    await self._refresh()
                else:
                    await self._check_tail()
                stale = False
                batch[:] = self._settle(batch)
                if not batch:
                    return
                tail = self._tail
                assert tail is not None
                del batch[:await self._create_segment(tail, batch, timeout)]
                attempt = 0
            except KubeApiError as exc:
                if exc.status in (401, 403):
                    raise LedgerUnavailable(
                        f"the controller may not write the ledger: {exc.message}") from exc
                # 409 (the next segment exists: another writer of this lane, or a forgery that
                # the re-read refuses), 5xx, 429, unreachable: re-read and try again within
                # the deadline, pausing longer while the API server fails.
                if self._closed:
                    raise LedgerClosed(f"the ledger is shutting down ({exc.reason})") from exc
                if exc.status == 409:
                    self.stats.conflicts += 1
                    metrics.record_ledger_conflict()
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

    def _corrupt(self, exc: LedgerCorrupt) -> None:
        """A tail refused: log, metric and (through `on_corrupt`) a Kubernetes Event."""
        self.stats.corrupt_tails += 1
        metrics.record_ledger_tail_failure()
        log.error("ledger chain %s/%s refused: %s", self.config.namespace, self.chain, exc)
        # Every admission is refused while the tail is: one Event a minute says so, not one
        # per admission.
        now = time.monotonic()
        if now - self._corrupt_reported_at < CORRUPT_EVENT_INTERVAL:
            return
        self._corrupt_reported_at = now
        if self.on_corrupt is not None:
            try:
                self.on_corrupt(str(exc))
            except Exception:
                log.exception("reporting the refused ledger tail failed")

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
        """Records for as many of `batch` as fit in one segment, chained from `head`."""
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
                                                head=built.head.hex(), segment=segment,
                                                chain=self.chain))
            built.seq += 1
        return built

    def _remember(self, key: str, receipt: AppendReceipt) -> None:
        """Index an idempotency key, keeping only the newest `idempotency_entries`."""
        self._index[key] = receipt
        self._index.move_to_end(key)
        while len(self._index) > self.config.idempotency_entries:
            self._index.popitem(last=False)

    def _settled_by(self, batch: list[_Pending], built: _Built) -> None:
        """Hand out receipts for what a successful write stored."""
        for item, receipt in zip(batch, built.receipts, strict=False):
            if item.key is not None:
                self._remember(item.key, receipt)
            if not item.future.done():
                item.future.set_result(receipt)
        self.stats.writes += 1
        self.stats.entries += len(built.receipts)
        self.stats.batch_sizes.append(len(built.receipts))
        metrics.record_ledger_write(entries=len(built.receipts))

    async def _create_segment(self, tail: _Tail, batch: list[_Pending], timeout: float) -> int:
        """Create the segment after `tail` with as much of `batch` as fits; return how many.

        The segment is created whole and immutable, so an append costs the same however long
        the chain is. It starts with the seal of its predecessor (its uid, its entry count and
        its signed head) and ends with this writer's signature over the new head. Creation by
        name is the concurrency control: if the name exists, someone else wrote that position
        (409), and the re-read decides whether that is a writer of this lane or a forgery.
        """
        number = tail.segment + 1
        data: dict[str, str] = {}
        seq, head, used = tail.next_seq, tail.head, 0
        if number > 0:
            seal = SealEntry(segment=tail.segment, segment_uid=tail.uid, entries=tail.count,
                             checkpoint=tail.signed)
            raw = record_bytes(Record(seq=seq, prev=head.hex(), entry=seal))
            data[entry_key(seq)] = raw.decode()
            used = len(entry_key(seq)) + len(raw)
            head, seq = next_head(head, leaf_hash(raw)), seq + 1
        built = self._build(batch, seq=seq, head=head, used=used, segment=number,
                            first=not data)
        data.update(built.data)
        signed = self.signer.sign(chain=self.chain, size=built.seq, head=built.head)
        data[HEAD_KEY] = signed.model_dump_json()
        body = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": segment_name(self.chain, number),
                "namespace": self.config.namespace,
                "labels": segment_labels(self.chain, sealed=True),
                "annotations": {ANNOTATION_SEGMENT: str(number)},
            },
            "immutable": True,
            "data": data,
        }
        obj = await self.api.request("POST", configmaps_path(self.config.namespace), body=body,
                                     timeout=max(timeout, 0.05))
        uid = str((obj.get("metadata") or {}).get("uid", ""))
        self._tail = _Tail(segment=number, uid=uid, next_seq=built.seq, head=built.head,
                           count=len(data) - 1, signed=signed)
        self._note_seen()
        self.stats.seals += 1
        self._settled_by(batch, built)
        self._publish_anchor(AnchorHead(segment=number, segment_uid=uid, checkpoint=signed))
        return len(built.receipts)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run best-effort work off the commit path; `close()` waits for it."""
        task = asyncio.create_task(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- the signed head beside the key ----------------------------------------------------------

    def _publish_anchor(self, anchor: AnchorHead) -> None:
        """Keep the newest signed head beside the key, off the commit path and coalesced: one
        write in flight at a time, always of the newest head."""
        self._anchor_next = anchor
        if self._anchor_task is None or self._anchor_task.done():
            self._anchor_task = asyncio.create_task(self._anchor_writer())
            self._side_tasks.add(self._anchor_task)
            self._anchor_task.add_done_callback(self._side_tasks.discard)

    async def _anchor_writer(self) -> None:
        while self._anchor_next is not None:
            # At most one write per `signed_head_interval_seconds`, always of the newest head:
            # under load most writes share one, which keeps its etcd cost per admission small.
            wait = self._anchor_written_at + self.config.signed_head_interval_seconds \
                - time.monotonic()
            if wait > 0 and not self._closed:
                await asyncio.sleep(wait)
            self._anchor_written_at = time.monotonic()
            anchor, self._anchor_next = self._anchor_next, None
            try:
                await write_anchor(self.api, self.config, self.chain, anchor,
                                   public_pem=self.signer.verifier.public_pem().decode())
            except (KubeApiError, LedgerError) as exc:
                # The chain itself is durable; only the cut detection lags until the next write.
                log.warning("cannot keep the ledger's signed head beside the key: %s", exc)
                metrics.record_ledger_anchor_failure()

    # -- reading and verifying the tail ----------------------------------------------------------

    async def get_segment(self, number: int, chain: str | None = None) -> Segment | None:
        """Segment `number` (of this writer's chain, or `chain`) as stored now, or None."""
        return await get_segment(self.api, self.config.namespace, chain or self.chain, number)

    async def _discover(self) -> None:
        """Find and verify the newest segment, from the signed head beside the key.

        Without that head (a new ledger) the segments are listed. A chain the head names but
        whose segment is gone, or that is shorter than the head, is a cut: refused.
        """
        self._tail = None
        anchor = None if self._trust_stored_tail else \
            await read_anchor(self.api, self.config, self.chain)
        if anchor is not None:
            self._check_signature(anchor.checkpoint, "the signed head beside the key")
            newest = await self.get_segment(anchor.segment)
            if newest is None:
                raise LedgerCorrupt(
                    f"ledger segment {segment_name(self.chain, anchor.segment)}, which the "
                    f"signed head beside the key names (size {anchor.checkpoint.size}), is gone: "
                    "the chain was cut; run `ledger verify`, then `ledger recover --reason`")
            if newest.uid != anchor.segment_uid:
                raise LedgerCorrupt(f"ledger segment {newest.name} was deleted and recreated; "
                                    "run `ledger verify`, then `ledger recover --reason`")
        else:
            segments = await list_segments(self.api, self.config.namespace, self.chain)
            if not segments:
                self._tail = _Tail()
                return
            newest = segments[-1]
        first = max(0, newest.number - self.config.idempotency_segments + 1)
        older = await asyncio.gather(*(self.get_segment(n) for n in range(first, newest.number)))
        for seg in older:
            if seg is not None:
                self._index_segment(seg)
        self._tail = self._verified(newest, None)
        if anchor is not None and self._tail.next_seq < anchor.checkpoint.size:
            raise LedgerCorrupt(f"the chain holds {self._tail.next_seq} entries, the signed head "
                                f"beside the key {anchor.checkpoint.size}: it was cut")
        await self._refresh()
        seen, tail = self._seen, self._tail
        if seen is not None and tail is not None and tail.next_seq < seen.next_seq \
                and not tail.recovered and not self._trust_stored_tail:
            self._tail = None
            raise LedgerCorrupt(f"the chain holds {tail.next_seq} entries, this writer saw "
                                f"{seen.next_seq}: it was cut; run `ledger verify`, then "
                                "`ledger recover --reason`")
        self._note_seen(force=True)

    async def _refresh(self) -> None:
        """Take in what was written after the tail (another writer of this lane, or our own
        write whose response was lost), verifying each segment before it becomes the tail."""
        tail = self._tail
        if tail is None:
            await self._discover()
            return
        while True:
            seg = await self.get_segment(tail.segment + 1)
            if seg is None:
                return
            tail = self._verified(seg, tail)
            self._tail = tail
            self._note_seen()

    async def _check_tail(self) -> None:
        """Before extending the tail, make sure it is still stored as verified: a segment
        deleted (or deleted and recreated) under the writer is a cut, never built upon."""
        tail = self._tail
        assert tail is not None
        if tail.segment < 0:
            return
        seg = await self.get_segment(tail.segment)
        if seg is None or seg.uid != tail.uid:
            self._tail = None
            # The copy beside the key may lag by a write or two: bring it up to what this
            # writer knows, so that `ledger verify` (and `recover`) see the cut too.
            seen = self._seen or tail
            if seen.signed is not None:
                try:
                    await write_anchor(self.api, self.config, self.chain, AnchorHead(
                        segment=seen.segment, segment_uid=seen.uid, checkpoint=seen.signed),
                        public_pem=self.signer.verifier.public_pem().decode())
                except (KubeApiError, LedgerError) as exc:
                    log.warning("cannot record the cut beside the key: %s", exc)
            what = "disappeared" if seg is None else "was deleted and recreated"
            raise LedgerCorrupt(f"ledger segment {segment_name(self.chain, tail.segment)} "
                                f"{what}; run `ledger verify`, then `ledger recover --reason`")

    def _note_seen(self, *, force: bool = False) -> None:
        tail = self._tail
        if tail is not None and (force or self._seen is None
                                 or tail.next_seq >= self._seen.next_seq):
            self._seen = tail

    def _check_signature(self, checkpoint: Checkpoint, what: str) -> None:
        verifier = self._trusted.get(checkpoint.key_id)
        if verifier is None:
            raise LedgerCorrupt(f"{what} is signed by key {checkpoint.key_id}, not by this "
                                "ledger's key: refusing to extend it")
        if checkpoint.chain != self.chain or not verifier.verify(checkpoint):
            raise LedgerCorrupt(f"{what} has no valid signature by this ledger's key: "
                                "refusing to extend it")

    def _verified(self, seg: Segment, prev: _Tail | None) -> _Tail:
        """Check one segment: links (from `prev` when known), seal, and its signed head."""
        if not seg.sealed:
            raise LedgerCorrupt(f"ledger segment {seg.name} is not immutable; no writer of "
                                "this ledger made it")
        entries = seg.entries()
        if not entries:
            raise LedgerCorrupt(f"ledger segment {seg.name} holds no entries")
        records = [(seq, raw, self._record(raw)) for seq, _key, raw in entries]
        head = bytes.fromhex(records[0][2].prev) if prev is None else prev.head
        seq = records[0][0] if prev is None else prev.next_seq
        if prev is not None and seg.number > 0:
            seal = records[0][2].entry
            if not isinstance(seal, SealEntry) or seal.segment != prev.segment \
                    or seal.segment_uid != prev.uid or seal.entries != prev.count:
                raise LedgerCorrupt(f"ledger segment {seg.name} does not seal segment "
                                    f"{prev.segment} as this writer knows it")
        for entry_seq, raw, record in records:
            if entry_seq != seq or record.seq != seq or record.prev != head.hex():
                raise LedgerCorrupt(
                    f"ledger segment {seg.name}: entry {entry_seq} does not extend the chain")
            leaf = leaf_hash(raw.encode())
            head = next_head(head, leaf)
            key = record.entry.idempotency_key
            self._remember(key, AppendReceipt(seq=seq, leaf=leaf.hex(), head=head.hex(),
                                              segment=seg.number, chain=self.chain))
            seq += 1
        text = seg.signed_head
        if text is None:
            raise LedgerCorrupt(f"ledger segment {seg.name} carries no signed head: no writer "
                                "of this ledger made it; refusing to extend it")
        try:
            signed = Checkpoint.model_validate_json(text)
        except ValidationError as exc:
            raise LedgerCorrupt(f"ledger segment {seg.name}: its signed head does not parse "
                                f"({exc.error_count()} problems)") from exc
        self._check_signature(signed, f"ledger segment {seg.name}")
        if signed.size != seq or signed.head != head.hex():
            raise LedgerCorrupt(f"ledger segment {seg.name}: its signed head does not match "
                                "its entries")
        recovered = (prev is not None and prev.recovered) or any(
            isinstance(record.entry, RecoveredEntry) for _s, _raw, record in records)
        return _Tail(segment=seg.number, uid=seg.uid, next_seq=seq, head=head,
                     count=len(records), signed=signed, recovered=recovered)

    def _index_segment(self, seg: Segment) -> None:
        """Index the idempotency keys of an older segment (best effort: the tail is verified)."""
        for seq, _key, raw in seg.entries():
            try:
                record = Record.model_validate_json(raw)
            except ValidationError:
                continue
            self._remember(record.entry.idempotency_key, AppendReceipt(
                seq=seq, leaf=leaf_hash(raw.encode()).hex(), head=GENESIS.hex(),
                segment=seg.number, chain=self.chain))

    def _record(self, raw: str) -> Record:
        try:
            return Record.model_validate_json(raw)
        except ValidationError as exc:
            raise LedgerCorrupt(f"a stored ledger entry does not parse: {exc}") from exc

    # -- checkpoints -----------------------------------------------------------------------------

    async def checkpoint(self, *, deadline: float | None = None,
                         force_publish: bool = False) -> Checkpoint | None:
        """Sign the current chain into the log and the checkpoint ConfigMap."""
        signer = self.signer
        made: list[Checkpoint] = []

        def build(seq: int, prev: bytes) -> Entry:
            cp = signer.sign(chain=self.chain, size=seq, head=prev)
            made.append(cp)
            return CheckpointEntry(checkpoint=cp)

        await self.append_factory(build, deadline=deadline or time.monotonic() + 10)
        self._last_checkpoint_size = made[-1].size
        await self._publish_checkpoint(made[-1], force=force_publish)
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

    async def _publish_checkpoint(self, checkpoint: Checkpoint, *, force: bool = False) -> None:
        """Best effort: keep the newest checkpoint in `<chain>-checkpoints` for export."""
        ns, name = self.config.namespace, checkpoint_map_name(self.chain)
        value = checkpoint.model_dump_json()
        try:
            obj: dict[str, Any] = await self.api.request("GET", configmaps_path(ns, name))
        except KubeApiError as exc:
            if exc.status != 404:
                log.warning("cannot read the ledger checkpoint map: %s", exc)
                return
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": ns,
                                 "labels": {"provenance.dev/ledger-chain": self.chain,
                                            "provenance.dev/ledger-role": "checkpoints"}},
                    "data": {"latest": value,
                             "public-key": self.signer.verifier.public_pem().decode()}}
            with contextlib.suppress(KubeApiError):
                await self.api.request("POST", configmaps_path(ns), body=body)
            return
        current = (obj.get("data") or {}).get("latest")
        if current and not force:
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
        await ensure_ledger_namespace(self.api, self.config)


async def ensure_ledger_namespace(api: KubeApi, config: LedgerConfig) -> None:
    """Create the ledger namespace if it is missing and we may (the chart creates it)."""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": config.namespace}}
    try:
        await api.request("POST", "/api/v1/namespaces", body=body)
    except KubeApiError as exc:
        # 409: it exists (the chart creates it); 403: we may not create namespaces, which
        # is the production setup, and the first write will say so if it is really absent.
        if exc.status not in (403, 409):
            raise
