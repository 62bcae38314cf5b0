"""`kubectl-provenance status` end to end: workloads admitted by the real controller through
kube-apiserver (kube-controller-manager making their ReplicaSets and Pods), one created while
the webhook configuration was removed, one in an exempt namespace, and the ledger read back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from controller.dev.controller import DevController, webhook_configuration
from controller.dev.controlplane import LocalControlPlane
from tests.builders import SHA, deployment, prov_annotations, workload
from tests.fixtures.cluster import kubectl
from tests.fixtures.controller import CASES_CONFIG, EXEMPT_NAMESPACE

pytestmark = pytest.mark.e2e

OTHER_SHA = "b" * 40


def status(cp: LocalControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", "status", *args, "--config", str(CASES_CONFIG),
         "--kubeconfig", str(cp.kubeconfig), "--quiet"],
        capture_output=True, text=True, timeout=120, check=False)


def items(cp: LocalControlPlane, *args: str) -> dict[str, dict[str, Any]]:
    result = status(cp, *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ledger"]["ok"], data["ledger"]
    return {f"{i['kind']}/{i['name']}": i for i in data["items"]}


def apply(cp: LocalControlPlane, obj: dict[str, Any], *extra: str) -> None:
    result = kubectl(cp, "apply", "-f", "-", *extra, stdin=yaml.safe_dump(obj))
    assert result.returncode == 0, result.stderr


@pytest.fixture(autouse=True)
def _alice_may_edit(control_plane: LocalControlPlane) -> None:
    """RBAC lets alice write workloads; whether she may deploy is the controller's call."""
    kubectl(control_plane, "create", "clusterrolebinding", "status-alice-edit",
            "--clusterrole=cluster-admin", "--user=alice")


@pytest.fixture
def namespace(control_plane: LocalControlPlane,
              enforcing_controller: DevController) -> Iterator[str]:
    name = f"st-{uuid.uuid4().hex[:6]}"
    kubectl(control_plane, "create", "namespace", name, check=True)
    yield name
    kubectl(control_plane, "delete", "namespace", name, "--wait=false")


def _gate_judges(cp: LocalControlPlane, namespace: str) -> bool:
    tagged = deployment("probe", namespace, containers=["nginx:1"])
    result = kubectl(cp, "apply", "-f", "-", "--dry-run=server", stdin=yaml.safe_dump(tagged))
    return result.returncode != 0 and "denied" in result.stderr


def create_with_the_gate_off(cp: LocalControlPlane, ctl: DevController,
                             obj: dict[str, Any]) -> None:
    """Delete the controller's ValidatingWebhookConfiguration, create `obj`, restore it as
    `DevController.start` applied it, and wait until the API server calls the webhook again."""
    namespace = obj["metadata"]["namespace"]
    kubectl(cp, "delete", "validatingwebhookconfiguration", ctl.name, check=True)
    try:
        deadline = time.monotonic() + 30
        while _gate_judges(cp, namespace):  # the API server's informer lags the delete
            assert time.monotonic() < deadline, "the webhook still judges after its removal"
            time.sleep(0.2)
        apply(cp, obj)
    finally:
        ca = (ctl.workdir / f"{ctl.name}-certs" / "ca.crt").read_bytes()
        restored = webhook_configuration(
            name=ctl.name, url=ctl.url, ca_bundle=ca, exempt_namespaces=ctl.exempt_namespaces,
            only_namespaces=ctl.only_namespaces, timeout_seconds=ctl.timeout_seconds)
        kubectl(cp, "apply", "-f", "-", stdin=json.dumps(restored), check=True)
    deadline = time.monotonic() + 30
    while not _gate_judges(cp, namespace):
        assert time.monotonic() < deadline, "the restored webhook configuration is not used"
        time.sleep(0.2)


