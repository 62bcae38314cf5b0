"""Sigstore bundles, verified offline against a trust root, for one admitted digest.

`verify_bundle(bundle, digest=..., signer=..., trust_root=...)` returns the verified facts or
raises `VerificationError`. The signer is either a keyless `SignerPolicy` (an OIDC identity, see
`controller.signatures.keyless`) or a trusted `PublicKey`.

Keyless bundles are verified by sigstore-python's `Verifier`, which follows Sigstore's client
specification:

0. establish the signing time: RFC 3161 timestamps from a trusted TSA, and for Rekor v1 the
   log's integrated time when a signed entry timestamp (SET) binds it;
1. the certificate chains to a Fulcio CA of the trust root, at each of those times;
2. its SCT verifies with a CT log key of the trust root;
3. it is a code-signing certificate, and the signer policy accepts it;
4. the log entry's inclusion proof and signed checkpoint verify (Rekor v1 and v2);
5. the SET verifies, if present;
6. every established time lies within the certificate's validity;
7. the signature verifies over the artifact's digest (or the DSSE PAE);
8. the log entry's body is the bundle's own signature, key and digest (no replay).

Three places where sigstore-python 4.5.1 falls short are covered here, each in a method that
says so: a timestamp at exactly the end of a TSA's validity is valid (the trust root's validity
periods are inclusive, as sigstore-go reads them); the legacy `intoto` 0.0.2 Rekor entry kind is
accepted with its own body check (as sigstore-js checks it); and bundles whose verification
material is a public key (sigstore-python #1244) are verified here, with steps 0, 4, 5, 7 and 8
over the key.

For DSSE bundles the admitted digest must be a subject of the in-toto statement; for message
signatures it is the signed digest itself. A bundle replayed onto another digest never verifies.

cosign 2's legacy keyless `.sig` is not a bundle: its certificate and Rekor "bundle" (a SET,
no inclusion proof) sit in layer annotations. `verify_legacy_signature` verifies it with the
same steps, the log's SET standing for step 4 (as `cosign verify` does offline): sigstore-python
requires an inclusion proof, so these steps are composed here from its parts.

The verification is CPU-bound (a few ECDSA verifications and X.509 path building):
`verify_bundle_async` runs it in a worker thread, inside a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import VerificationError as X509VerificationError
from rfc3161_client import TimeStampResponse, VerifierBuilder
from rfc3161_client import VerificationError as Rfc3161VerificationError
from sigstore import dsse as sigstore_dsse
from sigstore._internal.sct import verify_sct
from sigstore._internal.timestamp import TimestampSource, TimestampVerificationResult
from sigstore._internal.trust import KeyringPurpose
from sigstore.errors import Error as SigstoreError
from sigstore.hashes import Hashed
from sigstore.models import Bundle, InvalidBundle, TransparencyLogEntry
from sigstore.verify import Verifier
from sigstore.verify.policy import VerificationPolicy
from sigstore.verify.verifier import (
    _validate_dsse_v001_entry_body,
    _validate_hashedrekord_v002_dsse_entry_body,
)
from sigstore_models.bundle import v1 as bundle_v1
from sigstore_models.common.v1 import HashAlgorithm, LogId
from sigstore_models.intoto import Envelope as DsseEnvelope
from sigstore_models.rekor import v1 as rekor_v1

from controller.signatures.certificate import CertificateIdentity, certificate_identity
from controller.signatures.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    EnvelopeSignature,
    Statement,
    parse_statement,
    verify_envelope,
)
from controller.signatures.errors import VerificationError
from controller.signatures.keyless import SignerPolicy
from controller.signatures.keys import PublicKey
from controller.signatures.trust import TrustRoot

MAX_BUNDLE_BYTES = 2 * 1024 * 1024
"""A GitHub SLSA provenance bundle is tens of KiB; larger input is refused unparsed."""
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")

TimeSourceName = Literal["timestamp-authority", "transparency-log"]


@dataclass(frozen=True, slots=True)
class VerifiedTime:
    """One verified time at which the signature existed."""

    source: TimeSourceName
    at: datetime


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """What a verified bundle proves. Only built after every step passed."""

    digest: str
    """The admitted digest the bundle is bound to (`sha256:<hex>`)."""
    signer: str
    """The keyless signer's or the key's configured name."""
    trust_root: str
    """The trust root it verified against."""
    identity: CertificateIdentity | None
    """The certificate's identity and source claims (keyless), None for a key."""
    statement: Statement | None
    """The in-toto statement, for DSSE bundles."""
    times: tuple[VerifiedTime, ...]
    """Every verified signing time (at least one)."""
    log_index: int
    """The Rekor log index of the entry."""
    log_entry_kind: str
    """`kind/version` of the Rekor entry, e.g. `hashedrekord/0.0.1`."""


