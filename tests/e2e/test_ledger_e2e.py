"""The ledger end to end: real admissions through kube-apiserver are recorded by the controller
process, and `kubectl-provenance ledger` reads them back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
import yaml

from controller.dev.controller import DevController
from controller.dev.controlplane import LocalControlPlane
from tests.builders import DIGEST, deployment, prov_annotations
from tests.fixtures.cluster import kubectl
from tests.fixtures.controller import AUDIT_NAMESPACE

pytestmark = pytest.mark.e2e

OTHER = "sha256:" + "c16b6fdd5113f7c6f9e3074b1fb2721282cc4658a2b656f283c14e9c4399c78c"


@pytest.fixture(autouse=True)
def _controllers(enforcing_controller: DevController) -> None:
    """The enforcing controller (ledger on by default) is wired in."""


def ledger_cli(cp: LocalControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", "ledger", *args, "--kubeconfig",
         str(cp.kubeconfig), "--quiet"], capture_output=True, text=True, timeout=120, check=False)


def history(cp: LocalControlPlane, name: str, namespace: str = "default") -> list[Any]:
    result = ledger_cli(cp, "history", f"deploy/{name}", "-n", namespace, "-o", "json")
    if result.returncode == 5:  # no records for this Deployment
        return []
    assert result.returncode == 0, result.stderr
    views: list[Any] = json.loads(result.stdout)
    return views


def apply(cp: LocalControlPlane, obj: dict[str, Any], *extra: str) -> None:
    result = kubectl(cp, "apply", "-f", "-", *extra, stdin=yaml.safe_dump(obj))
    assert result.returncode == 0, result.stderr


def test_an_admitted_deployment_is_recorded_and_the_ledger_verifies(
    control_plane: LocalControlPlane,
) -> None:
    name = f"l-{uuid.uuid4().hex[:8]}"
    apply(control_plane, deployment(name))
    views = history(control_plane, name)
    assert len(views) == 1
    entry = views[0]["entry"]
    assert entry["operation"] == "CREATE"
    assert entry["actor"]["username"] == "admin"
    assert entry["provenance"]["commit_sha"] == prov_annotations()["provenance.dev/git-sha"]
    assert [c["digest"] for c in entry["containers"]] == [DIGEST]
    assert "waived" not in entry  # nothing was waived: the field is omitted
    verify = ledger_cli(control_plane, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_dry_run_and_denials_are_never_recorded(control_plane: LocalControlPlane) -> None:
    dry, denied = f"l-{uuid.uuid4().hex[:8]}", f"l-{uuid.uuid4().hex[:8]}"
    apply(control_plane, deployment(dry), "--dry-run=server")
    bad = kubectl(control_plane, "apply", "-f", "-",
                  stdin=yaml.safe_dump(deployment(denied, containers=["nginx:1"])))
    assert bad.returncode != 0
    assert history(control_plane, dry) == []
    assert history(control_plane, denied) == []


def test_audit_mode_admissions_are_recorded(
    control_plane: LocalControlPlane, auditing_controller: DevController,
) -> None:
    kubectl(control_plane, "create", "namespace", AUDIT_NAMESPACE)
    name = f"l-{uuid.uuid4().hex[:8]}"
    apply(control_plane, deployment(name, AUDIT_NAMESPACE, containers=["nginx:1"]))
    views = history(control_plane, name, AUDIT_NAMESPACE)
    assert len(views) == 1
    assert views[0]["entry"]["containers"][0]["digest"] is None  # recorded as it was: a tag
    assert views[0]["entry"]["waived"] == ["ImageNotPinned"]


def test_rollback_target_after_a_real_rollout_undo(control_plane: LocalControlPlane) -> None:
    name = f"l-{uuid.uuid4().hex[:8]}"
    v1 = deployment(name)
    v2 = deployment(name, containers=[f"registry.example.com/shop/app@{OTHER}"],
                    ann=prov_annotations(git_sha="b" * 40, build_id="4183"))
    apply(control_plane, v1)
    _wait_generation_observed(control_plane, name, 1)
    apply(control_plane, v2)
    _wait_generation_observed(control_plane, name, 2)
    undo = kubectl(control_plane, "rollout", "undo", f"deploy/{name}")
    assert undo.returncode == 0, undo.stderr
    _wait_generation_observed(control_plane, name, 3)
    # Three admissions: v1, v2, and the undo (whose template is v1's again).
    deadline = time.monotonic() + 30
    while True:
        views = history(control_plane, name)
        if len(views) >= 3 and all(v["status"] == "persisted" for v in views[:3]):
            break
        assert time.monotonic() < deadline, [(v["seq"], v["status"]) for v in views]
        time.sleep(0.5)
    assert views[2]["entry"]["template_hash"] == views[0]["entry"]["template_hash"]
    result = ledger_cli(control_plane, "rollback-target", f"deploy/{name}", "-o", "json")
    assert result.returncode == 0, result.stderr
    target = json.loads(result.stdout)
    assert target["entry"]["provenance"]["commit_sha"] == "b" * 40
    assert target["entry"]["containers"][0]["digest"] == OTHER


def _wait_generation_observed(cp: LocalControlPlane, name: str, generation: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = kubectl(cp, "get", "deploy", name, "-o", "jsonpath={.status.observedGeneration}")
        if got.stdout and int(got.stdout) >= generation:
            return
        time.sleep(0.2)
    raise AssertionError(f"deploy/{name} generation {generation} not observed")
