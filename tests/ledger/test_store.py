"""Appends through the real kube-apiserver: segments, seals, idempotency, deadlines."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from controller.kube import Credentials, KubeApi
from controller.ledger.chain import CheckpointSigner
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import LedgerClosed, LedgerDeadlineExceeded
from controller.ledger.keys import load_signer
from controller.ledger.models import AdmissionEntry, Record, SealEntry
from controller.ledger.segments import checkpoint_map_name, configmaps_path, list_segments
from controller.ledger.store import Ledger
from controller.ledger.verify import load_chain, verify_segments
from tests.ledger.helpers import admission_entry


async def test_appends_fill_seal_and_verify(
        kube_api: KubeApi, ledger: Ledger, ledger_config: LedgerConfig,
        signer: CheckpointSigner) -> None:
    receipts = [await ledger.append(admission_entry(f"uid-{i}")) for i in range(40)]
    receipts += await asyncio.gather(*(ledger.append(admission_entry(f"uid-g{i}"))
                                       for i in range(40)))
    # Sequential appends get increasing numbers (seal entries take some in between).
    seqs = [r.seq for r in receipts[:40]]
    assert seqs == sorted(set(seqs)) and seqs[0] == 0
    segments = await list_segments(kube_api, ledger_config.namespace, ledger_config.chain)
    assert len(segments) >= 3, "16 KiB segments must have been sealed"
    assert all(s.sealed for s in segments[:-1]) and not segments[-1].sealed
    assert all(s.size <= ledger_config.segment_max_bytes for s in segments)
    for prev, seg in itertools.pairwise(segments):
        first = Record.model_validate_json(seg.entries()[0][2])
        assert isinstance(first.entry, SealEntry)
        assert first.entry.segment_uid == prev.uid
        assert first.entry.checkpoint is not None
        assert signer.verifier.verify(first.entry.checkpoint)
    data = await load_chain(kube_api, ledger_config.namespace, ledger_config.chain)
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
    # Group commit: 40 concurrent appends did not take 40 writes.
    assert len(ledger.stats.batch_sizes) < 40 + 40


async def test_a_retried_admission_is_recorded_once(
        kube_api: KubeApi, ledger: Ledger, ledger_config: LedgerConfig) -> None:
    first = await ledger.append(admission_entry("same-uid"))
    again = await ledger.append(admission_entry("same-uid"))
    both = await asyncio.gather(ledger.append(admission_entry("twice")),
                                ledger.append(admission_entry("twice")))
    assert not first.duplicate and again.duplicate and again.seq == first.seq
    assert both[0].seq == both[1].seq
    # A second writer that never saw the first append still finds it in the segment.
    other = Ledger(kube_api, ledger_config, periodic_checkpoints=False)
    await other.start()
    try:
        third = await other.append(admission_entry("same-uid"))
    finally:
        await other.close()
    assert third.duplicate and third.seq == first.seq
    data = await load_chain(kube_api, ledger_config.namespace, ledger_config.chain)
    report = verify_segments(data, chain=ledger_config.chain)
    assert report.ok and report.size == 2


async def test_dry_run_never_reaches_the_ledger(
        kube_api: KubeApi, ledger_config: LedgerConfig) -> None:
    from controller.ledger.entries import build_admission_entry
    from controller.ledger.errors import DryRunNotRecorded
    from tests.ledger.helpers import CONFIG, deployment, review

    writer = Ledger(kube_api, ledger_config, periodic_checkpoints=False)
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
    assert cp is not None and cp.size == 3
    cmap = await kube_api.request("GET", configmaps_path(
        ledger_config.namespace, checkpoint_map_name(ledger_config.chain)))
    assert cmap["data"]["latest"] == cp.model_dump_json()
    assert signer.verifier.public_pem().decode() == cmap["data"]["public-key"]
    # The key lives in a Secret outside the ledger namespace and loads back identically.
    again = await load_signer(kube_api, ledger_config)
    assert again.verifier.key_id == signer.verifier.key_id


async def test_a_writer_refuses_a_recreated_open_segment(
        kube_api: KubeApi, ledger: Ledger, ledger_config: LedgerConfig) -> None:
    from controller.ledger.errors import LedgerUnavailable

    await ledger.append(admission_entry("one"))
    await ledger.append(admission_entry("two"))
    path = configmaps_path(ledger_config.namespace, f"{ledger_config.chain}-00000000")
    original = await kube_api.request("GET", path)
    await kube_api.request("DELETE", path)
    await kube_api.request("POST", configmaps_path(ledger_config.namespace), body={
        "apiVersion": "v1", "kind": "ConfigMap", "data": original["data"],
        "metadata": {"name": original["metadata"]["name"],
                     "labels": original["metadata"]["labels"]}})
    with pytest.raises(LedgerUnavailable, match="deleted and recreated"):
        await ledger.append(admission_entry("three"))


async def test_a_dead_api_server_neither_spins_the_writer_nor_holds_up_close(
        kube_api: KubeApi, ledger_config: LedgerConfig) -> None:
    writer = Ledger(kube_api, ledger_config, periodic_checkpoints=False)
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
