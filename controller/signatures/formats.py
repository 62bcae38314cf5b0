"""The cosign formats, checked offline: legacy simple signing, DSSE attestations, bundles v0.3.

Each function takes the bytes fetched from the registry, the trusted keys and the admitted digest,
and returns one `Finding`: which trusted keys vouch for the artifact, which digests it names,
and whether one of them is the admitted digest. Nothing here raises for a bad artifact: a bad
artifact is a finding with a `problem`, so that one forged signature next to a good one cannot
deny the image, and one good signature cannot be hidden by a forged one.

Binding rules:
- legacy `.sig`: the signature is over the payload bytes; the payload's
  `critical.image.docker-manifest-digest` must equal the admitted digest.
- DSSE (`.att` layers, bundle envelopes): the signature is over PAE(payloadType, payload); the
  in-toto statement's `subject[].digest.sha256` must include the admitted digest.
- `critical.identity.docker-reference` is recorded, not enforced, unless configured
  (`SignatureConfig.docker_reference`); see there for why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.signatures.certificate import CertificateIdentity, Mismatch
from controller.signatures.dsse import (
    Envelope,
    b64decode,
    parse_envelope,
    parse_statement,
    verify_envelope,
)
from controller.signatures.errors import VerificationError
from controller.signatures.keys import PublicKey
from controller.signatures.provenance import SLSA_TYPES, Provenance, extract_provenance

Format = Literal["bundle", "legacy-sig", "legacy-att"]
Kind = Literal["signature", "attestation", "other"]

BUNDLE_MEDIA_PREFIX = "application/vnd.dev.sigstore.bundle"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_LAYER = "application/vnd.dsse.envelope.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
"""cosign 2 keyless `.sig` layers: the Fulcio leaf, PEM."""
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
"""...its chain up to the root, PEM (not trusted: the trust root is the chain)."""
REKOR_BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
"""...and Rekor's answer: the SET over the entry, with its body and integrated time."""
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
SIMPLESIGNING_TYPES = frozenset({
    "cosign container image signature",  # cosign 1 and 2
    "https://sigstore.dev/cosign/sign/v1",  # cosign 3 with --new-bundle-format=false
})


@dataclass(frozen=True, slots=True)
class Finding:
    """What one signature or attestation artifact proved."""

    format: Format
    kind: Kind
    source: str
    """The artifact's blob digest, for logs."""
    keys: frozenset[str] = frozenset()
    """Names of the trusted keys whose signature verifies."""
    signed_digests: tuple[str, ...] = ()
    """The image digests the signed content names (only meaningful when `keys` is non-empty)."""
    bound: bool = False
    """True if `signed_digests` includes the admitted digest."""
    key_hint_trusted: bool = False
    """The bundle's key hint names a trusted key (so a failure is a bad signature, not a
    foreign key)."""
    provenance: Provenance | None = None
    """For verified SLSA attestations: what they say."""
    docker_reference: str | None = None
    """The legacy payload's `critical.identity.docker-reference`."""
    problem: str | None = None
    """Why the artifact could not be used, if it could not."""
    identity: CertificateIdentity | None = None
    """Keyless: the verified certificate's identity and source claims (commit, ref)."""
    trust_root: str | None = None
    """Keyless: the trust root the certificate verified against."""
    mismatches: tuple[tuple[str, Mismatch], ...] = ()
    """Keyless: (signer, first field it refused) for each configured signer on the verifying
    root that the certificate does not name; what a denial says was wrong."""

    @property
    def verified(self) -> bool:
        """A trusted key signed it and it names the admitted digest."""
        return bool(self.keys) and self.bound and self.problem is None


