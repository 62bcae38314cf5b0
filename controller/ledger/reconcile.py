"""Reconciliation: what became of each admission, appended as outcome entries.

An admission can still fail after our webhook allowed it (another webhook, a quota). The kopf
edge calls `observe(body)` on every event of a gated kind and `sweep(now)` from a timer:
- persisted: the object is seen stored with the admitted template and provenance annotations
  (and, when the admission knew it, at least the admitted generation);
- never-persisted: not seen so within `never_persisted_after_seconds`;
- rollout-available / rollout-failed: the kind's own signal (`workloads.WorkloadKind.rollout`)
  for the persisted template: a Deployment's Progressing condition, a StatefulSet's or
  DaemonSet's updated and available counts, a Job's Complete or Failed condition, a Pod's
  readiness or phase. A CronJob has none: its Jobs are what run.

Two admissions with the same template and the same provenance annotations cannot be told apart
by what is stored; both are marked persisted when that state is seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from controller.errors import ProvenanceError
from controller.kube import KubeApi, KubeApiError
from controller.ledger.chain import leaf_hash, parse_timestamp
from controller.ledger.entries import annotations_hash, build_outcome_entry
from controller.ledger.models import AdmissionEntry, OutcomeEntry, OutcomeType, Record
from controller.ledger.segments import Segment
from controller.ledger.store import Ledger
from controller.ledger.verify import segment_is_signed
from controller.workloads import (
    WorkloadKind,
    controlled,
    kind_named,
    kind_of,
    plain,
    template_hash,
)

log = logging.getLogger(__name__)


MAX_DEFERRED = 1024
"""Upper bound on stored objects waiting for their entry to be read (`Reconciler._defer`)."""
MISS_RESYNC_SECONDS = 0.1
"""Least time between syncs forced by a stored object with no known entry: bounds the reads
that Deployments never admitted by us (exempt namespaces) can cause to ten a second."""
LOOK_AGAIN_SECONDS = 1.0
"""How soon an object seen before its entry could be read is looked at again (not at once:
one read then serves every object deferred meanwhile), and so at most one forced read a
second from them."""


MAX_WATCHES = 20_000
"""Upper bound on admissions followed at once. Each is a few hundred bytes (`_Admitted`);
resolved ones go at every sweep, and the oldest resolved ones first when the bound is hit."""


@dataclass(frozen=True, slots=True)
class _Admitted:
    """What the reconciler needs of an admission entry (not the whole entry: memory)."""

    kind: str
    namespace: str
    name: str
    template_hash: str
    annotations_hash: str
    object_uid: str
    generation: int | None
    deploy_timestamp: str

    @classmethod
    def of(cls, entry: AdmissionEntry) -> _Admitted:
        return cls(entry.kind, entry.namespace, entry.name, entry.template_hash,
                   entry.annotations_hash, entry.object_uid, entry.generation,
                   entry.deploy_timestamp)


@dataclass(frozen=True, slots=True)
class _Deferred:
    """A stored object that matched no entry we had read (`Reconciler._defer`)."""

    first_seen: float
    """Monotonic time it was first deferred: it is let go `2 × never_persisted_after_seconds`
    later, however often it is seen again (objects in exempt namespaces never get an entry)."""
    seen_at: float
    """Monotonic time `body` was observed. Its entry, if we are to read one, was durable by
    then, so any sync that started later has read it."""
    body: dict[str, Any]
    unread: bool
    """True if no sync that started after `seen_at` had completed when it was found to match no
    entry: its entry may be in the ledger yet, and it wants a look again after the next sync.
    False means it is not ours (yet); only the sweeps look at it again."""


@dataclass(slots=True)
class _Watch:
    seq: int
    leaf: str
    entry: _Admitted
    persisted: bool = False
    never: bool = False
    rollout: bool = False


class Reconciler:
    """Marks admission entries persisted / never-persisted and records rollout outcomes."""

    def __init__(self, ledger: Ledger, *, annotation_prefix: str = "provenance.dev/",
                 sync_interval: float = 1.0) -> None:
        self.ledger = ledger
        self.prefix = annotation_prefix
        self.sync_interval = sync_interval
        self._watches: dict[int, _Watch] = {}
        self._by_name: dict[tuple[str, str, str], list[int]] = {}
        """(kind, namespace, name) → admission sequence numbers, oldest first."""
        self._segment: int | None = None
        self._chain = ledger.chain
        """The writer lane whose admissions this reconciler follows (its writer's)."""
        self._next_seq = 0
        self._synced_at = 0.0
        self._read_from = 0.0
        """When the newest completed sync started: every entry durable by then has been read."""
        self._deferred: OrderedDict[tuple[str, str, str], _Deferred] = OrderedDict()
        """Stored objects that matched no entry we had read (the forced re-read is rate
        limited), looked at again shortly and by every sweep; an object may get no later
        event."""
        self._retry: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[Record], None]] = []
        """Called with every record a sync reads (`UnadmittedDetector` keeps its index so)."""

    async def sync(self, *, force: bool = False) -> None:
        """Read entries written since the last sync (by any replica)."""
        if not force and time.monotonic() - self._synced_at < self.sync_interval:
            return
        started = time.monotonic()
        cfg = self.ledger.config
        if self.ledger.chain != self._chain:
            # The writer now holds another lane: follow that lane's admissions from its tail.
            self._chain = self.ledger.chain
            self._segment, self._next_seq = None, 0
            self._watches.clear()
            self._by_name.clear()
        if self._segment is None:
            self._segment = max(0, self.ledger.tail_segment - cfg.idempotency_segments + 1)
        number = self._segment
        while True:
            seg = await self.ledger.get_segment(number)
            if seg is None:
                break
            self._take_segment(seg)
            number += 1
            self._segment = number
        self._synced_at = time.monotonic()
        self._read_from = max(self._read_from, started)

    def _take_segment(self, seg: Segment) -> None:
        if not segment_is_signed(seg, chain=self.ledger.chain,
                                 verifier=self.ledger.signer.verifier):
            log.warning("ledger segment %s is not signed by the ledger key; its entries are "
                        "not believed (run `ledger verify`)", seg.name)
            return
        for seq, _key, raw in seg.entries():
            if seq < self._next_seq:
                continue
            try:
                record = Record.model_validate_json(raw)
            except ValidationError:
                log.warning("unparseable ledger entry %s in %s; run `ledger verify`", seq, seg.name)
                continue
            self._take(record, leaf_hash(raw.encode()).hex())
            for listener in self.listeners:
                listener(record)
            self._next_seq = seq + 1

    def _take(self, record: Record, leaf: str) -> None:
        entry = record.entry
        if isinstance(entry, AdmissionEntry):
            key = (entry.kind, entry.namespace, entry.name)
            names = self._by_name.setdefault(key, [])
            # A newer admission of the same object supersedes older ones that are settled:
            # only the newest can still be rolled out, and 3,000 UPDATEs of one Deployment
            # must not mean 3,000 watches.
            for seq in [s for s in names if self._settled(self._watches.get(s))]:
                names.remove(seq)
                self._watches.pop(seq, None)
            self._watches[record.seq] = _Watch(record.seq, leaf, _Admitted.of(entry))
            names.append(record.seq)
            if len(self._watches) > MAX_WATCHES:
                self._shed()
        elif isinstance(entry, OutcomeEntry):
            watch = self._watches.get(entry.ref_seq)
            if watch is None or watch.leaf != entry.ref_leaf:
                return
            if entry.type == "persisted":
                watch.persisted = True
            elif entry.type == "never-persisted":
                watch.never = True
            else:
                watch.rollout = True

    async def _mark(self, watch: _Watch, kind: OutcomeType, body: Mapping[str, Any] | None,
                    now: datetime | None, detail: str = "") -> None:
        entry = build_outcome_entry(kind, ref_seq=watch.seq, ref_leaf=watch.leaf,
                                    body=body, namespace=watch.entry.namespace,
                                    name=watch.entry.name, now=now, detail=detail)
        await self.ledger.append(entry, lazy=True)
        if kind == "persisted":
            watch.persisted = True
        elif kind == "never-persisted":
            watch.never = True
        else:
            watch.rollout = True

    async def observe(self, body: Mapping[str, Any], *, now: datetime | None = None) -> list[str]:
        """Take in one object of a gated kind as stored; return the outcome kinds appended.

        `body` may be any Mapping (kopf hands out views); it is copied into plain dicts first,
        because the template hash must see exactly what the admission saw.
        """
        return await self._observe(plain(body), now, seen_at=time.monotonic())

    async def _observe(self, body: dict[str, Any], now: datetime | None, *, seen_at: float,
                       first_seen: float | None = None) -> list[str]:
        kind = kind_of(body)
        if kind is None:
            return []
        await self.sync()
        meta = body.get("metadata") or {}
        key = (kind.kind, str(meta.get("namespace", "")), str(meta.get("name", "")))
        stored_template = template_hash(kind, body)
        stored_annotations = annotations_hash(meta.get("annotations") or {}, self.prefix)
        generation = meta.get("generation")
        known = self._known(key, stored_template, stored_annotations, generation)
        if not known and not controlled(meta) and \
                time.monotonic() - self._synced_at >= MISS_RESYNC_SECONDS:
            # An admission is durable before the object is stored, so a stored object whose
            # entry we do not know yet was admitted after our last (rate-limited) sync: read on.
            # Objects with a controller are derived and, by default, never recorded; forcing a
            # read for each of their status updates would re-read the newest segments ten times a
            # second. If one is recorded after all, the next regular sync finds its entry.
            await self.sync(force=True)
            known = self._known(key, stored_template, stored_annotations, generation)
        if known:
            held = self._deferred.get(key)
            if held is not None and held.seen_at <= seen_at:
                del self._deferred[key]
        elif not controlled(meta):
            # Also when older entries of the object are known: an UPDATE (or `rollout undo`)
            # seen before its entry was read would otherwise wait for the never-persisted check.
            self._defer(key, body, seen_at, first_seen)
        seqs = self._by_name.get(key)
        if not seqs:
            return []
        appended: list[str] = []
        matching: list[_Watch] = []
        for seq in seqs:
            watch = self._watches[seq]
            entry = watch.entry
            if entry.template_hash != stored_template or \
                    entry.annotations_hash != stored_annotations:
                continue
            if entry.object_uid and entry.object_uid != meta.get("uid"):
                continue
            if entry.generation is not None and isinstance(generation, int) \
                    and generation < entry.generation:
                continue
            matching.append(watch)
            if not watch.persisted and not watch.never:
                await self._mark(watch, "persisted", body, now)
                appended.append("persisted")
        if matching:
            outcome = _rollout_outcome(kind, body)
            newest = matching[-1]
            if outcome is not None and newest.persisted and not newest.rollout:
                signal, detail = outcome
                await self._mark(newest, signal, body, now, detail)
                appended.append(signal)
        return appended

    @staticmethod
    def _settled(watch: _Watch | None) -> bool:
        return watch is None or watch.never or watch.persisted

    def _forget(self, seq: int) -> None:
        watch = self._watches.pop(seq, None)
        if watch is None:
            return
        key = (watch.entry.kind, watch.entry.namespace, watch.entry.name)
        names = self._by_name.get(key, [])
        if seq in names:
            names.remove(seq)
        if not names:
            self._by_name.pop(key, None)

    def _shed(self) -> None:
        """Over `MAX_WATCHES`: forget the oldest settled admissions (their rollout outcome, if
        it ever comes, goes unrecorded), and only if none is settled, the oldest."""
        excess = len(self._watches) - MAX_WATCHES
        settled = [seq for seq, w in self._watches.items() if self._settled(w)][:excess]
        for seq in settled or list(self._watches)[:excess]:
            self._forget(seq)
        log.warning("reconciler following more than %d admissions; forgot the oldest %s",
                    MAX_WATCHES, "settled ones" if settled else "(unsettled)")

    async def _stored_after_all(self, watch: _Watch, now: datetime) -> bool:
        """Before an admission is called never-persisted, look at the object itself: an event
        can be missed, and the ledger must not say a stored object was never stored. An API
        error leaves the decision to the next sweep (`KubeApiError` propagates)."""
        entry = watch.entry
        body = await _read(self.ledger.api, entry.kind, entry.namespace, entry.name)
        if body is None:
            return False
        body.setdefault("kind", entry.kind)
        row = kind_named(entry.kind)
        body.setdefault("apiVersion", row.api_version if row else "")
        await self._observe(body, now, seen_at=time.monotonic())
        return watch.persisted

    def _known(self, key: tuple[str, str, str], template: str, annotations: str,
               generation: object) -> bool:
        """True if an entry we hold could be the admission of this stored object.

        The generation matters: `rollout undo` stores an earlier template and annotations again,
        which an old entry matches; only an entry of this generation (or newer) is this one.
        """
        for seq in self._by_name.get(key, ()):
            entry = self._watches[seq].entry
            if entry.template_hash != template or entry.annotations_hash != annotations:
                continue
            if entry.generation is None or not isinstance(generation, int) \
                    or entry.generation >= generation:
                return True
        return False

    def _defer(self, key: tuple[str, str, str], body: dict[str, Any], seen_at: float,
               first_seen: float | None) -> None:
        held = self._deferred.get(key)
        if held is not None and held.seen_at > seen_at:
            return  # a newer state of the object is already waiting
        first = seen_at if first_seen is None else first_seen
        if held is not None:
            first = min(first, held.first_seen)
        unread = seen_at >= self._read_from
        self._deferred[key] = _Deferred(first, seen_at, body, unread)
        self._deferred.move_to_end(key)
        while len(self._deferred) > MAX_DEFERRED:
            self._deferred.popitem(last=False)
        if unread and (self._retry is None or self._retry.done()):
            # A burst of CREATEs can be the last events those objects ever get (Pods that stay
            # Pending): look again shortly rather than at the next sweep.
            self._retry = asyncio.get_running_loop().create_task(self._look_again())

    def _unread(self) -> bool:
        return any(held.unread for held in self._deferred.values())

    async def _look_again(self) -> None:
        # Loops, because objects deferred while a look is under way (its sync and its observe
        # calls wait on the API server) need a look after it; this task is the only one.
        while self._unread():
            await asyncio.sleep(LOOK_AGAIN_SECONDS)
            try:
                await self.sync(force=True)
                await self._observe_deferred(None, unread_only=True)
            except ProvenanceError as exc:
                # They stay deferred, and every sweep looks at them again.
                log.warning("looking again at objects seen before their entries failed: %s", exc)
                return

    async def _observe_deferred(self, now: datetime | None, *, unread_only: bool = False) -> None:
        """Observe the deferred objects again: all of them, or only the `unread` ones. Each is
        seen after a sync that started after it was seen, so one deferred again is not unread."""
        window = self.ledger.config.never_persisted_after_seconds
        batch = [(key, held) for key, held in self._deferred.items()
                 if held.unread or not unread_only]
        for key, _held in batch:
            del self._deferred[key]
        for _key, held in batch:
            if time.monotonic() - held.first_seen < 2 * window:
                await self._observe(held.body, now, seen_at=held.seen_at,
                                    first_seen=held.first_seen)

    async def close(self) -> None:
        """Stop looking again at deferred objects."""
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry

    async def sweep(self, now: datetime) -> list[int]:
        """Mark admissions not seen persisted within the window; return their sequence numbers."""
        await self.sync(force=True)
        window = timedelta(seconds=self.ledger.config.never_persisted_after_seconds)
        await self._observe_deferred(now)
        marked: list[int] = []
        for watch in list(self._watches.values()):
            if watch.persisted or watch.never:
                continue
            if parse_timestamp(watch.entry.deploy_timestamp) + window <= now:
                if await self._stored_after_all(watch, now):
                    continue
                await self._mark(watch, "never-persisted", None, now,
                                 detail=f"not seen stored within {window.total_seconds():.0f}s")
                marked.append(watch.seq)
        # Keep memory bounded: resolved admissions older than the window are done with.
        for seq, watch in list(self._watches.items()):
            old = parse_timestamp(watch.entry.deploy_timestamp) + 10 * window <= now
            if (watch.never or (watch.persisted and watch.rollout)) or (old and watch.persisted):
                self._forget(seq)
        return marked


