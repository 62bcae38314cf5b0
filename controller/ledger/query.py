"""Reading the chain for people: per-workload history and the rollback target."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from controller.ledger.models import AdmissionEntry, OutcomeEntry, UnadmittedEntry
from controller.ledger.verify import StoredRecord


@dataclass
class AdmissionView:
    """An admission entry with the outcome entries that reference it."""

    stored: StoredRecord
    entry: AdmissionEntry
    outcomes: list[tuple[int, OutcomeEntry]] = field(default_factory=list)
    duplicates: list[StoredRecord] = field(default_factory=list)
    """Further records of the same admission request in other writer lanes."""

    @property
    def seq(self) -> int:
        return self.stored.seq

    @property
    def chain(self) -> str:
        """The chain (writer lane) holding the entry."""
        return self.stored.chain

    @property
    def ref(self) -> str:
        """`SEQ`, or `CHAIN:SEQ` for an entry in another writer lane than the first."""
        return ref_of(self.stored)

    def _has(self, kind: str) -> bool:
        return any(o.type == kind for _s, o in self.outcomes)

    @property
    def persisted(self) -> bool:
        return self._has("persisted")

    @property
    def status(self) -> str:
        """`persisted`, `never-persisted` or `pending`, with the rollout outcome if known."""
        state = "persisted" if self.persisted else (
            "never-persisted" if self._has("never-persisted") else "pending")
        if self._has("rollout-failed"):
            state += ",rollout-failed"
        elif self._has("rollout-available"):
            state += ",available"
        return state

    def as_dict(self) -> dict[str, object]:
        return {
            "seq": self.seq, "chain": self.chain, "leaf": self.stored.leaf,
            "status": self.status,
            "entry": self.entry.model_dump(mode="json"),
            "outcomes": [{"seq": s, "type": o.type, "observed_at": o.observed_at,
                          "detail": o.detail} for s, o in self.outcomes],
        }


def admissions(records: Iterable[StoredRecord], *, kind: str | None = None,
               namespace: str | None = None, name: str | None = None) -> list[AdmissionView]:
    """Admission entries (optionally of one workload), oldest first, with their outcomes.

    An outcome counts only when its `ref_leaf` is the admission's leaf hash: a reference cannot be
    re-pointed at another entry.
    """
    views: dict[tuple[str, int], AdmissionView] = {}
    by_uid: dict[str, AdmissionView] = {}
    for stored in records:
        entry = stored.record.entry
        if isinstance(entry, AdmissionEntry):
            if (kind is None or entry.kind == kind) and (
                    namespace is None or entry.namespace == namespace) and (
                    name is None or entry.name == name):
                # One admission request, recorded by two replicas (the API server re-sent it
                # after the first one's answer was lost): one admission, seen once. Outcomes
                # naming either record count for it.
                first = by_uid.get(entry.admission_uid)
                if first is not None and first.entry.template_hash == entry.template_hash:
                    views[(stored.chain, stored.seq)] = first
                    first.duplicates.append(stored)
                    continue
                view = AdmissionView(stored, entry)
                views[(stored.chain, stored.seq)] = by_uid[entry.admission_uid] = view
        elif isinstance(entry, OutcomeEntry):
            target = views.get((entry.ref_chain or stored.chain, entry.ref_seq))
            if target is not None and entry.ref_leaf in {
                    target.stored.leaf, *(d.leaf for d in target.duplicates)}:
                target.outcomes.append((stored.seq, entry))
    # Across writer lanes, sequence numbers say nothing about order: the admission time does.
    unique = {id(v): v for v in views.values()}.values()
    return sorted(unique, key=lambda v: (v.entry.deploy_timestamp, v.chain, v.seq))


def ref_of(stored: StoredRecord) -> str:
    """How people name an entry: its sequence number, prefixed by its chain when that is a
    writer lane other than the first (`audit-lane1:12`)."""
    if "-lane" in stored.chain:
        return f"{stored.chain}:{stored.seq}"
    return str(stored.seq)


@dataclass
class UnadmittedView:
    """A workload recorded as running without an admission entry."""

    stored: StoredRecord
    entry: UnadmittedEntry

    @property
    def seq(self) -> int:
        return self.stored.seq

    @property
    def ref(self) -> str:
        return ref_of(self.stored)

    def as_dict(self) -> dict[str, object]:
        return {"seq": self.seq, "chain": self.stored.chain, "leaf": self.stored.leaf,
                "status": "unadmitted",
                "entry": self.entry.model_dump(mode="json"), "outcomes": []}


def unadmitted(records: Iterable[StoredRecord], *, kind: str | None = None,
               namespace: str | None = None, name: str | None = None) -> list[UnadmittedView]:
    """`unadmitted` entries (optionally of one workload), oldest first."""
    return [UnadmittedView(stored, entry) for stored in records
            if isinstance(entry := stored.record.entry, UnadmittedEntry)
            and (kind is None or entry.kind == kind)
            and (namespace is None or entry.namespace == namespace)
            and (name is None or entry.name == name)]


def rollback_target(history: list[AdmissionView], current_template_hash: str | None,
                    current_uid: str | None = None) -> AdmissionView | None:
    """The newest admitted-and-persisted record whose template differs from the current one.

    Without a current template hash (the workload is gone), the newest persisted record's
    template counts as current. A record whose rollout failed is no place to roll back to, and
    records of an earlier object of the same name (another object uid) are not this one's.
    """
    persisted = [v for v in history if v.persisted and "rollout-failed" not in v.status
                 and (not current_uid or not v.entry.object_uid
                      or v.entry.object_uid == current_uid)]
    if not persisted:
        return None
    current = current_template_hash or persisted[-1].entry.template_hash
    for view in reversed(persisted):
        if view.entry.template_hash != current:
            return view
    return None


def object_uid(view: AdmissionView) -> str:
    """The uid of the object an admission became: its own (UPDATE), or its persisted
    outcome's (a CREATE is admitted before the API server assigns one)."""
    if view.entry.object_uid:
        return view.entry.object_uid
    for _seq, outcome in view.outcomes:
        if outcome.type == "persisted" and outcome.object_uid:
            return outcome.object_uid
    return ""


def rollback_source(history: Iterable[AdmissionView], *, kind: str, namespace: str, name: str,
                    uid: str, template_hash: str,
                    allow_failed: bool = False) -> AdmissionView | None:
    """The newest admitted, persisted entry of this very object (same uid) whose template is
    `template_hash`: what an UPDATE restoring that template rolls back to. A rollout the ledger
    marks failed is no place to return to unless `allow_failed`."""
    found = None
    for view in history:
        entry = view.entry
        if (entry.kind, entry.namespace, entry.name, entry.template_hash) != (
                kind, namespace, name, template_hash):
            continue
        if not view.persisted or (not allow_failed and "rollout-failed" in view.status):
            continue
        if not uid or object_uid(view) != uid:
            continue
        found = view
    return found
