"""controller.signatures.formats: the finding each artifact yields, field by field.

The artifacts are signed here with a fresh P-256 key, in the shapes cosign writes (the cosign
fixtures and tests/signatures/test_cosign_fixtures.py check agreement with cosign itself).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controller.signatures.dsse import IN_TOTO_PAYLOAD_TYPE, pae
from controller.signatures.formats import (
    BUNDLE_V03,
    COSIGN_SIGN_PREDICATE,
    Finding,
    check_bundle,
    check_envelope,
    check_simplesigning,
)
from controller.signatures.keys import PublicKey, load_public_key

DIGEST = "sha256:" + "d" * 64
OTHER = "sha256:" + "e" * 64
PRIVATE = ec.generate_private_key(ec.SECP256R1())
KEY: PublicKey = load_public_key(PRIVATE.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
    name="k")
SLSA = "https://slsa.dev/provenance/v1"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sign(data: bytes) -> bytes:
    return PRIVATE.sign(data, ec.ECDSA(hashes.SHA256()))


def simple(digest: str = DIGEST, kind: str = "cosign container image signature",
           ref: str = "reg.io/app") -> bytes:
    return json.dumps({"critical": {"identity": {"docker-reference": ref},
                                    "image": {"docker-manifest-digest": digest},
                                    "type": kind}}).encode()


def envelope(predicate_type: str = COSIGN_SIGN_PREDICATE, digest: str = DIGEST,
             predicate: dict[str, Any] | None = None, signed: bool = True,
             payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> dict[str, Any]:
    statement = {"_type": "https://in-toto.io/Statement/v1",
                 "subject": [{"name": "app", "digest": {"sha256": digest.split(":")[1]}}],
                 "predicateType": predicate_type, "predicate": predicate or {}}
    payload = json.dumps(statement).encode()
    sig = sign(pae(payload_type, payload)) if signed else b"\x00" * 70
    return {"payload": b64(payload), "payloadType": payload_type,
            "signatures": [{"keyid": "", "sig": b64(sig)}]}


def bundle(env: dict[str, Any] | None, *, media_type: str = BUNDLE_V03,
           hint: str | None = None) -> bytes:
    doc: dict[str, Any] = {"mediaType": media_type}
    if hint is not None:
        doc["verificationMaterial"] = {"publicKey": {"hint": hint}}
    if env is not None:
        doc["dsseEnvelope"] = env
    return json.dumps(doc).encode()


@pytest.mark.parametrize(("payload", "signature", "expected"), [
    (simple(), None, Finding("legacy-sig", "signature", "src", keys=frozenset({"k"}),
                             signed_digests=(DIGEST,), bound=True,
                             docker_reference="reg.io/app")),
    (simple(OTHER), None, Finding("legacy-sig", "signature", "src", keys=frozenset({"k"}),
                                  signed_digests=(OTHER,), bound=False,
                                  docker_reference="reg.io/app")),
    (simple(kind="https://sigstore.dev/cosign/sign/v1"), None,
     Finding("legacy-sig", "signature", "src", keys=frozenset({"k"}), signed_digests=(DIGEST,),
             bound=True, docker_reference="reg.io/app")),
    (simple(kind="something else"), None,
     Finding("legacy-sig", "signature", "src", keys=frozenset({"k"}),
             problem="unexpected payload type 'something else'")),
    (b'{"critical": {}}', None,
     Finding("legacy-sig", "signature", "src", keys=frozenset({"k"}),
             problem="malformed simple signing payload: Field required")),
    (simple(), "!!!", Finding("legacy-sig", "signature", "src",
                              problem="signature annotation is not base64")),
    (simple(), b64(b"\x00" * 70), Finding("legacy-sig", "signature", "src",
                                          signed_digests=(DIGEST,), bound=True,
                                          docker_reference="reg.io/app")),
])
def test_simple_signing(payload: bytes, signature: str | None, expected: Finding) -> None:
    sig = signature if signature is not None else b64(sign(payload))
    assert check_simplesigning(payload, sig, [KEY], DIGEST, source="src") == expected


def test_envelopes() -> None:
    good = check_envelope(json.dumps(envelope()).encode(), [KEY], DIGEST, source="src")
    assert good == Finding("legacy-att", "signature", "src", keys=frozenset({"k"}),
                           signed_digests=(DIGEST,), bound=True)
    predicate = {"buildDefinition": {"resolvedDependencies": [
        {"digest": {"gitCommit": "a" * 40}}]}}
    att = check_envelope(json.dumps(envelope(SLSA, predicate=predicate)).encode(), [KEY],
                         DIGEST, source="src", format="bundle", key_hint_trusted=True)
    assert (att.format, att.kind, att.keys, att.bound, att.key_hint_trusted) == (
        "bundle", "attestation", frozenset({"k"}), True, True)
    assert att.provenance is not None and att.provenance.commits == ("a" * 40,)
    # An unverified attestation's predicate is never read.
    raw = json.dumps(envelope(SLSA, predicate=predicate, signed=False)).encode()
    unsigned = check_envelope(raw, [KEY], DIGEST, source="src")
    assert unsigned.kind == "attestation" and unsigned.keys == frozenset()
    assert unsigned.provenance is None
    raw = json.dumps(envelope("https://example.com/other")).encode()
    other = check_envelope(raw, [KEY], DIGEST, source="src")
    assert other.kind == "other" and other.keys == frozenset({"k"})
    bad = check_envelope(b"{}", [KEY], DIGEST, source="src", format="bundle",
                         key_hint_trusted=True)
    assert (bad.format, bad.kind, bad.source, bad.key_hint_trusted, bad.keys) == (
        "bundle", "other", "src", True, frozenset())
    assert bad.problem is not None and bad.problem.startswith("malformed DSSE envelope")
    default = check_envelope(b"{}", [KEY], DIGEST, source="src")
    assert (default.format, default.key_hint_trusted) == ("legacy-att", False)


@pytest.mark.parametrize(("data", "expected"), [
    (b"[]", Finding("bundle", "other", "src",
                    problem="malformed bundle: Input should be an object")),
    (bundle(envelope(), media_type="application/json"),
     Finding("bundle", "other", "src", problem="unexpected bundle media type 'application/json'")),
    (bundle(None), Finding("bundle", "other", "src", problem="bundle holds no DSSE envelope")),
    (bundle(envelope()), Finding("bundle", "signature", "src", keys=frozenset({"k"}),
                                 signed_digests=(DIGEST,), bound=True)),
    (bundle(envelope(), hint=KEY.key_id), Finding(
        "bundle", "signature", "src", keys=frozenset({"k"}), signed_digests=(DIGEST,),
        bound=True, key_hint_trusted=True)),
    (bundle(envelope(signed=False), hint="someone else"), Finding(
        "bundle", "signature", "src", signed_digests=(DIGEST,), bound=True)),
])
def test_bundles(data: bytes, expected: Finding) -> None:
    assert check_bundle(data, [KEY], DIGEST, source="src") == expected
