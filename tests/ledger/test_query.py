"""controller.ledger.query: choosing the rollback target."""

from __future__ import annotations

from controller.ledger.entries import build_outcome_entry
from controller.ledger.models import AdmissionEntry, OutcomeType, Record
from controller.ledger.query import AdmissionView, rollback_source, rollback_target
from controller.ledger.verify import StoredRecord
from tests.ledger.helpers import admission_entry


def view(seq: int, template: str, *outcomes: OutcomeType, uid: str = "u-1") -> AdmissionView:
    entry: AdmissionEntry = admission_entry(f"a-{seq}").model_copy(
        update={"template_hash": "sha256:" + template * 64, "object_uid": uid})
    stored = StoredRecord(Record(seq=seq, prev="0" * 64, entry=entry), leaf="f" * 64,
                          head="e" * 64, segment=0)
    made = AdmissionView(stored, entry)
    for kind in outcomes:
        made.outcomes.append((seq + 100, build_outcome_entry(
            kind, ref_seq=seq, ref_leaf="f" * 64, body=None, namespace="default",
            name="web")))
    return made


def test_the_newest_persisted_record_with_another_template() -> None:
    history = [view(0, "a", "persisted"), view(1, "b", "persisted"), view(2, "c", "persisted")]
    target = rollback_target(history, "sha256:" + "c" * 64)
    assert target is not None
    assert target.seq == 1


def test_never_a_record_that_was_not_persisted_or_whose_rollout_failed() -> None:
    history = [view(0, "a", "persisted", "rollout-available"),
               view(1, "b", "persisted", "rollout-failed"), view(2, "d"),
               view(3, "c", "persisted")]
    target = rollback_target(history, "sha256:" + "c" * 64)
    assert target is not None
    assert target.seq == 0


def test_not_a_record_of_an_earlier_deployment_of_the_same_name() -> None:
    history = [view(0, "a", "persisted", uid="old"), view(1, "c", "persisted", uid="new")]
    assert rollback_target(history, "sha256:" + "c" * 64, "new") is None
    target = rollback_target(history, "sha256:" + "c" * 64)
    assert target is not None
    assert target.seq == 0  # without the current uid, nothing tells them apart


def created(seq: int, template: str, *outcomes: OutcomeType, uid: str = "u-1") -> AdmissionView:
    """A CREATE entry (no uid yet) whose persisted outcome saw the object's uid."""
    made = view(seq, template, uid="")
    for kind in outcomes:
        body = {"metadata": {"uid": uid}} if kind == "persisted" else None
        made.outcomes.append((seq + 100, build_outcome_entry(
            kind, ref_seq=seq, ref_leaf="f" * 64, body=body, namespace="default",
            name="web")))
    return made


def source(history: list[AdmissionView], template: str, *, uid: str = "u-1",
           allow_failed: bool = False) -> int | None:
    found = rollback_source(history, kind="Deployment", namespace="default", name="web",
                            uid=uid, template_hash="sha256:" + template * 64,
                            allow_failed=allow_failed)
    return found.seq if found is not None else None


def test_a_rollback_restores_the_newest_persisted_entry_of_the_same_object() -> None:
    history = [created(0, "a", "persisted"), view(1, "b", "persisted"),
               view(2, "a", "persisted"), view(3, "c", "persisted")]
    assert source(history, "a") == 2
    assert source(history, "b") == 1
    assert source(history, "d") is None  # never admitted: not a rollback


def test_a_create_entry_takes_its_uid_from_its_persisted_outcome() -> None:
    history = [created(0, "a", "persisted", uid="u-1"), view(1, "b", "persisted")]
    assert source(history, "a") == 0
    assert source(history, "a", uid="u-2") is None  # another object of the same name


def test_no_rollback_to_what_never_persisted_or_failed_unless_allowed() -> None:
    history = [view(0, "a"), view(1, "b", "persisted", "rollout-failed")]
    assert source(history, "a") is None
    assert source(history, "b") is None
    assert source(history, "b", allow_failed=True) == 1


def test_no_rollback_without_a_uid() -> None:
    assert source([view(0, "a", "persisted")], "a", uid="") is None
