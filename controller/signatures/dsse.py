"""DSSE envelopes and in-toto statements.

PAE is computed exactly as the DSSE v1 specification says:
`"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, where LEN is the byte length in ASCII
decimal with no leading zeros and SP is one space. The signature covers the PAE, never the raw
payload, so a payload cannot be replayed under another payload type.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.signatures.errors import VerificationError
from controller.signatures.keys import PublicKey

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPES = frozenset({
    "https://in-toto.io/Statement/v0.1",
    "https://in-toto.io/Statement/v1",
})
MAX_ENVELOPE_SIGNATURES = 16
"""Signatures considered per envelope; cosign writes one."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding of `payload_type` and `payload`."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class EnvelopeSignature(_Model):
    keyid: str = Field(default="", max_length=512)
    sig: str = Field(max_length=4096)


class Envelope(_Model):
    """A DSSE envelope (JSON serialisation)."""

    payload: str
    payload_type: str = Field(alias="payloadType", max_length=256)
    signatures: tuple[EnvelopeSignature, ...] = Field(max_length=MAX_ENVELOPE_SIGNATURES)

    def payload_bytes(self) -> bytes:
        """The decoded payload (standard or URL-safe base64, as the spec allows both)."""
        return b64decode(self.payload, what="DSSE payload")


class Subject(_Model):
    name: str = Field(default="", max_length=1024)
    digest: dict[str, str] = Field(max_length=16)


class Statement(_Model):
    """An in-toto statement (v0.1 or v1)."""

    type: str = Field(alias="_type", max_length=256)
    subject: tuple[Subject, ...] = Field(min_length=1, max_length=1024)
    predicate_type: str = Field(alias="predicateType", max_length=1024)
    predicate: dict[str, object] | None = None

    def covers(self, digest: str) -> bool:
        """True if a subject's sha256 equals `digest` (`sha256:<hex>`)."""
        algorithm, _, hex_value = digest.partition(":")
        return any(s.digest.get(algorithm) == hex_value for s in self.subject)

    def subject_digests(self) -> tuple[str, ...]:
        """Every `sha256:<hex>` the statement names, for messages."""
        return tuple(f"sha256:{s.digest['sha256']}" for s in self.subject if "sha256" in s.digest)


def b64decode(text: str, *, what: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not; `VerificationError` otherwise."""
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        if "-" in cleaned or "_" in cleaned:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"{what} is not base64") from exc


def parse_envelope(data: bytes | str) -> Envelope:
    """Parse a DSSE envelope from JSON; `VerificationError` if malformed."""
    try:
        return Envelope.model_validate_json(data)
    except ValidationError as exc:
        raise VerificationError(f"malformed DSSE envelope: {exc.errors()[0]['msg']}") from exc


def verify_envelope(envelope: Envelope, keys: Iterable[PublicKey]) -> frozenset[str]:
    """Names of the keys whose signature over the envelope's PAE verifies (may be empty).

    Every signature is tried against every key (envelopes carry one or two), because the optional
    `keyid` is only a hint that an attacker controls.
    """
    message = pae(envelope.payload_type, envelope.payload_bytes())
    signatures = [b64decode(s.sig, what="DSSE signature") for s in envelope.signatures]
    good: set[str] = set()
    for key in keys:
        for signature in signatures:
            try:
                key.verify(signature, message)
            except VerificationError:
                continue
            good.add(key.name)
            break
    return frozenset(good)


def parse_statement(envelope: Envelope) -> Statement:
    """The in-toto statement an envelope carries; `VerificationError` if it is not one."""
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise VerificationError(f"unexpected DSSE payload type {envelope.payload_type!r}")
    try:
        # pydantic's own JSON parser: bounded recursion, so a deeply nested payload is a
        # ValidationError here, not a RecursionError somewhere else.
        statement = Statement.model_validate_json(envelope.payload_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise VerificationError(f"malformed in-toto statement: {where} {first['msg']}") from exc
    if statement.type not in STATEMENT_TYPES:
        raise VerificationError(f"unknown in-toto statement type {statement.type!r}")
    return statement
