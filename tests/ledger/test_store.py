"""Appends through the real kube-apiserver: segments, seals, idempotency, deadlines."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from controller.dev.controlplane import LocalControlPlane
from controller.kube import Credentials, KubeApi
from controller.ledger.anchor import read_anchor
from controller.ledger.chain import CheckpointSigner, leaf_hash, next_head, record_bytes
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import LedgerClosed, LedgerDeadlineExceeded, TamperKind
from controller.ledger.keys import load_signer
from controller.ledger.models import AdmissionEntry, Checkpoint, Record, SealEntry, entry_key
from controller.ledger.segments import (
    HEAD_KEY,
    checkpoint_map_name,
    configmaps_path,
    list_segments,
    segment_labels,
    segment_name,
)
from controller.ledger.store import Ledger
from controller.ledger.verify import load_chain, verify_segments
from tests.ledger.helpers import admission_entry, new_ledger


async def test_each_write_is_one_immutable_signed_segment_and_verifies(
        kube_api: KubeApi, ledger: Ledger, ledger_config: LedgerConfig,
        signer: CheckpointSigner) -> None:
    receipts = [await ledger.append(admission_entry(f"uid-{i}")) for i in range(40)]
    receipts += await asyncio.gather(*(ledger.append(admission_entry(f"uid-g{i}"))
                                       for i in range(40)))
    # Sequential appends get increasing numbers (seal entries take some in between).
    seqs = [r.seq for r in receipts[:40]]
    assert seqs == sorted(set(seqs)) and seqs[0] == 0
    segments = await list_segments(kube_api, ledger_config.namespace, ledger_config.chain)
    # One segment per write: the 40 sequential appends took 40, the 40 concurrent ones fewer.
    assert 40 < len(segments) < 80
    assert len(ledger.stats.batch_sizes) == len(segments)
    assert all(s.sealed and not s.relabelled(ledger_config.chain) for s in segments)
    assert all(s.size <= ledger_config.segment_max_bytes + 1024 for s in segments)
    for prev, seg in itertools.pairwise(segments):
        first = Record.model_validate_json(seg.entries()[0][2])
        assert isinstance(first.entry, SealEntry)
        assert first.entry.segment_uid == prev.uid
        # The seal carries its predecessor's signed head, so pruning can cut anywhere.
        assert first.entry.checkpoint is not None
        assert first.entry.checkpoint.model_dump_json() == prev.signed_head
        assert signer.verifier.verify(first.entry.checkpoint)
    for seg in segments:
        assert seg.signed_head is not None
        assert signer.verifier.verify(Checkpoint.model_validate_json(seg.signed_head))
    data = await load_chain(kube_api, ledger_config.namespace, ledger_config.chain,
                            key_namespace=ledger_config.checkpoint_key_namespace)
    report = verify_segments(data, chain=ledger_config.chain, verifier=signer.verifier)
    assert report.ok, report.problems
    admitted = [r.record.entry.admission_uid for r in report.records
                if isinstance(r.record.entry, AdmissionEntry)]
    assert sorted(admitted) == sorted([f"uid-{i}" for i in range(40)] +
                                      [f"uid-g{i}" for i in range(40)])
    assert report.checkpoints_verified >= len(segments) - 1
    assert [r.seq for r in report.records] == list(range(report.size))
    last = max(receipts, key=lambda r: r.seq)
    assert report.heads[last.seq] == last.head
    # The newest signed head is kept beside the key.
    await ledger.close()
    anchor = await read_anchor(kube_api, ledger_config, ledger_config.chain)
    assert anchor is not None and anchor.segment == segments[-1].number
    assert anchor.checkpoint.size == report.size and anchor.checkpoint.head == report.head


async def test_a_retried_admission_is_recorded_once(
        kube_api: KubeApi, ledger: Ledger, ledger_config: LedgerConfig) -> None:
    first = await ledger.append(admission_entry("same-uid"))
    again = await ledger.append(admission_entry("same-uid"))
    both = await asyncio.gather(ledger.append(admission_entry("twice")),
                                ledger.append(admission_entry("twice")))
    assert not first.duplicate and again.duplicate and again.seq == first.seq
    assert both[0].seq == both[1].seq
    # A second writer that never saw the first append still finds it in the segment.
    other = await new_ledger(kube_api, ledger_config)
    await other.start()
    try:
        third = await other.append(admission_entry("same-uid"))
    finally:
        await other.close()
    assert third.duplicate and third.seq == first.seq
    data = await load_chain(
        kube_api, ledger_config.namespace, ledger_config.chain,
        key_namespace=ledger_config.checkpoint_key_namespace)
    report = verify_segments(data, chain=ledger_config.chain)
    # Two admissions and the seal of the first write.
    assert report.ok and report.size == 3


async def test_dry_run_never_reaches_the_ledger(
        kube_api: KubeApi, ledger_config: LedgerConfig) -> None:
    from controller.ledger.entries import build_admission_entry
    from controller.ledger.errors import DryRunNotRecorded
    from tests.ledger.helpers import CONFIG, deployment, review

    writer = await new_ledger(kube_api, ledger_config)
    await writer.start()
    try:
        with pytest.raises(DryRunNotRecorded):
            await writer.append(build_admission_entry(
                review(deployment("web"), dry_run=True), CONFIG))
    finally:
        await writer.close()
    assert await list_segments(kube_api, ledger_config.namespace, ledger_config.chain) == []


async def test_unwritable_ledger_fails_the_append_at_the_deadline(
        kube_api: KubeApi, ledger: Ledger) -> None:
    await ledger.append(admission_entry("before"))
    dead = KubeApi(Credentials(server="https://127.0.0.1:9"), timeout=1)
    ledger.api = dead
    started = time.monotonic()
    try:
        with pytest.raises(LedgerDeadlineExceeded):
            await ledger.append(admission_entry("lost"), deadline=time.monotonic() + 0.5)
    finally:
        await dead.close()
        ledger.api = kube_api
    assert time.monotonic() - started < 1.5
    # The ledger recovers once the API server answers again.
    receipt = await ledger.append(admission_entry("after"))
    assert receipt.seq >= 1


async def test_checkpoint_is_logged_and_published(
        kube_api: KubeApi, ledger: Ledger, ledger_config: LedgerConfig,
        signer: CheckpointSigner) -> None:
    for i in range(3):
        await ledger.append(admission_entry(f"c-{i}"))
    cp = await ledger.checkpoint()
    # Three writes (an admission, then a seal and an admission twice); the checkpoint's own
    # write starts with a seal too, so it covers six entries.
    assert cp is not None and cp.size == 6
    cmap = await kube_api.request("GET", configmaps_path(
        ledger_config.namespace, checkpoint_map_name(ledger_config.chain)))
    assert cmap["data"]["latest"] == cp.model_dump_json()
    assert signer.verifier.public_pem().decode() == cmap["data"]["public-key"]
    # The key lives in a Secret outside the ledger namespace and loads back identically.
    again = await load_signer(kube_api, ledger_config)
    assert again.verifier.key_id == signer.verifier.key_id


async def test_a_writer_refuses_a_recreated_tail(
        kube_api: KubeApi, ledger: Ledger, ledger_config: LedgerConfig) -> None:
    from controller.ledger.errors import LedgerUnavailable

    await ledger.append(admission_entry("one"))
    await ledger.append(admission_entry("two"))
    path = configmaps_path(ledger_config.namespace, f"{ledger_config.chain}-00000001")
    original = await kube_api.request("GET", path)
    await kube_api.request("DELETE", path)
    await kube_api.request("POST", configmaps_path(ledger_config.namespace), body={
        "apiVersion": "v1", "kind": "ConfigMap", "data": original["data"], "immutable": True,
        "metadata": {"name": original["metadata"]["name"],
                     "labels": original["metadata"]["labels"]}})
    with pytest.raises(LedgerUnavailable, match="deleted and recreated"):
        await ledger.append(admission_entry("three"))


async def test_a_dead_api_server_neither_spins_the_writer_nor_holds_up_close(
        kube_api: KubeApi, ledger_config: LedgerConfig) -> None:
    writer = await new_ledger(kube_api, ledger_config)
    await writer.start()
    await writer.append(admission_entry("before"))
    dead = KubeApi(Credentials(server="https://127.0.0.1:9"), timeout=1)
    writer.api = dead
    try:
        with pytest.raises(LedgerDeadlineExceeded):
            await writer.append(admission_entry("lost"), deadline=time.monotonic() + 0.5)
        # Past the deadline the batch is given up: no more attempts against the dead server.
        await asyncio.sleep(0.6)
        retries = writer.stats.retries
        assert 1 <= retries < 20, "retried at the conflict pace, or not at all"
        await asyncio.sleep(0.5)
        assert writer.stats.retries == retries
        # An entry in flight at shutdown fails LedgerClosed, and close() does not wait for it.
        pending = asyncio.create_task(writer.append(admission_entry("late"),
                                                    deadline=time.monotonic() + 30))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await writer.close(grace=1.0)
        assert time.monotonic() - started < 2.0
        with pytest.raises(LedgerClosed):
            await pending
    finally:
        await dead.close()


async def _forge_next_segment(api: KubeApi, config: LedgerConfig, *,
                              key: CheckpointSigner | None) -> None:
    """What a writer of the ledger namespace without the key can do: append a segment chained
    correctly with plain SHA-256 (and sealed by hand), signed with their own key or not."""
    segments = await list_segments(api, config.namespace, config.chain)
    tail = segments[-1]
    last = Record.model_validate_json(tail.entries()[-1][2])
    head = next_head(bytes.fromhex(last.prev), leaf_hash(tail.entries()[-1][2].encode()))
    seq = last.seq + 1
    seal = SealEntry(segment=tail.number, segment_uid=tail.uid, entries=len(tail.entries()))
    data: dict[str, str] = {}
    for entry in (seal, admission_entry("planted")):
        raw = record_bytes(Record(seq=seq, prev=head.hex(), entry=entry))
        data[entry_key(seq)] = raw.decode()
        head, seq = next_head(head, leaf_hash(raw)), seq + 1
    if key is not None:
        data[HEAD_KEY] = key.sign(chain=config.chain, size=seq, head=head).model_dump_json()
    await api.request("POST", configmaps_path(config.namespace), body={
        "apiVersion": "v1", "kind": "ConfigMap", "immutable": True, "data": data,
        "metadata": {"name": segment_name(config.chain, tail.number + 1),
                     "labels": segment_labels(config.chain, sealed=True)}})


@pytest.mark.parametrize("forger", ["unsigned", "foreign-key"])
async def test_a_forged_append_is_never_extended(
        kube_api: KubeApi, ledger_config: LedgerConfig, forger: str) -> None:
    from controller.ledger.errors import LedgerCorrupt, LedgerUnavailable

    refused: list[str] = []
    writer = await new_ledger(kube_api, ledger_config, on_corrupt=refused.append)
    await writer.start()
    try:
        await writer.append(admission_entry("genuine"))
        await _forge_next_segment(kube_api, ledger_config, key=None if forger == "unsigned"
                                  else CheckpointSigner.generate())
        # The writer's next create collides with the forgery, reads it, and refuses it: the
        # admission is denied, with a log line, the metric and (through on_corrupt) an Event.
        with pytest.raises(LedgerUnavailable, match=r"signed|not by this ledger.s key"):
            await writer.append(admission_entry("next"))
        assert writer.stats.corrupt_tails >= 1 and refused
    finally:
        await writer.close()
    # A writer starting afresh refuses it too (the signed head beside the key is older, and
    # the forged segment after it does not verify).
    again = await new_ledger(kube_api, ledger_config)
    with pytest.raises(LedgerCorrupt):
        await again.start()
    await again.close()
    data = await load_chain(kube_api, ledger_config.namespace, ledger_config.chain,
                            key_namespace=ledger_config.checkpoint_key_namespace)
    report = verify_segments(data, chain=ledger_config.chain)
    assert [p.kind for p in report.problems][:1] == [TamperKind.UNSIGNED_SEGMENT]


@pytest.mark.parametrize("also_checkpoints", [False, True])
async def test_a_cut_is_refused_until_a_recorded_recovery(
        kube_api: KubeApi, control_plane: LocalControlPlane, ledger_config: LedgerConfig,
        also_checkpoints: bool) -> None:
    from controller.ledger.errors import LedgerCorrupt, LedgerUnavailable
    from controller.ledger.models import RecoveredEntry
    from tests.ledger.helpers import run_cli

    writer = await new_ledger(kube_api, ledger_config)
    await writer.start()
    for i in range(3):
        await writer.append(admission_entry(f"cut-{i}"))
    await writer.checkpoint()
    newest = await list_segments(kube_api, ledger_config.namespace, ledger_config.chain)
    await kube_api.request("DELETE", configmaps_path(ledger_config.namespace,
                                                     newest[-1].name))
    if also_checkpoints:
        await kube_api.request("DELETE", configmaps_path(
            ledger_config.namespace, checkpoint_map_name(ledger_config.chain)))
    try:
        # The running writer checks its tail before extending it.
        with pytest.raises(LedgerUnavailable, match="disappeared"):
            await writer.append(admission_entry("after-cut"))
    finally:
        await writer.close()
    # A restarted writer does not start a new chain: the signed head beside the key says the
    # chain was longer.
    restarted = await new_ledger(kube_api, ledger_config)
    with pytest.raises(LedgerCorrupt, match=r"cut|gone"):
        await restarted.start()
    await restarted.close()
    code, _out, err = await asyncio.to_thread(run_cli, str(control_plane.kubeconfig),
                                              ledger_config, "verify")
    assert code == 16, err  # Truncated, from a plain verify
    code, out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger_config, "recover", "--reason",
        "INC-42: restored from backup")
    assert code == 0, err
    assert "recorded: recovery by admin" in out
    # Recovered on the record: writers start again, and the chain verifies with the recovery
    # entry naming who, why, and what was lost.
    resumed = await new_ledger(kube_api, ledger_config)
    await resumed.start()
    try:
        await resumed.append(admission_entry("after-recovery"))
    finally:
        await resumed.close()
    data = await load_chain(kube_api, ledger_config.namespace, ledger_config.chain,
                            key_namespace=ledger_config.checkpoint_key_namespace)
    report = verify_segments(data, chain=ledger_config.chain)
    assert report.ok, report.problems
    [recovery] = [r.record.entry for r in report.records
                  if isinstance(r.record.entry, RecoveredEntry)]
    assert recovery.operator == "admin" and recovery.reason == "INC-42: restored from backup"
    assert recovery.expected_size is not None and recovery.expected_size > recovery.found_size
    assert any("Truncated" in p for p in recovery.problems)
    # A second recover finds nothing to do.
    code, out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger_config, "recover", "--reason", "again")
    assert code == 0 and "nothing to recover" in out, err


async def test_a_cut_inside_the_lag_of_the_signed_head_is_still_never_built_upon(
        kube_api: KubeApi, control_plane: LocalControlPlane,
        ledger_config: LedgerConfig) -> None:
    from controller.ledger.errors import LedgerUnavailable
    from tests.ledger.helpers import run_cli

    # The copy beside the key is written at most every 30 s here: it still names the first
    # segment when the newest two are deleted.
    config = ledger_config.model_copy(update={"signed_head_interval_seconds": 30.0})
    writer = await new_ledger(kube_api, config)
    await writer.start()
    try:
        for i in range(3):
            await writer.append(admission_entry(f"lag-{i}"))
        for seg in (await list_segments(kube_api, config.namespace, config.chain))[1:]:
            await kube_api.request("DELETE", configmaps_path(config.namespace, seg.name))
        with pytest.raises(LedgerUnavailable, match="disappeared"):
            await writer.append(admission_entry("after-cut"))
        # Rediscovering finds a valid, shorter chain: refused as the cut it is (the signed head
        # beside the key was brought up to date; were that write lost, the writer still knows
        # the longer chain it saw).
        with pytest.raises(LedgerUnavailable, match="cut"):
            await writer.append(admission_entry("again"))
    finally:
        await writer.close()
    # On detecting the cut the writer brought the signed head beside the key up to date, so a
    # plain verify (and `recover`) see it too.
    code, _out, err = await asyncio.to_thread(run_cli, str(control_plane.kubeconfig), config,
                                              "verify")
    assert code == 16, err


async def test_a_writer_that_cannot_record_the_cut_still_refuses_the_shorter_chain(
        kube_api: KubeApi, ledger_config: LedgerConfig,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.kube import KubeApiError
    from controller.ledger import store
    from controller.ledger.errors import LedgerUnavailable

    config = ledger_config.model_copy(update={"signed_head_interval_seconds": 30.0})
    writer = await new_ledger(kube_api, config)
    await writer.start()
    try:
        for i in range(3):
            await writer.append(admission_entry(f"seen-{i}"))

        async def unwritable(*_args: object, **_kwargs: object) -> None:
            raise KubeApiError(503, "ServiceUnavailable", "the key namespace is unreachable")

        monkeypatch.setattr(store, "write_anchor", unwritable)
        for seg in (await list_segments(kube_api, config.namespace, config.chain))[1:]:
            await kube_api.request("DELETE", configmaps_path(config.namespace, seg.name))
        with pytest.raises(LedgerUnavailable, match="disappeared"):
            await writer.append(admission_entry("after-cut"))
        # The copy beside the key still names segment 0, which exists: only the writer's memory
        # of the longer chain refuses it.
        with pytest.raises(LedgerUnavailable, match="this writer saw"):
            await writer.append(admission_entry("again"))
    finally:
        await writer.close()
