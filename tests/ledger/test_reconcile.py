"""Reconciliation and the rollback target against real Deployments (kube-controller-manager runs
in the fixture, so ReplicaSets, rollout history and `kubectl rollout undo` are real)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.dev.controlplane import LocalControlPlane
from controller.kube import KubeApi, KubeApiError
from controller.ledger.config import LedgerConfig
from controller.ledger.entries import build_admission_entry
from controller.ledger.models import AppendReceipt
from controller.ledger.reconcile import Reconciler
from controller.ledger.store import Ledger
from tests.fixtures.cluster import kubectl
from tests.ledger.helpers import CONFIG, deployment, ensure_namespace, review, run_cli


def deploy_path(namespace: str, name: str = "") -> str:
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    return f"{base}/{name}" if name else base


async def run_kubectl(cp: LocalControlPlane, *args: str, stdin: str | None = None) -> str:
    result = await asyncio.to_thread(kubectl, cp, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def admit(cp: LocalControlPlane, ledger: Ledger, seen_by_webhook: dict[str, Any],
                operation: str) -> AppendReceipt:
    """Record what our webhook would have admitted: the object as the API server hands it to
    validating webhooks (defaulted; obtained with a server-side dry run)."""
    if operation == "CREATE":
        # A dry-run CREATE gets a throwaway uid; the real CREATE's webhook sees the stored one.
        seen_by_webhook["metadata"].pop("uid", None)
    request = review(seen_by_webhook, uid=str(uuid.uuid4()), operation=operation)
    return await ledger.append(build_admission_entry(request, CONFIG))


async def apply(cp: LocalControlPlane, ledger: Ledger, manifest: dict[str, Any],
                operation: str) -> AppendReceipt:
    text = json.dumps(manifest)
    seen = json.loads(await run_kubectl(cp, "apply", "--dry-run=server", "-o", "json", "-f", "-",
                                        stdin=text))
    receipt = await admit(cp, ledger, seen, operation)
    await run_kubectl(cp, "apply", "-f", "-", stdin=text)
    return receipt


async def settled(api: KubeApi, namespace: str, name: str, *,
                  reason: str = "NewReplicaSetAvailable") -> dict[str, Any]:
    """The Deployment once the deployment controller has processed its newest generation."""
    for _ in range(300):
        body: dict[str, Any] = await api.request("GET", deploy_path(namespace, name))
        status = body.get("status") or {}
        reasons = [c.get("reason") for c in status.get("conditions") or []
                   if c.get("type") == "Progressing"]
        if status.get("observedGeneration") == body["metadata"]["generation"] and \
                reason in reasons:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"deploy/{name} never reached {reason}: {body.get('status')}")


async def test_rollback_target_after_a_real_rollout_undo(
        control_plane: LocalControlPlane, kube_api: KubeApi, ledger: Ledger,
        ledger_config: LedgerConfig) -> None:
    ns = f"rb-{uuid.uuid4().hex[:6]}"
    await ensure_namespace(kube_api, ns)
    reconciler = Reconciler(ledger, sync_interval=0)

    v1 = await apply(control_plane, ledger, deployment("web", namespace=ns, env="v1",
                                                       build="b-1"), "CREATE")
    assert await reconciler.observe(await settled(kube_api, ns, "web")) == [
        "persisted", "rollout-available"]
    v2 = await apply(control_plane, ledger, deployment("web", namespace=ns, env="v2",
                                                       build="b-2"), "UPDATE")
    assert await reconciler.observe(await settled(kube_api, ns, "web")) == [
        "persisted", "rollout-available"]

    # The undo is an UPDATE our webhook admits like any other. `kubectl rollout undo
    # --dry-run=server` prints the object unchanged, so the admitted object is taken from the
    # result: with no mutating webhook, what the validating webhook saw is what was stored.
    await run_kubectl(control_plane, "rollout", "undo", "deploy/web", "-n", ns)
    after_undo = await settled(kube_api, ns, "web")
    undo = await admit(control_plane, ledger, json.loads(json.dumps(after_undo)), "UPDATE")
    assert await reconciler.observe(after_undo) == ["persisted", "rollout-available"]

    code, out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger_config, "history", "deploy/web",
        "-n", ns, "-o", "json")
    assert code == 0, err
    history = json.loads(out)
    assert [h["seq"] for h in history] == [v1.seq, v2.seq, undo.seq]
    assert all(h["status"] == "persisted,available" for h in history[:2])
    v1_hash, v2_hash, undo_hash = (h["entry"]["template_hash"] for h in history)
    assert undo_hash == v1_hash != v2_hash, "the undo restored v1's template"

    code, out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger_config, "rollback-target", "deploy/web",
        "-n", ns, "-o", "json")
    assert code == 0, err
    target = json.loads(out)
    assert target["seq"] == v2.seq
    assert target["entry"]["provenance"]["build_id"] == "b-2"
    assert target["entry"]["containers"][0]["digest"].startswith("sha256:")

    code, out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger_config, "history", "deploy/web",
        "-n", ns)
    assert code == 0, err
    assert out.splitlines()[0].split() == [
        "SEQ", "TIME", "OP", "USER", "COMMIT", "BUILD", "TEMPLATE", "STATUS"]
    assert len(out.splitlines()) == 4


async def test_an_admission_rejected_after_ours_is_marked_never_persisted(
        control_plane: LocalControlPlane, kube_api: KubeApi, ledger: Ledger,
        ledger_config: LedgerConfig) -> None:
    ns_quota, ns_ok = (f"np-{uuid.uuid4().hex[:6]}" for _ in range(2))
    for ns in (ns_quota, ns_ok):
        await ensure_namespace(kube_api, ns)
    # A quota admits no Deployment at all; the ResourceQuota plugin runs after webhooks.
    await kube_api.request("POST", f"/api/v1/namespaces/{ns_quota}/resourcequotas", body={
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "none"},
        "spec": {"hard": {"count/deployments.apps": "0"}}})
    # No resourcequota controller runs in the test cluster: fill in the status it would write.
    await kube_api.request(
        "PATCH", f"/api/v1/namespaces/{ns_quota}/resourcequotas/none/status",
        body={"status": {"hard": {"count/deployments.apps": "0"},
                         "used": {"count/deployments.apps": "0"}}},
        content_type="application/merge-patch+json")
    reconciler = Reconciler(ledger, sync_interval=0)

    rejected = deployment("blocked", namespace=ns_quota)
    lost = await admit(control_plane, ledger, rejected, "CREATE")
    with pytest.raises(KubeApiError, match="exceeded quota") as denied:
        await kube_api.request("POST", deploy_path(ns_quota), body=rejected)
    assert denied.value.status == 403

    kept = await apply(control_plane, ledger, deployment("fine", namespace=ns_ok), "CREATE")
    body = await kube_api.request("GET", deploy_path(ns_ok, "fine"))
    assert "persisted" in await reconciler.observe(body)

    window = timedelta(seconds=ledger_config.never_persisted_after_seconds)
    assert await reconciler.sweep(datetime.now(UTC)) == [], "nothing is late yet"
    marked = await reconciler.sweep(datetime.now(UTC) + window + timedelta(seconds=1))
    assert marked == [lost.seq]
    assert kept.seq not in marked
    assert await reconciler.sweep(datetime.now(UTC) + 2 * window) == [], "marked once"

    code, out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger_config, "history", "deploy/blocked",
        "-n", ns_quota, "-o", "json")
    assert code == 0, err
    assert json.loads(out)[0]["status"] == "never-persisted"
    code, _out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger_config, "verify")
    assert code == 0, err


async def test_a_rollout_past_its_progress_deadline_is_recorded_failed(
        control_plane: LocalControlPlane, kube_api: KubeApi, ledger: Ledger) -> None:
    ns = f"rf-{uuid.uuid4().hex[:6]}"
    await ensure_namespace(kube_api, ns)
    reconciler = Reconciler(ledger, sync_interval=0)
    # One replica that can never become available: no kubelet runs in the test cluster.
    await apply(control_plane, ledger, deployment("stuck", namespace=ns, replicas=1,
                                                  progress_deadline=1), "CREATE")
    body = await settled(kube_api, ns, "stuck", reason="ProgressDeadlineExceeded")
    assert await reconciler.observe(body) == ["persisted", "rollout-failed"]
    assert await reconciler.observe(body) == [], "recorded once"


async def test_a_stored_object_whose_event_was_missed_is_never_called_never_persisted(
        control_plane: LocalControlPlane, kube_api: KubeApi, ledger: Ledger,
        ledger_config: LedgerConfig) -> None:
    # The reconciler never sees an event for this Deployment (its watch dropped it, say):
    # the sweep must look at the object before it writes "never-persisted".
    ns = f"np-{uuid.uuid4().hex[:6]}"
    await ensure_namespace(kube_api, ns)
    reconciler = Reconciler(ledger, sync_interval=0)
    stored = await apply(control_plane, ledger, deployment("unseen", namespace=ns), "CREATE")
    window = timedelta(seconds=ledger_config.never_persisted_after_seconds)
    assert await reconciler.sweep(datetime.now(UTC) + window + timedelta(seconds=1)) == []
    code, out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger_config, "history", "deploy/unseen",
        "-n", ns, "-o", "json")
    assert code == 0, err
    [view] = json.loads(out)
    # kube-controller-manager may already have marked it Available by the time the sweep
    # looks, and then the sweep rightly records that too.
    statuses = view["status"].split(",")
    assert (view["seq"], statuses[0]) == (stored.seq, "persisted")
    assert set(statuses) <= {"persisted", "available"}


async def test_an_event_seen_before_its_entry_is_looked_at_again(
        control_plane: LocalControlPlane, kube_api: KubeApi, ledger: Ledger,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.ledger import reconcile

    ns = f"np-{uuid.uuid4().hex[:6]}"
    await ensure_namespace(kube_api, ns)
    # The forced re-read of a stored object with no known entry is rate limited; here, always.
    monkeypatch.setattr(reconcile, "MISS_RESYNC_SECONDS", 3600.0)
    reconciler = Reconciler(ledger, sync_interval=3600)
    await reconciler.sync(force=True)
    await apply(control_plane, ledger, deployment("early", namespace=ns), "CREATE")
    body = await kube_api.request("GET", deploy_path(ns, "early"))
    assert await reconciler.observe(body) == []  # the entry is not read yet
    await reconciler.sweep(datetime.now(UTC))  # reads on, and looks at the object again
    await reconciler.close()  # its own look again is still due; not after the ledger closes
    code, out, err = await asyncio.to_thread(
        run_cli, str(control_plane.kubeconfig), ledger.config, "history", "deploy/early",
        "-n", ns, "-o", "json")
    assert code == 0, err
    assert json.loads(out)[0]["status"].startswith("persisted")


async def _history_status(cp: LocalControlPlane, config: LedgerConfig, namespace: str,
                          name: str) -> list[str]:
    code, out, err = await asyncio.to_thread(
        run_cli, str(cp.kubeconfig), config, "history", f"deploy/{name}", "-n", namespace,
        "-o", "json")
    assert code == 0, err
    return [view["status"] for view in json.loads(out)]


async def _until_persisted(cp: LocalControlPlane, config: LedgerConfig, namespace: str,
                           name: str, count: int) -> list[str]:
    """The statuses once the first `count` admissions show persisted (no sweep runs here: only
    the reconciler's own look again can get them there); fails after 15 s."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        statuses = await _history_status(cp, config, namespace, name)
        if len(statuses) >= count and all(s.startswith("persisted") for s in statuses[:count]):
            return statuses
        assert asyncio.get_running_loop().time() < deadline, statuses
        await asyncio.sleep(0.2)


async def _rate_limited(kube_api: KubeApi, ledger: Ledger,
                        monkeypatch: pytest.MonkeyPatch) -> tuple[str, Reconciler]:
    """A new namespace, and a reconciler whose own reads never catch up by themselves (as if
    every event came right after a read): only its look again can find a new entry."""
    from controller.ledger import reconcile

    ns = f"np-{uuid.uuid4().hex[:6]}"
    await ensure_namespace(kube_api, ns)
    monkeypatch.setattr(reconcile, "MISS_RESYNC_SECONDS", 3600.0)
    monkeypatch.setattr(reconcile, "LOOK_AGAIN_SECONDS", 0.05)
    return ns, Reconciler(ledger, sync_interval=3600)


async def test_an_update_seen_before_its_entry_is_looked_at_again_without_a_sweep(
        control_plane: LocalControlPlane, kube_api: KubeApi, ledger: Ledger,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The object's earlier admission is known, so "no entry at all" does not apply: the stored
    # state matches no entry read yet, and that is what must be looked at again.
    ns, reconciler = await _rate_limited(kube_api, ledger, monkeypatch)
    try:
        await apply(control_plane, ledger, deployment("web", namespace=ns, env="v1"), "CREATE")
        await reconciler.sync(force=True)
        assert "persisted" in await reconciler.observe(
            await kube_api.request("GET", deploy_path(ns, "web")))
        await apply(control_plane, ledger, deployment("web", namespace=ns, env="v2",
                                                      build="b-2"), "UPDATE")
        v2 = await kube_api.request("GET", deploy_path(ns, "web"))
        assert await reconciler.observe(v2) == []  # the rate limit keeps its entry unread
        await _until_persisted(control_plane, ledger.config, ns, "web", 2)
    finally:
        await reconciler.close()


async def test_an_object_deferred_while_a_look_is_under_way_gets_a_look_of_its_own(
        control_plane: LocalControlPlane, kube_api: KubeApi, ledger: Ledger,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ns, reconciler = await _rate_limited(kube_api, ledger, monkeypatch)
    # The look for the first object is held where it records that object's outcome, after its
    # sync: the second object is stored and seen meanwhile, its entry written after that sync.
    in_look, release = asyncio.Event(), asyncio.Event()
    append = ledger.append

    async def held_append(entry: Any, *, deadline: float | None = None,
                          lazy: bool = False) -> AppendReceipt:
        if lazy and not release.is_set():
            in_look.set()
            await release.wait()
        return await append(entry, deadline=deadline, lazy=lazy)

    monkeypatch.setattr(ledger, "append", held_append)
    try:
        await reconciler.sync(force=True)
        await apply(control_plane, ledger, deployment("first", namespace=ns), "CREATE")
        assert await reconciler.observe(
            await kube_api.request("GET", deploy_path(ns, "first"))) == []
        await asyncio.wait_for(in_look.wait(), 15)
        await apply(control_plane, ledger, deployment("second", namespace=ns), "CREATE")
        assert await reconciler.observe(
            await kube_api.request("GET", deploy_path(ns, "second"))) == []
        release.set()
        await _until_persisted(control_plane, ledger.config, ns, "first", 1)
        await _until_persisted(control_plane, ledger.config, ns, "second", 1)
    finally:
        release.set()
        await reconciler.close()


async def test_a_deferred_object_is_looked_at_even_when_a_later_sync_read_its_entry(
        control_plane: LocalControlPlane, kube_api: KubeApi, ledger: Ledger,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Reading the entry is not enough: the object must be observed again to be marked. Here
    # another event's sync reads it before the look comes round.
    from controller.ledger import reconcile

    ns, reconciler = await _rate_limited(kube_api, ledger, monkeypatch)
    monkeypatch.setattr(reconcile, "LOOK_AGAIN_SECONDS", 0.5)
    try:
        await reconciler.sync(force=True)
        await apply(control_plane, ledger, deployment("web", namespace=ns), "CREATE")
        assert await reconciler.observe(
            await kube_api.request("GET", deploy_path(ns, "web"))) == []
        await reconciler.sync(force=True)
        await _until_persisted(control_plane, ledger.config, ns, "web", 1)
    finally:
        await reconciler.close()


async def test_an_object_that_never_gets_an_entry_keeps_its_first_seen_time(
        control_plane: LocalControlPlane, kube_api: KubeApi, ledger: Ledger,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Looked at again by every sweep, it is let go 2 × never_persisted_after_seconds after it was
    # first seen; being seen again must not restart that time, or it is never let go.
    from controller.ledger import reconcile

    ns = f"np-{uuid.uuid4().hex[:6]}"
    await ensure_namespace(kube_api, ns)
    monkeypatch.setattr(reconcile, "LOOK_AGAIN_SECONDS", 3600.0)
    reconciler = Reconciler(ledger, sync_interval=0)
    try:
        await run_kubectl(control_plane, "apply", "-f", "-",
                          stdin=json.dumps(deployment("stray", namespace=ns)))
        body = await kube_api.request("GET", deploy_path(ns, "stray"))
        key = ("Deployment", ns, "stray")
        assert await reconciler.observe(body) == []
        first = reconciler._deferred[key].first_seen
        await reconciler.sweep(datetime.now(UTC))
        assert await reconciler.observe(body) == []
        await reconciler.sweep(datetime.now(UTC))
        held = reconciler._deferred[key]
        assert held.first_seen == first < held.seen_at
    finally:
        await reconciler.close()
