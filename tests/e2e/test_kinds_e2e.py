"""Every workload kind end to end: kubectl → kube-apiserver → TLS → the controller process, and
the objects the real kube-controller-manager derives from admitted templates.

The control plane has no kubelet and no node: Pods are stored and stay Pending, a DaemonSet
schedules nothing, and an ephemeral container is only written to the Pod's spec. What is asserted
is what the API server stores and what the controller judged and recorded.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from controller.dev.controller import DevController
from controller.dev.controlplane import LocalControlPlane, find_binary
from controller.kube import KubeApi, KubeApiError
from controller.ledger.config import LedgerConfig
from controller.ledger.query import AdmissionView, admissions
from controller.ledger.verify import load_ledger, verify_ledger
from controller.workloads import KINDS, kind_named
from tests.builders import DIGEST, WORKLOAD_KINDS, workload
from tests.fixtures.cluster import kubectl

pytestmark = pytest.mark.e2e

TAG = "nginx:latest"
PINNED_TOOL = f"registry.example.com/tools/busybox@{DIGEST}"
OTHER_DIGEST = "sha256:" + "c16b6fdd5113f7c6f9e3074b1fb2721282cc4658a2b656f283c14e9c4399c78c"
REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
T = TypeVar("T")


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def apply(cp: LocalControlPlane, obj: dict[str, Any], *extra: str) -> tuple[int, str]:
    result = kubectl(cp, "apply", "-f", "-", *extra, stdin=yaml.safe_dump(obj))
    return result.returncode, result.stdout + result.stderr


def ledger_cli(cp: LocalControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", "ledger", *args, "--kubeconfig",
         str(cp.kubeconfig), "--quiet"], capture_output=True, text=True, timeout=120, check=False)


async def ledger_admissions(api: KubeApi) -> list[AdmissionView]:
    """Every admission entry of the session's ledger, after checking the chain verifies."""
    config = LedgerConfig()
    lanes = await load_ledger(api, config.namespace, config.chain,
                              key_namespace=config.checkpoint_key_namespace)
    report = verify_ledger(lanes, chain=config.chain, max_entry_bytes=config.max_entry_bytes)
    assert report.ok, report.problems[:3]
    return admissions(report.records)


def recorded(views: list[AdmissionView], name: str) -> list[AdmissionView]:
    """The entries naming `name` in the default namespace, whatever their kind."""
    return [v for v in views if v.entry.namespace == "default" and v.entry.name == name]


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str,
                     timeout: float = 45.0) -> T:
    """`probe()`'s first truthy answer, polled until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        await asyncio.sleep(0.25)


async def owned(api: KubeApi, plural: str, owner_kind: str, owner: str) -> list[dict[str, Any]]:
    """The objects of `plural` in default whose controller owner is `owner_kind`/`owner`."""
    row = next(k for k in KINDS if k.plural == plural)
    body = await api.request("GET", row.path("default"))
    return [item for item in body["items"]
            if any(ref.get("controller") and ref["kind"] == owner_kind and ref["name"] == owner
                   for ref in item["metadata"].get("ownerReferences", []))]


def reviewed(ctl: DevController, operation: str, subject: str, name: str) -> bool:
    """Whether the controller's log says it allowed `operation` of `subject` default/`name`."""
    tail = f"admission {operation} {subject} default/{name}: allowed"
    return any(tail in line for line in ctl.log_path.read_text(errors="replace").splitlines())


@pytest.fixture(autouse=True)
def _controllers(enforcing_controller: DevController) -> None:
    """Every test here runs with the enforcing controller (ledger on) wired in."""


@pytest.fixture
async def api(control_plane: LocalControlPlane) -> AsyncIterator[KubeApi]:
    client = KubeApi.from_kubeconfig(str(control_plane.kubeconfig))
    yield client
    await client.close()


# --- every kind, authored by a person ---------------------------------------------------------

