"""The chart against the real kube-apiserver: server-side dry runs, a real `helm install`.

There is no kubelet, so the controller's pods never run: the install is checked for what the API
server holds and enforces (objects, RBAC, the webhook registration failing closed), and the
self-managed TLS is driven from here with the chart's own service-account token.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from controller.dev.controller import DevController
from controller.dev.controlplane import LocalControlPlane, free_port
from controller.gate import GateGuard, GateSettings, load_expected
from controller.kube import Credentials, KubeApi, load_credentials
from controller.ledger.chain import CheckpointSigner
from controller.tls import SelfManagedTls, ensure_certificates
from tests.builders import deployment
from tests.chart.helm import (
    CHART,
    CI_VALUES,
    RELEASE_NAMESPACE,
    SCENARIOS,
    helm,
    scenario_id,
    template,
)
from tests.fixtures.cluster import kubectl

RELEASE = "pc"
FULLNAME = "pc-provenance-controller"
SA = f"system:serviceaccount:{RELEASE_NAMESPACE}:{FULLNAME}"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def get_json(cp: LocalControlPlane, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(kubectl(cp, "get", *args, "-o", "json")))
    return data


@pytest.fixture(scope="module")
def release(control_plane: LocalControlPlane, helm_home: Path) -> Iterator[str]:
    """`helm install` with default values; uninstalled at the end of the module, because the
    webhook it registers fails closed and no pod can ever answer it here."""
    result = helm("install", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE,
                  "--create-namespace", home=helm_home, kubeconfig=control_plane.kubeconfig)
    yield result.stdout
    helm("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, home=helm_home,
         kubeconfig=control_plane.kubeconfig, check=False)


@pytest.fixture(scope="module")
def crds(control_plane: LocalControlPlane, third_party_crds: list[dict[str, Any]]) -> None:
    """cert-manager's and prometheus-operator's CRDs, applied for real and established."""
    ok(kubectl(control_plane, "apply", "--server-side", "-f", "-",
               stdin="\n---\n".join(yaml.safe_dump(d) for d in third_party_crds)))
    names = [f"crd/{d['metadata']['name']}" for d in third_party_crds]
    # `kubectl wait` fails at once ("accessor error: <nil>") on a CRD whose status has no
    # conditions yet, which a loaded API server can take a moment to write: ask again.
    deadline = time.monotonic() + 60
    while True:
        waited = kubectl(control_plane, "wait", "--for=condition=Established", "--timeout=60s",
                         *names)
        if waited.returncode == 0 or "accessor error" not in waited.stderr \
                or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    ok(waited)


# --- the install ------------------------------------------------------------------------------

def test_install_creates_every_object(control_plane: LocalControlPlane, release: str) -> None:
    cp = control_plane
    ns = ["-n", RELEASE_NAMESPACE]
    deployment = get_json(cp, "deployment", FULLNAME, *ns)
    assert deployment["spec"]["replicas"] == 2
    for kind in ("service", "serviceaccount", "poddisruptionbudget"):
        get_json(cp, kind, FULLNAME, *ns)
    get_json(cp, "configmap", f"{FULLNAME}-config", *ns)
    secret = get_json(cp, "secret", f"{FULLNAME}-tls", *ns)
    assert not secret.get("data"), "the chart's TLS Secret starts empty; the controller fills it"
    get_json(cp, "validatingwebhookconfiguration", FULLNAME)
    get_json(cp, "clusterrole", FULLNAME)
    get_json(cp, "clusterrolebinding", FULLNAME)
    get_json(cp, "role", f"{FULLNAME}-tls", *ns)
    get_json(cp, "role", f"{FULLNAME}-checkpoint-key", *ns)
    get_json(cp, "namespace", "provenance-ledger")
    get_json(cp, "role", f"{FULLNAME}-ledger", "-n", "provenance-ledger")
    # NOTES: how to check the install; no warning for the defaults.
    assert "helm test pc -n provenance-system" in release
    assert "WARNING" not in release


CAN = [
    ("get", "deployments.apps", "default"),
    ("list", "deployments.apps", "team-a"),
    ("watch", "deployments.apps", "kube-system"),
    # The reconciler watches every gated kind.
    ("watch", "statefulsets.apps", "team-a"),
    ("list", "daemonsets.apps", "team-a"),
    ("watch", "replicasets.apps", "default"),
    ("watch", "jobs.batch", "default"),
    ("list", "cronjobs.batch", "default"),
    ("watch", "pods", "default"),
    ("watch", "replicationcontrollers", "default"),
    ("get", f"secrets/{FULLNAME}-tls", RELEASE_NAMESPACE),
    ("update", f"secrets/{FULLNAME}-tls", RELEASE_NAMESPACE),
    ("get", "secrets/provenance-ledger-checkpoint-key", RELEASE_NAMESPACE),
    ("create", "configmaps", "provenance-ledger"),
    ("get", "configmaps/provenance-ledger.audit.head", RELEASE_NAMESPACE),
    ("patch", "configmaps/provenance-ledger.audit.head", RELEASE_NAMESPACE),
    ("create", "leases.coordination.k8s.io", "provenance-ledger"),
    ("update", "leases.coordination.k8s.io", "provenance-ledger"),
    ("update", "configmaps", "provenance-ledger"),
    ("list", "configmaps", "provenance-ledger"),
    ("patch", f"validatingwebhookconfigurations.admissionregistration.k8s.io/{FULLNAME}", ""),
    # The gate guard: read and restore this configuration, recreate it, report with Events.
    ("get", f"validatingwebhookconfigurations.admissionregistration.k8s.io/{FULLNAME}", ""),
    ("update", f"validatingwebhookconfigurations.admissionregistration.k8s.io/{FULLNAME}", ""),
    ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io", ""),
    ("create", "events", "default"),
]
CANNOT = [
    ("create", "deployments.apps", "default"),
    ("update", "deployments.apps", "default"),
    ("delete", "deployments.apps", "default"),
    ("create", "pods", RELEASE_NAMESPACE),
    ("create", "pods/ephemeralcontainers", "default"),
    ("update", "statefulsets.apps", "default"),
    ("create", "jobs.batch", "default"),
    ("delete", "pods", "default"),
    ("create", "configmaps", "default"),
    ("create", "configmaps", RELEASE_NAMESPACE),
    ("patch", "configmaps/some-other-configmap", RELEASE_NAMESPACE),
    ("delete", "leases.coordination.k8s.io", "provenance-ledger"),
    ("delete", "configmaps", "provenance-ledger"),
    ("get", "secrets", "default"),
    ("list", "secrets", RELEASE_NAMESPACE),
    ("get", "secrets/some-other-secret", RELEASE_NAMESPACE),
    ("create", "secrets", RELEASE_NAMESPACE),
    ("update", "secrets/provenance-ledger-checkpoint-key", RELEASE_NAMESPACE),
    ("get", "secrets", "provenance-ledger"),
    ("patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/someone-else", ""),
    ("delete", f"validatingwebhookconfigurations.admissionregistration.k8s.io/{FULLNAME}", ""),
    ("update", "validatingwebhookconfigurations.admissionregistration.k8s.io/someone-else", ""),
    ("list", "validatingwebhookconfigurations.admissionregistration.k8s.io", ""),
    ("create", "events", RELEASE_NAMESPACE),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", ""),
    ("impersonate", "users", ""),
    ("get", "nodes", ""),
]


def _can_i(cp: LocalControlPlane, verb: str, resource: str, namespace: str) -> bool:
    args = ["auth", "can-i", verb, resource, "--as", SA]
    args += ["-n", namespace] if namespace else []
    result = kubectl(cp, *args)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


@pytest.mark.parametrize(("verb", "resource", "namespace"), CAN)
def test_service_account_may(control_plane: LocalControlPlane, release: str, verb: str,
                             resource: str, namespace: str) -> None:
    assert _can_i(control_plane, verb, resource, namespace)


@pytest.mark.parametrize(("verb", "resource", "namespace"), CANNOT)
def test_service_account_may_not(control_plane: LocalControlPlane, release: str, verb: str,
                                 resource: str, namespace: str) -> None:
    assert not _can_i(control_plane, verb, resource, namespace)


def test_registered_webhook(control_plane: LocalControlPlane, release: str) -> None:
    vwc = get_json(control_plane, "validatingwebhookconfiguration", FULLNAME)
    [hook] = vwc["webhooks"]
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["sideEffects"] == "NoneOnDryRun"
    assert hook["failurePolicy"] == "Fail"
    assert hook["timeoutSeconds"] == 10
    assert hook["namespaceSelector"] == {"matchExpressions": [{
        "key": "kubernetes.io/metadata.name", "operator": "NotIn",
        "values": ["kube-system", RELEASE_NAMESPACE]}]}
    # The API server defaults objectSelector to "everything": no label on a Deployment opts out.
    assert hook.get("objectSelector", {}) == {}
    assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]


def _dry_run_create(cp: LocalControlPlane, namespace: str) -> subprocess.CompletedProcess[str]:
    return kubectl(cp, "create", "deployment", "probe", "--image=registry.example.com/app:1",
                   "-n", namespace, "--dry-run=server")


def test_the_api_server_calls_the_webhook_and_fails_closed(
        control_plane: LocalControlPlane, release: str) -> None:
    ok(kubectl(control_plane, "create", "namespace", "chart-team-a"))
    # No pod can answer here, so a judged namespace is refused (failurePolicy Fail) ...
    refused = _dry_run_create(control_plane, "chart-team-a")
    assert refused.returncode != 0
    assert "workloads.validate.provenance.dev" in refused.stderr
    # ... while the exempt namespaces never reach the webhook.
    ok(_dry_run_create(control_plane, "kube-system"))
    ok(_dry_run_create(control_plane, RELEASE_NAMESPACE))


@pytest.fixture
async def sa_api(control_plane: LocalControlPlane, release: str) -> AsyncIterator[KubeApi]:
    """An API client holding the chart's own service-account token, nothing more."""
    token = ok(kubectl(control_plane, "create", "token", FULLNAME, "-n", RELEASE_NAMESPACE,
                       "--duration=10m")).strip()
    admin = load_credentials(str(control_plane.kubeconfig))
    api = KubeApi(Credentials(server=admin.server, ca_file=admin.ca_file, token=token))
    yield api
    await api.close()


