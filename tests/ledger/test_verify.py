"""controller.ledger.verify over built segment data: one table row per tamper kind, no cluster.

`tests/ledger/test_tamper.py` does the same tampering to a chain stored in a real API server
and read back through `ledger verify`; these build the segments the way the writer lays them
out (`controller/ledger/README.md`), so that every rule of `verify_segments` has a fast test.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from controller.ledger.anchor import PUBLIC_KEY
from controller.ledger.chain import CheckpointSigner, leaf_hash, next_head, record_bytes
from controller.ledger.errors import LedgerError, TamperKind
from controller.ledger.models import (
    AnchorHead,
    Checkpoint,
    CheckpointEntry,
    Entry,
    OutcomeEntry,
    Record,
    SealEntry,
    entry_key,
)
from controller.ledger.segments import HEAD_KEY, Segment, segment_labels, segment_name
from controller.ledger.verify import (
    MAX_PROBLEMS,
    ChainData,
    VerifyReport,
    parse_checkpoint,
    summarise,
    verify_ledger,
    verify_segments,
)

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
    chain: str = CHAIN

    def data(self) -> ChainData:
        return ChainData(self.segments, self.checkpoint_map)

    def saved(self, size: int | None = None, signer: CheckpointSigner = SIGNER) -> Checkpoint:
        size = len(self.heads) if size is None else size
        return signer.sign(chain=self.chain, size=size, head=self.heads[size - 1], time=TIME)

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


def build(sizes: tuple[int, ...] = (4, 4, 4), *, checkpoint_at: int | None = 6,
          chain: str = CHAIN) -> Built:
    """Segments holding `sizes` entries each (the seal counted), immutable, labelled and signed
    as the writer makes them, with a checkpoint entry after `checkpoint_at` entries and the
    latest one in the checkpoint map."""
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
                                  checkpoint=SIGNER.sign(chain=chain, size=seq, head=head,
                                                         time=TIME))
            elif seq == checkpoint_at:
                entry = CheckpointEntry(checkpoint=SIGNER.sign(chain=chain, size=seq, head=head,
                                                               time=TIME))
            else:
                entry = outcome(seq)
            raw = record_bytes(Record(seq=seq, prev=head.hex(), entry=entry))
            data[entry_key(seq)] = raw.decode()
            head = next_head(head, leaf_hash(raw))
            heads.append(head)
            seq += 1
        data[HEAD_KEY] = SIGNER.sign(chain=chain, size=seq, head=head,
                                     time=TIME).model_dump_json()
        segments.append(Segment(number=number, name=segment_name(chain, number),
                                uid=f"uid-{number}", resource_version=str(number + 1),
                                sealed=True, data=data,
                                labels=segment_labels(chain, sealed=True)))
    latest = SIGNER.sign(chain=chain, size=seq, head=head, time=TIME)
    cmap = {"public-key": SIGNER.verifier.public_pem().decode(),
            "latest": latest.model_dump_json()}
    return Built(segments, cmap, heads, chain)


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
    assert [r.head for r in report.records] == [h.hex() for h in built.heads]
    assert [r.segment for r in report.records] == [0] * 4 + [1] * 4 + [2] * 4
    for stored in report.records:
        seg, key = built.key(stored.seq)
        assert stored.leaf == leaf_hash(seg.data[key].encode()).hex()
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


def delete_two_segments(b: Built) -> None:
    # A longer chain, so that the newest segment stays: segments 1 and 2 go.
    longer = build((4, 4, 4, 4))
    b.segments = [longer.segment(0), longer.segment(3)]
    b.checkpoint_map = longer.checkpoint_map


def empty_newest_segment(b: Built) -> None:
    b.segment(2).data.clear()


def malformed_seal(b: Built) -> None:
    seg, key = b.key(8)
    seg.data[key] = '{"seq": 8'


def delete_entry_mid(b: Built) -> None:
    del b.segment(1).data[entry_key(6)]


def _relinked(b: Built, seq: int, *, prev: str | None = None, renumber: int | None = None) -> None:
    seg, key = b.key(seq)
    record = Record.model_validate_json(seg.data[key])
    seg.data[key] = record_bytes(Record(seq=seq if renumber is None else renumber,
                                        prev=prev or record.prev, entry=record.entry)).decode()


def first_prev_edited(b: Built) -> None:
    _relinked(b, 0, prev="11" * 32)


def seal_prev_edited(b: Built) -> None:
    # The newest segment's seal, whose predecessor is present: no reset may hide the link.
    _relinked(b, 8, prev="11" * 32)


def renumbered_elsewhere(b: Built) -> None:
    # Renumbered to a position that does not exist: an edit, not a reorder.
    _relinked(b, 5, renumber=500)


K = TamperKind
Problem = tuple[TamperKind, int | None, int | None, str]
TAMPERING = [
    (edit_content, [
        (K.EDITED_ENTRY, 5, 1,
         'entry 5 was changed after it was written (entry 6 no longer links to it)'),
        (K.CHECKPOINT_MISMATCH, 6, None,
         'checkpoint in entry 6 names head <head>… at size 6, the chain has <head>…: history '
         'before it was rewritten'),
    ]),
    (non_canonical, [
        (K.EDITED_ENTRY, 5, 1, 'entry 5 is not in canonical form'),
        (K.EDITED_ENTRY, 5, 1,
         'entry 5 was changed after it was written (entry 6 no longer links to it)'),
        (K.CHECKPOINT_MISMATCH, 6, None,
         'checkpoint in entry 6 names head <head>… at size 6, the chain has <head>…: history '
         'before it was rewritten'),
    ]),
    (swap, [
        (K.REORDERED_ENTRIES, 5, 1, 'the entry stored as 5 says it is 6'),
        (K.REORDERED_ENTRIES, 6, 1, 'the entry stored as 6 says it is 5'),
        (K.REORDERED_ENTRIES, 7, 1,
         'entry 7 is out of order: the entry that follows 6 is stored at position 5'),
        (K.CHECKPOINT_MISMATCH, 6, None,
         'checkpoint in entry 6 names head <head>… at size 6, the chain has <head>…: history '
         'before it was rewritten'),
    ]),
    (swap_renumbered, [
        (K.REORDERED_ENTRIES, 1, 0, 'the entry stored as 1 says it is 2'),
        (K.REORDERED_ENTRIES, 2, 0, 'the entry stored as 2 says it is 1'),
        (K.REORDERED_ENTRIES, 3, 0,
         'entry 3 is out of order: the entry that follows 2 is stored at position 1'),
    ]),
    (delete_entry, [
        (K.DELETED_ENTRY, 10, 2, 'entries 10..10 are missing'),
    ]),
    (delete_segment, [
        (K.DELETED_SEGMENT, None, 1, 'segment(s) 1 are missing'),
        (K.CHECKPOINT_MISMATCH, 8, None,
         'checkpoint in entry 8 names head <head>… at size 8, the chain has ?…: history '
         'before it was rewritten'),
    ]),
    (recreate_segment, [
        (K.RECREATED_SEGMENT, None, 0,
         'segment 0 was deleted and recreated (uid uid-recreated, sealed as uid-0)'),
    ]),
    (unseal_older, [
        (K.UNSEALED_SEGMENT, None, 1,
         'segment 1 is not immutable (the writer creates every segment immutable)'),
    ]),
    (unseal_first, [
        (K.UNSEALED_SEGMENT, None, 0,
         'segment 0 is not immutable (the writer creates every segment immutable)'),
    ]),
    (malformed, [
        (K.MALFORMED, 9, 2, 'entry 9 does not parse (1 problems)'),
        (K.EDITED_ENTRY, 9, 2,
         'entry 9 was changed after it was written (entry 10 no longer links to it)'),
    ]),
    (oversized, [
        (K.MALFORMED, 9, 2, 'entry 9 is larger than 65536'),
        (K.EDITED_ENTRY, 9, 2,
         'entry 9 was changed after it was written (entry 10 no longer links to it)'),
    ]),
    (forged_checkpoint_entry, [
        # The newest entry was replaced: the segment's signed head no longer matches.
        (K.EDITED_ENTRY, None, 2,
         "segment 2's signed head (size 12) does not match its entries (size 12)"),
        (K.BAD_SIGNATURE, 11, None,
         'checkpoint in entry 11 (size 11) has no valid signature by key <key>'),
        (K.CHECKPOINT_MISMATCH, 12, None,
         "the checkpoint ConfigMap's latest checkpoint names head <head>… at size 12, the "
         'chain has <head>…: history before it was rewritten'),
    ]),
    (wrong_chain_checkpoint, [
        # The newest entry was replaced: the segment's signed head no longer matches.
        (K.EDITED_ENTRY, None, 2,
         "segment 2's signed head (size 12) does not match its entries (size 12)"),
        (K.CHECKPOINT_MISMATCH, None, None, "checkpoint in entry 11 is for chain 'other'"),
        (K.CHECKPOINT_MISMATCH, 12, None,
         "the checkpoint ConfigMap's latest checkpoint names head <head>… at size 12, the "
         'chain has <head>…: history before it was rewritten'),
    ]),
    (lying_checkpoint_entry, [
        # The newest entry was replaced: the segment's signed head no longer matches.
        (K.EDITED_ENTRY, None, 2,
         "segment 2's signed head (size 12) does not match its entries (size 12)"),
        (K.CHECKPOINT_MISMATCH, 11, None,
         'checkpoint in entry 11 names head <head>… at size 11, the chain has <head>…: '
         'history before it was rewritten'),
        (K.CHECKPOINT_MISMATCH, 12, None,
         "the checkpoint ConfigMap's latest checkpoint names head <head>… at size 12, the "
         'chain has <head>…: history before it was rewritten'),
    ]),
    (future_checkpoint_entry, [
        # The newest entry was replaced: the segment's signed head no longer matches.
        (K.EDITED_ENTRY, None, 2,
         "segment 2's signed head (size 12) does not match its entries (size 12)"),
        (K.TRUNCATED, 12, None,
         'checkpoint in entry 11 covers 13 entries but the chain holds only 12'),
        (K.CHECKPOINT_MISMATCH, 12, None,
         "the checkpoint ConfigMap's latest checkpoint names head <head>… at size 12, the "
         'chain has <head>…: history before it was rewritten'),
    ]),
    (seal_of_wrong_segment, [
        (K.EDITED_ENTRY, None, 2, 'segment 2 does not start with the seal of segment 1'),
        (K.EDITED_ENTRY, 8, 2,
         'entry 8 was changed after it was written (entry 9 no longer links to it)'),
    ]),
    (seal_missing, [
        (K.EDITED_ENTRY, None, 2, 'segment 2 does not start with the seal of segment 1'),
        (K.EDITED_ENTRY, 8, 2,
         'entry 8 was changed after it was written (entry 9 no longer links to it)'),
    ]),
    (bad_latest, [
        (K.MALFORMED, None, None, 'the checkpoint ConfigMap: not a ledger checkpoint: 1 problems'),
    ]),
    (pruned_marker_hides, [
        (K.CHECKPOINT_MISMATCH, None, None,
         'pruned-before=2 hides segment(s) 0, 1 that still exist'),
    ]),
    (pruned_marker_no_segment, [
        (K.CHECKPOINT_MISMATCH, None, None,
         'pruned-before=7 hides segment(s) 0, 1, 2 that still exist'),
        (K.DELETED_SEGMENT, None, 7, 'pruned-before=7 names a segment that does not exist'),
        (K.TRUNCATED, 0, None,
         "the checkpoint ConfigMap's latest checkpoint covers 12 entries but the chain holds "
         'only 0'),
    ]),
    (delete_two_segments, [
        (K.DELETED_SEGMENT, None, 1, 'segment(s) 1, 2 are missing'),
        (K.CHECKPOINT_MISMATCH, 12, None,
         'checkpoint in entry 12 names head <head>… at size 12, the chain has ?…: history '
         'before it was rewritten'),
    ]),
    (empty_newest_segment, [
        (K.EDITED_ENTRY, None, 2, 'segment 2 does not start with the seal of segment 1'),
        (K.UNSIGNED_SEGMENT, None, 2,
         'segment 2 carries no signed head: the ledger key did not write it'),
        (K.TRUNCATED, 8, None,
         "the checkpoint ConfigMap's latest checkpoint covers 12 entries but the chain holds "
         'only 8'),
    ]),
    (malformed_seal, [
        (K.MALFORMED, 8, 2, 'entry 8 does not parse (1 problems)'),
        (K.EDITED_ENTRY, None, 2, 'segment 2 does not start with the seal of segment 1'),
        (K.EDITED_ENTRY, 8, 2,
         'entry 8 was changed after it was written (entry 9 no longer links to it)'),
    ]),
    (delete_entry_mid, [
        (K.DELETED_ENTRY, 6, 1, 'entries 6..6 are missing'),
        (K.DELETED_ENTRY, None, 1, 'segment 1 holds 3 entries, sealed with 4'),
    ]),
    (first_prev_edited, [
        (K.EDITED_ENTRY, 0, 0,
         'entry 0 was changed after it was written (it does not start from the genesis head)'),
        (K.EDITED_ENTRY, 0, 0,
         'entry 0 was changed after it was written (entry 1 no longer links to it)'),
    ]),
    (seal_prev_edited, [
        (K.EDITED_ENTRY, 7, 2,
         'entry 7 was changed after it was written (entry 8 no longer links to it)'),
        (K.EDITED_ENTRY, 8, 2,
         'entry 8 was changed after it was written (entry 9 no longer links to it)'),
    ]),
    (renumbered_elsewhere, [
        (K.EDITED_ENTRY, 5, 1, 'the entry stored as 5 says it is 500'),
        (K.EDITED_ENTRY, 5, 1,
         'entry 5 was changed after it was written (entry 6 no longer links to it)'),
        (K.CHECKPOINT_MISMATCH, 6, None,
         'checkpoint in entry 6 names head <head>… at size 6, the chain has <head>…: history '
         'before it was rewritten'),
    ]),
]

"""Each tampering and every problem verification must list for it: kind, position, and the
message (signed heads and key ids, which change with each run's key, written <head>, <key>)."""


def problems(report: VerifyReport) -> list[Problem]:
    def norm(message: str) -> str:
        message = re.sub(r"sha256:[0-9a-f]{64}", "<key>", message)
        return re.sub(r"[0-9a-f]{16}…", "<head>…", message)
    return [(p.kind, p.seq, p.segment, norm(p.message)) for p in report.problems]


@pytest.mark.parametrize(("tamper", "expected"), TAMPERING,
                         ids=[t.__name__ for t, _ in TAMPERING])
def test_each_tamper_kind_is_named(tamper: Callable[[Built], None],
                                   expected: list[Problem]) -> None:
    built = build()
    pristine = copy.deepcopy(built)
    tamper(built)
    report = verify(built)
    assert not report.ok
    assert problems(report) == expected
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
    assert verify(build()).ok


def test_a_deleted_entry_is_also_caught_by_the_next_seal() -> None:
    built = build()
    del built.segment(1).data[entry_key(6)]
    report = verify(built)
    assert TamperKind.DELETED_ENTRY in kinds(report)
    assert any("sealed with 4" in p.message for p in report.problems)


@pytest.mark.parametrize("cut", [1, 2])
def test_truncation_against_a_saved_checkpoint_and_the_signed_head(cut: int) -> None:
    built = build()
    saved = built.saved()
    anchor = AnchorHead(segment=2, segment_uid="uid-2", checkpoint=Checkpoint.model_validate_json(
        built.segment(2).data[HEAD_KEY]))
    # Segments are immutable: a cut removes whole segments, the newest first.
    del built.segments[-cut:]
    # The in-cluster latest checkpoint was rewritten to fit: only the saved one knows...
    kept = 12 - 4 * cut
    built.checkpoint_map["latest"] = SIGNER.sign(
        chain=CHAIN, size=kept, head=built.heads[kept - 1], time=TIME).model_dump_json()
    assert verify(built).ok  # a cut tail is a valid chain on its own
    report = verify(built, saved=saved)
    assert kinds(report) == [TamperKind.TRUNCATED]
    assert "the saved checkpoint" in report.problems[0].message
    # ... and the signed head kept beside the key, which a plain verify reads.
    data = built.data()
    data.anchors = {CHAIN: anchor.model_dump_json()}
    report = verify_segments(data, chain=CHAIN, verifier=SIGNER.verifier)
    assert kinds(report) == [TamperKind.TRUNCATED]
    assert "the signed head beside the ledger key covers 12 entries" in \
        report.problems[0].message


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
    no_key = "cannot be checked: no public key in the checkpoint ConfigMap (pass --public-key)"
    unsigned = "signed head cannot be checked: no public key (pass --public-key)"
    assert problems(report) == [
        (K.BAD_SIGNATURE, None, 0, f"segment 0's {unsigned}"),
        (K.BAD_SIGNATURE, None, 1, f"segment 1's {unsigned}"),
        (K.BAD_SIGNATURE, None, 2, f"segment 2's {unsigned}"),
        (K.BAD_SIGNATURE, 4, None, f"checkpoint in entry 4 (size 4) {no_key}"),
        (K.BAD_SIGNATURE, 6, None, f"checkpoint in entry 6 (size 6) {no_key}"),
        (K.BAD_SIGNATURE, 8, None, f"checkpoint in entry 8 (size 8) {no_key}"),
        (K.BAD_SIGNATURE, 12, None,
         f"the checkpoint ConfigMap's latest checkpoint (size 12) {no_key}"),
    ]


def test_a_segment_signed_by_another_key_is_unsigned() -> None:
    built = build()
    seg = built.segment(2)
    seg.data[HEAD_KEY] = OTHER_SIGNER.sign(chain=CHAIN, size=12, head=built.heads[11],
                                           time=TIME).model_dump_json()
    assert kinds(verify(built)) == [TamperKind.UNSIGNED_SEGMENT]


def test_a_relabelled_segment_is_named() -> None:
    built = build()
    built.segment(1).labels.pop("provenance.dev/ledger-role")
    report = verify(built)
    assert kinds(report) == [TamperKind.RELABELLED_SEGMENT]
    assert report.problems[0].segment == 1


def test_a_segment_recreated_under_the_signed_head_is_named() -> None:
    built = build()
    anchor = AnchorHead(segment=2, segment_uid="uid-2", checkpoint=Checkpoint.model_validate_json(
        built.segment(2).data[HEAD_KEY]))
    built.segment(2).uid = "uid-again"
    data = built.data()
    data.anchors = {CHAIN: anchor.model_dump_json()}
    report = verify_segments(data, chain=CHAIN, verifier=SIGNER.verifier)
    assert kinds(report) == [TamperKind.RECREATED_SEGMENT]


def test_a_garbled_public_key_is_a_bad_signature() -> None:
    built = build()
    built.checkpoint_map["public-key"] = (
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
    report = verify(built, pinned=False)
    assert kinds(report)[0] == TamperKind.BAD_SIGNATURE


def _relink(built: Built) -> Built:
    """Re-chain and re-sign every record after an edit, as someone holding the key (a
    cluster-admin) rewriting history would."""
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
        seg.data[HEAD_KEY] = SIGNER.sign(chain=CHAIN, size=len(heads), head=head,
                                         time=TIME).model_dump_json()
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


def test_the_pruned_chain_problems_in_full() -> None:
    built = pruned()
    seg, key = built.key(4)
    record = Record.model_validate_json(seg.data[key])
    assert isinstance(record.entry, SealEntry)
    built.rewrite(4, record.entry.model_copy(update={"checkpoint": None}))
    # Reported once: the chain counts as anchored after it, so no later seal re-anchors it.
    report = verify(built)
    assert report.first_seq == 4 and not any("verified from" in n for n in report.notes)
    assert problems(report) == [
        (K.CHECKPOINT_MISMATCH, None, None,
         "the first kept segment does not start with a checkpoint of its position"),
        (K.EDITED_ENTRY, 4, 1,
         "entry 4 was changed after it was written (entry 5 no longer links to it)"),
    ]
    forged = pruned()
    forged.rewrite(4, record.entry.model_copy(update={"checkpoint": OTHER_SIGNER.sign(
        chain=CHAIN, size=4, head=forged.heads[3], time=TIME)}))
    assert problems(verify(forged))[0] == (
        K.BAD_SIGNATURE, None, None,
        "the checkpoint the pruned chain starts from is not validly signed")
    # Unpinned, the pruned chain still needs a key for its anchor.
    unkeyed = pruned()
    del unkeyed.checkpoint_map["public-key"]
    assert problems(verify(unkeyed, pinned=False))[0][:2] == (K.BAD_SIGNATURE, None)


@pytest.mark.parametrize(("size_ok", "head_ok"), [(True, False), (False, True)])
def test_an_anchor_must_match_both_size_and_head(size_ok: bool, head_ok: bool) -> None:
    built = pruned()
    seg, key = built.key(4)
    record = Record.model_validate_json(seg.data[key])
    assert isinstance(record.entry, SealEntry)
    size = 4 if size_ok else 3
    head = built.heads[3] if head_ok else built.heads[2]
    built.rewrite(4, record.entry.model_copy(update={"checkpoint": SIGNER.sign(
        chain=CHAIN, size=size, head=head, time=TIME)}))
    assert problems(verify(built))[0][0] == K.CHECKPOINT_MISMATCH


def test_a_checkpoint_at_the_first_kept_position_is_checked() -> None:
    built = pruned(1)
    report = verify(built, saved=build().saved(4))
    assert report.ok and report.checkpoints_verified == 5  # seals 1, 2, entry 6, latest, saved
    assert not any("predates" in n for n in report.notes)
    bad = verify(built, saved=SIGNER.sign(chain=CHAIN, size=4, head=bytes(32), time=TIME))
    assert problems(bad) == [(K.CHECKPOINT_MISMATCH, 4, None,
                              "the saved checkpoint names head <head>… at size 4, "
                              "the chain has <head>…: history before it was rewritten")]


def test_problem_lists_stop_at_the_limit() -> None:
    built = build((60,), checkpoint_at=None)
    seg = built.segments[0]
    for seq in range(60):
        seg.data[entry_key(seq)] = "{}"
    report = verify(built)
    assert len(report.problems) == MAX_PROBLEMS
    assert {p.kind for p in report.problems} == {K.MALFORMED}


def test_an_entry_at_the_size_limit_is_read() -> None:
    built = build((1,), checkpoint_at=None)
    raw = built.segments[0].data[entry_key(0)]
    size = len(raw.encode())
    assert verify_segments(built.data(), chain=CHAIN, verifier=SIGNER.verifier,
                           max_entry_bytes=size).ok
    report = verify_segments(built.data(), chain=CHAIN, verifier=SIGNER.verifier,
                             max_entry_bytes=size - 1)
    assert problems(report)[0] == (K.MALFORMED, 0, 0, f"entry 0 is larger than {size - 1}")


def test_the_summary_carries_every_field() -> None:
    built = build()
    delete_entry(built)
    report = verify(built)
    summary = summarise(report)
    assert summary == {
        "ok": False, "size": 12, "head": report.head, "first_seq": 0, "segments": 3,
        "checkpoints_verified": report.checkpoints_verified,
        "problems": [{"kind": "DeletedEntry", "message": "entries 10..10 are missing",
                      "seq": 10, "segment": 2}],
        "notes": [],
    }
    assert report.checkpoints_verified == 4
    assert report.head == built.heads[-1].hex() and len(report.records) == 11


def test_a_saved_checkpoint_is_parsed_strictly() -> None:
    cp = build().saved()
    assert parse_checkpoint(cp.model_dump_json()) == cp
    with pytest.raises(LedgerError, match="not a ledger checkpoint: 1 problems"):
        parse_checkpoint(cp.model_dump_json().replace('"size":12', '"size":-1'))


def test_a_chain_pruned_after_its_first_entry_vouches_for_that_head() -> None:
    # The anchor records head_{first-1}, so a checkpoint of the first kept size matches.
    full = build((1, 3, 3), checkpoint_at=None)
    built = build((1, 3, 3), checkpoint_at=None)
    built.segments = built.segments[1:]
    built.checkpoint_map["pruned-before"] = "1"
    report = verify(built, saved=full.saved(1))
    assert report.ok, report.problems
    assert report.first_seq == 1 and report.heads[0] == full.heads[0].hex()


def test_segment_is_signed_only_for_the_keys_own_records() -> None:
    from controller.ledger.verify import segment_is_signed

    built = build()
    assert all(segment_is_signed(seg, chain=CHAIN, verifier=SIGNER.verifier)
               for seg in built.segments)
    assert not segment_is_signed(built.segment(1), chain=CHAIN, verifier=OTHER_SIGNER.verifier)
    assert not segment_is_signed(built.segment(1), chain="other", verifier=SIGNER.verifier)
    edited = build()
    edited.rewrite(5, outcome(100))  # one record changed under the signature
    assert not segment_is_signed(edited.segment(1), chain=CHAIN, verifier=SIGNER.verifier)
    unsigned = build()
    del unsigned.segment(2).data[HEAD_KEY]
    assert not segment_is_signed(unsigned.segment(2), chain=CHAIN, verifier=SIGNER.verifier)


# --- every writer lane as one ledger (verify_ledger) -------------------------------------------

LANE = f"{CHAIN}-lane2"


def lanes(**built: Built) -> dict[str, ChainData]:
    return {b.chain: b.data() for b in built.values()}


def test_one_lane_is_reported_as_it_is() -> None:
    built = build()
    data = {CHAIN: built.data()}
    report = verify_ledger(data, chain=CHAIN, verifier=SIGNER.verifier)
    assert report.ok and report.size == 12 and report.notes == []
    assert [r.chain for r in report.records] == [CHAIN] * 12


def test_lanes_are_merged_into_one_report() -> None:
    main, other = build(), build((3, 2), checkpoint_at=None, chain=LANE)
    report = verify_ledger(lanes(a=main, b=other), chain=CHAIN, verifier=SIGNER.verifier)
    assert report.ok, report.problems
    assert report.size == 12 + 5 and report.segments == 3 + 2
    # main: 2 seals, the checkpoint entry, the map's latest; the lane: 1 seal, its latest.
    assert report.checkpoints_verified == 4 + 2
    assert [(r.chain, r.seq) for r in report.records] == \
        [(CHAIN, n) for n in range(12)] + [(LANE, n) for n in range(5)]
    # The head and first position are the configured chain's, not the last lane's.
    assert report.head == main.heads[-1].hex() and report.first_seq == 0


def test_a_lane_s_problems_and_notes_name_the_lane() -> None:
    main, other = build(), build(chain=LANE)
    other.rewrite(5, outcome(500))
    report = verify_ledger(lanes(a=main, b=other), chain=CHAIN)  # the in-cluster keys
    alone = verify_segments(other.data(), chain=LANE)
    assert [(p.kind, p.seq, p.segment) for p in report.problems] == \
        [(p.kind, p.seq, p.segment) for p in alone.problems]
    assert [p.message for p in report.problems] == [f"chain {LANE}: {p.message}"
                                                   for p in alone.problems]
    assert report.problems[0].message.startswith(f"chain {LANE}: entry 5 was changed")
    assert sorted(report.notes) == sorted(
        f"{lane}: checkpoint signatures checked against the in-cluster public key; pass "
        "--public-key to pin it" for lane in (CHAIN, LANE))


def test_a_saved_checkpoint_is_checked_against_its_own_lane() -> None:
    main, other = build(), build(chain=LANE)
    saved = [main.saved(), other.saved()]
    assert verify_ledger(lanes(a=main, b=other), chain=CHAIN, verifier=SIGNER.verifier,
                         saved=saved).checkpoints_verified == 5 + 5
    del other.segments[-1]  # the lane cut after its checkpoint was saved...
    other.checkpoint_map["latest"] = SIGNER.sign(  # ...and its latest rewritten to fit
        chain=LANE, size=8, head=other.heads[7], time=TIME).model_dump_json()
    report = verify_ledger(lanes(a=main, b=other), chain=CHAIN, verifier=SIGNER.verifier,
                           saved=saved)
    assert [(p.kind, p.seq) for p in report.problems] == [(TamperKind.TRUNCATED, 8)]
    assert report.problems[0].message.startswith(f"chain {LANE}: the saved checkpoint covers 12")


def test_a_saved_checkpoint_of_a_lane_that_is_gone_is_a_truncation() -> None:
    main, gone = build(), build(chain=LANE)
    report = verify_ledger({CHAIN: main.data()}, chain=CHAIN, verifier=SIGNER.verifier,
                           saved=[gone.saved(7)])
    assert [(p.kind, p.seq) for p in report.problems] == [(TamperKind.TRUNCATED, 7)]
    assert report.problems[0].message == \
        f"the saved checkpoint names chain {LANE}, which is gone"
    # Still the whole ledger's report: the configured chain's records and head.
    assert report.size == 12 and report.head == main.heads[-1].hex()


def test_without_the_configured_chain_the_head_is_the_genesis() -> None:
    other = build(chain=LANE)
    report = verify_ledger({LANE: other.data(), f"{CHAIN}-lane3": build(
        chain=f"{CHAIN}-lane3").data()}, chain=CHAIN, verifier=SIGNER.verifier)
    assert report.ok and report.size == 24
    assert report.head == bytes(32).hex() and report.first_seq == 0


@pytest.mark.parametrize(("name", "lane"), [
    (f"{CHAIN}-00000000", CHAIN),
    (f"{CHAIN}-00000017", CHAIN),
    (f"{CHAIN}-lane2-00000003", f"{CHAIN}-lane2"),
    (f"{CHAIN}-lane0-00000003", None),  # lane 0 is the chain's own name
    (f"{CHAIN}-0000001", None),  # segment numbers have 8 digits
    (f"{CHAIN}-000000001", None),
    (f"{CHAIN}-0000001a", None),
    (f"{CHAIN}-checkpoints", None),
    ("other-00000001", None),
    ("00000001", None),
])
def test_segments_are_told_from_other_configmaps_by_name(name: str, lane: str | None) -> None:
    from controller.ledger.verify import _lane_of_segment

    assert _lane_of_segment(CHAIN, name) == lane


# --- the signed head beside the key --------------------------------------------------------------

def anchored(built: Built, anchor: AnchorHead | str) -> VerifyReport:
    data = built.data()
    data.anchors = {CHAIN: anchor if isinstance(anchor, str) else anchor.model_dump_json()}
    return verify_segments(data, chain=CHAIN, verifier=SIGNER.verifier)


def newest_head(built: Built, *, signer: CheckpointSigner = SIGNER,
                chain: str = CHAIN) -> AnchorHead:
    size = len(built.heads)
    return AnchorHead(segment=2, segment_uid="uid-2", checkpoint=signer.sign(
        chain=chain, size=size, head=built.heads[-1], time=TIME))


def test_a_signed_head_the_chain_reaches_is_one_more_checkpoint_verified() -> None:
    built = build()
    report = anchored(built, newest_head(built))
    assert report.ok, report.problems
    assert report.checkpoints_verified == verify(built).checkpoints_verified + 1


def test_a_signed_head_that_does_not_parse_is_malformed() -> None:
    report = anchored(build(), '{"segment": 2}')
    assert problems(report) == [(K.MALFORMED, None, None, f"the signed head of chain {CHAIN} "
                                 "beside the key does not parse (2 problems)")]


def test_a_signed_head_by_another_key_or_for_another_chain_is_refused() -> None:
    built = build()
    where = "the signed head beside the ledger key"
    report = anchored(built, newest_head(built, signer=OTHER_SIGNER))
    assert problems(report) == [(K.BAD_SIGNATURE, 12, None, f"{where} (size 12) has no valid "
                                 "signature by key <key>")]
    report = anchored(built, newest_head(built, chain="other"))
    assert problems(report) == [(K.CHECKPOINT_MISMATCH, None, None,
                                 f"{where} is for chain 'other'")]


def test_a_signed_head_naming_a_recreated_segment_says_both_uids() -> None:
    built = build()
    built.segment(2).uid = "uid-again"
    report = anchored(built, newest_head(built))
    assert problems(report) == [(K.RECREATED_SEGMENT, None, 2, "segment 2 was deleted and "
                                 "recreated (uid uid-again, signed as uid-2)")]


def test_a_signed_head_naming_a_pruned_segment_is_no_problem() -> None:
    built = pruned(1)
    head = newest_head(built).model_copy(update={"segment": 0, "segment_uid": "uid-gone"})
    report = anchored(built, head)
    assert report.ok, report.problems


def test_a_relabelled_segment_s_labels_are_listed() -> None:
    built = build()
    built.segment(1).labels = {"b": "2", "a": "1"}
    built.segment(2).labels = {}
    report = verify(built)
    assert [p.message for p in report.problems] == [
        "segment 1's labels were changed (a=1, b=2), which hides it from label selectors",
        "segment 2's labels were changed (none), which hides it from label selectors"]


def test_the_public_key_beside_the_ledger_key_is_trusted_over_the_in_cluster_one() -> None:
    built = build()
    built.checkpoint_map["public-key"] = OTHER_SIGNER.verifier.public_pem().decode()
    data = built.data()
    data.anchors = {PUBLIC_KEY: SIGNER.verifier.public_pem().decode()}
    report = verify_segments(data, chain=CHAIN)
    assert report.ok, report.problems
    assert report.notes == ["signatures checked against the public key beside the ledger key; "
                            "pass --public-key to pin it"]


def test_a_pinned_key_is_trusted_over_the_one_beside_the_ledger_key() -> None:
    data = build().data()
    data.anchors = {PUBLIC_KEY: OTHER_SIGNER.verifier.public_pem().decode()}
    report = verify_segments(data, chain=CHAIN, verifier=SIGNER.verifier)
    assert report.ok and report.notes == [], report.problems


def test_a_garbled_public_key_beside_the_ledger_key_is_a_bad_signature() -> None:
    data = build().data()
    data.anchors = {PUBLIC_KEY: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}
    report = verify_segments(data, chain=CHAIN)
    assert report.problems[0].kind == TamperKind.BAD_SIGNATURE
    assert report.problems[0].message.startswith("the public key beside the ledger key: ")
    assert not report.ok


def test_segment_is_signed_refuses_what_it_cannot_read() -> None:
    from controller.ledger.verify import segment_is_signed

    empty = build().segment(2)
    empty.data = {HEAD_KEY: empty.data[HEAD_KEY]}  # a signed head over no records
    assert not segment_is_signed(empty, chain=CHAIN, verifier=SIGNER.verifier)
    garbled = build().segment(1)
    garbled.data[HEAD_KEY] = "not a checkpoint"
    assert not segment_is_signed(garbled, chain=CHAIN, verifier=SIGNER.verifier)
    bad_record = build().segment(1)
    bad_record.data[entry_key(4)] = "{}"
    assert not segment_is_signed(bad_record, chain=CHAIN, verifier=SIGNER.verifier)


def test_a_segment_whose_signed_head_does_not_parse_or_is_another_key_s_is_named() -> None:
    built = build()
    built.segment(1).data[HEAD_KEY] = "{}"
    built.segment(2).data[HEAD_KEY] = OTHER_SIGNER.sign(
        chain=CHAIN, size=12, head=built.heads[11], time=TIME).model_dump_json()
    assert problems(verify(built)) == [
        (K.UNSIGNED_SEGMENT, None, 1,
         "segment 1's signed head: not a ledger checkpoint: 6 problems"),
        (K.UNSIGNED_SEGMENT, None, 2, "segment 2 is not signed by the ledger key <key>"),
    ]


def test_every_lane_is_read_with_the_entry_size_limit() -> None:
    main, other = build(), build(chain=LANE)
    report = verify_ledger(lanes(a=main, b=other), chain=CHAIN, verifier=SIGNER.verifier,
                           max_entry_bytes=64)
    assert {p.kind for p in report.problems} >= {TamperKind.MALFORMED}
    assert any(p.message.startswith(f"chain {LANE}: entry 0 is larger than 64")
               for p in report.problems)
