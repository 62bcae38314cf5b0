"""controller.tls.manager against the real kube-apiserver: Secret written, caBundle patched."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from controller.kube import KubeApi, KubeApiError
from controller.tls import TlsError, ensure_certificates, rotation_reason, service_hosts
from controller.tls.issuer import Material
from controller.tls.manager import WEBHOOK_CONFIGS

SERVICE = "provenance-controller"


async def _create_namespace(api: KubeApi, name: str) -> None:
    await api.request("POST", "/api/v1/namespaces",
                      body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def _webhook_config(name: str, namespace: str, *, service: str = SERVICE) -> dict[str, Any]:
    hook = {
        "admissionReviewVersions": ["v1"],
        "sideEffects": "NoneOnDryRun",
        "failurePolicy": "Ignore",
        "rules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"],
                   "operations": ["CREATE", "UPDATE"]}],
        # Nothing carries this label, so the webhook never intercepts the session's other tests.
        "namespaceSelector": {"matchLabels": {"tls-test-never": "true"}},
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {**hook, "name": "validate.provenance.dev",
             "clientConfig": {"service": {"name": service, "namespace": namespace,
                                          "path": "/validate", "port": 443}}},
            {**hook, "name": "someone-else.example.com",
             "clientConfig": {"service": {"name": "other", "namespace": namespace}}},
        ],
    }


@pytest.fixture
async def setup(kube_api: KubeApi) -> AsyncIterator[tuple[str, str]]:
    """A fresh namespace and a ValidatingWebhookConfiguration calling a Service in it."""
    suffix = uuid.uuid4().hex[:8]
    namespace, config = f"tls-{suffix}", f"provenance-tls-{suffix}"
    await _create_namespace(kube_api, namespace)
    await kube_api.request("POST", WEBHOOK_CONFIGS, body=_webhook_config(config, namespace))
    yield namespace, config
    await kube_api.request("DELETE", f"{WEBHOOK_CONFIGS}/{config}")
    await kube_api.request("DELETE", f"/api/v1/namespaces/{namespace}")


async def _secret(api: KubeApi, namespace: str, name: str) -> Material:
    obj = await api.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    material = Material.from_secret_data(
        {k: base64.b64decode(v) for k, v in obj["data"].items()})
    assert material is not None
    return material


async def _ca_bundles(api: KubeApi, config: str) -> dict[str, bytes | None]:
    obj = await api.request("GET", f"{WEBHOOK_CONFIGS}/{config}")
    out: dict[str, bytes | None] = {}
    for hook in obj["webhooks"]:
        raw = hook["clientConfig"].get("caBundle")
        out[hook["name"]] = base64.b64decode(raw) if raw else None
    return out


async def test_issues_stores_publishes_and_writes(
        kube_api: KubeApi, setup: tuple[str, str], tmp_path: Path) -> None:
    namespace, config = setup
    status = await ensure_certificates(
        kube_api, namespace=namespace, secret="webhook-tls", service=SERVICE,
        webhook_config=config, cert_dir=tmp_path)
    assert status.action == "created"
    assert status.webhook_patched
    assert status.files_changed

    stored = await _secret(kube_api, namespace, "webhook-tls")
    hosts = service_hosts(SERVICE, namespace)
    assert rotation_reason(stored, hosts=hosts, renew_before=dt.timedelta(days=30)) is None
    bundles = await _ca_bundles(kube_api, config)
    assert bundles["validate.provenance.dev"] == stored.ca_bundle_pem
    assert bundles["someone-else.example.com"] is None, "a webhook that is not ours was touched"
    assert (tmp_path / "tls.crt").read_bytes() == stored.cert_pem
    assert (tmp_path / "tls.key").read_bytes() == stored.key_pem
    assert (tmp_path / "ca.crt").read_bytes() == stored.ca_bundle_pem
    assert (tmp_path / "tls.key").stat().st_mode & 0o077 == 0

    again = await ensure_certificates(
        kube_api, namespace=namespace, secret="webhook-tls", service=SERVICE,
        webhook_config=config, cert_dir=tmp_path)
    assert (again.action, again.webhook_patched, again.files_changed) == (
        "unchanged", False, False)
    assert await _secret(kube_api, namespace, "webhook-tls") == stored


async def test_rotation_replaces_the_certificate_and_keeps_the_old_ca_trusted(
        kube_api: KubeApi, setup: tuple[str, str], tmp_path: Path) -> None:
    namespace, config = setup
    common = functools.partial(
        ensure_certificates, kube_api, namespace=namespace, secret="webhook-tls",
        service=SERVICE, webhook_config=config, cert_dir=tmp_path)
    await common(validity=dt.timedelta(days=5), renew_before=dt.timedelta(days=1))
    old = await _secret(kube_api, namespace, "webhook-tls")
    # Five days of validity is within a ten-day renewal window: rotation is due.
    status = await common(validity=dt.timedelta(days=90), renew_before=dt.timedelta(days=10))
    assert status.action == "rotated"
    assert "expires" in status.reason
    new = await _secret(kube_api, namespace, "webhook-tls")
    assert new.cert_pem != old.cert_pem
    old_ca = x509.load_pem_x509_certificates(old.ca_bundle_pem)[0]
    new_bundle = x509.load_pem_x509_certificates(new.ca_bundle_pem)
    assert old_ca in new_bundle, "the previous CA must stay trusted during the rotation"
    assert (await _ca_bundles(kube_api, config))["validate.provenance.dev"] == new.ca_bundle_pem
    assert (tmp_path / "tls.crt").read_bytes() == new.cert_pem
    x509.load_pem_x509_certificate(old.cert_pem).verify_directly_issued_by(old_ca)


async def test_replicas_racing_at_start_up_agree_on_one_certificate(
        kube_api: KubeApi, setup: tuple[str, str], tmp_path: Path) -> None:
    namespace, config = setup
    results = await asyncio.gather(*(
        ensure_certificates(kube_api, namespace=namespace, secret="webhook-tls",
                            service=SERVICE, webhook_config=config, cert_dir=tmp_path / str(i))
        for i in range(3)))
    assert sorted(r.action for r in results).count("created") == 1
    stored = await _secret(kube_api, namespace, "webhook-tls")
    for i in range(3):
        assert (tmp_path / str(i) / "tls.crt").read_bytes() == stored.cert_pem
    assert (await _ca_bundles(kube_api, config))["validate.provenance.dev"] == stored.ca_bundle_pem


async def test_fills_a_secret_the_chart_created_empty_and_keeps_its_labels(
        kube_api: KubeApi, setup: tuple[str, str], tmp_path: Path) -> None:
    namespace, config = setup
    await kube_api.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "chart-tls", "labels": {"app.kubernetes.io/managed-by": "Helm"}}})
    status = await ensure_certificates(
        kube_api, namespace=namespace, secret="chart-tls", service=SERVICE,
        webhook_config=config, cert_dir=tmp_path)
    assert status.action == "created"
    obj = await kube_api.request("GET", f"/api/v1/namespaces/{namespace}/secrets/chart-tls")
    assert obj["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "Helm"}
    assert set(obj["data"]) == {"tls.crt", "tls.key", "ca.crt"}


async def test_refuses_a_webhook_configuration_that_does_not_call_our_service(
        kube_api: KubeApi, setup: tuple[str, str], tmp_path: Path) -> None:
    namespace, config = setup
    with pytest.raises(TlsError, match="no webhook calling Service"):
        await ensure_certificates(
            kube_api, namespace=namespace, secret="webhook-tls", service="not-ours",
            webhook_config=config, cert_dir=tmp_path)
    with pytest.raises(TlsError, match="cannot read ValidatingWebhookConfiguration"):
        await ensure_certificates(
            kube_api, namespace=namespace, secret="webhook-tls", service=SERVICE,
            webhook_config="does-not-exist", cert_dir=tmp_path)


async def test_validity_must_exceed_the_renewal_window(
        kube_api: KubeApi, tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="must exceed"):
        await ensure_certificates(
            kube_api, namespace="x", secret="s", service=SERVICE, webhook_config="c",
            cert_dir=tmp_path, validity=dt.timedelta(days=1), renew_before=dt.timedelta(days=2))


def test_kube_api_error_is_not_leaked() -> None:
    # TlsError is the one error callers handle; KubeApiError stays inside the package.
    assert not issubclass(KubeApiError, TlsError)
