"""The long-lived follower of the ledger against a real API server: incremental, chunked,
verified, and bounded per workload."""

from __future__ import annotations

import pytest

from controller.kube import KubeApi
from controller.ledger import follow
from controller.ledger.chain import CheckpointSigner
from controller.ledger.config import LedgerConfig
from controller.ledger.entries import build_outcome_entry
from controller.ledger.errors import TamperKind
from controller.ledger.follow import LedgerFollower
from controller.ledger.lanes import lane_chain
from controller.ledger.query import admissions
from controller.ledger.verify import load_ledger, verify_ledger
from tests.ledger.helpers import admission_entry, deployment, new_ledger
from tests.ledger.test_store import _forge_next_segment


def _summary(views: object) -> list[tuple[str, str, int, str]]:
    return sorted((v.entry.name, v.chain, v.seq, v.status) for v in views)  # type: ignore[attr-defined]


async def test_the_follower_matches_a_full_read_and_takes_in_only_what_is_new(
        kube_api: KubeApi, ledger_config: LedgerConfig, signer: CheckpointSigner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow, "CHUNK_SEGMENTS", 3)  # several chunks, each anchored on the last
    writers = [await new_ledger(kube_api, ledger_config, chain=lane_chain(ledger_config.chain, i))
               for i in range(2)]
    for writer in writers:
        await writer.start()
    follower = LedgerFollower(kube_api, ledger_config, verifier=signer.verifier)
    try:
        for i in range(5):
            receipt = await writers[i % 2].append(admission_entry(f"f-{i}", name=f"app-{i}"))
            await writers[i % 2].append(build_outcome_entry(
                "persisted", ref_seq=receipt.seq, ref_leaf=receipt.leaf,
                body=deployment(f"app-{i}"), namespace="default", name=f"app-{i}"))
        first = await follower.refresh()
        assert first.ok, first.problems
        read = follower.index.segments
        assert read >= 10
        for i in range(5, 8):
            await writers[i % 2].append(admission_entry(f"f-{i}", name=f"app-{i}"))
        second = await follower.refresh()
        assert second.ok, second.problems
        assert second.size < first.size, "only what was appended since is read"
    finally:
        for writer in writers:
            await writer.close()
    full = verify_ledger(await load_ledger(kube_api, ledger_config.namespace,
                                           ledger_config.chain), chain=ledger_config.chain,
                         verifier=signer.verifier)
    followed = [v for views in follower.index.by_name.values() for v in views]
    assert _summary(followed) == _summary(admissions(full.records))
    assert {v.status for v in followed if v.entry.name == "app-0"} == {"persisted"}


async def test_the_follower_keeps_the_newest_admissions_of_each_workload_only(
        kube_api: KubeApi, ledger: object, ledger_config: LedgerConfig,
        signer: CheckpointSigner) -> None:
    from controller.ledger.store import Ledger

    assert isinstance(ledger, Ledger)
    for i in range(10):
        await ledger.append(admission_entry(f"same-{i}", name="web"))
    follower = LedgerFollower(kube_api, ledger_config, verifier=signer.verifier)
    assert (await follower.refresh()).ok
    [views] = follower.index.by_name.values()
    assert [v.entry.admission_uid for v in views] == [
        f"same-{i}" for i in range(10 - follow.KEEP_PER_WORKLOAD, 10)]


async def test_a_forged_segment_is_not_taken_in(
        kube_api: KubeApi, ledger: object, ledger_config: LedgerConfig,
        signer: CheckpointSigner) -> None:
    from controller.ledger.store import Ledger

    assert isinstance(ledger, Ledger)
    await ledger.append(admission_entry("genuine", name="web"))
    follower = LedgerFollower(kube_api, ledger_config, verifier=signer.verifier)
    assert (await follower.refresh()).ok
    await _forge_next_segment(kube_api, ledger_config, key=None)
    report = await follower.refresh()
    # Its hand-made seal carries no signed head, and it is not signed itself.
    assert {TamperKind.CHECKPOINT_MISMATCH, TamperKind.UNSIGNED_SEGMENT} <= {
        p.kind for p in report.problems}
    names = [v.entry.admission_uid for views in follower.index.by_name.values() for v in views]
    assert names == ["genuine"], "the planted admission was not indexed"
