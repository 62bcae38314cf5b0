"""Writer lanes through real Leases: claiming, taking over a dead holder's lane, fencing, and
reading every lane back as one ledger."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from controller.dev.controlplane import LocalControlPlane
from controller.kube import KubeApi
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import LedgerUnavailable, TamperKind
from controller.ledger.lanes import LaneClaim, lane_chain, lane_index
from controller.ledger.segments import configmaps_path, list_segments
from controller.ledger.store import ensure_ledger_namespace
from controller.ledger.verify import load_ledger, verify_ledger
from tests.ledger.helpers import admission_entry, new_ledger, run_cli


def test_lane_names() -> None:
    assert lane_chain("audit", 0) == "audit" and lane_chain("audit", 3) == "audit-lane3"
    assert [lane_index("audit", n) for n in ("audit", "audit-lane3", "audit-lane0",
                                             "audit-lane", "other-lane1", "audit-lane3x")] == \
        [0, 3, None, None, None, None]


async def test_replicas_claim_distinct_lanes_and_a_released_one_is_reused(
        kube_api: KubeApi, ledger_config: LedgerConfig) -> None:
    config = ledger_config.model_copy(update={"lanes": 2})
    await ensure_ledger_namespace(kube_api, config)
    a, b = (LaneClaim(kube_api, config, identity=n) for n in ("a", "b"))
    assert (await a.acquire(), await b.acquire()) == (0, 1)
    with pytest.raises(LedgerUnavailable, match="all 2 ledger lanes are held"):
        await LaneClaim(kube_api, config, identity="c").acquire()
    await a.release()
    assert await LaneClaim(kube_api, config, identity="c").acquire() == 0


async def test_an_expired_lane_is_taken_over_and_its_old_holder_fenced(
        kube_api: KubeApi, ledger_config: LedgerConfig) -> None:
    await ensure_ledger_namespace(kube_api, ledger_config)
    # The old holder's clock is a minute behind: its Lease looks long expired to everyone.
    stale = LaneClaim(kube_api, ledger_config, identity="old",
                      clock=lambda: datetime.now(UTC) - timedelta(seconds=60))
    assert await stale.acquire() == 0
    fresh = LaneClaim(kube_api, ledger_config, identity="new")
    assert await fresh.acquire() == 0
    lease = await kube_api.request(
        "GET", f"/apis/coordination.k8s.io/v1/namespaces/{ledger_config.namespace}/leases/"
        f"{ledger_config.chain}-lane-0")
    assert lease["spec"]["holderIdentity"] == "new" and lease["spec"]["leaseTransitions"] == 1
    assert await stale.renew() is False
    # `keep` tells the writer it lost the lane; appends then fail until a lane is held again.
    writer = await new_ledger(kube_api, ledger_config)
    await writer.start()
    try:
        writer.fence("the ledger lane audit is no longer held by this replica")
        with pytest.raises(LedgerUnavailable, match="no longer held"):
            await writer.append(admission_entry("fenced"))
        writer.switch(lane_chain(ledger_config.chain, 1))
        receipt = await writer.append(admission_entry("after"))
        assert receipt.chain == "audit-lane1"
    finally:
        await writer.close()


async def test_every_lane_reads_as_one_ledger_and_a_deleted_lane_is_a_cut(
        kube_api: KubeApi, control_plane: LocalControlPlane,
        ledger_config: LedgerConfig) -> None:
    writers = [await new_ledger(kube_api, ledger_config, chain=lane_chain(ledger_config.chain, i))
               for i in range(3)]
    for writer in writers:
        await writer.start()
    try:
        for i, writer in enumerate(writers):
            await writer.append(admission_entry(f"lane-{i}", name="web"))
    finally:
        for writer in writers:
            await writer.close()
    lanes = await load_ledger(kube_api, ledger_config.namespace, ledger_config.chain,
                              key_namespace=ledger_config.checkpoint_key_namespace)
    assert list(lanes) == ["audit", "audit-lane1", "audit-lane2"]
    report = verify_ledger(lanes, chain=ledger_config.chain)
    assert report.ok, report.problems
    code, out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger_config, "history", "deploy/web",
        "-o", "json")
    assert code == 0, err
    assert sorted((v["chain"], v["entry"]["admission_uid"]) for v in json.loads(out)) == [
        ("audit", "lane-0"), ("audit-lane1", "lane-1"), ("audit-lane2", "lane-2")]
    code, out, err = await asyncio.to_thread(run_cli, str(control_plane.kubeconfig),
                                              ledger_config, "verify")
    assert code == 0 and "in 3 writer lanes" in out, err
    # A whole lane deleted is still looked for: the signed heads beside the key name it.
    for seg in await list_segments(kube_api, ledger_config.namespace, "audit-lane2"):
        await kube_api.request("DELETE", configmaps_path(ledger_config.namespace, seg.name))
    code, _out, err = await asyncio.to_thread(run_cli, str(control_plane.kubeconfig),
                                              ledger_config, "verify")
    assert code == 16, err
    assert f"[{TamperKind.TRUNCATED}] chain audit-lane2:" in err
