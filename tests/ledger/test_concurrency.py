"""Several writers at once, injected conflicts, and writers killed mid-append."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from controller.dev.controlplane import LocalControlPlane
from controller.kube import KubeApi, KubeApiError
from controller.ledger.config import LedgerConfig
from controller.ledger.lanes import LaneClaim
from controller.ledger.models import AdmissionEntry, AppendReceipt
from controller.ledger.query import admissions
from controller.ledger.store import Ledger, ensure_ledger_namespace
from controller.ledger.verify import VerifyReport, load_ledger, verify_ledger
from tests.fixtures.cluster import repo_root
from tests.ledger.helpers import admission_entry, new_ledger


class FlakyKubeApi(KubeApi):
    """Injects 409s on segment creates: some before the write is sent, some after it succeeded
    (the response is lost, as when a connection drops), which is the hard case for idempotency."""

    def __init__(self, *args: Any, before: float, after: float, seed: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.before, self.after = before, after
        self.rng = random.Random(seed)
        self.injected = Counter[str]()

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        if method != "POST" or not path.endswith("/configmaps") or "/ledger-" not in path:
            return await super().request(method, path, **kw)
        roll = self.rng.random()
        if roll < self.before:
            self.injected["before"] += 1
            raise KubeApiError(409, "Conflict", "injected before the write")
        result = await super().request(method, path, **kw)
        if roll < self.before + self.after:
            self.injected["after"] += 1
            raise KubeApiError(409, "Conflict", "injected after the write")
        return result


async def chain_report(api: KubeApi, config: LedgerConfig) -> VerifyReport:
    """Every writer lane, verified as one ledger."""
    lanes = await load_ledger(api, config.namespace, config.chain,
                              key_namespace=config.checkpoint_key_namespace)
    return verify_ledger(lanes, chain=config.chain, max_entry_bytes=config.max_entry_bytes)


def contiguous(report: VerifyReport) -> bool:
    """Each lane's sequence numbers run 0..n-1 without a gap."""
    by_chain: dict[str, list[int]] = {}
    for r in report.records:
        by_chain.setdefault(r.chain, []).append(r.seq)
    return all(seqs == list(range(len(seqs))) for seqs in by_chain.values())


def admitted_uids(report: VerifyReport) -> Counter[str]:
    return Counter(r.record.entry.admission_uid for r in report.records
                   if isinstance(r.record.entry, AdmissionEntry))


async def test_three_replicas_500_admissions_with_injected_conflicts(
        control_plane: LocalControlPlane, kube_api: KubeApi) -> None:
    from tests.ledger.helpers import unique_config

    config = unique_config(segment_max_bytes=32 * 1024)
    apis = [FlakyKubeApi(KubeApi.from_kubeconfig(str(control_plane.kubeconfig))._creds,
                         before=0.15, after=0.1, seed=i) for i in range(3)]
    await ensure_ledger_namespace(kube_api, config)
    writers = []
    for i, api in enumerate(apis):
        claim = LaneClaim(kube_api, config, identity=f"replica-{i}")
        await claim.acquire()
        writers.append(await new_ledger(api, config, chain=claim.chain))
    assert len({w.chain for w in writers}) == 3, "each replica writes its own lane"
    for writer in writers:
        await writer.start()
    rng = random.Random(7)
    uids = [f"adm-{i}" for i in range(500)]
    gate = asyncio.Semaphore(24)

    async def admit(writer: Ledger, uid: str) -> AppendReceipt:
        async with gate:
            return await writer.append(admission_entry(uid), deadline=time.monotonic() + 60)

    jobs = []
    retried = set()
    for uid in uids:
        # 10% are sent again, to the same replica (the API server retrying) or to another.
        again = rng.random() < 0.1
        chosen = rng.sample(writers, 2) if again and rng.random() < 0.5 else \
            [rng.choice(writers)] * (2 if again else 1)
        if len(set(map(id, chosen))) == 2:
            retried.add(uid)
        jobs += [admit(w, uid) for w in chosen]
    try:
        receipts = await asyncio.gather(*jobs)
    finally:
        for writer in writers:
            await writer.close()
        for api in apis:
            await api.close()
    assert sum(a.injected["before"] for a in apis) >= 5
    assert sum(a.injected["after"] for a in apis) >= 3
    report = await chain_report(kube_api, config)
    assert report.ok, report.problems[:3]
    assert contiguous(report)
    counts = admitted_uids(report)
    assert set(counts) == set(uids)
    # Once per lane: a uid sent twice to one replica is one record; sent to two replicas, it
    # is one record in each lane, and readers show it as one admission.
    assert all(counts[u] == (2 if u in retried else 1) for u in uids)
    assert len(admissions(report.records)) == len(uids)
    # Every receipt a caller got points at the entry that holds its uid.
    by_ref = {(r.chain, r.seq): r for r in report.records}
    for receipt in receipts:
        assert by_ref[(receipt.chain, receipt.seq)].leaf == receipt.leaf