async def test_self_managed_tls_works_with_the_charts_rbac_and_survives_upgrade(
        control_plane: LocalControlPlane, sa_api: KubeApi, helm_home: Path,
        tmp_path: Path) -> None:
    status = await ensure_certificates(
        sa_api, namespace=RELEASE_NAMESPACE, secret=f"{FULLNAME}-tls", service=FULLNAME,
        webhook_config=FULLNAME, cert_dir=tmp_path, renew_before=dt.timedelta(days=30))
    assert status.action == "created"
    vwc = get_json(control_plane, "validatingwebhookconfiguration", FULLNAME)
    bundle = base64.b64decode(vwc["webhooks"][0]["clientConfig"]["caBundle"])
    assert bundle == status.ca_bundle_pem
    secret = get_json(control_plane, "secret", f"{FULLNAME}-tls", "-n", RELEASE_NAMESPACE)
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}

    # An upgrade must keep what the controller wrote: the chart never renders data or caBundle.
    helm("upgrade", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--reuse-values",
         "--set", "webhook.timeoutSeconds=12", home=helm_home,
         kubeconfig=control_plane.kubeconfig)
    vwc = get_json(control_plane, "validatingwebhookconfiguration", FULLNAME)
    assert vwc["webhooks"][0]["timeoutSeconds"] == 12
    assert base64.b64decode(vwc["webhooks"][0]["clientConfig"]["caBundle"]) == bundle
    after = get_json(control_plane, "secret", f"{FULLNAME}-tls", "-n", RELEASE_NAMESPACE)
    assert after["data"] == secret["data"]
    again = await ensure_certificates(
        sa_api, namespace=RELEASE_NAMESPACE, secret=f"{FULLNAME}-tls", service=FULLNAME,
        webhook_config=FULLNAME, cert_dir=tmp_path)
    assert (again.action, again.webhook_patched) == ("unchanged", False)


