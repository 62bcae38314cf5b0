"""The admission path end to end: kubectl → real kube-apiserver → TLS → the controller process."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
import uuid

import pytest
import yaml

from controller.dev.controller import DevController
from controller.dev.controlplane import LocalControlPlane
from controller.kube import KubeApi
from controller.ledger.models import AdmissionEntry
from controller.ledger.verify import load_ledger, verify_ledger
from tests.builders import IMAGE, deployment, prov_annotations, review
from tests.fixtures.cluster import kubectl
from tests.fixtures.controller import AUDIT_NAMESPACE, EXEMPT_NAMESPACE

pytestmark = pytest.mark.e2e


def _name() -> str:
    return f"d-{uuid.uuid4().hex[:8]}"


def apply(cp: LocalControlPlane, obj: dict[str, object], *extra: str) -> tuple[int, str]:
    result = kubectl(cp, "apply", "-f", "-", *extra, stdin=yaml.safe_dump(obj))
    return result.returncode, result.stdout + result.stderr


def ensure_namespace(cp: LocalControlPlane, name: str) -> None:
    kubectl(cp, "create", "namespace", name)


@pytest.fixture(autouse=True)
def _controllers(enforcing_controller: DevController) -> None:
    """Every test here runs with the enforcing controller wired in."""


def test_missing_annotations_are_rejected_with_every_reason(
    control_plane: LocalControlPlane,
) -> None:
    obj = deployment(_name(), ann={})
    code, out = apply(control_plane, obj)
    assert code != 0
    assert "denied the request" in out
    for key in ("git-sha", "build-id", "deployed-by"):
        assert f"provenance.dev/{key} is missing" in out
    assert out.count("[MissingAnnotation]") == 3


@pytest.mark.parametrize("where", ["containers", "initContainers"])
def test_tag_only_image_is_rejected(control_plane: LocalControlPlane, where: str) -> None:
    if where == "containers":
        obj = deployment(_name(), containers=[IMAGE, "nginx:1.25"])
    else:
        obj = deployment(_name(), init_containers=["busybox:latest"])
    code, out = apply(control_plane, obj)
    assert code != 0
    assert "[ImageNotPinned]" in out
    assert ("busybox:latest" if where == "initContainers" else "nginx:1.25") in out


def test_compliant_deployment_is_admitted(control_plane: LocalControlPlane) -> None:
    name = _name()
    code, out = apply(control_plane, deployment(name))
    assert code == 0, out
    got = kubectl(control_plane, "get", "deploy", name, "-o", "json", check=True)
    assert json.loads(got.stdout)["metadata"]["annotations"]["provenance.dev/git-sha"]


def test_server_dry_run_gives_the_same_verdict(control_plane: LocalControlPlane) -> None:
    bad_name, good_name = _name(), _name()
    code, out = apply(control_plane, deployment(bad_name, containers=["nginx"]),
                      "--dry-run=server")
    assert code != 0 and "[ImageNotPinned]" in out
    code, out = apply(control_plane, deployment(good_name), "--dry-run=server")
    assert code == 0, out
    # A dry run persists nothing.
    assert kubectl(control_plane, "get", "deploy", good_name).returncode != 0


def test_audit_mode_admits_with_warnings(
    control_plane: LocalControlPlane, auditing_controller: DevController,
) -> None:
    ensure_namespace(control_plane, AUDIT_NAMESPACE)
    code, out = apply(control_plane, deployment(_name(), AUDIT_NAMESPACE, containers=["nginx"]))
    assert code == 0, out
    assert "Warning:" in out and "[ImageNotPinned]" in out


def test_exempt_namespace_passes(control_plane: LocalControlPlane) -> None:
    ensure_namespace(control_plane, EXEMPT_NAMESPACE)
    code, out = apply(control_plane, deployment(_name(), EXEMPT_NAMESPACE, ann={},
                                                containers=["nginx"]))
    assert code == 0, out


def test_actor_mismatch_is_rejected(control_plane: LocalControlPlane) -> None:
    # Impersonation makes the API server vouch for "mallory"; the annotation says "admin".
    kubectl(control_plane, "create", "clusterrolebinding", "mallory-edit",
            "--clusterrole=cluster-admin", "--user=mallory")
    code, out = apply(control_plane, deployment(_name()), "--as", "mallory")
    assert code != 0
    assert "[ActorMismatch]" in out and "'mallory'" in out
    own = deployment(_name(), ann=prov_annotations(deployed_by="mallory"))
    code, out = apply(control_plane, own, "--as", "mallory")
    assert code == 0, out


def test_production_needs_an_authorised_deployer(control_plane: LocalControlPlane) -> None:
    ensure_namespace(control_plane, "prod")
    kubectl(control_plane, "create", "clusterrolebinding", "dave-edit",
            "--clusterrole=cluster-admin", "--user=dave")
    obj = deployment(_name(), "prod", ann=prov_annotations(deployed_by="dave"))
    code, out = apply(control_plane, obj, "--as", "dave")
    assert code != 0 and "[ActorNotAuthorised]" in out
    code, out = apply(control_plane, obj, "--as", "dave", "--as-group", "deployers")
    assert code == 0, out


def test_patch_removing_an_annotation_is_rejected(control_plane: LocalControlPlane) -> None:
    name = _name()
    assert apply(control_plane, deployment(name))[0] == 0
    patch = json.dumps({"metadata": {"annotations": {"provenance.dev/git-sha": None}}})
    result = kubectl(control_plane, "patch", "deploy", name, "--type=merge", "-p", patch)
    assert result.returncode != 0
    assert "[MissingAnnotation]" in result.stderr and "git-sha" in result.stderr


def test_scale_of_an_admitted_deployment_works(control_plane: LocalControlPlane) -> None:
    name = _name()
    assert apply(control_plane, deployment(name))[0] == 0
    result = kubectl(control_plane, "scale", "deploy", name, "--replicas=3")
    assert result.returncode == 0, result.stderr
    got = kubectl(control_plane, "get", "deploy", name, "-o", "jsonpath={.spec.replicas}")
    assert got.stdout == "3"


def test_malformed_review_gets_400_and_the_server_keeps_serving(
    enforcing_controller: DevController, control_plane: LocalControlPlane,
) -> None:
    ctx = enforcing_controller.ssl_context()
    for body in (b"not json", b"{}", b'{"apiVersion": "admission.k8s.io/v1", "kind": '
                 b'"AdmissionReview", "request": {"uid": "x"}}', b"[1,2]"):
        req = urllib.request.Request(enforcing_controller.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, context=ctx, timeout=5)
        assert info.value.code == 400
    # Still serving: a real admission goes through afterwards.
    assert apply(control_plane, deployment(_name()))[0] == 0


def test_metrics_and_version_after_admissions(
    enforcing_controller: DevController, control_plane: LocalControlPlane,
) -> None:
    assert apply(control_plane, deployment(_name()))[0] == 0
    assert apply(control_plane, deployment(_name(), containers=["nginx:1"]))[0] != 0
    base = f"http://127.0.0.1:{enforcing_controller.health_port}"
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    allowed = [v for k, v in samples.items()
               if k.startswith("provenance_admissions_total") and 'verdict="allowed"' in k]
    assert allowed
    assert sum(allowed) >= 1
    assert any(k.startswith("provenance_admissions_total") and 'verdict="denied"' in k
               and 'reason="ImageNotPinned"' in k and v >= 1 for k, v in samples.items())
    assert any("provenance_admission_duration_seconds_bucket" in k and 'le="0.001"' in k
               for k in samples)
    with urllib.request.urlopen(f"{base}/version", timeout=5) as resp:
        version = json.loads(resp.read())
    assert {"version", "commit", "build", "built_at", "environment"} <= set(version)


def test_a_review_over_one_mebibyte_is_judged_not_refused(
    enforcing_controller: DevController,
) -> None:
    # An UPDATE carries the object twice; aiohttp's default 1 MiB body limit would refuse it
    # with a 413 and the API server would fail the request without our reason.
    obj = deployment(_name(), containers=[IMAGE])
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "BLOB", "value": "x" * 700_000}]
    body = json.dumps(review(obj, operation="UPDATE", old=obj)).encode()
    assert len(body) > 1024 * 1024
    ctx = enforcing_controller.ssl_context()
    req = urllib.request.Request(enforcing_controller.url, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        answer = json.loads(resp.read())
    assert answer["response"]["allowed"] is True
    # Above the controller's own bound (6 MiB) the answer is a clean 413.
    huge = urllib.request.Request(enforcing_controller.url, data=b" " * (7 * 1024 * 1024),
                                  method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(huge, context=ctx, timeout=10)
    assert info.value.code == 413


def test_only_the_api_server_may_send_reviews(
    enforcing_controller: DevController, control_plane: LocalControlPlane,
) -> None:
    # A made-up review from anyone who can reach the port would otherwise be judged, and if
    # allowed, recorded in the ledger under a forged user. --client-ca refuses it at TLS.
    forged = json.dumps(review(deployment(_name()), username="someone-else")).encode()
    ca = enforcing_controller.workdir / f"{enforcing_controller.name}-certs" / "ca.crt"
    anonymous = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(enforcing_controller.url, data=forged,
                                 method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(req, context=anonymous, timeout=5)
    # The API server itself presents its webhook client certificate and gets through, and the
    # ledger records that its review came over an authenticated connection.
    name = _name()
    assert apply(control_plane, deployment(name))[0] == 0
    entries = asyncio.run(_admission_entries(control_plane, name))
    assert entries and all(e.client is not None and e.client.authenticated for e in entries)
    assert all(e.client is not None and e.client.subject for e in entries)


async def _admission_entries(control_plane: LocalControlPlane, name: str) -> list[AdmissionEntry]:
    api = KubeApi.from_kubeconfig(str(control_plane.kubeconfig))
    try:
        lanes = await load_ledger(api, "provenance-ledger", "audit",
                                  key_namespace="provenance-system")
    finally:
        await api.close()
    report = verify_ledger(lanes, chain="audit")
    assert report.ok, report.problems
    return [r.record.entry for r in report.records
            if isinstance(r.record.entry, AdmissionEntry) and r.record.entry.name == name]


def test_a_denial_is_logged_once_with_its_reasons_not_as_an_error(
    enforcing_controller: DevController, control_plane: LocalControlPlane,
) -> None:
    name = _name()
    assert apply(control_plane, deployment(name, containers=["nginx:1"]))[0] != 0
    records = [json.loads(line) for line in
               enforcing_controller.log_path.read_text().splitlines() if line.startswith("{")]
    ours = [r for r in records if r.get("message", "").endswith(f"default/{name}: denied")]
    assert len(ours) == 1
    assert ours[0]["level"] == "info"
    assert ours[0]["reasons"] == ["ImageNotPinned"]
    assert ours[0]["admission_uid"]
    assert not any("failed permanently" in r.get("message", "") for r in records)
