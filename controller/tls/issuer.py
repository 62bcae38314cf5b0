"""Issuing and judging the webhook's certificates; pure functions, no I/O.

Each issuance mints a fresh CA and signs one serving certificate with it; the CA key is then
discarded. No CA key ever rests in the cluster, so a leaked Secret lets an attacker impersonate
the webhook only until the serving certificate expires, never mint new certificates. The price is
that the CA changes at every rotation, which the trust bundle absorbs: it keeps each previous CA
until that CA expires, so the API server still trusts a replica that has not reloaded yet.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controller.certs import make_ca, make_serving_cert
from controller.tls.errors import TlsError

KEY_CERT = "tls.crt"
KEY_KEY = "tls.key"
KEY_CA = "ca.crt"
"""The trust bundle: the current CA followed by any earlier CA not yet expired."""

# A webhook certificate is not a user-facing credential; a year balances rotation churn against
# exposure, and rotation is automatic anyway.
DEFAULT_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Material:
    """What the Secret holds: the serving pair and the CA bundle that verifies it."""

    cert_pem: bytes
    """The serving certificate."""
    key_pem: bytes
    """The serving certificate's private key."""
    ca_bundle_pem: bytes
    """Every CA the API server should trust: the issuing CA first, then earlier ones."""

    def as_secret_data(self) -> dict[str, bytes]:
        """The Secret's `data`, before base64."""
        return {KEY_CERT: self.cert_pem, KEY_KEY: self.key_pem, KEY_CA: self.ca_bundle_pem}

    @classmethod
    def from_secret_data(cls, data: dict[str, bytes]) -> Material | None:
        """Material from a Secret's decoded data; None when any part is missing or empty."""
        parts = [data.get(KEY_CERT, b""), data.get(KEY_KEY, b""), data.get(KEY_CA, b"")]
        if not all(parts):
            return None
        return cls(*parts)


def service_hosts(service: str, namespace: str) -> list[str]:
    """The names the API server may use to reach `service` in `namespace`."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def _load_bundle(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise TlsError(f"the CA bundle is not PEM certificates: {exc}") from exc


def _bundle_pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def issue(
    *,
    hosts: list[str],
    previous: Material | None = None,
    validity: dt.timedelta = DEFAULT_VALIDITY,
    now: dt.datetime | None = None,
) -> Material:
    """A new CA and serving certificate for `hosts`.

    The bundle is the new CA followed by every CA of `previous`'s bundle that is still valid at
    `now`, so connections verified against the old CA keep working while replicas reload.
    """
    days = max(1, validity.days)
    when = now or dt.datetime.now(dt.UTC)
    # A distinct name per CA makes the bundle readable (`openssl crl2pkcs7 | pkcs7 -print_certs`).
    ca = make_ca(common_name=f"provenance-controller-ca-{when:%Y%m%dT%H%M%SZ}", days=days)
    serving = make_serving_cert(ca, hosts=hosts, days=days)
    bundle = [x509.load_pem_x509_certificate(ca.cert_pem)]
    if previous is not None:
        for old in _load_bundle(previous.ca_bundle_pem):
            if old.not_valid_after_utc > when and old not in bundle:
                bundle.append(old)
    return Material(serving.cert_pem, serving.key_pem, _bundle_pem(bundle))


def _issuer(cert: x509.Certificate, cas: Sequence[x509.Certificate]) -> x509.Certificate | None:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca
    return None


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    names = set(ext.value.get_values_for_type(x509.DNSName))
    names.update(str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress))
    return names


def _normalise(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def rotation_reason(
    material: Material,
    *,
    hosts: list[str],
    renew_before: dt.timedelta,
    now: dt.datetime | None = None,
) -> str | None:
    """Why `material` must be replaced, or None when it is good for at least `renew_before`.

    Replaced when: unparseable, the key does not match the certificate, the certificate is not
    issued by a CA in the bundle, a host is missing from its SANs, or it expires (or its CA
    expires) within `renew_before`.
    """
    when = now or dt.datetime.now(dt.UTC)
    try:
        cert = x509.load_pem_x509_certificate(material.cert_pem)
        key = serialization.load_pem_private_key(material.key_pem, password=None)
        cas = x509.load_pem_x509_certificates(material.ca_bundle_pem)
    except ValueError as exc:
        return f"stored certificate material does not parse ({exc})"
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return "the stored key does not match the stored certificate"
    issuer = _issuer(cert, cas)
    if issuer is None:
        return "the serving certificate is not issued by a CA in the bundle"
    missing = {_normalise(h) for h in hosts} - _sans(cert)
    if missing:
        return f"the serving certificate does not name {', '.join(sorted(missing))}"
    expiry = min(cert.not_valid_after_utc, issuer.not_valid_after_utc)
    if expiry - when <= renew_before:
        return f"the certificate expires at {expiry.isoformat()}, within {renew_before}"
    if cert.not_valid_before_utc > when:
        return "the serving certificate is not valid yet"
    return None


def not_after(material: Material) -> dt.datetime:
    """When the serving certificate expires."""
    return x509.load_pem_x509_certificate(material.cert_pem).not_valid_after_utc
