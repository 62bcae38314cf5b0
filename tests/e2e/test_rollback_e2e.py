"""Rollback through the gate, end to end: real kubectl, kube-apiserver, kube-controller-manager
and controller. `kubectl rollout undo` by someone other than the original deployer is admitted as
a rollback when they may deploy to the environment, and recorded as one; `kubectl-provenance
rollback` finds the revision and restores it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from controller.dev.controller import DevController
from controller.dev.controlplane import LocalControlPlane
from tests.builders import as_kind, deployment, prov_annotations
from tests.fixtures.cluster import kubectl

pytestmark = pytest.mark.e2e

PROD = "prod"
"""The production namespace of the enforcing controller's policy (tests/cases/config.yaml):
only the `deployers` group may deploy there."""
TESTERS = "rollback-testers"
V2_DIGEST = "sha256:" + "c16b6fdd5113f7c6f9e3074b1fb2721282cc4658a2b656f283c14e9c4399c78c"


@pytest.fixture(scope="module")
def cluster(control_plane: LocalControlPlane,
            enforcing_controller: DevController) -> Iterator[LocalControlPlane]:
    """RBAC for the impersonated people: what `kubectl apply` and `rollout undo` need."""
    kubectl(control_plane, "create", "namespace", PROD)
    kubectl(control_plane, "create", "clusterrole", TESTERS,
            "--verb=get,list,watch,create,update,patch",
            "--resource=deployments.apps,statefulsets.apps,daemonsets.apps,replicasets.apps,"
            "controllerrevisions.apps")
    kubectl(control_plane, "create", "clusterrolebinding", TESTERS, f"--clusterrole={TESTERS}",
            f"--group={TESTERS}")
    yield control_plane
    kubectl(control_plane, "delete", "clusterrolebinding,clusterrole", TESTERS,
            "--ignore-not-found")


def as_user(user: str, *groups: str) -> list[str]:
    return ["--as", user, *[a for g in (*groups, TESTERS) for a in ("--as-group", g)]]


def versions(kind: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """v1 and v2, both built and deployed by alice; provenance on the pod template."""
    v1 = as_kind(deployment(name, PROD, ann={}, template_ann=prov_annotations(
        deployed_by="alice")), kind)
    v2 = as_kind(deployment(name, PROD, ann={}, containers=[
        f"registry.example.com/shop/app@{V2_DIGEST}"], template_ann=prov_annotations(
        deployed_by="alice", git_sha="b" * 40, build_id="4183")), kind)
    return v1, v2


def history(cp: LocalControlPlane, target: str, namespace: str = PROD) -> list[Any]:
    result = provenance(cp, "ledger", "history", target, "-n", namespace, "-o", "json")
    assert result.returncode in (0, 5), result.stderr
    views: list[Any] = json.loads(result.stdout) if result.returncode == 0 else []
    return views


def provenance(cp: LocalControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args, "--kubeconfig",
                           str(cp.kubeconfig), "--quiet"], capture_output=True, text=True,
                          timeout=120, check=False)


def wait_persisted(cp: LocalControlPlane, target: str, count: int,
                   namespace: str = PROD) -> list[Any]:
    """The first `count` admissions of `target`, once the reconciler saw each one stored."""
    deadline = time.monotonic() + 45
    while True:
        views = history(cp, target, namespace)
        if len(views) >= count and all(v["status"].startswith("persisted")
                                       for v in views[:count]):
            return views
        assert time.monotonic() < deadline, [(v["seq"], v["status"]) for v in views]
        time.sleep(0.5)


def wait_revision(cp: LocalControlPlane, kind: str, name: str, namespace: str = PROD) -> None:
    """Until the workload's controller has recorded the current template as a revision."""
    field = {"deployment": "{.status.observedGeneration}/{.metadata.generation}",
             "statefulset": "{.status.observedGeneration}/{.metadata.generation}",
             "daemonset": "{.status.observedGeneration}/{.metadata.generation}"}[kind]
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        got = kubectl(cp, "get", kind, name, "-n", namespace, "-o", f"jsonpath={field}")
        observed, _, generation = got.stdout.partition("/")
        if observed and observed == generation:
            return
        time.sleep(0.3)
    raise AssertionError(f"{kind}/{name}: generation not observed")


def apply(cp: LocalControlPlane, obj: dict[str, Any], *extra: str) -> None:
    result = kubectl(cp, "apply", "-f", "-", *extra, stdin=yaml.safe_dump(obj))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("kind", "short"), [
    ("Deployment", "deploy"), ("StatefulSet", "sts"), ("DaemonSet", "ds")])
