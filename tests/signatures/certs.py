"""Fulcio-like certificates built with `cryptography`, for tests of identity and source claims."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

FULCIO = "1.3.6.1.4.1.57264.1"


def der_utf8(text: str) -> bytes:
    """A DER UTF8String, as Fulcio encodes extensions 1.8 onwards."""
    raw = text.encode()
    if len(raw) < 0x80:
        return bytes([0x0C, len(raw)]) + raw
    size = len(raw).to_bytes((len(raw).bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(size)]) + size + raw


def fulcio_cert(
    *,
    subject_uri: str | None = None,
    email: str | None = None,
    other_name: str | None = None,
    v1: dict[int, str] | None = None,
    v2: dict[int, str] | None = None,
    raw: dict[int, bytes] | None = None,
) -> x509.Certificate:
    """A self-signed leaf with a SAN and Fulcio extensions: `v1` raw (arcs 1-6), `v2` DER,
    `raw` as given (hand-built DER, well formed or not)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(minutes=10)))
    names: list[x509.GeneralName] = []
    if subject_uri:
        names.append(x509.UniformResourceIdentifier(subject_uri))
    if email:
        names.append(x509.RFC822Name(email))
    if other_name:
        names.append(x509.OtherName(ObjectIdentifier(f"{FULCIO}.7"), der_utf8(other_name)))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=True)
    for arc, value in (v1 or {}).items():
        builder = builder.add_extension(x509.UnrecognizedExtension(
            ObjectIdentifier(f"{FULCIO}.{arc}"), value.encode()), critical=False)
    for arc, value in (v2 or {}).items():
        builder = builder.add_extension(x509.UnrecognizedExtension(
            ObjectIdentifier(f"{FULCIO}.{arc}"), der_utf8(value)), critical=False)
    for arc, data in (raw or {}).items():
        builder = builder.add_extension(x509.UnrecognizedExtension(
            ObjectIdentifier(f"{FULCIO}.{arc}"), data), critical=False)
    return builder.sign(key, hashes.SHA256())


GITHUB_SUBJECT = "https://github.com/org/app/.github/workflows/release.yml@refs/heads/main"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
COMMIT = "3f2a9c4e1b7d8f6a5c0e9d2b1a4f7c8e6d5b3a21"


def github_cert(**overrides: str) -> x509.Certificate:
    """A certificate as Fulcio issues one to a GitHub Actions release workflow on main."""
    v2 = {
        8: GITHUB_ISSUER,
        11: "github-hosted",
        12: "https://github.com/org/app",
        13: COMMIT,
        14: "refs/heads/main",
        18: "https://github.com/org/app/.github/workflows/release.yml@refs/heads/main",
        19: COMMIT,
        20: "push",
    }
    arcs = {"issuer": 8, "runner": 11, "repository": 12, "digest": 13, "ref": 14,
            "config": 18, "config_digest": 19, "trigger": 20}
    for name, value in overrides.items():
        v2[arcs[name]] = value
    return fulcio_cert(subject_uri=GITHUB_SUBJECT, v2=v2)