def spawn_writer(control_plane: LocalControlPlane, config: LedgerConfig,
                 prefix: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.ledger.writer_proc", str(control_plane.kubeconfig),
         config.model_dump_json(), prefix],
        cwd=repo_root(), stdout=subprocess.PIPE, text=True, env={**os.environ})


async def read_oks(proc: subprocess.Popen[str], count: int, into: list[str]) -> None:
    assert proc.stdout is not None
    stream = proc.stdout
    while len(into) < count:
        line = await asyncio.to_thread(stream.readline)
        if not line:
            break
        into.append(line.split()[1])


async def test_a_replica_killed_mid_append_loses_nothing_and_its_lane_is_taken_over(
        control_plane: LocalControlPlane, kube_api: KubeApi) -> None:
    from tests.ledger.helpers import unique_config

    config = unique_config(segment_max_bytes=16 * 1024, lane_lease_seconds=3.0)
    a, b = spawn_writer(control_plane, config, "a"), spawn_writer(control_plane, config, "b")
    oks_a: list[str] = []
    oks_b: list[str] = []
    try:
        await asyncio.wait_for(asyncio.gather(read_oks(a, 60, oks_a), read_oks(b, 60, oks_b)),
                               timeout=60)
        a.send_signal(signal.SIGKILL)  # mid-append: 8 appends are always in flight
        await read_oks(b, 120, oks_b)
        b.send_signal(signal.SIGKILL)
    finally:
        for proc in (a, b):
            proc.kill()
            proc.wait()
    # Whatever the dead writers printed before dying was acknowledged, hence must be recorded.
    assert a.stdout is not None and b.stdout is not None
    oks_a += [line.split()[1] for line in a.stdout.read().splitlines() if line.startswith("ok")]
    oks_b += [line.split()[1] for line in b.stdout.read().splitlines() if line.startswith("ok")]
    before = await chain_report(kube_api, config)
    lanes = {r.chain for r in before.records}
    assert len(lanes) == 2
    # Once their Leases expire, a new replica takes a dead lane over and continues its chain.
    await asyncio.sleep(config.lane_lease_seconds + 0.5)
    claim = LaneClaim(kube_api, config, identity="survivor")
    await claim.acquire()
    assert claim.chain in lanes
    survivor = await new_ledger(kube_api, config, chain=claim.chain)
    await survivor.start()
    try:
        for i in range(20):
            await survivor.append(admission_entry(f"c-{i}"))
    finally:
        await survivor.close()
    report = await chain_report(kube_api, config)
    assert report.ok, report.problems[:3]
    assert contiguous(report), "no gap, no fork"
    assert {r.chain for r in report.records} == lanes
    counts = admitted_uids(report)
    assert max(counts.values()) == 1, "no duplicate"
    missing = [uid for uid in oks_a + oks_b if uid not in counts]
    assert not missing, f"acknowledged but not recorded: {missing[:5]}"
    assert all(f"c-{i}" in counts for i in range(20))
    # In-flight admissions of the killed writers were never acknowledged (the API server would
    # have denied them); some may be recorded anyway, and reconciliation marks them
    # never-persisted. They are never recorded twice.
    assert {u for u in counts if u.startswith("a-")} >= set(oks_a)
