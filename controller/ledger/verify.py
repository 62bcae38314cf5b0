"""Verification of a stored chain: links, seals, segment identity and checkpoints.

Verification reads everything first (`load_chain`) and then checks offline (`verify_segments`),
so the checks are plain functions over data that tests can drive without a cluster. The steps:

1. Segments: numbers are contiguous from the first kept one (a gap is a deleted segment); every
   segment but the newest is sealed (`immutable: true`).
2. Seals: segment N+1 starts with a seal entry naming segment N's ConfigMap uid; another uid means
   segment N was deleted and recreated.
3. Entries: each parses strictly, is stored in canonical form under the key of its own sequence
   number, and its `prev` is the head computed so far. A record found under another position's
   key, or whose `prev` is the head of another position, is a reorder; otherwise a broken link
   means an edit; a skipped sequence number is a deleted entry.
4. Checkpoints: every checkpoint in the log, the one in the checkpoint ConfigMap and the saved
   one given by the caller must carry a valid signature and match the head computed at their size.
   A checkpoint larger than the chain proves truncation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from controller.kube import KubeApi, KubeApiError
from controller.ledger.anchor import PUBLIC_KEY, parse_anchor, read_anchors
from controller.ledger.chain import (
    GENESIS,
    CheckpointVerifier,
    leaf_hash,
    next_head,
    record_bytes,
)
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import LedgerCorrupt, LedgerError, TamperError, TamperKind
from controller.ledger.lanes import lane_index
from controller.ledger.models import Checkpoint, CheckpointEntry, Record, SealEntry
from controller.ledger.segments import (
    Segment,
    list_configmaps,
    list_segments,
    read_checkpoint_map,
)

MAX_PROBLEMS = 50
"""Stop listing after this many problems: one is enough to fail, the rest is context."""


@dataclass(frozen=True)
class StoredRecord:
    """A parsed record and where it sits in the chain."""

    record: Record
    leaf: str
    head: str
    segment: int
    chain: str = ""
    """The chain (writer lane) that holds it."""

    @property
    def seq(self) -> int:
        return self.record.seq


@dataclass
class VerifyReport:
    """What verification found. `ok` when there are no problems."""

    size: int = 0
    """The number of entries the chain holds (its next sequence number)."""
    head: str = GENESIS.hex()
    first_seq: int = 0
    """The first sequence number present (above 0 after pruning)."""
    segments: int = 0
    checkpoints_verified: int = 0
    problems: list[TamperError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: list[StoredRecord] = field(default_factory=list)
    heads: dict[int, str] = field(default_factory=dict)
    """head after each sequence number."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: TamperKind, message: str, *, seq: int | None = None,
            segment: int | None = None) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(TamperError(kind, message, seq=seq, segment=segment))

    def head_at(self, size: int) -> str | None:
        """head_{size-1}: what a checkpoint of `size` entries must name; None if unknown."""
        if size == 0:
            return GENESIS.hex()
        return self.heads.get(size - 1)


@dataclass
class ChainData:
    """Everything verification reads from the API server."""

    segments: list[Segment]
    checkpoint_map: dict[str, str] | None
    anchors: dict[str, str] | None = None
    """The signed heads beside the key (`controller.ledger.anchor`), when they could be read."""
    anchor_error: str | None = None
    """Why they could not be read (then cuts of the newest segments go undetected)."""


# pragma: no mutate start (I/O against the API server: tests/ledger/test_tamper.py drives it)
async def load_chain(api: KubeApi, namespace: str, chain: str, *,
                     progress: Callable[[int], None] | None = None,
                     key_namespace: str | None = None,
                     ledger_chain: str | None = None) -> ChainData:
    """Read every segment, the checkpoint ConfigMap and (from `key_namespace`) the signed
    heads beside the key. `ledger_chain` is the configured chain when `chain` is a lane."""
    # The signed heads first: read after the segments, a head written meanwhile would name a
    # segment the list has not seen, which would look like a cut.
    anchors, anchor_error = await _anchors(api, namespace, ledger_chain or chain, key_namespace)
    checkpoint_map = await read_checkpoint_map(api, namespace, chain)
    segments = await list_segments(api, namespace, chain, progress=progress)
    data = ChainData(segments, checkpoint_map)
    data.anchors, data.anchor_error = anchors, anchor_error
    return data