def parse_digest(digest: str) -> Hashed:
    """`sha256:<64 lowercase hex>` as sigstore-python's `Hashed`; `VerificationError` otherwise."""
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise VerificationError(f"digest {digest!r} is not sha256:<64 hex>")
    return Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(match.group(1)))


def with_proto3_defaults(bundle: bytes) -> bytes:
    """The bundle with the log entry fields proto3 JSON leaves out when they are zero put back.

    A log's first entry has index 0 and, in a tree of one, an empty inclusion path, and the
    protobuf JSON mapping omits both (sigstore-go and cosign write it so, and read it back);
    sigstore-models requires them. Only these absent defaults are filled in: a present value is
    never changed, so nothing a signer wrote is reinterpreted.
    """
    try:
        doc = json.loads(bundle)
    except ValueError:
        return bundle  # from_json reports it
    material = doc.get("verificationMaterial") if isinstance(doc, dict) else None
    entries = material.get("tlogEntries") if isinstance(material, dict) else None
    if not isinstance(entries, list):
        return bundle
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        entry.setdefault("logIndex", "0")
        proof = entry.get("inclusionProof")
        if isinstance(proof, dict):
            proof.setdefault("logIndex", "0")
            proof.setdefault("hashes", [])
    return json.dumps(doc).encode()


def verify_bundle(
    bundle: bytes,
    *,
    digest: str,
    signer: SignerPolicy | PublicKey,
    trust_root: TrustRoot,
) -> VerifiedBundle:
    """Verify `bundle` for `digest`, signed by `signer`, against `trust_root`. Offline.

    Raises `VerificationError` (or its `SignerMismatch`, naming the wrong field) on any failure.
    """
    hashed = parse_digest(digest)
    if len(bundle) > MAX_BUNDLE_BYTES:
        raise VerificationError(f"bundle of {len(bundle)} bytes is larger than {MAX_BUNDLE_BYTES}")
    try:
        inner = bundle_v1.Bundle.from_json(with_proto3_defaults(bundle))
    except ValueError as exc:
        raise VerificationError(f"malformed bundle: {_first_line(exc)}") from exc
    verifier = _verifier(trust_root)
    try:
        if isinstance(signer, PublicKey):
            return verifier.verify_keyed(inner, hashed, digest, signer)
        return verifier.verify_keyless(inner, hashed, digest, signer)
    except VerificationError:
        raise
    except (SigstoreError, ValueError, TypeError, KeyError, IndexError, InvalidSignature,
            UnsupportedAlgorithm, X509VerificationError,
            Rfc3161VerificationError) as exc:
        # sigstore-python's own errors, pydantic's and cryptography's: one error type out.
        raise VerificationError(_first_line(exc)) from exc


async def verify_bundle_async(
    bundle: bytes,
    *,
    digest: str,
    signer: SignerPolicy | PublicKey,
    trust_root: TrustRoot,
    timeout: float,
) -> VerifiedBundle:
    """`verify_bundle` in a worker thread, so the event loop keeps serving; `TimeoutError`
    after `timeout` seconds (the thread finishes on its own, its result is dropped)."""
    return await asyncio.wait_for(asyncio.to_thread(
        verify_bundle, bundle, digest=digest, signer=signer, trust_root=trust_root),
        timeout=timeout)