@pytest.mark.parametrize("dry_run", [False, True], ids=["stored", "dry-run"])
@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
async def test_each_kind_is_denied_without_provenance_and_admitted_with_it(
    control_plane: LocalControlPlane, api: KubeApi, kind: str, dry_run: bool,
) -> None:
    extra = ("--dry-run=server",) if dry_run else ()
    row = kind_named(kind)
    assert row is not None
    tagged, bare, good = _name("tag"), _name("bare"), _name("good")

    code, out = apply(control_plane, workload(kind, tagged, containers=[TAG]), *extra)
    assert code != 0, out
    assert f"provenance-controller denied this {kind} (1 problem)" in out
    assert "[ImageNotPinned]" in out and TAG in out

    code, out = apply(control_plane, workload(kind, bare, ann={}), *extra)
    assert code != 0, out
    assert f"provenance-controller denied this {kind} (3 problems)" in out
    assert out.count("[MissingAnnotation]") == 3

    code, out = apply(control_plane, workload(kind, good), *extra)
    assert code == 0, out
    stored = kubectl(control_plane, "get", f"{row.plural}.{row.group}" if row.group
                     else row.plural, good, "-o", "name")
    assert (stored.returncode == 0) is not dry_run, stored.stdout + stored.stderr

    views = await ledger_admissions(api)
    assert recorded(views, tagged) == [] and recorded(views, bare) == []
    ours = recorded(views, good)
    if dry_run:
        assert ours == []  # a dry run has no side effect
    else:
        assert [(v.entry.kind, v.entry.operation) for v in ours] == [(kind, "CREATE")]
        assert ours[0].entry.actor.username == "admin"
        assert ours[0].entry.containers[0].digest == DIGEST


def test_ledger_history_reads_every_kind_spelling(control_plane: LocalControlPlane) -> None:
    # `ledger history` accepts kubectl's short names and finds only the kind asked for: two
    # objects of different kinds share one name here.
    name = _name("same")
    for kind in ("StatefulSet", "Pod"):
        code, out = apply(control_plane, workload(kind, name))
        assert code == 0, out
    for target, kind in ((f"sts/{name}", "StatefulSet"), (f"pod/{name}", "Pod")):
        result = ledger_cli(control_plane, "history", target, "-o", "json")
        assert result.returncode == 0, result.stderr
        views = json.loads(result.stdout)
        assert [v["entry"]["kind"] for v in views] == [kind], target
    absent = ledger_cli(control_plane, "history", f"ds/{name}", "-o", "json")
    assert absent.returncode == 5, absent.stdout + absent.stderr


def test_kubectl_run_with_a_tag_is_denied(control_plane: LocalControlPlane) -> None:
    # The first thing a new user tries.
    name = _name("run")
    result = kubectl(control_plane, "run", name, "--image=nginx")
    assert result.returncode != 0
    assert "provenance-controller denied this Pod (4 problems)" in result.stderr
    assert "[ImageNotPinned]" in result.stderr and "'nginx'" in result.stderr
    assert kubectl(control_plane, "get", "pod", name).returncode != 0


# --- objects derived by kube-controller-manager -------------------------------------------------

@dataclass(frozen=True)
class Derived:
    """Authored controllers created when this module starts, so that the CronJob's next minute
    passes while the other tests run."""

    deploy: str
    sts: str
    ds: str
    job: str
    cronjob: str


@pytest.fixture(scope="module", autouse=True)
def derived(enforcing_controller: DevController, control_plane: LocalControlPlane) -> Derived:
    names = Derived(*(_name(p) for p in ("deploy", "sts", "ds", "job", "cron")))
    objects = [
        workload("Deployment", names.deploy), workload("StatefulSet", names.sts),
        workload("DaemonSet", names.ds), workload("Job", names.job),
        workload("CronJob", names.cronjob),
    ]
    objects[0]["spec"]["replicas"] = 2
    # The real cronjob controller, not `kubectl create job --from` (which a person does, and so
    # makes an authored Job): it fires at the next minute boundary, at most 60 s from here.
    objects[4]["spec"]["schedule"] = "* * * * *"
    for obj in objects:
        code, out = apply(control_plane, obj)
        assert code == 0, out
    return names