async def _anchors(api: KubeApi, namespace: str, chain: str,
                   key_namespace: str | None) -> tuple[dict[str, str] | None, str | None]:
    if key_namespace is None:
        return None, None
    config = LedgerConfig(namespace=namespace, chain=chain,
                          checkpoint_key_namespace=key_namespace)
    try:
        return await read_anchors(api, config) or {}, None
    except KubeApiError as exc:
        return None, f"{exc.status} {exc.message}"
# pragma: no mutate end


# pragma: no mutate start (I/O against the API server: tests/ledger/test_lanes.py drives it)
async def load_ledger(api: KubeApi, namespace: str, chain: str, *,
                      progress: Callable[[int], None] | None = None,
                      key_namespace: str | None = None) -> dict[str, ChainData]:
    """Every writer lane of the ledger (`controller.ledger.lanes`), each as its `ChainData`,
    from one list of the ledger namespace: the lanes found among the ConfigMaps by name, and
    those the signed heads beside the key name (a lane deleted whole is still looked for)."""
    anchors, anchor_error = await _anchors(api, namespace, chain, key_namespace)
    items = await list_configmaps(api, namespace, progress=progress)
    lanes: dict[str, ChainData] = {chain: ChainData([], None)}
    for item in items:
        name = str((item.get("metadata") or {}).get("name", ""))
        lane = _lane_of_segment(chain, name)
        if lane is not None:
            seg = Segment.from_object(item, chain=lane)
            if seg is not None:
                lanes.setdefault(lane, ChainData([], None)).segments.append(seg)
            continue
        owner = name.removesuffix("-checkpoints")
        if owner != name and lane_index(chain, owner) is not None:
            raw = item.get("data") or {}
            lanes.setdefault(owner, ChainData([], None)).checkpoint_map = {
                str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    for lane in anchors or {}:
        if lane_index(chain, lane) is not None:
            lanes.setdefault(lane, ChainData([], None))
    for data in lanes.values():
        data.anchors, data.anchor_error = anchors, anchor_error
    for data in lanes.values():
        data.segments.sort(key=lambda s: s.number)
    return dict(sorted(lanes.items(), key=lambda kv: lane_index(chain, kv[0]) or 0))
# pragma: no mutate end


def _lane_of_segment(chain: str, name: str) -> str | None:
    lane, _sep, number = name.rpartition("-")
    if len(number) != 8 or not number.isdigit():
        return None
    return lane if lane_index(chain, lane) is not None else None


def verify_ledger(lanes: Mapping[str, ChainData], *, chain: str,
                  verifier: CheckpointVerifier | None = None,
                  saved: Iterable[Checkpoint] = (),
                  max_entry_bytes: int = 64 * 1024) -> VerifyReport:
    """Verify every lane; one report for the whole ledger (records of all lanes, each knowing
    its chain). A single lane's report is returned as it is."""
    by_chain = {cp.chain: cp for cp in saved}
    reports = {lane: verify_segments(data, chain=lane, verifier=verifier,
                                     saved=by_chain.pop(lane, None),
                                     max_entry_bytes=max_entry_bytes)
               for lane, data in lanes.items()}
    if len(reports) == 1 and not by_chain:
        return next(iter(reports.values()))
    total = VerifyReport()
    for lane, report in reports.items():
        total.size += report.size
        total.segments += report.segments
        total.checkpoints_verified += report.checkpoints_verified
        total.records.extend(report.records)
        total.notes.extend(f"{lane}: {n}" for n in report.notes)
        for problem in report.problems:
            total.add(problem.kind, f"chain {lane}: {problem.message}", seq=problem.seq,
                      segment=problem.segment)
    for cp in by_chain.values():
        total.add(TamperKind.TRUNCATED, f"the saved checkpoint names chain {cp.chain}, which "
                  "is gone", seq=cp.size)
    if chain in reports:
        total.head, total.first_seq = reports[chain].head, reports[chain].first_seq
    return total


def parse_checkpoint(text: str) -> Checkpoint:
    """A checkpoint from its JSON form (a saved file or the checkpoint ConfigMap)."""
    try:
        return Checkpoint.model_validate_json(text)
    except ValidationError as exc:
        raise LedgerError(f"not a ledger checkpoint: {exc.error_count()} problems") from exc


def verify_segments(
    data: ChainData,
    *,
    chain: str,
    verifier: CheckpointVerifier | None = None,
    saved: Checkpoint | None = None,
    max_entry_bytes: int = 64 * 1024,
) -> VerifyReport:
    """Check the chain; every problem found is listed in the report, none is raised."""
    report = VerifyReport(segments=len(data.segments))
    cmap = data.checkpoint_map or {}
    pruned_before = int(cmap["pruned-before"]) if cmap.get("pruned-before", "").isdigit() else 0
    segments = [s for s in data.segments if s.number >= pruned_before]
    if pruned_before:
        # `pruned-before` lives in a ConfigMap the controller can update: it must describe a real
        # prune (the older segments gone, the cut segment kept), or it could hide the chain.
        hidden = [s.number for s in data.segments if s.number < pruned_before]
        if hidden:
            report.add(TamperKind.CHECKPOINT_MISMATCH,
                       f"pruned-before={pruned_before} hides segment(s) "
                       f"{', '.join(map(str, hidden))} that still exist")
        if not segments or segments[0].number != pruned_before:
            report.add(TamperKind.DELETED_SEGMENT,
                       f"pruned-before={pruned_before} names a segment that does not exist",
                       segment=pruned_before)
    anchors = data.anchors or {}
    if verifier is None and anchors.get(PUBLIC_KEY):
        # Beside the key, out of reach of the ledger namespace's writers: a better first use
        # than the copy in the checkpoint ConfigMap.
        try:
            verifier = CheckpointVerifier.from_pem(anchors[PUBLIC_KEY].encode())
        except LedgerError as exc:
            report.add(TamperKind.BAD_SIGNATURE, f"the public key beside the ledger key: {exc}")
        report.notes.append("signatures checked against the public key beside the ledger key; "
                            "pass --public-key to pin it")
    if data.anchor_error is not None:
        report.notes.append("the signed heads beside the ledger key could not be read "
                            f"({data.anchor_error}): a cut of the newest segments would go "
                            "unnoticed")
    if verifier is None and cmap.get("public-key"):
        # Trust-on-first-use of the in-cluster key; `--public-key` pins it from outside.
        try:
            verifier = CheckpointVerifier.from_pem(cmap["public-key"].encode())
        except LedgerError as exc:
            report.add(TamperKind.BAD_SIGNATURE, f"the checkpoint ConfigMap's key: {exc}")
        report.notes.append("checkpoint signatures checked against the in-cluster public key; "
                            "pass --public-key to pin it")

    # 1. Segments: contiguous numbers, every one immutable and labelled as written.
    expected = pruned_before
    for seg in segments:
        if seg.number > expected:
            missing = ", ".join(str(n) for n in range(expected, seg.number))
            report.add(TamperKind.DELETED_SEGMENT, f"segment(s) {missing} are missing",
                       segment=expected)
        expected = seg.number + 1
        if not seg.sealed:
            report.add(TamperKind.UNSEALED_SEGMENT,
                       f"segment {seg.number} is not immutable (the writer creates every "
                       "segment immutable)", segment=seg.number)
        if seg.relabelled(chain):
            report.add(TamperKind.RELABELLED_SEGMENT,
                       f"segment {seg.number}'s labels were changed ({_labels(seg)}), which hides "
                       "it from label selectors", segment=seg.number)

    head, seq = GENESIS, 0
    anchored = pruned_before == 0
    by_number = {s.number: s for s in segments}
    for seg in segments:
        entries = seg.entries()
        records: list[tuple[int, str, Record | None]] = []
        for key_seq, _key, raw in entries:
            records.append((key_seq, raw, _parse(raw, key_seq, seg, report, max_entry_bytes)))
        positions = {r.seq: i for i, (_k, _raw, r) in enumerate(records) if r is not None}
        prevs = {r.prev: i for i, (_k, _raw, r) in enumerate(records) if r is not None}

        # 2. The seal entry naming the previous segment.
        first = records[0][2] if records else None
        if seg.number > pruned_before or (seg.number > 0 and not anchored):
            seal = first.entry if first is not None else None
            if not isinstance(seal, SealEntry) or seal.segment != seg.number - 1:
                report.add(TamperKind.EDITED_ENTRY,
                           f"segment {seg.number} does not start with the seal of segment "
                           f"{seg.number - 1}", segment=seg.number)
            else:
                sealed = by_number.get(seg.number - 1)
                if sealed is not None and sealed.uid != seal.segment_uid:
                    report.add(TamperKind.RECREATED_SEGMENT,
                               f"segment {sealed.number} was deleted and recreated (uid "
                               f"{sealed.uid}, sealed as {seal.segment_uid})",
                               segment=sealed.number)
                elif sealed is not None and len(sealed.entries()) != seal.entries:
                    report.add(TamperKind.DELETED_ENTRY,
                               f"segment {sealed.number} holds {len(sealed.entries())} entries, "
                               f"sealed with {seal.entries}", segment=sealed.number)
                if not anchored:
                    anchored = _anchor(seal, first, verifier, report)
                    if first is not None:
                        head, seq = bytes.fromhex(first.prev), first.seq
                        report.first_seq = seq
                        if seq > 0:
                            # The anchoring checkpoint vouches for the head before the cut.
                            report.heads[seq - 1] = first.prev
        if seg.number > pruned_before and records and (seg.number - 1) not in by_number \
                and first is not None:
            # After a deleted segment (already reported), continue from what is there.
            head, seq = bytes.fromhex(first.prev), first.seq

        # 3. Entries.
        for index, (key_seq, raw, record) in enumerate(records):
            if record is None:
                seq = key_seq + 1
                continue
            if record.seq != key_seq:
                kind = TamperKind.REORDERED_ENTRIES if key_seq in positions or \
                    record.seq in {k for k, _r, _x in records} else TamperKind.EDITED_ENTRY
                report.add(kind, f"the entry stored as {key_seq} says it is {record.seq}",
                           seq=key_seq, segment=seg.number)
            elif key_seq > seq:
                report.add(TamperKind.DELETED_ENTRY,
                           f"entries {seq}..{key_seq - 1} are missing", seq=seq,
                           segment=seg.number)
            elif key_seq < seq:
                report.add(TamperKind.DUPLICATE_ENTRY, f"entry {key_seq} appears twice",
                           seq=key_seq, segment=seg.number)
            elif record.prev != head.hex():
                other = prevs.get(head.hex())
                if other is not None and other != index:
                    report.add(TamperKind.REORDERED_ENTRIES,
                               f"entry {key_seq} is out of order: the entry that follows "
                               f"{key_seq - 1} is stored at position {records[other][0]}",
                               seq=key_seq, segment=seg.number)
                elif key_seq == 0:
                    # Nothing precedes entry 0: a wrong link is an edit of entry 0 itself.
                    report.add(TamperKind.EDITED_ENTRY,
                               "entry 0 was changed after it was written (it does not start "
                               "from the genesis head)", seq=0, segment=seg.number)
                else:
                    report.add(TamperKind.EDITED_ENTRY,
                               f"entry {key_seq - 1} was changed after it was written (entry "
                               f"{key_seq} no longer links to it)", seq=key_seq - 1,
                               segment=seg.number)
            leaf = leaf_hash(raw.encode())
            # Continue from what is stored, so that one problem is reported once.
            head = next_head(bytes.fromhex(record.prev), leaf)
            report.heads[key_seq] = head.hex()
            report.records.append(StoredRecord(record, leaf.hex(), head.hex(), seg.number,
                                               chain))
            seq = key_seq + 1
        _check_signed_head(seg, seq, head, report, verifier, chain=chain)
    report.size, report.head = seq, head.hex()

    # 4. Checkpoints in the log, in the checkpoint ConfigMap, and the saved one.
    for stored in report.records:
        entry = stored.record.entry
        cp = entry.checkpoint if isinstance(entry, CheckpointEntry | SealEntry) else None
        if cp is not None:
            _check_checkpoint(cp, report, verifier, where=f"checkpoint in entry {stored.seq}",
                              chain=chain)
    if cmap.get("latest"):
        try:
            _check_checkpoint(parse_checkpoint(cmap["latest"]), report, verifier,
                              where="the checkpoint ConfigMap's latest checkpoint", chain=chain)
        except LedgerError as exc:
            report.add(TamperKind.MALFORMED, f"the checkpoint ConfigMap: {exc}")
    if saved is not None:
        _check_checkpoint(saved, report, verifier, where="the saved checkpoint", chain=chain)
    if chain in anchors:
        _check_anchor(anchors[chain], report, verifier, segments, chain=chain)
    return report


def segment_is_signed(seg: Segment, *, chain: str, verifier: CheckpointVerifier) -> bool:
    """Whether `seg` ends with a valid signature by `verifier` over the head its own records
    reach: the key holder wrote exactly these records. For readers that take records in one
    segment at a time (the reconciler, the unadmitted detector), so that a segment planted by a
    writer of the ledger namespace, in any lane, is never believed."""
    entries = seg.entries()
    text = seg.signed_head
    if not entries or text is None:
        return False
    try:
        head = bytes.fromhex(Record.model_validate_json(entries[0][2]).prev)
        signed = parse_checkpoint(text)
    except (ValidationError, LedgerError, ValueError):
        return False
    for _seq, _key, raw in entries:
        head = next_head(head, leaf_hash(raw.encode()))
    return (signed.chain == chain and signed.size == entries[-1][0] + 1
            and signed.head == head.hex() and verifier.verify(signed))


def _labels(seg: Segment) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(seg.labels.items())) or "none"