def verify_legacy_signature(
    payload: bytes,
    signature: bytes,
    *,
    certificate_pem: str,
    rekor_bundle: str,
    signer: SignerPolicy,
    trust_root: TrustRoot,
) -> VerifiedBundle:
    """Verify a cosign 2 keyless `.sig` layer: `signature` over `payload`, by the certificate
    in `dev.sigstore.cosign/certificate`, logged per `dev.sigstore.cosign/bundle`. Offline.

    The chain annotation is not read: the trust root's CAs are the chain (a chain the signer
    supplies could only add intermediates the root does not vouch for). The returned `digest`
    is the payload's sha256; binding the payload to an image digest is the caller's.
    """
    if len(payload) + len(certificate_pem) + len(rekor_bundle) > MAX_BUNDLE_BYTES:
        raise VerificationError("legacy signature material is larger than "
                                f"{MAX_BUNDLE_BYTES} bytes")
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError as exc:
        raise VerificationError("the certificate annotation is not a PEM certificate") from exc
    entry = _legacy_entry(rekor_bundle)
    verifier = _verifier(trust_root)
    try:
        return verifier.verify_legacy(payload, signature, cert, entry, signer)
    except VerificationError:
        raise
    except (SigstoreError, ValueError, TypeError, KeyError, InvalidSignature,
            UnsupportedAlgorithm, X509VerificationError) as exc:
        raise VerificationError(_first_line(exc)) from exc


def _legacy_entry(rekor_bundle: str) -> rekor_v1.TransparencyLogEntry:
    """cosign's `{"SignedEntryTimestamp", "Payload": {body, integratedTime, logIndex, logID}}`
    as a log entry with an inclusion promise and no proof."""
    if not rekor_bundle:
        # Without the log's SET there is no verified time, and a Fulcio certificate lives for
        # ten minutes: nothing would show it was valid when the signature was made.
        raise VerificationError("the signature has no Rekor bundle annotation, so no verified "
                                "signing time")
    try:
        doc = json.loads(rekor_bundle)
        inner = doc["Payload"]
        # Constructed unvalidated: the model requires an inclusion proof, which cosign 2 never
        # stored, and its validators expect base64 where these are decoded bytes. Every field
        # is converted and type-checked here instead.
        return rekor_v1.TransparencyLogEntry.model_construct(
            log_index=int(inner["logIndex"]),
            log_id=LogId.model_construct(key_id=bytes.fromhex(inner["logID"])),
            kind_version=rekor_v1.KindVersion(kind="hashedrekord", version="0.0.1"),
            integrated_time=int(inner["integratedTime"]),
            inclusion_promise=rekor_v1.InclusionPromise.model_construct(
                signed_entry_timestamp=_b64(doc["SignedEntryTimestamp"], what="SET")),
            canonicalized_body=_b64(inner["body"], what="body"),
            inclusion_proof=None)  # type: ignore[arg-type]
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"malformed Rekor bundle annotation: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.splitlines()[:2])[:300]


_VERIFIERS: dict[tuple[str, str], _Verifier] = {}
_VERIFIERS_LOCK = threading.Lock()


def _verifier(trust_root: TrustRoot) -> _Verifier:
    """One verifier per trust root (it parses the root's certificates once).

    Keyed by name too: two names for the same JSON must each report their own name.
    """
    key = (trust_root.name, trust_root.fingerprint)
    with _VERIFIERS_LOCK:
        found = _VERIFIERS.get(key)
        if found is None:
            try:
                found = _Verifier(trust_root)
            except SigstoreError as exc:
                raise VerificationError(f"trust root {trust_root.name}: {exc}") from exc
            _VERIFIERS[key] = found
        return found


