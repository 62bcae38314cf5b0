"""Workloads that run without an admission entry: recorded once each as `unadmitted`.

The reconciler sees every stored object of a gated kind. One that is authored (no controller
among its owners), outside the exempt namespaces, and whose template and provenance
annotations match no admission entry of its kind, namespace and name was never judged: it was
created or changed while the gate was off, before the controller was installed, or through a
path the gate missed. It is recorded once per object uid, template and annotations, counted in
`provenance_unadmitted_workloads_total{kind}`, and shown by `ledger history`.

The index of what was admitted covers the whole chain: a workload admitted a year ago still
runs, and the reconciler keeps only recent admissions in memory. It holds a 16-byte digest per
admitted (kind, namespace, name, template, annotations), read once at start and kept current
from every record the reconciler reads after.

An object is only a suspect when it is first seen: an admission is durable before the object
is stored, so the sweep that follows re-reads the ledger and records only the suspects that
are still unknown. A workload admitted under `generateName` is recorded with an empty name;
it is matched by kind, namespace, template and annotations.

Not covered: an object that names a controller owner is taken as derived, whoever wrote it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from controller import metrics
from controller.ledger.anchor import read_anchors
from controller.ledger.entries import annotations_hash
from controller.ledger.lanes import lane_index
from controller.ledger.models import AdmissionEntry, Record, UnadmittedEntry
from controller.ledger.reconcile import Reconciler
from controller.ledger.segments import Segment
from controller.ledger.verify import load_ledger, segment_is_signed
from controller.workloads import controlled, kind_of, plain, template_hash

log = logging.getLogger(__name__)

MAX_SUSPECTS = 10_000
"""Objects waiting for the next sweep; beyond it the oldest wait for their next event."""
MAX_RECORDED = 100_000
"""Unadmitted keys remembered as recorded (the ledger's idempotency stops a repeat anyway)."""


def _digest(kind: str, namespace: str, name: str, template: str, annotations: str) -> bytes:
    text = "\x00".join((kind, namespace, name, template, annotations))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


@dataclass(frozen=True)
class _Suspect:
    entry: UnadmittedEntry


class UnadmittedDetector:
    """Feed it every stored object (`observe`) and call `sweep` from a timer."""

    def __init__(self, reconciler: Reconciler, *, exempt_namespaces: Iterable[str],
                 annotation_prefix: str = "provenance.dev/") -> None:
        self.reconciler = reconciler
        self.ledger = reconciler.ledger
        self.exempt = frozenset(exempt_namespaces)
        self.prefix = annotation_prefix
        self._admitted: set[bytes] = set()
        self._recorded: set[str] = set()
        self._suspects: dict[str, _Suspect] = {}
        self._cursors: dict[str, int] = {}
        """The next segment to read, per writer lane."""
        reconciler.listeners.append(self.take)

    async def load(self) -> None:
        """Index every admission (and unadmitted record) in every writer lane."""
        cfg = self.ledger.config
        lanes = await load_ledger(self.ledger.api, cfg.namespace, cfg.chain)
        for lane, data in lanes.items():
            for seg in data.segments:
                self._take_segment(seg, lane)
            self._cursors[lane] = data.segments[-1].number + 1 if data.segments else 0

    def _take_segment(self, seg: Segment, lane: str) -> None:
        # Only what the ledger key signed counts as admitted: a segment planted in any lane
        # (a new one included) must not hide a workload that ran without an admission.
        if not segment_is_signed(seg, chain=lane, verifier=self.ledger.signer.verifier):
            log.warning("ledger segment %s is not signed by the ledger key; its admissions "
                        "do not count (run `ledger verify`)", seg.name)
            return
        for _seq, _key, raw in seg.entries():
            try:
                self.take(Record.model_validate_json(raw))
            except ValidationError:
                continue  # `ledger verify` reports it; the writer refuses such a tail

    async def _follow(self) -> None:
        """Read what every other writer lane appended since the last look (this replica's own
        lane reaches `take` through the reconciler). Lanes that appeared since are found
        through the signed heads beside the key."""
        cfg = self.ledger.config
        anchors = await read_anchors(self.ledger.api, cfg) or {}
        for lane in anchors:
            if lane_index(cfg.chain, lane) is not None:
                self._cursors.setdefault(lane, 0)
        for lane, number in list(self._cursors.items()):
            if lane == self.ledger.chain:
                continue
            while (seg := await self.ledger.get_segment(number, chain=lane)) is not None:
                self._take_segment(seg, lane)
                number += 1
            self._cursors[lane] = number

    def take(self, record: Record) -> None:
        """Take in one record of the chain."""
        entry = record.entry
        if isinstance(entry, AdmissionEntry):
            self._admitted.add(_digest(entry.kind, entry.namespace, entry.name,
                                       entry.template_hash, entry.annotations_hash))
        elif isinstance(entry, UnadmittedEntry):
            if len(self._recorded) >= MAX_RECORDED:
                self._recorded.clear()
            self._recorded.add(entry.idempotency_key)

    def _is_admitted(self, e: UnadmittedEntry) -> bool:
        return any(_digest(e.kind, e.namespace, name, e.template_hash, e.annotations_hash)
                   in self._admitted for name in (e.name, ""))

    def observe(self, body: Mapping[str, Any], *, now: dt.datetime | None = None) -> None:
        """Look at one stored object; an unknown one becomes a suspect for the next sweep."""
        body = plain(body)
        kind = kind_of(body)
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        uid = str(meta.get("uid") or "")
        if kind is None or not uid or namespace in self.exempt or controlled(meta):
            return
        generation = meta.get("generation")
        entry = UnadmittedEntry(
            kind=kind.kind, namespace=namespace, name=str(meta.get("name") or ""),
            object_uid=uid, generation=generation if isinstance(generation, int) else None,
            resource_version=str(meta.get("resourceVersion") or ""),
            template_hash=template_hash(kind, body),
            annotations_hash=annotations_hash(meta.get("annotations") or {}, self.prefix),
            observed_at=_timestamp(now or dt.datetime.now(dt.UTC)))
        key = entry.idempotency_key
        if key in self._recorded or key in self._suspects or self._is_admitted(entry):
            return
        if len(self._suspects) >= MAX_SUSPECTS:
            self._suspects.pop(next(iter(self._suspects)))
        self._suspects[key] = _Suspect(entry)

    async def sweep(self) -> list[UnadmittedEntry]:
        """Re-read the ledger, then record the suspects still without an admission."""
        if not self._suspects:
            return []
        if self.ledger.chain != self.ledger.config.chain:
            # Only the holder of the first lane records them, so that each is recorded once
            # however many replicas see it.
            self._suspects.clear()
            return []
        await self.reconciler.sync(force=True)
        await self._follow()
        recorded: list[UnadmittedEntry] = []
        for key, suspect in list(self._suspects.items()):
            entry = suspect.entry
            if key in self._recorded or self._is_admitted(entry):
                del self._suspects[key]
                continue
            await self.ledger.append(entry)
            del self._suspects[key]
            self._recorded.add(key)
            metrics.record_unadmitted(entry.kind)
            log.warning("%s %s/%s runs without an admission entry (template %s); recorded as "
                        "unadmitted", entry.kind, entry.namespace, entry.name,
                        entry.template_hash.removeprefix("sha256:")[:12],
                        extra={"object_uid": entry.object_uid})
            recorded.append(entry)
        return recorded




def _timestamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
