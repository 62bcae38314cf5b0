"""controller.tls.issuer: issuance, the rotation decision, and the trust bundle."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from controller.certs import make_ca, make_serving_cert
from controller.tls import Material, issue, rotation_reason, service_hosts

HOSTS = service_hosts("provenance-controller", "provenance-system")
MONTH = dt.timedelta(days=30)


def test_service_hosts_cover_every_name_the_api_server_may_use() -> None:
    assert HOSTS == [
        "provenance-controller",
        "provenance-controller.provenance-system",
        "provenance-controller.provenance-system.svc",
        "provenance-controller.provenance-system.svc.cluster.local",
    ]


def test_fresh_material_needs_no_rotation() -> None:
    material = issue(hosts=HOSTS)
    assert rotation_reason(material, hosts=HOSTS, renew_before=MONTH) is None
    assert len(x509.load_pem_x509_certificates(material.ca_bundle_pem)) == 1


def test_rotation_is_due_within_renew_before_of_expiry() -> None:
    material = issue(hosts=HOSTS, validity=dt.timedelta(days=90))
    expiry = x509.load_pem_x509_certificate(material.cert_pem).not_valid_after_utc
    assert rotation_reason(material, hosts=HOSTS, renew_before=MONTH,
                           now=expiry - dt.timedelta(days=31)) is None
    reason = rotation_reason(material, hosts=HOSTS, renew_before=MONTH,
                             now=expiry - dt.timedelta(days=29))
    assert reason is not None
    assert "expires" in reason


def test_a_renamed_service_needs_a_new_certificate() -> None:
    material = issue(hosts=HOSTS)
    other = service_hosts("renamed", "provenance-system")
    reason = rotation_reason(material, hosts=other, renew_before=MONTH)
    assert reason is not None
    assert "renamed.provenance-system.svc" in reason


def test_mismatched_key_foreign_issuer_and_garbage_are_rejected() -> None:
    a = issue(hosts=HOSTS)
    b = issue(hosts=HOSTS)
    swapped_key = Material(a.cert_pem, b.key_pem, a.ca_bundle_pem)
    assert "key does not match" in str(
        rotation_reason(swapped_key, hosts=HOSTS, renew_before=MONTH))
    foreign_ca = Material(a.cert_pem, a.key_pem, b.ca_bundle_pem)
    assert "not issued by a CA in the bundle" in str(
        rotation_reason(foreign_ca, hosts=HOSTS, renew_before=MONTH))
    garbage = Material(b"not a cert", a.key_pem, a.ca_bundle_pem)
    assert "does not parse" in str(rotation_reason(garbage, hosts=HOSTS, renew_before=MONTH))


def test_a_ca_that_expires_before_its_certificate_forces_rotation() -> None:
    ca = make_ca(days=10)
    serving = make_serving_cert(ca, hosts=HOSTS, days=365)
    material = Material(serving.cert_pem, serving.key_pem, ca.cert_pem)
    assert "expires" in str(rotation_reason(material, hosts=HOSTS, renew_before=MONTH))


def test_rotation_keeps_the_previous_ca_until_it_expires() -> None:
    first = issue(hosts=HOSTS, validity=dt.timedelta(days=60))
    second = issue(hosts=HOSTS, previous=first)
    bundle = x509.load_pem_x509_certificates(second.ca_bundle_pem)
    first_ca = x509.load_pem_x509_certificates(first.ca_bundle_pem)[0]
    assert len(bundle) == 2
    assert bundle[1] == first_ca
    # The new certificate is issued by the first CA in the bundle, the new one.
    x509.load_pem_x509_certificate(second.cert_pem).verify_directly_issued_by(bundle[0])
    # Once the old CA has expired, the next rotation drops it.
    later = first_ca.not_valid_after_utc + dt.timedelta(seconds=1)
    third = issue(hosts=HOSTS, previous=second, now=later)
    kept = x509.load_pem_x509_certificates(third.ca_bundle_pem)
    assert first_ca not in kept
    assert bundle[0] in kept
    assert len(kept) == 2


async def _handshake(material: Material, bundle: bytes, host: str, tmp_path: Path) -> None:
    """A real TLS handshake: a server presenting `material`, a client trusting `bundle`."""
    (tmp_path / "c.pem").write_bytes(material.cert_pem)
    (tmp_path / "k.pem").write_bytes(material.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cadata=bundle.decode())
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=host)
        assert await reader.read() == b"ok"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_the_api_server_view_old_and_new_certificates_verify_during_rotation(
        tmp_path: Path) -> None:
    first = issue(hosts=HOSTS)
    second = issue(hosts=HOSTS, previous=first)
    host = "provenance-controller.provenance-system.svc"
    # A replica still serving the old certificate, and one serving the new, both verify against
    # the bundle published at rotation.
    await _handshake(first, second.ca_bundle_pem, host, tmp_path)
    await _handshake(second, second.ca_bundle_pem, host, tmp_path)
    # Without the rotation bundle, the old CA alone does not trust the new certificate.
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(second, first.ca_bundle_pem, host, tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(second, second.ca_bundle_pem, "evil.example.com", tmp_path)
