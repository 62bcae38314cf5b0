"""Canonical JSON, leaf and head hashing, and checkpoint signatures."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controller.ledger.chain import (
    GENESIS,
    CheckpointSigner,
    CheckpointVerifier,
    canonical_json,
    chain_heads,
    leaf_hash,
    next_head,
    parse_timestamp,
    record_bytes,
    utc_timestamp,
)
from controller.ledger.errors import LedgerError
from controller.ledger.models import Record
from tests.ledger.helpers import admission_entry


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    expected = '{"a":[true,null,"é"],"b":1}'.encode()
    assert canonical_json({"b": 1, "a": [True, None, "é"]}) == expected


def test_canonical_json_is_independent_of_insertion_order() -> None:
    assert canonical_json({"x": {"b": 2, "a": 1}, "y": 0}) == \
        canonical_json({"y": 0, "x": {"a": 1, "b": 2}})


@pytest.mark.parametrize("value", [1.5, {"a": 0.1}, [float("nan")], {1: "x"}])
def test_canonical_json_rejects_floats_and_non_string_keys(value: object) -> None:
    with pytest.raises(LedgerError):
        canonical_json(value)


def test_record_bytes_are_the_same_on_every_run() -> None:
    entry = admission_entry("uid-1")
    first = record_bytes(Record(seq=3, prev=GENESIS.hex(), entry=entry))
    again = record_bytes(Record.model_validate_json(first))
    assert first == again
    assert first.startswith(b'{"entry":{"actor":')


def test_leaf_and_head_use_rfc6962_domain_separation() -> None:
    data = b'{"seq":0}'
    leaf = leaf_hash(data)
    assert leaf == hashlib.sha256(b"\x00" + data).digest()
    assert leaf != hashlib.sha256(data).digest()
    head = next_head(GENESIS, leaf)
    assert head == hashlib.sha256(b"\x01" + bytes(32) + leaf).digest()


def test_chain_heads_depend_on_order() -> None:
    a, b = b"a", b"b"
    assert chain_heads([a, b])[-1] != chain_heads([b, a])[-1]
    assert chain_heads([a, b])[0] == next_head(GENESIS, leaf_hash(a))


def test_checkpoint_signature_verifies_and_binds_every_field() -> None:
    signer = CheckpointSigner.generate()
    cp = signer.sign(chain="audit", size=5, head=b"\x07" * 32)
    verifier = signer.verifier
    assert verifier.verify(cp)
    assert not verifier.verify(cp.model_copy(update={"size": 4}))
    assert not verifier.verify(cp.model_copy(update={"head": "00" * 32}))
    assert not verifier.verify(cp.model_copy(update={"chain": "other"}))
    assert not verifier.verify(cp.model_copy(update={"time": "2020-01-01T00:00:00Z"}))


def test_checkpoint_from_another_key_is_rejected() -> None:
    cp = CheckpointSigner.generate().sign(chain="audit", size=1, head=GENESIS)
    assert not CheckpointSigner.generate().verifier.verify(cp)


def test_keys_round_trip_through_pem() -> None:
    signer = CheckpointSigner.generate()
    again = CheckpointSigner.from_pem(signer.private_pem())
    cp = again.sign(chain="audit", size=2, head=GENESIS)
    assert CheckpointVerifier.from_pem(signer.verifier.public_pem()).verify(cp)
    with pytest.raises(LedgerError):
        CheckpointSigner.from_pem(b"not a key")


def test_the_writers_fast_path_produces_the_same_bytes() -> None:
    from controller.ledger.chain import record_bytes_from

    entry = admission_entry("uid-fast")
    record = Record(seq=41, prev="ab" * 32, entry=entry)
    assert record_bytes_from(entry.model_dump(mode="json"), seq=41, prev="ab" * 32) == \
        record_bytes(record)


def test_timestamps_are_rfc3339_utc_with_microseconds() -> None:
    moment = dt.datetime(2026, 11, 25, 13, 4, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert utc_timestamp(moment) == "2026-11-25T12:04:05.123456Z"
    assert parse_timestamp("2026-11-25T12:04:05.123456Z") == moment
    assert parse_timestamp(utc_timestamp()).tzinfo is not None


@pytest.mark.parametrize(("pem", "complaint"), [
    (b"not a key", "not a PEM"),
    (ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), "must be an Ed25519 key"),
])
def test_signer_keys_must_be_ed25519_pem(pem: bytes, complaint: str) -> None:
    with pytest.raises(LedgerError, match=complaint):
        CheckpointSigner.from_pem(pem)


@pytest.mark.parametrize(("pem", "complaint"), [
    (b"not a key", "not PEM"),
    (ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
     "must be an Ed25519 key"),
])
def test_verifier_keys_must_be_ed25519_pem(pem: bytes, complaint: str) -> None:
    with pytest.raises(LedgerError, match=complaint):
        CheckpointVerifier.from_pem(pem)


def test_a_checkpoint_with_a_garbled_signature_is_rejected_not_raised() -> None:
    signer = CheckpointSigner.generate()
    cp = signer.sign(chain="c", size=1, head=GENESIS)
    assert signer.verifier.verify(cp)
    for signature in ("!!!!", "AAAA", cp.signature[:-4] + "AAA="):
        assert not signer.verifier.verify(cp.model_copy(update={"signature": signature}))
    # The same signature bytes in a non-canonical encoding (extra or inner padding) are not
    # accepted either: base64 is decoded strictly.
    for signature in (cp.signature + "==", cp.signature[:10] + "=" + cp.signature[10:]):
        assert not signer.verifier.verify(cp.model_copy(update={"signature": signature}))
    # The right signature under another key id is not taken either.
    assert not signer.verifier.verify(cp.model_copy(update={"key_id": "sha256:" + "0" * 64}))


def test_the_signed_payload_is_the_documented_canonical_json() -> None:
    # Anyone holding the public key can check a checkpoint without this code: the signature is
    # over exactly these bytes.
    signer = CheckpointSigner.generate()
    head = bytes.fromhex("ab" * 32)
    cp = signer.sign(chain="admissions", size=7, head=head, time="2026-11-25T12:00:00.000000Z")
    payload = ('{"chain":"admissions","head":"' + "ab" * 32 + '","size":7,'
               '"time":"2026-11-25T12:00:00.000000Z"}').encode()
    signer.private_key.public_key().verify(base64.b64decode(cp.signature), payload)


def test_timestamps_do_not_depend_on_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        moment = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
        assert utc_timestamp(moment) == "2026-11-25T12:00:00.000000Z"
        now = parse_timestamp(utc_timestamp())
        assert abs((now - dt.datetime.now(dt.UTC)).total_seconds()) < 60
    finally:
        monkeypatch.undo()
        time.tzset()