def test_a_schema_violation_fails_the_install(
        control_plane: LocalControlPlane, helm_home: Path, release: str) -> None:
    result = helm("install", "pc-bad", str(CHART), "--namespace", RELEASE_NAMESPACE,
                  "--set", "config.mode=block", "--set", "webhok.timeoutSeconds=5",
                  home=helm_home, kubeconfig=control_plane.kubeconfig, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert "/config/mode" in result.stderr
    assert "'webhok' not allowed" in result.stderr
    assert kubectl(control_plane, "get", "validatingwebhookconfiguration",
                   "pc-bad-provenance-controller").returncode != 0, "nothing may be created"
    assert helm("status", "pc-bad", "--namespace", RELEASE_NAMESPACE, home=helm_home,
                kubeconfig=control_plane.kubeconfig, check=False).returncode != 0


def test_notes_warn_about_unsafe_settings(
        control_plane: LocalControlPlane, helm_home: Path, release: str) -> None:
    [audit] = [p for p in CI_VALUES if p.stem == "audit-mode-values"]
    result = helm("install", "pc-audit", str(CHART), "--namespace", RELEASE_NAMESPACE,
                  "-f", str(audit), "--dry-run=server",
                  # The first release owns the ledger namespace and its signed heads; a second
                  # may not adopt them.
                  "--set", "ledger.createNamespace=false",
                  "--set", "ledger.createSignedHeads=false",
                  home=helm_home,
                  kubeconfig=control_plane.kubeconfig)
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "WARNING: replicaCount is 1" in notes
    assert "WARNING: failurePolicy is Ignore" in notes
    assert "WARNING: mode is audit" in notes
    assert "WARNING: webhook.guard.restore is false" in notes


# --- every rendering, validated by the API server ---------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_server_side_dry_run(control_plane: LocalControlPlane, helm_home: Path, crds: None,
                             release: str, scenario: Path | None) -> None:
    """Every object of every scenario, the helm test pod included, passes the API server's
    validation (schemas, CRDs, RBAC escalation checks) without being stored."""
    rendered = template(scenario, home=helm_home)
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    # Namespaced objects need their namespace to exist, even for a dry run.
    for ns in {d["metadata"].get("namespace") for d in docs} - {None}:
        if kubectl(control_plane, "get", "namespace", str(ns)).returncode != 0:
            ok(kubectl(control_plane, "create", "namespace", str(ns)))
    out = ok(kubectl(control_plane, "apply", "--dry-run=server", "-f", "-", stdin=rendered))
    assert out.count("(server dry run)") == len(docs), out