async def test_kube_controller_manager_derives_admitted_objects(
    control_plane: LocalControlPlane, enforcing_controller: DevController, api: KubeApi,
    derived: Derived,
) -> None:
    ctl = enforcing_controller

    async def pods_of(kind: str, owner: str, count: int) -> list[dict[str, Any]] | None:
        pods = await owned(api, "pods", kind, owner)
        return pods if len(pods) >= count else None

    # Deployment → ReplicaSet (deployment-controller) → 2 Pods (replicaset-controller).
    replicasets = await eventually(lambda: owned(api, "replicasets", "Deployment",
                                                 derived.deploy), "the Deployment's ReplicaSet")
    rs = replicasets[0]["metadata"]["name"]
    deploy_pods = await eventually(lambda: pods_of("ReplicaSet", rs, 2), "the ReplicaSet's Pods")
    # StatefulSet → Pod <name>-0 (statefulset-controller).
    sts_pods = await eventually(lambda: pods_of("StatefulSet", derived.sts, 1),
                                "the StatefulSet's Pod")
    assert [p["metadata"]["name"] for p in sts_pods] == [f"{derived.sts}-0"]
    # Job → Pod (job-controller).
    job_pods = await eventually(lambda: pods_of("Job", derived.job, 1), "the Job's Pod")

    # DaemonSet: with no node there is nothing to schedule, so no Pod; what is observable is that
    # the daemonset controller reconciled the admitted object to zero desired Pods.
    async def ds_reconciled() -> dict[str, Any] | None:
        body = await api.request("GET", f"/apis/apps/v1/namespaces/default/daemonsets/"
                                        f"{derived.ds}")
        status = body.get("status") or {}
        return status if status.get("observedGeneration") == 1 else None

    ds_status = await eventually(ds_reconciled, "the DaemonSet's status")
    assert ds_status.get("desiredNumberScheduled", 0) == 0
    assert (await api.request("GET", "/api/v1/nodes"))["items"] == []
    assert await owned(api, "pods", "DaemonSet", derived.ds) == []

    # CronJob → Job (cronjob-controller) → Pod (job-controller), at the next minute boundary.
    cron_jobs = await eventually(lambda: owned(api, "jobs", "CronJob", derived.cronjob),
                                 "the CronJob's Job", timeout=75)
    cron_job = cron_jobs[0]["metadata"]["name"]
    cron_pods = await eventually(lambda: pods_of("Job", cron_job, 1), "the cron Job's Pod")

    # Every derived object was reviewed by the webhook (failurePolicy Fail: existing means
    # admitted), and admitted from the controllers' identities without provenance of its own:
    # the builder's templates carry none, which only the derived rule accepts.
    derived_objects = [("ReplicaSet", rs), ("Job", cron_job)] + [
        ("Pod", p["metadata"]["name"]) for p in (*deploy_pods, *sts_pods, *job_pods, *cron_pods)]
    for subject, name in derived_objects:
        assert reviewed(ctl, "CREATE", subject, name), (subject, name)

    # The ledger keeps the authored objects, each with its kind, and none of the derived ones.
    views = await ledger_admissions(api)
    for kind, name in (("Deployment", derived.deploy), ("StatefulSet", derived.sts),
                       ("DaemonSet", derived.ds), ("Job", derived.job),
                       ("CronJob", derived.cronjob)):
        assert [v.entry.kind for v in recorded(views, name)] == [kind], name
    for subject, name in derived_objects:
        assert recorded(views, name) == [], (subject, name)
    rs_history = ledger_cli(control_plane, "history", f"rs/{rs}")
    assert rs_history.returncode == 5, rs_history.stdout + rs_history.stderr


