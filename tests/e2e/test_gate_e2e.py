"""The gate guards itself, against the real API server: each way of switching the gate off ends
recorded in the ledger, restored, and visible (Event, `provenance_gate_intact`)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from controller.dev.controller import DevController, webhook_configuration
from controller.dev.controlplane import LocalControlPlane, free_port
from controller.kube import KubeApi
from controller.ledger.models import GateChangedEntry
from controller.ledger.verify import load_ledger, verify_ledger
from tests.fixtures.cluster import kubectl

pytestmark = pytest.mark.e2e

NAME = "provenance-gate"
ZONE = "gate-zone"
"""The only namespace this controller judges, so that it leaves the other tests alone."""


@pytest.fixture(scope="module")
def guarded(control_plane: LocalControlPlane,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevController]:
    workdir = tmp_path_factory.mktemp("gate")
    port = free_port()
    # The expected configuration, as the chart renders it: without the caBundle, which the
    # controller pins when it first sees the installed object.
    expected = webhook_configuration(
        name=NAME, url=f"https://127.0.0.1:{port}/validate", ca_bundle=b"",
        exempt_namespaces=["kube-system"], only_namespaces=[ZONE], timeout_seconds=5)
    del expected["webhooks"][0]["clientConfig"]["caBundle"]
    path = workdir / "expected.yaml"
    path.write_text(yaml.safe_dump(expected))
    kubectl(control_plane, "create", "namespace", ZONE)
    ctl = DevController(control_plane, workdir, name=NAME, port=port,
                        exempt_namespaces=["kube-system"], only_namespaces=[ZONE],
                        extra_args=["--gate-expected", str(path), "--gate-interval", "0.5"])
    ctl.start()
    wait_for(lambda: gate_intact(ctl) == 1.0, "the guard never saw the gate intact")
    yield ctl
    # Stop the process before the configuration is deleted, or the guard would restore it.
    assert ctl._proc is not None
    ctl._proc.terminate()
    ctl._proc.wait(timeout=15)
    ctl.stop()


def wait_for(check: Callable[[], bool], message: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(message)


def gate_intact(ctl: DevController) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{ctl.health_port}/metrics",
                                timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("provenance_gate_intact "):
                return float(line.split()[1])
    raise AssertionError("provenance_gate_intact is not exported")


def live(cp: LocalControlPlane) -> dict[str, Any] | None:
    result = kubectl(cp, "get", "validatingwebhookconfiguration", NAME, "-o", "json")
    if result.returncode != 0:
        return None
    obj: dict[str, Any] = json.loads(result.stdout)
    return obj


async def gate_entries(api: KubeApi) -> list[GateChangedEntry]:
    lanes = await load_ledger(api, "provenance-ledger", "audit", key_namespace="provenance-system")
    report = verify_ledger(lanes, chain="audit")
    assert report.ok, report.problems
    return [r.record.entry for r in report.records
            if isinstance(r.record.entry, GateChangedEntry)
            and r.record.entry.configuration == NAME]


async def recorded(api: KubeApi, before: int, change: str) -> GateChangedEntry:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        entries = await gate_entries(api)
        if len(entries) > before:
            entry = entries[-1]
            assert entry.change == change
            assert entry.restored
            return entry
        await asyncio.sleep(0.3)
    raise AssertionError("no gate-changed entry was recorded")


def events(cp: LocalControlPlane, reason: str) -> list[dict[str, Any]]:
    result = kubectl(cp, "get", "events", "-n", "default", "-o", "json", "--field-selector",
                     f"involvedObject.name={NAME},reason={reason}", check=True)
    items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
    return items


def patch(cp: LocalControlPlane, ops: list[dict[str, Any]]) -> None:
    kubectl(cp, "patch", "validatingwebhookconfiguration", NAME, "--type=json",
            "-p", json.dumps(ops), check=True)


async def test_a_deleted_configuration_is_recreated_and_recorded(
        control_plane: LocalControlPlane, guarded: DevController, kube_api: KubeApi) -> None:
    original = live(control_plane)
    assert original is not None
    before = len(await gate_entries(kube_api))
    kubectl(control_plane, "delete", "validatingwebhookconfiguration", NAME, check=True)
    wait_for(lambda: live(control_plane) is not None, "the configuration was not recreated")
    entry = await recorded(kube_api, before, "deleted")
    assert entry.resource_version == ""
    again = live(control_plane)
    assert again is not None
    assert again["metadata"]["uid"] != original["metadata"]["uid"]
    # Recreated with the caBundle it had: the gate answers again, not just exists.
    assert again["webhooks"][0]["clientConfig"]["caBundle"] == \
        original["webhooks"][0]["clientConfig"]["caBundle"]
    denied = kubectl(control_plane, "create", "deployment", "tagged", "-n", ZONE,
                     "--image=nginx:1")
    assert denied.returncode != 0 and "denied" in denied.stderr
    assert events(control_plane, "GateDeleted")
    wait_for(lambda: gate_intact(guarded) == 1.0, "the gate is not reported intact again")


async def test_an_added_object_selector_is_removed_and_recorded(
        control_plane: LocalControlPlane, guarded: DevController, kube_api: KubeApi) -> None:
    before = len(await gate_entries(kube_api))
    patch(control_plane, [{"op": "add", "path": "/webhooks/0/objectSelector",
                           "value": {"matchLabels": {"skip": "no"}}}])
    entry = await recorded(kube_api, before, "drifted")
    assert any("objectSelector" in d for d in entry.differences), entry.differences
    assert entry.resource_version
    wait_for(lambda: not (live(control_plane) or {}).get("webhooks", [{}])[0].get(
        "objectSelector", {}).get("matchLabels"), "the objectSelector is still there")
    assert events(control_plane, "GateDrifted")


async def test_failure_policy_ignore_with_a_dead_url_is_restored_and_recorded(
        control_plane: LocalControlPlane, guarded: DevController, kube_api: KubeApi) -> None:
    before = len(await gate_entries(kube_api))
    patch(control_plane, [
        {"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"},
        {"op": "replace", "path": "/webhooks/0/clientConfig/url",
         "value": "https://127.0.0.1:9/validate"}])
    entry = await recorded(kube_api, before, "drifted")
    assert any("failurePolicy" in d and "Ignore" in d for d in entry.differences)
    assert any("clientConfig" in d for d in entry.differences)

    def restored() -> bool:
        hook = (live(control_plane) or {}).get("webhooks", [{}])[0]
        return bool(hook.get("failurePolicy") == "Fail"
                    and hook.get("clientConfig", {}).get("url") == guarded.url)

    wait_for(restored, "failurePolicy and the URL were not restored")
    denied = kubectl(control_plane, "create", "deployment", "tagged2", "-n", ZONE,
                     "--image=nginx:1")
    assert denied.returncode != 0 and "denied" in denied.stderr