async def _read(api: KubeApi, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    row = kind_named(kind)
    if row is None or not name:
        return None
    try:
        body = await api.request("GET", row.path(namespace, name))
    except KubeApiError as exc:
        if exc.status == 404:
            return None
        raise
    return body if isinstance(body, dict) else None



def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return cond
    return None


def _detail(cond: Mapping[str, Any]) -> str:
    return f"{cond.get('reason', '')}: {cond.get('message', '')}"


def _rollout_outcome(kind: WorkloadKind, body: Mapping[str, Any]) -> tuple[OutcomeType, str] | None:
    """The kind's rollout (or completion) signal for the stored object, when it has one yet."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    spec = body.get("spec") or {}
    if kind.rollout in ("none", "pod", "job"):
        pass
    elif status.get("observedGeneration") != meta.get("generation"):
        return None  # the controller has not seen this template yet
    replicas = spec.get("replicas", 1)
    if kind.rollout == "deployment":
        cond = _condition(status, "Progressing")
        if cond is None:
            return None
        if cond.get("reason") == "NewReplicaSetAvailable" and cond.get("status") == "True":
            return "rollout-available", _detail(cond)
        if cond.get("reason") == "ProgressDeadlineExceeded":
            return "rollout-failed", _detail(cond)
    elif kind.rollout == "replicas":
        failure = _condition(status, "ReplicaFailure")
        if failure is not None and failure.get("status") == "True":
            return "rollout-failed", _detail(failure)
        if status.get("availableReplicas", 0) >= replicas == status.get("replicas", 0):
            return "rollout-available", f"{replicas} of {replicas} replicas available"
    elif kind.rollout == "statefulset":
        if status.get("updateRevision") and status.get("updateRevision") == status.get(
                "currentRevision") and status.get("availableReplicas", 0) >= replicas \
                and status.get("updatedReplicas", 0) >= replicas:
            return "rollout-available", (f"revision {status.get('updateRevision')}: "
                                         f"{replicas} of {replicas} replicas available")
    elif kind.rollout == "daemonset":
        desired = status.get("desiredNumberScheduled")
        if isinstance(desired, int) and status.get("updatedNumberScheduled", 0) == desired \
                and status.get("numberAvailable", 0) == desired:
            return "rollout-available", f"{desired} of {desired} nodes updated and available"
    elif kind.rollout == "job":
        signals: tuple[tuple[str, OutcomeType], ...] = (
            ("Complete", "rollout-available"), ("Failed", "rollout-failed"))
        for name, signal in signals:
            cond = _condition(status, name)
            if cond is not None and cond.get("status") == "True":
                return signal, f"{name}: {cond.get('message', '')}"
    elif kind.rollout == "pod":
        phase = status.get("phase")
        ready = _condition(status, "Ready")
        if phase == "Succeeded" or (phase == "Running" and ready is not None
                                    and ready.get("status") == "True"):
            return "rollout-available", f"phase {phase}"
        if phase == "Failed":
            return "rollout-failed", f"phase Failed: {status.get('reason', '')}"
    return None

