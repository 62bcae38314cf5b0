"""Canonical JSON, the hash chain, and signed checkpoints.

The chain (RFC 6962 domain separation, so a leaf can never be taken for an interior value):

    leaf_n = SHA-256(0x00 ‖ record_n)          record_n: the canonical JSON bytes as stored
    head_n = SHA-256(0x01 ‖ head_{n-1} ‖ leaf_n)
    head_{-1} = 32 zero bytes (the genesis head)

What it guarantees: given a trusted head_n (a signed checkpoint), any change to records 0..n — an
edit, a deletion, an insertion, a reorder — changes head_n, so it is detected. A chain that still
extends a saved checkpoint has not been rewritten before it.

What it cannot guarantee on its own: someone who can write the ledger namespace can rewrite the
whole chain consistently from any point, or cut its tail, and the result is a valid chain. Only a
checkpoint signed with a key they do not hold, saved where they cannot reach (off-cluster, via
`ledger export` / `ledger verify --save-checkpoint`), turns that into a detectable event. Records
after the newest saved checkpoint are protected only by RBAC on the ledger namespace.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from controller.ledger.errors import LedgerError
from controller.ledger.models import Checkpoint, Record

GENESIS = bytes(32)
"""head_{-1}."""
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def _reject_floats(value: Any) -> None:
    if isinstance(value, float):
        # Float formatting differs across implementations; the chain must hash the same bytes
        # everywhere, so entries carry times and sizes as strings and integers.
        raise LedgerError("canonical JSON does not allow floating-point numbers")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise LedgerError("canonical JSON object keys must be strings")
            _reject_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_floats(item)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8, no floats: the same bytes on every run."""
    _reject_floats(value)
    return _dumps(value)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def record_bytes(record: Record) -> bytes:
    """The canonical bytes of a record: what is stored and what is hashed."""
    return record_bytes_from(record.model_dump(mode="json")["entry"], seq=record.seq,
                             prev=record.prev)


def record_bytes_from(entry: dict[str, Any], *, seq: int, prev: str) -> bytes:
    """`record_bytes` from an entry already dumped to JSON data (the writer dumps each entry
    once, however often a conflict makes it renumber). The models declare no float field, so the
    float check that `canonical_json` makes is not needed here; it costs ~40 µs an entry."""
    return _dumps({"entry": entry, "prev": prev, "seq": seq})


def leaf_hash(data: bytes) -> bytes:
    """leaf = SHA-256(0x00 ‖ entry bytes)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def next_head(prev: bytes, leaf: bytes) -> bytes:
    """head_n = SHA-256(0x01 ‖ head_{n-1} ‖ leaf_n)."""
    return hashlib.sha256(NODE_PREFIX + prev + leaf).digest()


def chain_heads(records: list[bytes], start: bytes = GENESIS) -> list[bytes]:
    """head_i for each stored record in order, starting after `start`."""
    heads, head = [], start
    for data in records:
        head = next_head(head, leaf_hash(data))
        heads.append(head)
    return heads


def utc_timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 UTC with microseconds and `Z`, the form every entry uses."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)  # Python 3.11 reads the `Z` suffix itself


def _signed_payload(chain: str, size: int, head: str, time: str) -> bytes:
    return canonical_json({"chain": chain, "head": head, "size": size, "time": time})


def key_id(public_key: Ed25519PublicKey) -> str:
    """sha256 of the SubjectPublicKeyInfo DER, the id checkpoints name their key by."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class CheckpointSigner:
    """Signs checkpoints with the controller's Ed25519 key."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> CheckpointSigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> CheckpointSigner:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise LedgerError(f"the checkpoint key is not a PEM private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise LedgerError("the checkpoint key must be an Ed25519 key")
        return cls(key)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())

    @property
    def verifier(self) -> CheckpointVerifier:
        return CheckpointVerifier(self.private_key.public_key())

    def sign(self, *, chain: str, size: int, head: bytes, time: str | None = None) -> Checkpoint:
        """A checkpoint over the first `size` entries, whose last head is `head`."""
        stamp = time or utc_timestamp()
        signature = self.private_key.sign(_signed_payload(chain, size, head.hex(), stamp))
        return Checkpoint(chain=chain, size=size, head=head.hex(), time=stamp,
                          key_id=key_id(self.private_key.public_key()),
                          signature=base64.b64encode(signature).decode())


@dataclass(frozen=True)
class CheckpointVerifier:
    """Checks checkpoint signatures against one trusted public key."""

    public_key: Ed25519PublicKey

    @classmethod
    def from_pem(cls, pem: bytes) -> CheckpointVerifier:
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise LedgerError(f"the checkpoint public key is not PEM: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise LedgerError("the checkpoint public key must be an Ed25519 key")
        return cls(key)

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def verify(self, checkpoint: Checkpoint) -> bool:
        """True when `checkpoint` was signed by this key; never raises on a bad signature."""
        if checkpoint.key_id != self.key_id:
            return False
        try:
            signature = base64.b64decode(checkpoint.signature, validate=True)
            self.public_key.verify(signature, _signed_payload(
                checkpoint.chain, checkpoint.size, checkpoint.head, checkpoint.time))
        except (InvalidSignature, ValueError):
            return False
        return True