def test_static_manifests_apply(control_plane: LocalControlPlane, release: str) -> None:
    """`kubectl apply -f manifests/provenance-controller.yaml`, as the README tells users, is
    accepted by the API server object by object (as a server-side dry run: the release above
    already owns the cluster-scoped names)."""
    path = CHART.parents[1] / "manifests" / "provenance-controller.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    out = ok(kubectl(control_plane, "apply", "--dry-run=server", "-f", str(path)))
    assert out.count("(server dry run)") == len(docs), out


async def test_the_gate_guard_restores_the_charts_configuration_with_the_charts_rbac(
        control_plane: LocalControlPlane, sa_api: KubeApi, tmp_path: Path) -> None:
    """The guard as the chart runs it: the expected copy from the chart's ConfigMap, the CA
    from the self-managed TLS Secret, and only the service account's permissions."""
    tls = SelfManagedTls(namespace=RELEASE_NAMESPACE, secret=f"{FULLNAME}-tls",
                         service=FULLNAME, webhook_config=FULLNAME, cert_dir=tmp_path)
    await tls.ensure(sa_api)
    cm = get_json(control_plane, "configmap", f"{FULLNAME}-gate", "-n", RELEASE_NAMESPACE)
    guard = GateGuard(sa_api, GateSettings(expected=load_expected(cm["data"]["expected.yaml"])),
                      record=None, ca_source=lambda: tls.ca_bundle(sa_api))
    assert (await guard.check()).intact
    ok(kubectl(control_plane, "patch", "validatingwebhookconfiguration", FULLNAME, "--type=json",
               "-p", json.dumps([{"op": "add", "path": "/webhooks/0/objectSelector",
                                  "value": {"matchLabels": {"gate": "off"}}}])))
    drifted = await guard.check()
    assert drifted.change == "drifted" and drifted.restored, drifted
    assert not get_json(control_plane, "validatingwebhookconfiguration", FULLNAME)[
        "webhooks"][0].get("objectSelector", {}).get("matchLabels")
    ok(kubectl(control_plane, "delete", "validatingwebhookconfiguration", FULLNAME))
    deleted = await guard.check()
    assert deleted.change == "deleted" and deleted.restored, deleted
    vwc = get_json(control_plane, "validatingwebhookconfiguration", FULLNAME)
    assert vwc["webhooks"][0]["clientConfig"]["caBundle"] == await tls.ca_bundle(sa_api)
    assert (await guard.check()).intact
    events = json.loads(ok(kubectl(control_plane, "get", "events", "-n", "default",
                                   "-o", "json", "--field-selector",
                                   f"involvedObject.name={FULLNAME}")))["items"]
    assert {e["reason"] for e in events} >= {"GateDrifted", "GateDeleted"}


