"""controller.ledger.verify over built segment data: one table row per tamper kind, no cluster.

`tests/ledger/test_tamper.py` does the same tampering to a chain stored in a real API server
and read back through `ledger verify`; these build the segments the way the writer lays them
out (`controller/ledger/README.md`), so that every rule of `verify_segments` has a fast test.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from controller.ledger.chain import CheckpointSigner, leaf_hash, next_head, record_bytes
from controller.ledger.errors import TamperKind
from controller.ledger.models import (
    Checkpoint,
    CheckpointEntry,
    Entry,
    OutcomeEntry,
    Record,
    SealEntry,
    entry_key,
)
from controller.ledger.segments import Segment, segment_name
from controller.ledger.verify import ChainData, VerifyReport, summarise, verify_segments

CHAIN = "admissions"
SIGNER = CheckpointSigner.generate()
OTHER_SIGNER = CheckpointSigner.generate()
TIME = "2026-11-25T12:00:00.000000Z"


def outcome(n: int) -> OutcomeEntry:
    return OutcomeEntry(type="persisted", ref_seq=n, ref_leaf="ab" * 32, namespace="shop",
                        name=f"app-{n}", observed_at=TIME)


@dataclass
class Built:
    """A chain as the writer lays it out, plus what a careful operator saved off-cluster."""

    segments: list[Segment]
    checkpoint_map: dict[str, str]
    heads: list[bytes] = field(default_factory=list)
    """head after each sequence number."""

    def data(self) -> ChainData:
        return ChainData(self.segments, self.checkpoint_map)

    def saved(self, size: int | None = None, signer: CheckpointSigner = SIGNER) -> Checkpoint:
        size = len(self.heads) if size is None else size
        return signer.sign(chain=CHAIN, size=size, head=self.heads[size - 1], time=TIME)

    def segment(self, number: int) -> Segment:
        return next(s for s in self.segments if s.number == number)

    def key(self, seq: int) -> tuple[Segment, str]:
        for seg in self.segments:
            if entry_key(seq) in seg.data:
                return seg, entry_key(seq)
        raise KeyError(seq)

    def rewrite(self, seq: int, entry: Entry) -> None:
        """Replace entry `seq` with a well-formed one, keeping its position and `prev`."""
        seg, key = self.key(seq)
        record = Record.model_validate_json(seg.data[key])
        seg.data[key] = record_bytes(Record(seq=seq, prev=record.prev, entry=entry)).decode()


def build(sizes: tuple[int, ...] = (4, 4, 4), *, checkpoint_at: int | None = 6) -> Built:
    """Segments holding `sizes` entries each (the seal counted), sealed but the last, with a
    checkpoint entry after `checkpoint_at` entries and the latest one in the checkpoint map."""
    head, seq = bytes(32), 0
    heads: list[bytes] = []
    segments: list[Segment] = []
    for number, count in enumerate(sizes):
        data: dict[str, str] = {}
        for i in range(count):
            entry: Entry
            if i == 0 and number > 0:
                prev = segments[-1]
                entry = SealEntry(segment=prev.number, segment_uid=prev.uid,
                                  entries=len(prev.entries()),
                                  checkpoint=SIGNER.sign(chain=CHAIN, size=seq, head=head,
                                                         time=TIME))
            elif seq == checkpoint_at:
                entry = CheckpointEntry(checkpoint=SIGNER.sign(chain=CHAIN, size=seq, head=head,
                                                               time=TIME))
            else:
                entry = outcome(seq)
            raw = record_bytes(Record(seq=seq, prev=head.hex(), entry=entry))
            data[entry_key(seq)] = raw.decode()
            head = next_head(head, leaf_hash(raw))
            heads.append(head)
            seq += 1
        segments.append(Segment(number=number, name=segment_name(CHAIN, number),
                                uid=f"uid-{number}", resource_version=str(number + 1),
                                sealed=number < len(sizes) - 1, data=data))
    latest = SIGNER.sign(chain=CHAIN, size=seq, head=head, time=TIME)
    cmap = {"public-key": SIGNER.verifier.public_pem().decode(),
            "latest": latest.model_dump_json()}
    return Built(segments, cmap, heads)


def verify(built: Built, *, saved: Checkpoint | None = None, pinned: bool = True) -> VerifyReport:
    return verify_segments(built.data(), chain=CHAIN, saved=saved,
                           verifier=SIGNER.verifier if pinned else None)


def kinds(report: VerifyReport) -> list[TamperKind]:
    return [p.kind for p in report.problems]


def test_a_clean_chain_verifies() -> None:
    built = build()
    report = verify(built, saved=built.saved())
    assert report.ok, report.problems
    assert report.size == 12 and report.first_seq == 0 and report.segments == 3
    assert report.head == built.heads[-1].hex()
    # Two seals, one checkpoint entry, the checkpoint map's latest, the saved one.
    assert report.checkpoints_verified == 5
    assert [r.seq for r in report.records] == list(range(12))
    assert summarise(report)["ok"] is True


def test_the_in_cluster_key_is_used_when_none_is_pinned() -> None:
    report = verify(build(), pinned=False)
    assert report.ok, report.problems
    assert any("in-cluster public key" in n for n in report.notes)


def test_every_saved_size_verifies() -> None:
    built = build()
    for size in range(1, 13):
        report = verify(built, saved=built.saved(size))
        assert report.ok, (size, report.problems)


# --- one row per tamper kind -------------------------------------------------------------------

def edit_content(b: Built) -> None:
    b.rewrite(5, outcome(500))


def non_canonical(b: Built) -> None:
    seg, key = b.key(5)
    seg.data[key] = seg.data[key].replace(",", ", ", 1)


def swap(b: Built) -> None:
    seg = b.segment(1)
    seg.data[entry_key(5)], seg.data[entry_key(6)] = seg.data[entry_key(6)], seg.data[entry_key(5)]


def swap_renumbered(b: Built) -> None:
    # The records say where they were, under each other's keys: a reorder, not an edit.
    seg = b.segment(0)
    seg.data[entry_key(1)], seg.data[entry_key(2)] = seg.data[entry_key(2)], seg.data[entry_key(1)]


def delete_entry(b: Built) -> None:
    del b.segment(2).data[entry_key(10)]


def delete_segment(b: Built) -> None:
    del b.segments[1]


def recreate_segment(b: Built) -> None:
    b.segment(0).uid = "uid-recreated"


def unseal_older(b: Built) -> None:
    b.segment(1).sealed = False


def unseal_first(b: Built) -> None:
    b.segment(0).sealed = False


def malformed(b: Built) -> None:
    seg, key = b.key(9)
    seg.data[key] = '{"seq": 9'


def oversized(b: Built) -> None:
    seg, key = b.key(9)
    seg.data[key] = "x" * (64 * 1024 + 1)


def forged_checkpoint_entry(b: Built) -> None:
    # The newest entry is replaced, so no later link breaks: only the signature can tell.
    b.rewrite(11, CheckpointEntry(checkpoint=OTHER_SIGNER.sign(
        chain=CHAIN, size=11, head=b.heads[10], time=TIME)))


def wrong_chain_checkpoint(b: Built) -> None:
    b.rewrite(11, CheckpointEntry(checkpoint=SIGNER.sign(
        chain="other", size=11, head=b.heads[10], time=TIME)))


def lying_checkpoint_entry(b: Built) -> None:
    # Validly signed, at a size it does not describe.
    b.rewrite(11, CheckpointEntry(checkpoint=SIGNER.sign(
        chain=CHAIN, size=11, head=b.heads[9], time=TIME)))


def future_checkpoint_entry(b: Built) -> None:
    b.rewrite(11, CheckpointEntry(checkpoint=SIGNER.sign(
        chain=CHAIN, size=13, head=b.heads[10], time=TIME)))


def seal_of_wrong_segment(b: Built) -> None:
    seg, key = b.key(8)
    record = Record.model_validate_json(seg.data[key])
    assert isinstance(record.entry, SealEntry)
    b.rewrite(8, record.entry.model_copy(update={"segment": 0}))


def seal_missing(b: Built) -> None:
    b.rewrite(8, outcome(8))


def bad_latest(b: Built) -> None:
    b.checkpoint_map["latest"] = "{not json"


def pruned_marker_hides(b: Built) -> None:
    b.checkpoint_map["pruned-before"] = "2"


def pruned_marker_no_segment(b: Built) -> None:
    b.checkpoint_map["pruned-before"] = "7"


@pytest.mark.parametrize(("tamper", "first"), [
    (edit_content, TamperKind.EDITED_ENTRY),
    (non_canonical, TamperKind.EDITED_ENTRY),
    (swap, TamperKind.REORDERED_ENTRIES),
    (swap_renumbered, TamperKind.REORDERED_ENTRIES),
    (delete_entry, TamperKind.DELETED_ENTRY),
    (delete_segment, TamperKind.DELETED_SEGMENT),
    (recreate_segment, TamperKind.RECREATED_SEGMENT),
    (unseal_older, TamperKind.UNSEALED_SEGMENT),
    (unseal_first, TamperKind.UNSEALED_SEGMENT),
    (malformed, TamperKind.MALFORMED),
    (oversized, TamperKind.MALFORMED),
    (forged_checkpoint_entry, TamperKind.BAD_SIGNATURE),
    (wrong_chain_checkpoint, TamperKind.CHECKPOINT_MISMATCH),
    (lying_checkpoint_entry, TamperKind.CHECKPOINT_MISMATCH),
    (future_checkpoint_entry, TamperKind.TRUNCATED),
    (seal_of_wrong_segment, TamperKind.EDITED_ENTRY),
    (seal_missing, TamperKind.EDITED_ENTRY),
    (bad_latest, TamperKind.MALFORMED),
    (pruned_marker_hides, TamperKind.CHECKPOINT_MISMATCH),
    (pruned_marker_no_segment, TamperKind.CHECKPOINT_MISMATCH),
], ids=lambda v: v.__name__ if callable(v) else str(v))
def test_each_tamper_kind_is_named(tamper: Callable[[Built], None], first: TamperKind) -> None:
    built = build()
    pristine = copy.deepcopy(built)
    tamper(built)
    report = verify(built)
    assert not report.ok
    assert kinds(report)[0] == first, report.problems
    assert verify(pristine).ok  # the row's finding is the tampering's, not the builder's


def test_edits_are_reported_once_at_the_edited_entry() -> None:
    built = build()
    edit_content(built)
    report = verify(built)
    assert kinds(report)[0] == TamperKind.EDITED_ENTRY
    assert report.problems[0].seq == 5 and report.problems[0].segment == 1
    # The one edit; then each checkpoint after it no longer matches the chain.
    assert kinds(report).count(TamperKind.EDITED_ENTRY) == 1
    assert set(kinds(report)[1:]) == {TamperKind.CHECKPOINT_MISMATCH}


def test_an_entry_stored_twice_is_a_duplicate() -> None:
    # Segment 1's seal copied into segment 0 as well (a replayed write): segment 0 then holds
    # more than its seal says, and segment 1 repeats an entry already seen.
    built = build()
    built.segment(0).data[entry_key(4)] = built.segment(1).data[entry_key(4)]
    report = verify(built)
    assert TamperKind.DUPLICATE_ENTRY in kinds(report)
    assert TamperKind.DELETED_ENTRY in kinds(report)  # 5 entries, sealed with 4
    duplicate = next(p for p in report.problems if p.kind == TamperKind.DUPLICATE_ENTRY)
    assert duplicate.seq == 4 and duplicate.segment == 1


def test_a_renumbered_copy_is_a_reorder() -> None:
    built = build()
    seg = built.segment(2)
    seg.data[entry_key(12)] = seg.data[entry_key(10)]
    assert kinds(verify(built))[0] == TamperKind.REORDERED_ENTRIES


def test_unsealed_segment_is_named_by_number() -> None:
    built = build()
    unseal_older(built)
    report = verify(built)
    assert kinds(report) == [TamperKind.UNSEALED_SEGMENT]
    assert report.problems[0].segment == 1
    # The newest segment is open by design.
    assert verify(build()).ok


def test_a_deleted_entry_is_also_caught_by_the_next_seal() -> None:
    built = build()
    del built.segment(1).data[entry_key(6)]
    report = verify(built)
    assert TamperKind.DELETED_ENTRY in kinds(report)
    assert any("sealed with 4" in p.message for p in report.problems)


@pytest.mark.parametrize("cut", [1, 2, 5])
def test_truncation_against_a_saved_checkpoint(cut: int) -> None:
    built = build()
    saved = built.saved()
    for seq in reversed(range(12 - cut, 12)):
        if not built.segments[-1].data:
            # The cut emptied the newest segment: it goes, and the one before is the open one.
            built.segments.pop()
            built.segments[-1].sealed = False
        del built.segments[-1].data[entry_key(seq)]
    # The in-cluster latest checkpoint was rewritten to fit: only the saved one knows.
    head = built.heads[11 - cut]
    built.checkpoint_map["latest"] = SIGNER.sign(
        chain=CHAIN, size=12 - cut, head=head, time=TIME).model_dump_json()
    assert verify(built).ok  # a cut tail is a valid chain on its own
    report = verify(built, saved=saved)
    assert kinds(report) == [TamperKind.TRUNCATED]
    assert f"covers 12 entries but the chain holds only {12 - cut}" in report.problems[0].message


def test_rewritten_history_against_a_saved_checkpoint() -> None:
    built = build()
    saved = built.saved(3)
    # Rewrite entry 1 and re-link everything after it: every link holds again.
    rebuilt = build()
    rebuilt.rewrite(1, outcome(100))
    relinked = _relink(rebuilt)
    assert verify(relinked).ok  # consistent from the edit on, signed with the in-cluster key
    report = verify(relinked, saved=saved)
    assert kinds(report) == [TamperKind.CHECKPOINT_MISMATCH]
    assert "the saved checkpoint" in report.problems[0].message


def test_a_saved_checkpoint_by_another_key_is_a_bad_signature() -> None:
    built = build()
    report = verify(built, saved=built.saved(signer=OTHER_SIGNER))
    assert kinds(report) == [TamperKind.BAD_SIGNATURE]


def test_a_removed_public_key_does_not_pass_for_verified() -> None:
    built = build()
    del built.checkpoint_map["public-key"]
    report = verify(built, pinned=False)
    assert kinds(report) and set(kinds(report)) == {TamperKind.BAD_SIGNATURE}
    assert "cannot be checked" in report.problems[0].message


def test_a_garbled_public_key_is_a_bad_signature() -> None:
    built = build()
    built.checkpoint_map["public-key"] = (
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
    report = verify(built, pinned=False)
    assert kinds(report)[0] == TamperKind.BAD_SIGNATURE


def _relink(built: Built) -> Built:
    """Re-chain every record after an edit, as someone rewriting history would."""
    head = bytes(32)
    heads: list[bytes] = []
    for seg in built.segments:
        for seq, key, raw in seg.entries():
            record = Record.model_validate_json(raw)
            entry = record.entry
            if isinstance(entry, SealEntry | CheckpointEntry) and entry.checkpoint is not None:
                cp = SIGNER.sign(chain=CHAIN, size=seq, head=head, time=TIME)
                entry = entry.model_copy(update={"checkpoint": cp})
            data = record_bytes(Record(seq=seq, prev=head.hex(), entry=entry))
            seg.data[key] = data.decode()
            head = next_head(head, leaf_hash(data))
            heads.append(head)
    built.heads = heads
    built.checkpoint_map["latest"] = SIGNER.sign(
        chain=CHAIN, size=len(heads), head=head, time=TIME).model_dump_json()
    return built


# --- pruned chains -----------------------------------------------------------------------------

def pruned(before: int = 1) -> Built:
    built = build()
    built.segments = [s for s in built.segments if s.number >= before]
    built.checkpoint_map["pruned-before"] = str(before)
    return built


def test_a_pruned_chain_verifies_from_its_seal_checkpoint() -> None:
    report = verify(pruned())
    assert report.ok, report.problems
    assert report.first_seq == 4 and report.size == 12
    assert any("pruned" in n for n in report.notes)


def test_a_pruned_chain_with_a_forged_anchor_is_a_bad_signature() -> None:
    built = pruned()
    seg, key = built.key(4)
    record = Record.model_validate_json(seg.data[key])
    assert isinstance(record.entry, SealEntry) and record.entry.checkpoint is not None
    forged = OTHER_SIGNER.sign(chain=CHAIN, size=4, head=built.heads[3], time=TIME)
    built.rewrite(4, record.entry.model_copy(update={"checkpoint": forged}))
    report = verify(built)
    assert kinds(report)[0] == TamperKind.BAD_SIGNATURE


def test_a_pruned_chain_whose_anchor_names_another_position() -> None:
    built = pruned()
    seg, key = built.key(4)
    record = Record.model_validate_json(seg.data[key])
    assert isinstance(record.entry, SealEntry)
    moved = SIGNER.sign(chain=CHAIN, size=3, head=built.heads[2], time=TIME)
    built.rewrite(4, record.entry.model_copy(update={"checkpoint": moved}))
    report = verify(built)
    assert kinds(report)[0] == TamperKind.CHECKPOINT_MISMATCH


def test_a_checkpoint_older_than_the_prune_is_a_note() -> None:
    built = pruned(2)
    report = verify(built, saved=build().saved(2))
    assert report.ok, report.problems
    assert any("predates the pruned segments" in n for n in report.notes)