def _check_signed_head(seg: Segment, size: int, head: bytes, report: VerifyReport,
                       verifier: CheckpointVerifier | None, *, chain: str) -> None:
    """A segment ends with the writer's signature over the chain as it leaves it."""
    text = seg.signed_head
    if text is None:
        report.add(TamperKind.UNSIGNED_SEGMENT,
                   f"segment {seg.number} carries no signed head: the ledger key did not write "
                   "it", segment=seg.number)
        return
    try:
        signed = parse_checkpoint(text)
    except LedgerError as exc:
        report.add(TamperKind.UNSIGNED_SEGMENT, f"segment {seg.number}'s signed head: {exc}",
                   segment=seg.number)
        return
    if verifier is None:
        report.add(TamperKind.BAD_SIGNATURE, f"segment {seg.number}'s signed head cannot be "
                   "checked: no public key (pass --public-key)", segment=seg.number)
        return
    if signed.chain != chain or not verifier.verify(signed):
        report.add(TamperKind.UNSIGNED_SEGMENT,
                   f"segment {seg.number} is not signed by the ledger key {verifier.key_id}",
                   segment=seg.number)
        return
    if signed.size != size or signed.head != head.hex():
        report.add(TamperKind.EDITED_ENTRY,
                   f"segment {seg.number}'s signed head (size {signed.size}) does not match its "
                   f"entries (size {size})", segment=seg.number)