# --- the controller itself under the chart's RBAC ---------------------------------------------

def _sa_kubeconfig(cp: LocalControlPlane, directory: Path) -> Path:
    """A kubeconfig holding only a token of the chart's service account."""
    token = ok(kubectl(cp, "create", "token", FULLNAME, "-n", RELEASE_NAMESPACE,
                       "--duration=10m")).strip()
    admin = yaml.safe_load(cp.kubeconfig.read_text())
    path = directory / "sa-kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "sa"}}],
        "current-context": "sa"}))
    return path


def _chart_config(cp: LocalControlPlane) -> dict[str, Any]:
    """The controller configuration the chart rendered into its ConfigMap."""
    rendered = get_json(cp, "configmap", f"{FULLNAME}-config", "-n", RELEASE_NAMESPACE)
    config: dict[str, Any] = yaml.safe_load(rendered["data"]["config.yaml"])
    return config


def test_the_controller_runs_with_only_the_charts_rbac(
        control_plane: LocalControlPlane, release: str, tmp_path: Path) -> None:
    """The real controller process, holding nothing but the chart's service-account token and
    the chart's rendered configuration: it starts (kopf watch, ledger, key lookup), judges, and
    records. Only the network differs from a cluster: the API server reaches it by URL."""
    cp = control_plane
    sa_kubeconfig = _sa_kubeconfig(cp, tmp_path)
    config = _chart_config(cp)
    # The chart's webhook (no pod behind its Service) refuses every judged namespace; ours is
    # routed the release namespace, which the chart's webhook exempts.
    config["exempt_namespaces"] = ["kube-system"]
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    # The operator creates the ledger key, as the chart's NOTES say (the chart lets the
    # controller read it, never create it).
    key = tmp_path / "checkpoint.pem"
    key.write_bytes(CheckpointSigner.generate().private_pem())
    kubectl(cp, "-n", RELEASE_NAMESPACE, "delete", "secret", "provenance-ledger-checkpoint-key",
            "--ignore-not-found")
    ok(kubectl(cp, "-n", RELEASE_NAMESPACE, "create", "secret", "generic",
               "provenance-ledger-checkpoint-key", f"--from-file=private-key={key}"))
    ctl = DevController(cp, tmp_path, config_file=config_file, name="pc-as-sa",
                        only_namespaces=[RELEASE_NAMESPACE], system_namespace=RELEASE_NAMESPACE,
                        controller_kubeconfig=sa_kubeconfig)
    ctl.start()
    try:
        name = f"sa-{uuid.uuid4().hex[:6]}"
        good = deployment(name, RELEASE_NAMESPACE)
        ok(kubectl(cp, "apply", "-f", "-", stdin=yaml.safe_dump(good)))
        bad = kubectl(cp, "apply", "-f", "-", stdin=yaml.safe_dump(
            deployment(f"{name}-bad", RELEASE_NAMESPACE, containers=["nginx:1"])))
        assert bad.returncode != 0
        assert "[ImageNotPinned]" in bad.stderr
        history = subprocess.run(
            [sys.executable, "-m", "controller.cli", "ledger", "history", f"deploy/{name}",
             "-n", RELEASE_NAMESPACE, "-o", "json", "--quiet",
             "--kubeconfig", str(cp.kubeconfig)],
            capture_output=True, text=True, timeout=120, check=False)
        assert history.returncode == 0, history.stderr
        assert [v["entry"]["operation"] for v in json.loads(history.stdout)] == ["CREATE"]
    finally:
        ctl.stop()
    # Nothing the controller did was refused: the key, the lanes' Leases and the signed heads
    # beside the key are all within the chart's grants.
    lines = ctl.log_path.read_text().splitlines()
    assert [line for line in lines if "Forbidden" in line] == []