class _Verifier(Verifier):
    """sigstore-python's verifier, with the three gaps closed (see the module docstring).

    It overrides private methods of sigstore 4.5.x, which is why the dependency is pinned to
    `>=4.5.1,<4.6`; the conformance tests catch a change in them.
    """

    def __init__(self, trust_root: TrustRoot) -> None:
        super().__init__(trusted_root=trust_root.root)
        self.trust_root = trust_root
        # The verifier is shared between threads; the times of one call are per thread.
        self._times = threading.local()

    # -- keyless ---------------------------------------------------------------------------

    def verify_keyless(
        self, inner: bundle_v1.Bundle, hashed: Hashed, digest: str, policy: SignerPolicy
    ) -> VerifiedBundle:
        if inner.verification_material.public_key is not None:
            raise VerificationError("the bundle is signed with a key, not a certificate: verify "
                                    "it with a trusted key")
        bundle = Bundle(inner)
        self._times.value = []
        statement = None
        if bundle._dsse_envelope is not None:
            payload_type, payload = self.verify_dsse(bundle, policy)
            statement = _bound_statement(payload_type, payload, digest)
        else:
            self.verify_artifact(hashed, bundle, policy)
        entry = bundle.log_entry._inner
        return VerifiedBundle(
            digest=digest, signer=policy.name, trust_root=self.trust_root.name,
            identity=certificate_identity(bundle.signing_certificate), statement=statement,
            times=self._verified_times(), log_index=int(entry.log_index),
            log_entry_kind=f"{entry.kind_version.kind}/{entry.kind_version.version}")

    def verify_dsse(self, bundle: Bundle, policy: VerificationPolicy) -> tuple[str, bytes]:
        """sigstore-python's DSSE verification, plus the legacy `intoto` 0.0.2 entry kind."""
        # (1) to (6): time, chain, SCT, policy, inclusion proof, SET.
        self._verify_common_signing_cert(bundle, policy)
        envelope = bundle._dsse_envelope
        if envelope is None:
            raise VerificationError("the bundle holds no DSSE envelope")
        # (7): the envelope's signature, over its PAE, by the certificate's key.
        cert_key = bundle.signing_certificate.public_key()
        _verify_envelope_with(cert_key, envelope)
        # (8): the log entry records this very envelope.
        entry = bundle.log_entry._inner
        kind, version = entry.kind_version.kind, entry.kind_version.version
        if kind == "hashedrekord" and version == "0.0.2":
            _validate_hashedrekord_v002_dsse_entry_body(bundle)
        elif kind == "dsse" and version == "0.0.1":
            _validate_dsse_v001_entry_body(bundle)
        elif kind == "intoto" and version == "0.0.2":
            _validate_intoto_v002_entry_body(bundle)
        else:
            raise VerificationError(f"unsupported DSSE log entry type {kind}/{version}")
        return envelope._inner.payload_type, envelope._inner.payload

    # -- cosign 2 legacy keyless ---------------------------------------------------------

    def verify_legacy(
        self,
        payload: bytes,
        signature: bytes,
        cert: x509.Certificate,
        inner: rekor_v1.TransparencyLogEntry,
        policy: SignerPolicy,
    ) -> VerifiedBundle:
        """The keyless steps over a `.sig` layer, with the SET as the log's only evidence."""
        entry = TransparencyLogEntry.__new__(TransparencyLogEntry)
        entry._inner = inner  # sigstore-python's constructor insists on an inclusion proof
        keyring = self._trusted_root.rekor_keyring(KeyringPurpose.VERIFY)
        # (5) first: the SET is what makes the integrated time a verified time.
        try:
            entry._verify_set(keyring)
        except SigstoreError as exc:
            raise VerificationError(f"invalid log entry: {exc}") from exc
        if not inner.integrated_time:
            raise VerificationError("the Rekor bundle has no integrated time")
        at = TimestampVerificationResult(
            source=TimestampSource.TRANSPARENCY_SERVICE,
            time=datetime.fromtimestamp(inner.integrated_time, tz=UTC))
        # (0), (1): the chain to a Fulcio CA of the root, at the logged time.
        chain = self._verify_chain_at_time(cert, at)
        # (2)
        try:
            verify_sct(cert, chain, self._trusted_root.ct_keyring(KeyringPurpose.VERIFY))
        except SigstoreError as exc:
            raise VerificationError(f"failed to verify SCT on signing certificate: {exc}") from exc
        # (3)
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            raise VerificationError("key usage is not digital signature")
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if x509.oid.ExtendedKeyUsageOID.CODE_SIGNING not in extended:
            raise VerificationError("extended key usage does not contain code signing")
        policy.verify(cert)
        # (6)
        if not cert.not_valid_before_utc <= at.time <= cert.not_valid_after_utc:
            raise VerificationError(f"invalid signing cert: expired at time of signing "
                                    f"({at.time.isoformat()})")
        # (7)
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise VerificationError("the signing certificate's key is not an ECDSA key")
        try:
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as exc:
            raise VerificationError("the signature does not verify with the certificate's "
                                    "key") from exc
        # (8): the log records this signature, this certificate and this payload's digest.
        body = _entry_body(inner.canonicalized_body)
        if body.get("kind") != "hashedrekord" or body.get("apiVersion") != "0.0.1":
            raise VerificationError("the log entry body is not a hashedrekord 0.0.1")
        payload_hash = hashlib.sha256(payload).hexdigest()
        if _path(body, "spec", "data", "hash", "algorithm") != "sha256" or _path(
                body, "spec", "data", "hash", "value") != payload_hash:
            raise VerificationError("the log entry records another payload")
        if _b64(_path(body, "spec", "signature", "content"), what="signature") != signature:
            raise VerificationError("the log entry records another signature")
        logged = _b64(_path(body, "spec", "signature", "publicKey", "content"),
                      what="certificate")
        try:
            same = x509.load_pem_x509_certificate(logged) == cert
        except ValueError:
            same = False
        if not same:
            raise VerificationError("the log entry records another signing certificate")
        return VerifiedBundle(
            digest=f"sha256:{payload_hash}", signer=policy.name, trust_root=self.trust_root.name,
            identity=certificate_identity(cert), statement=None,
            times=(VerifiedTime("transparency-log", at.time),), log_index=inner.log_index,
            log_entry_kind=f"{inner.kind_version.kind}/{inner.kind_version.version}")

    # -- keyed -----------------------------------------------------------------------------

    def verify_keyed(
        self, inner: bundle_v1.Bundle, hashed: Hashed, digest: str, key: PublicKey
    ) -> VerifiedBundle:
        """A bundle whose verification material is a public key (sigstore-python #1244).

        Steps 0, 4, 5, 7 and 8 of the module docstring, with the key in place of the
        certificate; a key has no validity period, so step 6 has nothing to compare.
        """
        material = inner.verification_material
        if material.public_key is None:
            raise VerificationError("the bundle is signed with a certificate, not a key: verify "
                                    "it with a keyless identity")
        bundle = _keyed_bundle(inner)
        self._times.value = []
        # (0): at least one verified time: a TSA timestamp, or the SET's integrated time.
        if len(self._establish_time(bundle)) < 1:
            raise VerificationError("not enough sources of verified time")
        # (4), (5): inclusion proof, signed checkpoint, SET.
        try:
            bundle.log_entry._verify(self._trusted_root.rekor_keyring(KeyringPurpose.VERIFY))
        except SigstoreError as exc:
            raise VerificationError(f"invalid log entry: {exc}") from exc
        entry = bundle.log_entry._inner
        kind, version = entry.kind_version.kind, entry.kind_version.version
        body = _entry_body(entry.canonicalized_body)
        statement = None
        if inner.message_signature is not None:
            signature = inner.message_signature.signature
            stated = inner.message_signature.message_digest
            if stated is not None and stated.digest != hashed.digest:
                raise VerificationError("the bundle's message digest is not the admitted digest")
            # (7)
            key.verify_digest(signature, hashed.digest)
            # (8)
            if (kind, version) != ("hashedrekord", "0.0.1"):
                raise VerificationError(f"unsupported log entry type {kind}/{version} for a "
                                        "key-signed message signature")
            _validate_keyed_hashedrekord_v001(body, signature, hashed, key)
        elif inner.dsse_envelope is not None:
            envelope = Envelope(
                payload=base64.b64encode(inner.dsse_envelope.payload).decode(),
                payload_type=inner.dsse_envelope.payload_type,
                signatures=tuple(EnvelopeSignature(sig=base64.b64encode(s.sig).decode())
                                 for s in inner.dsse_envelope.signatures))
            # (7)
            if not verify_envelope(envelope, (key,)):
                raise VerificationError(f"the DSSE envelope is not signed by key {key.name}")
            statement = parse_statement(envelope)
            if not statement.covers(digest):
                raise VerificationError(f"the in-toto statement does not name {digest}")
            # (8)
            if (kind, version) != ("dsse", "0.0.1"):
                raise VerificationError(f"unsupported log entry type {kind}/{version} for a "
                                        "key-signed DSSE envelope")
            _validate_keyed_dsse_v001(body, inner.dsse_envelope, key)
        else:
            raise VerificationError("the bundle holds neither a signature nor an envelope")
        return VerifiedBundle(
            digest=digest, signer=key.name, trust_root=self.trust_root.name, identity=None,
            statement=statement, times=self._verified_times(), log_index=int(entry.log_index),
            log_entry_kind=f"{kind}/{version}")

    # -- time ------------------------------------------------------------------------------

    def _establish_time(self, bundle: Bundle) -> list[TimestampVerificationResult]:
        """sigstore-python's step (0), accepting the integrated time of `intoto` 0.0.2 entries.

        Rekor v1 signs the integrated time in the SET for every entry kind, so the legacy kind's
        time is as good as the others'; sigstore-python only lists dsse and hashedrekord.
        """
        verified: list[TimestampVerificationResult] = []
        material = bundle.verification_material
        if material.timestamp_verification_data:
            if not self._trusted_root.get_timestamp_authorities():
                raise VerificationError("the bundle holds a signed timestamp but the trust root "
                                        "has no timestamp authority")
            verified.extend(self._verify_timestamp_authority(bundle))
        entry = bundle.log_entry._inner
        if entry.integrated_time and entry.inclusion_promise:
            kind_version = (entry.kind_version.kind, entry.kind_version.version)
            if kind_version not in {("dsse", "0.0.1"), ("hashedrekord", "0.0.1"),
                                    ("intoto", "0.0.2")}:
                raise VerificationError(f"an integrated time is not expected in a "
                                        f"{kind_version[0]}/{kind_version[1]} entry")
            verified.append(TimestampVerificationResult(
                source=TimestampSource.TRANSPARENCY_SERVICE,
                time=datetime.fromtimestamp(entry.integrated_time, tz=UTC)))
        self._times.value = verified
        return verified

    def _verify_signed_timestamp(
        self, timestamp_response: TimeStampResponse, message: bytes
    ) -> TimestampVerificationResult | None:
        """sigstore-python's TSA check, with the validity period's end inclusive.

        A trust root's `validFor.end` is the last instant the authority is trusted (sigstore-go
        and the conformance suite's `trust-root-tsa-validity-end-inclusive` read it so);
        sigstore-python 4.5.1 compares with `<` and refuses a timestamp made at that instant.
        """
        for authority in self._trusted_root.get_timestamp_authorities():
            certificates = authority.certificates(allow_expired=True)
            # A signing certificate and a root at least; intermediates between them.
            if len(certificates) < 2:
                continue
            builder = (VerifierBuilder().tsa_certificate(certificates[0])
                       .add_root_certificate(certificates[-1]))
            for certificate in certificates[1:-1]:
                builder = builder.add_intermediate_certificate(certificate)
            try:
                builder.build().verify_message(timestamp_response, message)
            except Rfc3161VerificationError:
                continue
            at = timestamp_response.tst_info.gen_time
            end = authority.validity_period_end
            if authority.validity_period_start <= at and (end is None or at <= end):
                return TimestampVerificationResult(
                    source=TimestampSource.TIMESTAMP_AUTHORITY, time=at)
        return None

    def _verified_times(self) -> tuple[VerifiedTime, ...]:
        results: list[TimestampVerificationResult] = getattr(self._times, "value", [])
        return tuple(
            VerifiedTime("timestamp-authority"
                         if r.source is TimestampSource.TIMESTAMP_AUTHORITY
                         else "transparency-log", r.time)
            for r in results)