def test_a_controller_identity_is_still_held_to_pinned_images(
    control_plane: LocalControlPlane,
) -> None:
    # The derived rule drops the provenance requirement and the actor check, never pinning.
    # The admin (system:masters) may impersonate the replicaset controller's service account,
    # whose RBAC allows creating Pods (not reading one, so `create`, not `apply`).
    name = _name("as-rs")

    def create(obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return kubectl(control_plane, "create", "-f", "-", "--as", REPLICASET_CONTROLLER,
                       stdin=yaml.safe_dump(obj))

    tagged = create(workload("Pod", name, ann={}, containers=[TAG]))
    assert tagged.returncode != 0
    assert "provenance-controller denied this Pod (1 problem)" in tagged.stderr
    assert "[ImageNotPinned]" in tagged.stderr
    pinned = create(workload("Pod", name, ann={}))
    assert pinned.returncode == 0, pinned.stderr


# --- owner claims grant nothing ----------------------------------------------------------------

async def test_a_pod_with_a_forged_owner_is_judged_as_authored(
    control_plane: LocalControlPlane, api: KubeApi, derived: Derived,
) -> None:
    # Kyverno #2164: a Pod claiming a controller owner skipped validation. Here the owner is the
    # real ReplicaSet of an admitted Deployment, and the Pod looks like one of its replicas
    # (pinned image, the template's labels): the same Pod from the replicaset controller is
    # admitted above, but from a person it needs its own provenance.
    replicasets = await eventually(lambda: owned(api, "replicasets", "Deployment",
                                                 derived.deploy), "the Deployment's ReplicaSet")
    rs = replicasets[0]["metadata"]
    pod = workload("Pod", _name("forged"), ann={})
    pod["metadata"]["labels"] = dict(replicasets[0]["spec"]["template"]["metadata"]["labels"])
    pod["metadata"]["ownerReferences"] = [{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs["name"], "uid": rs["uid"],
        "controller": True, "blockOwnerDeletion": True}]
    code, out = apply(control_plane, pod)
    assert code != 0
    assert "provenance-controller denied this Pod (3 problems)" in out
    assert out.count("[MissingAnnotation]") == 3


def test_impersonating_a_controller_needs_impersonate_rights(
    control_plane: LocalControlPlane, tmp_path: Path,
) -> None:
    # The derived rule trusts the authenticated user, so who may become a controller identity
    # matters: the API server refuses impersonation to anyone without the impersonate verb,
    # before any webhook is asked.
    sa = _name("eve")
    assert kubectl(control_plane, "create", "serviceaccount", sa).returncode == 0
    # A Role of its own: the built-in `edit` is aggregated by a controller that is not running.
    assert kubectl(control_plane, "create", "role", sa, "--verb=create,get",
                   "--resource=pods").returncode == 0
    assert kubectl(control_plane, "create", "rolebinding", sa, f"--role={sa}",
                   f"--serviceaccount=default:{sa}").returncode == 0
    token = kubectl(control_plane, "create", "token", sa, check=True).stdout.strip()
    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    own = tmp_path / "eve.kubeconfig"
    own.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "eve", "context": {"cluster": "local", "user": sa}}],
        "current-context": "eve"}))
    own.chmod(0o600)
    pod = yaml.safe_dump(workload("Pod", _name("eve-pod"), ann={}))

    def as_eve(*args: str) -> subprocess.CompletedProcess[str]:
        # Client-side validation first reads the OpenAPI schema under the impersonated name
        # and fails on that, before the create that matters here; the server validates anyway.
        return subprocess.run([str(find_binary("kubectl")), "--kubeconfig", str(own), "create",
                               "--validate=false", "-f", "-", *args], input=pod,
                              capture_output=True, text=True, timeout=60, check=False)

    refused = as_eve("--as", REPLICASET_CONTROLLER)
    assert refused.returncode != 0
    assert "cannot impersonate" in refused.stderr, refused.stderr
    assert "provenance-controller" not in refused.stderr
    # Under eve's own name the Pod is authored, and lacks provenance.
    own_name = as_eve()
    assert own_name.returncode != 0
    assert "provenance-controller denied this Pod (3 problems)" in own_name.stderr


# --- what changes a running Pod --------------------------------------------------------------

@pytest.fixture
def running_pod(control_plane: LocalControlPlane) -> str:
    """A compliant Pod, authored by admin."""
    name = _name("pod")
    code, out = apply(control_plane, workload("Pod", name))
    assert code == 0, out
    return name


async def test_kubectl_debug_needs_a_pinned_image_and_is_recorded(
    control_plane: LocalControlPlane, api: KubeApi, running_pod: str,
) -> None:
    # There is no kubelet: --attach=false makes kubectl write the ephemeral container and stop.
    tagged = kubectl(control_plane, "debug", f"pod/{running_pod}", "--image=busybox:latest",
                     "--attach=false", "-c", "dbg-tag")
    assert tagged.returncode != 0
    assert "provenance-controller denied this Pod ephemeral containers (1 problem)" in \
        tagged.stderr
    assert "[ImageNotPinned]" in tagged.stderr and "ephemeralContainer dbg-tag" in tagged.stderr

    # The raw subresource, as a PATCH (what kubectl debug sends) and as a PUT.
    patch = json.dumps({"spec": {"ephemeralContainers": [
        {"name": "raw", "image": "busybox:1.36", "terminationMessagePolicy": "File"}]}})
    raw = kubectl(control_plane, "patch", "pod", running_pod, "--subresource=ephemeralcontainers",
                  "--type=strategic", "-p", patch)
    assert raw.returncode != 0 and "[ImageNotPinned]" in raw.stderr, raw.stdout + raw.stderr
    path = f"/api/v1/namespaces/default/pods/{running_pod}"
    body = await api.request("GET", path)
    body["spec"]["ephemeralContainers"] = [{"name": "put", "image": "busybox:latest",
                                            "terminationMessagePolicy": "File"}]
    with pytest.raises(KubeApiError) as info:
        await api.request("PUT", f"{path}/ephemeralcontainers", body=body)
    assert info.value.status == 403
    assert "denied this Pod ephemeral containers" in str(info.value)

    pinned = kubectl(control_plane, "debug", f"pod/{running_pod}", f"--image={PINNED_TOOL}",
                     "--attach=false", "-c", "dbg")
    assert pinned.returncode == 0, pinned.stderr
    stored = await api.request("GET", path)
    assert [(c["name"], c["image"]) for c in stored["spec"]["ephemeralContainers"]] == [
        ("dbg", PINNED_TOOL)]

    views = recorded(await ledger_admissions(api), running_pod)
    assert [(v.entry.kind, v.entry.operation, v.entry.subresource) for v in views] == [
        ("Pod", "CREATE", None), ("Pod", "UPDATE", "ephemeralcontainers")]
    debug = views[1].entry
    assert debug.actor.username == "admin"
    assert ("ephemeralContainer", "dbg", DIGEST) in [
        (c.kind, c.name, c.digest) for c in debug.containers]