def test_the_controller_serves_its_self_managed_certificate(
        control_plane: LocalControlPlane, release: str, tmp_path: Path) -> None:
    """`--tls-self-managed`, as the chart's Deployment passes it: the process issues (or reuses)
    the certificate in the chart's Secret, keeps the chart's caBundle current, and serves it."""
    cp = control_plane
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(_chart_config(cp)))
    port, health = free_port(), free_port()
    certs = tmp_path / "tls"
    log = (tmp_path / "controller.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli_operator",
         "--kubeconfig", str(_sa_kubeconfig(cp, tmp_path)), "--config", str(config_file),
         "--webhook-host", "127.0.0.1", "--webhook-port", str(port),
         "--health-port", str(health),
         "--tls-cert", str(certs / "tls.crt"), "--tls-key", str(certs / "tls.key"),
         "--tls-self-managed", "--tls-secret", f"{FULLNAME}-tls",
         "--webhook-config", FULLNAME, "--service", FULLNAME,
         "--namespace", RELEASE_NAMESPACE], stdout=log, stderr=subprocess.STDOUT)
    try:
        served = _served_certificate(port, proc, tmp_path / "controller.log")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    secret = get_json(cp, "secret", f"{FULLNAME}-tls", "-n", RELEASE_NAMESPACE)
    stored = x509.load_pem_x509_certificates(base64.b64decode(secret["data"]["tls.crt"]))[0]
    assert served == stored.public_bytes(serialization.Encoding.DER)
    vwc = get_json(cp, "validatingwebhookconfiguration", FULLNAME)
    bundle = x509.load_pem_x509_certificates(
        base64.b64decode(vwc["webhooks"][0]["clientConfig"]["caBundle"]))
    assert any(ca.subject == stored.issuer for ca in bundle)
    san = stored.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{FULLNAME}.{RELEASE_NAMESPACE}.svc" in san.get_values_for_type(x509.DNSName)


def _served_certificate(port: int, proc: subprocess.Popen[bytes], log: Path) -> bytes:
    """The DER certificate the webhook port presents, once it listens."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # we compare the certificate itself below
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock, \
                    ctx.wrap_socket(sock) as tls:
                der = tls.getpeercert(binary_form=True)
                if der:
                    return der
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the webhook port never served TLS:\n{log.read_text()[-3000:]}")