def _keyed_bundle(inner: bundle_v1.Bundle) -> Bundle:
    """sigstore-python's `Bundle` for key-signed content, with its invariants except the one
    that a certificate is present (the reason sigstore-python refuses these bundles)."""
    try:
        media_type = Bundle.BundleType(inner.media_type)
    except ValueError as exc:
        raise VerificationError(f"unsupported bundle format {inner.media_type}") from exc
    entries = inner.verification_material.tlog_entries
    if len(entries) != 1:
        raise VerificationError("expected exactly one log entry in the bundle")
    log_entry = TransparencyLogEntry(entries[0])  # requires an inclusion proof and checkpoint
    has_timestamp = bool(inner.verification_material.timestamp_verification_data
                         and inner.verification_material.timestamp_verification_data
                         .rfc3161_timestamps)
    if media_type is Bundle.BundleType.BUNDLE_0_1:
        if not log_entry._inner.inclusion_promise:
            raise InvalidBundle("a v0.1 bundle must contain an inclusion promise")
    elif not log_entry._inner.inclusion_promise and not has_timestamp:
        raise InvalidBundle("the bundle must contain an inclusion promise or signed timestamps")
    bundle = Bundle.__new__(Bundle)
    bundle._inner = inner
    bundle._log_entry = log_entry
    return bundle