class _Loose(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class _Identity(_Loose):
    docker_reference: str = Field(default="", alias="docker-reference", max_length=1024)


class _Image(_Loose):
    docker_manifest_digest: str = Field(alias="docker-manifest-digest", max_length=128)


class _Critical(_Loose):
    identity: _Identity = _Identity()
    image: _Image
    type: str = Field(max_length=256)


class _SimpleSigning(_Loose):
    critical: _Critical


class _PublicKeyHint(_Loose):
    hint: str = Field(default="", max_length=512)


class _VerificationMaterial(_Loose):
    public_key: _PublicKeyHint | None = Field(default=None, alias="publicKey")


class _Bundle(_Loose):
    media_type: str = Field(alias="mediaType", max_length=256)
    verification_material: _VerificationMaterial = Field(
        default=_VerificationMaterial(), alias="verificationMaterial")
    dsse_envelope: Envelope | None = Field(default=None, alias="dsseEnvelope")


def check_simplesigning(
    payload: bytes, signature_b64: str, keys: Sequence[PublicKey], digest: str, *, source: str
) -> Finding:
    """A legacy `.sig` layer: `signature_b64` over `payload`, bound to `digest`."""
    try:
        signature = b64decode(signature_b64, what="signature annotation")
    except VerificationError as exc:
        return Finding("legacy-sig", "signature", source, problem=str(exc))
    good = frozenset(k.name for k in keys if _verifies(k, signature, payload))
    try:
        doc = _SimpleSigning.model_validate_json(payload)
    except ValidationError as exc:
        return Finding("legacy-sig", "signature", source, keys=good,
                       problem=f"malformed simple signing payload: {exc.errors()[0]['msg']}")
    if doc.critical.type not in SIMPLESIGNING_TYPES:
        return Finding("legacy-sig", "signature", source, keys=good,
                       problem=f"unexpected payload type {doc.critical.type!r}")
    signed = doc.critical.image.docker_manifest_digest
    return Finding(
        "legacy-sig", "signature", source, keys=good, signed_digests=(signed,),
        bound=signed == digest, docker_reference=doc.critical.identity.docker_reference)


def check_envelope(
    envelope: Envelope | bytes,
    keys: Sequence[PublicKey],
    digest: str,
    *,
    source: str,
    format: Format = "legacy-att",
    key_hint_trusted: bool = False,
) -> Finding:
    """A DSSE envelope holding an in-toto statement, bound to `digest`."""
    try:
        env = envelope if isinstance(envelope, Envelope) else parse_envelope(envelope)
        good = verify_envelope(env, keys)
        statement = parse_statement(env)
    except VerificationError as exc:
        return Finding(format, "other", source, key_hint_trusted=key_hint_trusted,
                       problem=str(exc))
    kind: Kind
    if statement.predicate_type == COSIGN_SIGN_PREDICATE:
        kind = "signature"
    elif statement.predicate_type in SLSA_TYPES:
        kind = "attestation"
    else:
        kind = "other"
    provenance = None
    if kind == "attestation" and good:
        # Only a verified predicate is read: unverified JSON is never interpreted.
        provenance = extract_provenance(statement.predicate_type, statement.predicate)
    return Finding(
        format, kind, source, keys=good, signed_digests=statement.subject_digests(),
        bound=statement.covers(digest), key_hint_trusted=key_hint_trusted,
        provenance=provenance)


def check_bundle(
    data: bytes, keys: Sequence[PublicKey], digest: str, *, source: str
) -> Finding:
    """A Sigstore bundle (v0.3) whose content is a DSSE envelope, bound to `digest`.

    Key-based bundles carry no certificate; the key hint only orders nothing and proves nothing,
    it is used to tell a bad signature by a trusted key from a signature by an unknown key.
    Bundles holding a message signature (blob signing) or certificates are not accepted.
    """
    try:
        bundle = _Bundle.model_validate_json(data)
    except ValidationError as exc:
        return Finding("bundle", "other", source,
                       problem=f"malformed bundle: {exc.errors()[0]['msg']}")
    if not bundle.media_type.startswith(BUNDLE_MEDIA_PREFIX):
        return Finding("bundle", "other", source,
                       problem=f"unexpected bundle media type {bundle.media_type!r}")
    if bundle.dsse_envelope is None:
        return Finding("bundle", "other", source, problem="bundle holds no DSSE envelope")
    hint = bundle.verification_material.public_key
    hint_trusted = hint is not None and any(k.key_id == hint.hint for k in keys)
    return check_envelope(bundle.dsse_envelope, keys, digest, source=source, format="bundle",
                          key_hint_trusted=hint_trusted)


def _verifies(key: PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
    except VerificationError:
        return False
    return True
