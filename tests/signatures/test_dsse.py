"""DSSE PAE and envelope verification."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controller.signatures.dsse import (
    b64decode,
    pae,
    parse_envelope,
    parse_statement,
    verify_envelope,
)
from controller.signatures.errors import VerificationError
from controller.signatures.keys import load_public_key


def test_pae_matches_the_specification_example() -> None:
    # The worked example in the DSSE v1 protocol document.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world")


def test_pae_counts_bytes_not_characters_and_handles_empty() -> None:
    assert pae("t/é", b"") == "DSSEv1 4 t/é 0 ".encode()
    assert pae("a", b"\x00\xff") == b"DSSEv1 1 a 2 \x00\xff"


def _signed_envelope(payload_type: str, payload: bytes) -> tuple[bytes, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    sig = private.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
    envelope = json.dumps({"payloadType": payload_type,
                           "payload": base64.b64encode(payload).decode(),
                           "signatures": [{"keyid": "", "sig": base64.b64encode(sig).decode()}]})
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return envelope.encode(), pem


def test_envelope_verifies_over_pae_only() -> None:
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1",
                            "subject": [{"digest": {"sha256": "ab" * 32}}],
                            "predicateType": "x", "predicate": {}}).encode()
    data, pem = _signed_envelope("application/vnd.in-toto+json", statement)
    key = load_public_key(pem, name="k")
    envelope = parse_envelope(data)
    assert verify_envelope(envelope, [key]) == frozenset({"k"})
    assert parse_statement(envelope).covers("sha256:" + "ab" * 32)
    assert not parse_statement(envelope).covers("sha256:" + "cd" * 32)
    # The same signature under another payload type does not verify (PAE binds the type).
    doc = json.loads(data)
    doc["payloadType"] = "application/json"
    assert verify_envelope(parse_envelope(json.dumps(doc)), [key]) == frozenset()


def test_malformed_envelopes_and_statements() -> None:
    with pytest.raises(VerificationError):
        parse_envelope(b"{}")
    with pytest.raises(VerificationError):
        parse_envelope(b"[not json")
    data, _ = _signed_envelope("application/vnd.in-toto+json", b"not json")
    with pytest.raises(VerificationError):
        parse_statement(parse_envelope(data))
    data, _ = _signed_envelope("text/plain", b"{}")
    with pytest.raises(VerificationError, match="payload type"):
        parse_statement(parse_envelope(data))
    with pytest.raises(VerificationError):
        b64decode("***", what="x")
    assert b64decode("aGk", what="x") == b"hi"  # unpadded is allowed by DSSE


def test_a_signature_by_an_unknown_key_does_not_hide_the_trusted_one_after_it() -> None:
    payload = b'{"_type": "https://in-toto.io/Statement/v1"}'
    data, pem = _signed_envelope("application/vnd.in-toto+json", payload)
    doc = json.loads(data)
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = stranger.sign(pae("application/vnd.in-toto+json", payload), ec.ECDSA(hashes.SHA256()))
    doc["signatures"].insert(0, {"keyid": "", "sig": base64.b64encode(forged).decode()})
    envelope = parse_envelope(json.dumps(doc))
    assert verify_envelope(envelope, [load_public_key(pem, name="k")]) == frozenset({"k"})


@pytest.mark.parametrize(("statement", "where"), [
    ({"_type": "https://in-toto.io/Statement/v1", "predicateType": "x"}, "subject"),
    ({"_type": "https://in-toto.io/Statement/v1", "predicateType": "x",
      "subject": [{"digest": {"sha256": 5}}]}, "subject.0.digest.sha256"),
])
def test_a_malformed_statement_names_where(statement: dict[str, object], where: str) -> None:
    data, _ = _signed_envelope("application/vnd.in-toto+json", json.dumps(statement).encode())
    with pytest.raises(VerificationError) as caught:
        parse_statement(parse_envelope(data))
    assert str(caught.value).startswith(f"malformed in-toto statement: {where} ")


@pytest.mark.parametrize(("text", "data"), [
    ("-A", b"\xf8"),  # URL-safe, with a dash only
    ("_A", b"\xfc"),  # URL-safe, with an underscore only
    ("-_8=", b"\xfb\xff"),
    ("+/8=", b"\xfb\xff"),  # the standard alphabet
])
def test_either_base64_alphabet_is_read(text: str, data: bytes) -> None:
    assert b64decode(text, what="x") == data