async def test_changing_a_pod_image_to_a_tag_is_denied(
    control_plane: LocalControlPlane, api: KubeApi, running_pod: str,
) -> None:
    result = kubectl(control_plane, "set", "image", f"pod/{running_pod}", f"c0={TAG}")
    assert result.returncode != 0
    assert "provenance-controller denied this Pod (1 problem)" in result.stderr
    assert "[ImageNotPinned]" in result.stderr and TAG in result.stderr
    image = kubectl(control_plane, "get", "pod", running_pod, "-o",
                    "jsonpath={.spec.containers[0].image}")
    assert image.stdout == f"registry.example.com/shop/app@{DIGEST}"

    # A pinned image, by the Pod's annotated deployer, is a deploy: admitted and recorded.
    repinned = f"registry.example.com/shop/app@{OTHER_DIGEST}"
    result = kubectl(control_plane, "set", "image", f"pod/{running_pod}", f"c0={repinned}")
    assert result.returncode == 0, result.stderr
    views = recorded(await ledger_admissions(api), running_pod)
    assert [(v.entry.operation, v.entry.containers[0].digest) for v in views] == [
        ("CREATE", DIGEST), ("UPDATE", OTHER_DIGEST)]


def test_a_pinned_image_change_by_someone_else_is_an_actor_mismatch(
    control_plane: LocalControlPlane, running_pod: str,
) -> None:
    # A Pod's images are mutable; whoever changes one is deploying, and deployed-by says admin.
    kubectl(control_plane, "create", "clusterrolebinding", "mallory-edit",
            "--clusterrole=cluster-admin", "--user=mallory")
    repinned = f"registry.example.com/shop/app@{OTHER_DIGEST}"
    result = kubectl(control_plane, "set", "image", f"pod/{running_pod}", f"c0={repinned}",
                     "--as", "mallory")
    assert result.returncode != 0
    assert "[ActorMismatch]" in result.stderr and "'mallory'" in result.stderr


def test_labelling_an_admitted_pod_is_not_a_deploy(
    control_plane: LocalControlPlane, running_pod: str,
) -> None:
    # Labels and annotations of a Pod change without deploying anything: no actor check.
    kubectl(control_plane, "create", "clusterrolebinding", "mallory-edit",
            "--clusterrole=cluster-admin", "--user=mallory")
    result = kubectl(control_plane, "label", "pod", running_pod, "quarantine=yes",
                     "--as", "mallory")
    assert result.returncode == 0, result.stderr



async def test_labelling_a_derived_pod_is_not_a_deploy(
    control_plane: LocalControlPlane, api: KubeApi, derived: Derived,
) -> None:
    # A person relabels a replica (to take it out of its ReplicaSet, say). Nothing is deployed,
    # and the Pod was admitted from an admitted template that carries no provenance of its own.
    replicasets = await eventually(lambda: owned(api, "replicasets", "Deployment",
                                                 derived.deploy), "the Deployment's ReplicaSet")
    rs = replicasets[0]["metadata"]["name"]
    pods = await eventually(lambda: owned(api, "pods", "ReplicaSet", rs), "a replica")
    result = kubectl(control_plane, "label", "pod", pods[0]["metadata"]["name"], "note=seen")
    assert result.returncode == 0, result.stderr


async def test_every_pod_of_one_apply_is_seen_persisted(
    control_plane: LocalControlPlane, api: KubeApi,
) -> None:
    names = [_name("burst") for _ in range(8)]
    result = kubectl(control_plane, "apply", "-f", "-",
                     stdin=yaml.safe_dump_all([workload("Pod", n) for n in names]))
    assert result.returncode == 0, result.stderr

    async def all_persisted() -> bool:
        views = await ledger_admissions(api)
        return all(any(v.persisted for v in recorded(views, n)) for n in names)

    await eventually(all_persisted, "every Pod's admission marked persisted", timeout=20)