def test_status_lists_every_workload_with_its_commit_and_deployer_and_flags_the_rest(
    control_plane: LocalControlPlane, enforcing_controller: DevController, namespace: str,
) -> None:
    cp = control_plane
    apply(cp, deployment("web", namespace))
    apply(cp, workload("StatefulSet", "db", namespace,
                       ann=prov_annotations(git_sha=OTHER_SHA, deployed_by="alice")),
          "--as", "alice")
    apply(cp, workload("CronJob", "nightly", namespace))
    sneaky = deployment("sneaky", namespace, containers=["nginx:1"], ann={})
    create_with_the_gate_off(cp, enforcing_controller, sneaky)
    exempt = f"st-{uuid.uuid4().hex[:6]}"
    kubectl(cp, "create", "namespace", EXEMPT_NAMESPACE)
    apply(cp, deployment(exempt, EXEMPT_NAMESPACE, containers=["nginx:1"], ann={}))

    listed = items(cp, "-n", namespace)
    assert set(listed) == {"Deployment/web", "StatefulSet/db", "CronJob/nightly",
                           "Deployment/sneaky"}
    web, db = listed["Deployment/web"], listed["StatefulSet/db"]
    assert web["record"]["provenance"]["commit_sha"] == SHA
    assert web["record"]["user"] == "admin" and web["flags"] == []
    assert db["record"]["provenance"]["commit_sha"] == OTHER_SHA
    assert db["record"]["user"] == "alice"
    assert listed["CronJob/nightly"]["record"] is not None
    assert listed["Deployment/sneaky"]["flags"] == ["unrecorded"]
    assert listed["Deployment/sneaky"]["reason"] == "gate-off"
    assert listed["Deployment/sneaky"]["note"] == "created while the gate was off"

    # kube-controller-manager made ReplicaSets and Pods: derived, covered by their root's record
    # (the sneaky Deployment's are not counted again).
    deadline = time.monotonic() + 30
    while True:
        every = items(cp, "-n", namespace, "--all-kinds")
        pods = [k for k in every if k.startswith("Pod/web-")]
        if pods and any(k.startswith("ReplicaSet/web-") for k in every):
            break
        assert time.monotonic() < deadline, sorted(every)
        time.sleep(0.5)
    assert all(every[k]["derived_from"] == "Deployment/web" and every[k]["flags"] == []
               for k in every if k.startswith(("Pod/web-", "ReplicaSet/web-")))
    assert [k for k, v in every.items() if "unrecorded" in v["flags"]] == ["Deployment/sneaky"]

    exempted = items(cp, "-n", EXEMPT_NAMESPACE)[f"Deployment/{exempt}"]
    assert exempted["reason"] == "exempt-namespace"
    assert f"Deployment/{exempt}" not in items(cp, "-A", "--exclude-exempt")

    table = status(cp, "-n", namespace)
    assert table.returncode == 0, table.stderr
    line = next(li for li in table.stdout.splitlines() if " web " in li)
    assert SHA[:12] in line and "admin" in line
    assert "unrecorded (created while the gate was off)" in table.stdout

    failing = status(cp, "-n", namespace, "--fail-on-unrecorded")
    assert failing.returncode == 6, failing.stdout + failing.stderr
    everywhere = status(cp, "-A", "--fail-on-unrecorded")
    assert everywhere.returncode == 6, everywhere.stderr
    # Deleted with its ReplicaSet and Pods (the local control plane runs no garbage collector;
    # left behind, they would have no listed owner and be unrecorded in their own right),
    # nothing unrecorded is left.
    kubectl(cp, "delete", "deployment", "sneaky", "-n", namespace, check=True)
    kubectl(cp, "delete", "replicaset,pod", "-l", "app=sneaky", "-n", namespace, check=True)
    deadline = time.monotonic() + 30
    while (last := status(cp, "-n", namespace, "--fail-on-unrecorded")).returncode != 0:
        assert time.monotonic() < deadline, last.stdout + last.stderr
        time.sleep(0.5)


def test_a_break_glass_admission_shows_until_a_normal_one_replaces_it(
    control_plane: LocalControlPlane, enforcing_controller: DevController,
) -> None:
    cp = control_plane
    kubectl(cp, "create", "namespace", "prod")
    name = f"st-{uuid.uuid4().hex[:6]}"
    emergency = deployment(name, "prod", ann=prov_annotations(
        deployed_by="bob", **{"break-glass": "INC-4711 checkout down, bob's build",
                              "break-glass-waive": "ActorMismatch"}))
    apply(cp, emergency, "--as", "alice", "--as-group", "deployers", "--as-group", "sre")
    row = items(cp, "-n", "prod")[f"Deployment/{name}"]
    assert row["flags"] == ["break-glass"]
    assert row["record"]["break_glass"]["username"] == "alice"
    assert row["record"]["annotated_user"] == "bob"
    normal = deployment(name, "prod", ann=prov_annotations(deployed_by="alice", build_id="4183"))
    apply(cp, normal, "--as", "alice", "--as-group", "deployers")
    row = items(cp, "-n", "prod")[f"Deployment/{name}"]
    assert row["flags"] == [] and row["record"]["provenance"]["build_id"] == "4183"


def test_the_controller_exports_the_unrecorded_count(
    enforcing_controller: DevController,
) -> None:
    # The controller's first scan runs 30 s after start-up (`FIRST_SCAN_DELAY_SECONDS`).
    url = f"http://127.0.0.1:{enforcing_controller.health_port}/metrics"
    deadline = time.monotonic() + 60
    while True:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        stamp = [line for line in text.splitlines()
                 if line.startswith("provenance_unrecorded_scan_timestamp_seconds ")]
        if stamp and float(stamp[0].split()[1]) > 0:
            break
        assert time.monotonic() < deadline, "no unrecorded-workload scan within 60 s"
        time.sleep(2)
    assert 'provenance_unrecorded_workloads{reason="gate-off"}' in text