def _check_anchor(text: str, report: VerifyReport, verifier: CheckpointVerifier | None,
                  segments: list[Segment], *, chain: str) -> None:
    """The newest signed head beside the key: the chain must reach it (else it was cut)."""
    try:
        anchor = parse_anchor(text, chain=chain)
    except LedgerCorrupt as exc:
        report.add(TamperKind.MALFORMED, str(exc))
        return
    where = "the signed head beside the ledger key"
    _check_checkpoint(anchor.checkpoint, report, verifier, where=where, chain=chain)
    # A segment it names that is gone is either cut (the chain is then shorter than the head:
    # Truncated, above), a gap (DeletedSegment), or pruned since (the head may lag a prune).
    named = next((s for s in segments if s.number == anchor.segment), None)
    if named is not None and named.uid != anchor.segment_uid:
        report.add(TamperKind.RECREATED_SEGMENT,
                   f"segment {anchor.segment} was deleted and recreated (uid {named.uid}, "
                   f"signed as {anchor.segment_uid})", segment=anchor.segment)


def _parse(raw: str, key_seq: int, seg: Segment, report: VerifyReport,
           max_entry_bytes: int) -> Record | None:
    if len(raw.encode()) > max_entry_bytes:
        report.add(TamperKind.MALFORMED, f"entry {key_seq} is larger than {max_entry_bytes}",
                   seq=key_seq, segment=seg.number)
        return None
    try:
        record = Record.model_validate_json(raw)
    except ValidationError as exc:
        report.add(TamperKind.MALFORMED,
                   f"entry {key_seq} does not parse ({exc.error_count()} problems)",
                   seq=key_seq, segment=seg.number)
        return None
    if record_bytes(record).decode() != raw:
        report.add(TamperKind.EDITED_ENTRY, f"entry {key_seq} is not in canonical form",
                   seq=key_seq, segment=seg.number)
    return record