def test_rollout_undo_by_an_authorised_colleague_is_a_recorded_rollback(
        cluster: LocalControlPlane, kind: str, short: str) -> None:
    name = f"rb-{uuid.uuid4().hex[:6]}"
    target = f"{short}/{name}"
    v1, v2 = versions(kind, name)
    alice = as_user("alice", "deployers")
    apply(cluster, v1, *alice)
    wait_revision(cluster, kind.lower(), name)
    apply(cluster, v2, *alice)
    wait_revision(cluster, kind.lower(), name)
    views = wait_persisted(cluster, target, 2)
    # carol may not deploy to production: the undo is no rollback of hers.
    carol = kubectl(cluster, "rollout", "undo", target, "-n", PROD, *as_user("carol"))
    assert carol.returncode != 0
    assert "[ActorNotAuthorised]" in carol.stderr and "[ActorMismatch]" in carol.stderr
    # bob may: the restored template still says deployed-by alice, and that is fine now.
    bob = kubectl(cluster, "rollout", "undo", target, "-n", PROD, *as_user("bob", "deployers"))
    assert bob.returncode == 0, bob.stderr
    assert "rollback by bob to ledger entry" in bob.stderr  # the warning kubectl prints
    undo = history(cluster, target)[2]["entry"]
    assert undo["actor"]["username"] == "bob"
    assert undo["template_hash"] == views[0]["entry"]["template_hash"]
    assert undo["rollback"] == {"restored_from": views[0]["seq"],
                                "restored_leaf": views[0]["leaf"],
                                "original_deployer": "alice",
                                "original_commit": views[0]["entry"]["provenance"]["commit_sha"]}


def test_the_rollback_command_restores_the_ledgers_target(cluster: LocalControlPlane) -> None:
    # In a namespace of no restricted environment, where anyone may deploy: the admin rolls
    # back alice's v2 with one command.
    name = f"rb-{uuid.uuid4().hex[:6]}"
    target = f"deploy/{name}"
    v1, v2 = (dict(v, metadata={**v["metadata"], "namespace": "default"})
              for v in versions("Deployment", name))
    alice = as_user("alice")
    apply(cluster, v1, *alice)
    wait_revision(cluster, "deployment", name, "default")
    apply(cluster, v2, *alice)
    wait_revision(cluster, "deployment", name, "default")
    views = wait_persisted(cluster, target, 2, "default")

    def running() -> str:
        return kubectl(cluster, "get", target, "-n", "default", "-o",
                       "jsonpath={.spec.template.spec.containers[0].image}").stdout

    before = running()
    dry = provenance(cluster, "rollback", target, "-n", "default", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"back to ledger entry {views[0]['seq']}" in dry.stdout
    assert "dry run: would restore ReplicaSet" in dry.stdout
    assert running() == before  # nothing changed
    done = provenance(cluster, "rollback", target, "-n", "default")
    assert done.returncode == 0, done.stdout + done.stderr
    assert running() == v1["spec"]["template"]["spec"]["containers"][0]["image"]
    entry = wait_persisted(cluster, target, 3, "default")[2]["entry"]
    assert entry["actor"]["username"] == "admin"
    assert entry["rollback"]["restored_from"] == views[0]["seq"]
    # Rolled back already: the target is now v2 again, and a second run would restore it.
    again = provenance(cluster, "rollback", target, "-n", "default", "--to-seq",
                       str(views[0]["seq"]))
    assert again.returncode == 0 and "already runs" in again.stdout


def test_a_template_without_a_kept_revision_says_what_to_reapply(
        cluster: LocalControlPlane) -> None:
    name = f"rb-{uuid.uuid4().hex[:6]}"
    target = f"deploy/{name}"
    v1, v2 = (dict(v, metadata={**v["metadata"], "namespace": "default"})
              for v in versions("Deployment", name))
    for v in (v1, v2):
        # No replicas: with no kubelet a rollout of one never completes, and the Deployment
        # controller collects old ReplicaSets only after a complete rollout.
        v["spec"]["revisionHistoryLimit"] = 0
        v["spec"]["replicas"] = 0
    apply(cluster, v1, *as_user("alice"))
    wait_revision(cluster, "deployment", name, "default")
    apply(cluster, v2, *as_user("alice"))
    wait_revision(cluster, "deployment", name, "default")
    wait_persisted(cluster, target, 2, "default")
    deadline = time.monotonic() + 30
    while True:  # the old ReplicaSet is garbage-collected once v2's is the only one
        result = provenance(cluster, "rollback", target, "-n", "default", "--dry-run")
        if result.returncode == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "garbage-collected (revisionHistoryLimit 0" in result.stderr
    assert prov_annotations()["provenance.dev/git-sha"] in result.stderr  # what to re-apply