def _verify_envelope_with(key: object, envelope: sigstore_dsse.Envelope) -> None:
    """The DSSE signature over the PAE, by the certificate's key (ECDSA, as Fulcio issues)."""
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerificationError("the signing certificate's key is not an ECDSA key")
    sigstore_dsse._verify(key, envelope)


def _bound_statement(payload_type: str, payload: bytes, digest: str) -> Statement:
    """The verified envelope's in-toto statement, which must name the admitted digest."""
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise VerificationError(f"unexpected DSSE payload type {payload_type!r}")
    envelope = Envelope(payload=base64.b64encode(payload).decode(), payload_type=payload_type,
                        signatures=())
    statement = parse_statement(envelope)
    if not statement.covers(digest):
        raise VerificationError(f"the in-toto statement does not name {digest} (it names "
                                f"{', '.join(statement.subject_digests()) or 'nothing'})")
    return statement


def _entry_body(raw: bytes) -> dict[str, object]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise VerificationError("the log entry body is not JSON") from exc
    if not isinstance(body, dict):
        raise VerificationError("the log entry body is not a JSON object")
    return body


def _path(doc: object, *keys: str) -> object:
    """`doc[k1][k2]...`, or `VerificationError` naming the missing field."""
    for key in keys:
        if not isinstance(doc, dict) or key not in doc:
            raise VerificationError(f"the log entry body has no {'.'.join(keys)}")
        doc = doc[key]
    return doc