def _anchor(seal: SealEntry, first: Record | None, verifier: CheckpointVerifier | None,
            report: VerifyReport) -> bool:
    """After pruning, the first kept segment's seal checkpoint is where trust starts."""
    cp = seal.checkpoint
    if cp is None or first is None or cp.size != first.seq or cp.head != first.prev:
        report.add(TamperKind.CHECKPOINT_MISMATCH,
                   "the first kept segment does not start with a checkpoint of its position")
        return True
    if verifier is None or not verifier.verify(cp):
        report.add(TamperKind.BAD_SIGNATURE,
                   "the checkpoint the pruned chain starts from is not validly signed")
    else:
        report.notes.append(f"chain verified from the checkpoint at size {cp.size} (pruned)")
    return True


def _check_checkpoint(cp: Checkpoint, report: VerifyReport, verifier: CheckpointVerifier | None,
                      *, where: str, chain: str) -> None:
    if cp.chain != chain:
        report.add(TamperKind.CHECKPOINT_MISMATCH, f"{where} is for chain {cp.chain!r}")
        return
    if verifier is None:
        # Checkpoints are only written with a key, so one without a key to check it means the
        # key was removed: whoever rewrote the chain would like nobody to check.
        report.add(TamperKind.BAD_SIGNATURE, f"{where} (size {cp.size}) cannot be checked: no "
                   "public key in the checkpoint ConfigMap (pass --public-key)", seq=cp.size)
        return
    if not verifier.verify(cp):
        report.add(TamperKind.BAD_SIGNATURE, f"{where} (size {cp.size}) has no valid "
                   f"signature by key {verifier.key_id}", seq=cp.size)
        return
    if cp.size > report.size:
        report.add(TamperKind.TRUNCATED,
                   f"{where} covers {cp.size} entries but the chain holds only {report.size}",
                   seq=report.size)
        return
    if cp.size < report.first_seq:
        report.notes.append(f"{where} (size {cp.size}) predates the pruned segments")
        return
    expected = report.head_at(cp.size)
    if expected != cp.head:
        report.add(TamperKind.CHECKPOINT_MISMATCH,
                   f"{where} names head {cp.head[:16]}… at size {cp.size}, the chain has "
                   f"{(expected or '?')[:16]}…: history before it was rewritten", seq=cp.size)
        return
    report.checkpoints_verified += 1


def summarise(report: VerifyReport) -> Mapping[str, object]:
    """The report as JSON-ready data (for `-o json`)."""
    return {
        "ok": report.ok, "size": report.size, "head": report.head,
        "first_seq": report.first_seq, "segments": report.segments,
        "checkpoints_verified": report.checkpoints_verified,
        "problems": [{"kind": str(p.kind), "message": p.message, "seq": p.seq,
                      "segment": p.segment} for p in report.problems],
        "notes": report.notes,
    }
