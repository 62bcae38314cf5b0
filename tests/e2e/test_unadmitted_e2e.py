"""Workloads the gate never saw are recorded once as `unadmitted`, on the real API server.

A control plane of its own: the test switches the gate off, and every workload in it must be
accounted for (admitted, derived, exempt, or unadmitted).
"""

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

from controller.dev.controller import DevController
from controller.dev.controlplane import LocalControlPlane
from tests.builders import deployment
from tests.fixtures.cluster import kubectl

BEFORE = "before-install"
"""Created before the controller was installed."""


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    cp = LocalControlPlane(tmp_path_factory.mktemp("unadmitted-cp"),
                           with_controller_manager=True, etcd_fsync=False)
    cp.start()
    yield cp
    cp.stop()


@pytest.fixture(scope="module")
def controller(plane: LocalControlPlane,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevController]:
    apply(plane, deployment(BEFORE, containers=["nginx:1"]))
    workdir = tmp_path_factory.mktemp("unadmitted")
    config = workdir / "config.yaml"
    config.write_text("mode: enforce\n"
                      "exempt_namespaces: [kube-system, kube-public, kube-node-lease]\n")
    ctl = DevController(plane, workdir, config_file=config, name="unadmitted",
                        extra_args=["--sweep-interval", "1"])
    ctl.start()
    yield ctl
    ctl.stop()


def apply(cp: LocalControlPlane, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kubectl(cp, "apply", "-f", "-", stdin=yaml.safe_dump(obj))


def history(cp: LocalControlPlane, name: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "controller.cli", "ledger", "history", f"deploy/{name}",
         "-n", "default", "-o", "json", "--quiet", "--kubeconfig", str(cp.kubeconfig)],
        capture_output=True, text=True, timeout=120, check=False)
    if result.returncode == 5:
        return []
    assert result.returncode == 0, result.stderr
    views: list[dict[str, Any]] = json.loads(result.stdout)
    return views


def unadmitted_total(ctl: DevController) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{ctl.health_port}/metrics",
                                timeout=5) as resp:
        return sum(float(line.rsplit(" ", 1)[1]) for line in resp.read().decode().splitlines()
                   if line.startswith("provenance_unadmitted_workloads_total{"))


def wait_for_status(cp: LocalControlPlane, name: str, status: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        views = history(cp, name)
        if any(v["status"] == status for v in views):
            return views
        time.sleep(0.5)
    raise AssertionError(f"{name}: no {status} record in {history(cp, name)}")


def test_a_workload_from_before_the_install_is_unadmitted(
        plane: LocalControlPlane, controller: DevController) -> None:
    views = wait_for_status(plane, BEFORE, "unadmitted")
    [view] = views
    assert view["entry"]["kind"] == "Deployment" and view["entry"]["object_uid"]


def test_one_created_while_the_gate_was_off_is_unadmitted_once_and_counted(
        plane: LocalControlPlane, controller: DevController) -> None:
    admitted = f"ok-{uuid.uuid4().hex[:6]}"
    assert apply(plane, deployment(admitted)).returncode == 0
    counted = unadmitted_total(controller)
    # The gate switched off, then a workload it would have denied.
    kubectl(plane, "delete", "validatingwebhookconfiguration", controller.name, check=True)
    sneaky = f"sneaky-{uuid.uuid4().hex[:6]}"
    assert apply(plane, deployment(sneaky, containers=["nginx:1"])).returncode == 0
    wait_for_status(plane, sneaky, "unadmitted")
    # Several sweeps and status updates later: still one record, counted once.
    time.sleep(3)
    views = history(plane, sneaky)
    assert [v["status"] for v in views] == ["unadmitted"]
    assert unadmitted_total(controller) == counted + 1
    # The admitted one, and what the controllers derived from it, are not flagged.
    admitted_views = history(plane, admitted)
    assert admitted_views
    assert all(v["status"] != "unadmitted" for v in admitted_views)
    rs = json.loads(kubectl(plane, "get", "replicasets", "-n", "default", "-o", "json",
                            check=True).stdout)["items"]
    assert any(r["metadata"]["name"].startswith(admitted) for r in rs), "no derived objects"
    log = controller.log_path.read_text()
    flagged = [line for line in log.splitlines() if "recorded as unadmitted" in line]
    assert not [line for line in flagged if admitted in line]
    table = subprocess.run(
        [sys.executable, "-m", "controller.cli", "ledger", "history", f"deploy/{sneaky}",
         "-n", "default", "--quiet", "--kubeconfig", str(plane.kubeconfig)],
        capture_output=True, text=True, timeout=120, check=False)
    assert table.returncode == 0 and "unadmitted" in table.stdout
