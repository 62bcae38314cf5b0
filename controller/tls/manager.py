"""Keeping the Secret, the webhook configuration and the served files in agreement.

Order matters during a rotation. The new material is written to the Secret first (its
`resourceVersion` makes exactly one replica win a race), then the webhook configuration's
caBundle is set to the Secret's bundle, and only then are the files written that the webhook
server reloads. So the API server trusts a new CA before any replica serves a certificate from it,
and, because the bundle keeps the previous CA, it still trusts replicas that have not reloaded.
Every step is idempotent: a replica that crashes half-way is repaired by the next call from any
replica.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from controller.kube import KubeApi, KubeApiError
from controller.tls.errors import TlsError
from controller.tls.issuer import (
    DEFAULT_VALIDITY,
    KEY_CA,
    KEY_CERT,
    KEY_KEY,
    Material,
    issue,
    not_after,
    rotation_reason,
    service_hosts,
)

log = logging.getLogger(__name__)

WEBHOOK_CONFIGS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
MANAGED_BY = "provenance-controller"
_ATTEMPTS = 4
"""Read-modify-write attempts before a lost race is reported; two replicas need at most two."""


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    """What one `ensure_certificates` call found and did."""

    action: Literal["created", "rotated", "unchanged"]
    """`created`: no material existed; `rotated`: replaced; `unchanged`: the Secret was good."""
    reason: str
    """Why material was issued; empty when unchanged."""
    not_after: dt.datetime
    """When the serving certificate now in use expires."""
    ca_bundle_pem: bytes
    """The bundle now in the Secret and the webhook configuration."""
    webhook_patched: bool
    """Whether the caBundle had to be changed."""
    files_changed: bool
    """Whether the files in `cert_dir` were (re)written; the webhook server reloads them."""


def _secret_path(namespace: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{namespace}/secrets"
    return f"{base}/{name}" if name else base


def _decode(secret: dict[str, Any]) -> dict[str, bytes]:
    data = secret.get("data") or {}
    return {k: base64.b64decode(v) for k, v in data.items() if isinstance(v, str)}


def _encode(material: Material) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in material.as_secret_data().items()}


async def get_secret(api: KubeApi, namespace: str, name: str) -> dict[str, Any] | None:
    """The Secret, or None when it does not exist."""
    try:
        secret: dict[str, Any] = await api.request("GET", _secret_path(namespace, name))
    except KubeApiError as exc:
        if exc.status == 404:
            return None
        raise TlsError(f"cannot read Secret {namespace}/{name}: {exc}") from exc
    return secret


async def _store(
    api: KubeApi,
    *,
    namespace: str,
    name: str,
    existing: dict[str, Any] | None,
    material: Material,
) -> bool:
    """Write `material`; False when another writer got there first (re-read and retry)."""
    try:
        if existing is None:
            await api.request("POST", _secret_path(namespace), body={
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
                },
                "type": "Opaque",
                "data": _encode(material),
            })
        else:
            # Keep the existing metadata and type (the chart may own the object and its labels);
            # resourceVersion makes the write conditional.
            body = dict(existing)
            body["data"] = {**(existing.get("data") or {}), **_encode(material)}
            await api.request("PUT", _secret_path(namespace, name), body=body)
    except KubeApiError as exc:
        if exc.status == 409:
            return False
        raise TlsError(f"cannot write Secret {namespace}/{name}: {exc}") from exc
    return True


async def _publish_ca_bundle(
    api: KubeApi,
    *,
    webhook_config: str,
    service: str,
    namespace: str,
    bundle: bytes,
) -> bool:
    """Set the caBundle of every webhook in `webhook_config` that calls our Service."""
    encoded = base64.b64encode(bundle).decode()
    last: KubeApiError | None = None
    for _ in range(_ATTEMPTS):
        try:
            config: dict[str, Any] = await api.request(
                "GET", f"{WEBHOOK_CONFIGS}/{webhook_config}")
        except KubeApiError as exc:
            raise TlsError(
                f"cannot read ValidatingWebhookConfiguration {webhook_config}: {exc}") from exc
        ops: list[dict[str, Any]] = []
        ours = 0
        for i, hook in enumerate(config.get("webhooks") or []):
            svc = (hook.get("clientConfig") or {}).get("service") or {}
            if svc.get("name") != service or svc.get("namespace") != namespace:
                continue
            ours += 1
            if hook["clientConfig"].get("caBundle") != encoded:
                ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle",
                            "value": encoded})
        if not ours:
            raise TlsError(
                f"ValidatingWebhookConfiguration {webhook_config} has no webhook calling "
                f"Service {namespace}/{service}")
        if not ops:
            return False
        # The test op makes the patch apply only to the version read (indices could shift).
        patch = [{"op": "test", "path": "/metadata/resourceVersion",
                  "value": config["metadata"]["resourceVersion"]}, *ops]
        try:
            await api.request("PATCH", f"{WEBHOOK_CONFIGS}/{webhook_config}", body=patch,
                              content_type="application/json-patch+json")
        except KubeApiError as exc:
            # A failed test op (the object changed since it was read) is answered 422 with a
            # generic message; the rest of the patch is well-formed by construction, so re-read.
            if exc.status in (409, 422):
                last = exc
                continue
            raise TlsError(
                f"cannot patch the caBundle of {webhook_config}: {exc}") from exc
        return True
    raise TlsError(
        f"{webhook_config} kept changing while its caBundle was being patched (last: {last})")


def _write_atomically(path: Path, content: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_files(cert_dir: Path, material: Material) -> bool:
    """Write tls.key, ca.crt and tls.crt when their content differs; True when anything changed.

    Each file is replaced atomically, so the server never reads a half-written file. The key goes
    first and the certificate last: the server reloads on a change of any file, and a reload
    between the two sees at worst the new key with the old certificate for one check interval,
    after which the certificate's change triggers another reload.
    """
    cert_dir.mkdir(parents=True, exist_ok=True)
    changed = False
    for name, content, mode in (
        (KEY_KEY, material.key_pem, 0o600),
        (KEY_CA, material.ca_bundle_pem, 0o644),
        (KEY_CERT, material.cert_pem, 0o644),
    ):
        path = cert_dir / name
        try:
            if path.read_bytes() == content:
                continue
        except FileNotFoundError:
            pass
        _write_atomically(path, content, mode)
        changed = True
    return changed


async def ensure_certificates(
    api: KubeApi,
    *,
    namespace: str,
    secret: str,
    service: str,
    webhook_config: str,
    cert_dir: Path,
    renew_before: dt.timedelta = dt.timedelta(days=30),
    validity: dt.timedelta = DEFAULT_VALIDITY,
) -> CertificateStatus:
    """Make the Secret hold valid material, publish its CA bundle, and write the served files.

    - `namespace`, `service`: where the webhook Service lives; they decide the certificate's names
      and which webhooks of `webhook_config` are ours.
    - `secret`: the Secret (in `namespace`) holding tls.crt, tls.key and ca.crt.
    - `cert_dir`: where tls.crt, tls.key and ca.crt are written for the webhook server.
    - `renew_before`: rotate when the certificate expires within this period.
    - `validity`: lifetime of newly issued certificates; must exceed `renew_before`.

    Raises `TlsError` when the API server refuses or the webhook configuration is not ours.
    """
    if validity <= renew_before:
        raise TlsError(f"validity {validity} must exceed renew_before {renew_before}")
    hosts = service_hosts(service, namespace)
    action: Literal["created", "rotated", "unchanged"] = "unchanged"
    why = ""
    for _ in range(_ATTEMPTS):
        existing = await get_secret(api, namespace, secret)
        current = Material.from_secret_data(_decode(existing)) if existing else None
        reason = ("no certificate stored yet" if current is None else
                  rotation_reason(current, hosts=hosts, renew_before=renew_before))
        if reason is None and current is not None:
            material = current
            break
        # Key generation and signing are CPU work; keep them off the event loop.
        material = await asyncio.to_thread(issue, hosts=hosts, previous=current,
                                           validity=validity)
        if await _store(api, namespace=namespace, name=secret, existing=existing,
                        material=material):
            action = "created" if current is None else "rotated"
            why = reason or ""
            log.info("issued webhook certificate", extra={
                "action": action, "reason": why, "secret": f"{namespace}/{secret}"})
            break
        log.info("another replica wrote the certificate Secret first; re-reading it")
    else:
        raise TlsError(
            f"Secret {namespace}/{secret} kept changing; gave up after {_ATTEMPTS} tries")

    patched = await _publish_ca_bundle(api, webhook_config=webhook_config, service=service,
                                       namespace=namespace, bundle=material.ca_bundle_pem)
    changed = await asyncio.to_thread(_write_files, cert_dir, material)
    return CertificateStatus(action=action, reason=why, not_after=not_after(material),
                             ca_bundle_pem=material.ca_bundle_pem, webhook_patched=patched,
                             files_changed=changed)


async def keep_certificates_fresh(
    api: KubeApi,
    *,
    interval: float = 3600.0,
    retry: float = 30.0,
    **kwargs: Any,
) -> None:
    """Call `ensure_certificates(api, **kwargs)` every `interval` seconds, forever.

    Failures are logged and retried after `retry` seconds; the current files stay in use meanwhile,
    and with `renew_before` measured in days there is ample time to recover.
    """
    while True:
        try:
            await ensure_certificates(api, **kwargs)
        except TlsError:
            log.exception("webhook certificate check failed; retrying")
            await asyncio.sleep(retry)
            continue
        await asyncio.sleep(interval)