def _b64(value: object, *, what: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationError(f"the log entry's {what} is not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"the log entry's {what} is not base64") from exc


def _same_key(pem: bytes, key: PublicKey) -> bool:
    try:
        logged = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        return False
    return logged.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo) == key.der()


def _validate_keyed_hashedrekord_v001(
    body: dict[str, object], signature: bytes, hashed: Hashed, key: PublicKey
) -> None:
    """hashedrekord 0.0.1: the logged digest, signature and key are the bundle's own."""
    if body.get("kind") != "hashedrekord" or body.get("apiVersion") != "0.0.1":
        raise VerificationError("the log entry body is not a hashedrekord 0.0.1")
    if _path(body, "spec", "data", "hash", "algorithm") != "sha256" or _path(
            body, "spec", "data", "hash", "value") != hashed.digest.hex():
        raise VerificationError("the log entry records another digest")
    if _b64(_path(body, "spec", "signature", "content"), what="signature") != signature:
        raise VerificationError("the log entry records another signature")
    pem = _b64(_path(body, "spec", "signature", "publicKey", "content"), what="public key")
    if not _same_key(pem, key):
        raise VerificationError(f"the log entry records another key than {key.name}")


def _validate_keyed_dsse_v001(
    body: dict[str, object], envelope: DsseEnvelope, key: PublicKey
) -> None:
    """dsse 0.0.1: the logged payload hash and (signature, key) pairs are the envelope's."""
    if body.get("kind") != "dsse" or body.get("apiVersion") != "0.0.1":
        raise VerificationError("the log entry body is not a dsse 0.0.1")
    if _path(body, "spec", "payloadHash", "algorithm") != "sha256" or _path(
            body, "spec", "payloadHash", "value") != hashlib.sha256(envelope.payload).hexdigest():
        raise VerificationError("the log entry records another payload")
    logged = _path(body, "spec", "signatures")
    if not isinstance(logged, list) or len(logged) != len(envelope.signatures):
        raise VerificationError("the log entry records other signatures")
    for entry, sig in zip(logged, envelope.signatures, strict=True):
        if _b64(_path(entry, "signature"), what="signature") != sig.sig or not _same_key(
                _b64(_path(entry, "verifier"), what="verifier"), key):
            raise VerificationError("the log entry records other signatures")


def _validate_intoto_v002_entry_body(bundle: Bundle) -> None:
    """intoto 0.0.2 (Rekor v1's legacy DSSE kind): one signature, the envelope's, by the
    signing certificate, over a payload whose hash is logged.

    Rekor stores the signature base64-encoded twice; the envelope hash it also stores is over
    Rekor's own re-serialisation of the envelope, which a client cannot reproduce, so it is not
    compared (sigstore-js and sigstore-go compare the same fields as here).
    """
    envelope = bundle._dsse_envelope
    if envelope is None:
        raise VerificationError("the bundle holds no DSSE envelope")
    body = _entry_body(bundle.log_entry._inner.canonicalized_body)
    if body.get("kind") != "intoto" or body.get("apiVersion") != "0.0.2":
        raise VerificationError("the log entry body is not an intoto 0.0.2")
    logged = _path(body, "spec", "content", "envelope", "signatures")
    if not isinstance(logged, list) or len(logged) != 1 or len(envelope._inner.signatures) != 1:
        raise VerificationError("an intoto entry must record exactly one signature")
    logged_sig = _b64(_b64(_path(logged[0], "sig"), what="signature").decode("ascii", "replace"),
                      what="signature")
    if logged_sig != envelope.signature:
        raise VerificationError("the log entry records another signature")
    cert_pem = _b64(_path(logged[0], "publicKey"), what="certificate")
    try:
        logged_cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise VerificationError("the log entry's certificate is not PEM") from exc
    if logged_cert != bundle.signing_certificate:
        raise VerificationError("the log entry records another signing certificate")
    payload_hash = _path(body, "spec", "content", "payloadHash")
    expected = hashlib.sha256(envelope._inner.payload).hexdigest()
    if _path(payload_hash, "algorithm") != "sha256" or _path(payload_hash, "value") != expected:
        raise VerificationError("the log entry records another payload")


__all__ = [
    "MAX_BUNDLE_BYTES",
    "VerifiedBundle",
    "VerifiedTime",
    "parse_digest",
    "verify_bundle",
    "verify_bundle_async",
    "verify_legacy_signature",
]
