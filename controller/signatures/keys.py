"""Trusted public keys: ECDSA (P-256, cosign's default; P-384; P-521), RSA and Ed25519.

Keys are PEM `SubjectPublicKeyInfo`, as `cosign generate-key-pair` writes them. Each key has a
name (from the configuration) and an id: base64 of sha256 over its DER encoding, which is what
cosign 3 writes as the bundle's `verificationMaterial.publicKey.hint`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from controller.signatures.errors import KeyLoadError, VerificationError

Algorithm = Literal["ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa", "ed25519"]

_CURVES: dict[str, tuple[Algorithm, hashes.HashAlgorithm]] = {
    "secp256r1": ("ecdsa-p256", hashes.SHA256()),
    "secp384r1": ("ecdsa-p384", hashes.SHA384()),
    "secp521r1": ("ecdsa-p521", hashes.SHA512()),
}
MIN_RSA_BITS = 2048
"""Smaller RSA keys are refused at load time."""
MAX_SIGNATURE_BYTES = 2048
"""No accepted algorithm makes a signature this large; longer input is refused unparsed."""

PublicKeyTypes = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class PublicKey:
    """One trusted key, ready to verify."""

    name: str
    """The name given in the configuration; what denials and the ledger call it."""
    key_id: str
    """base64(sha256(DER SubjectPublicKeyInfo)): cosign's bundle key hint."""
    algorithm: Algorithm
    key: PublicKeyTypes = field(repr=False, compare=False)

    def verify(self, signature: bytes, data: bytes) -> None:
        """Raise `VerificationError` unless `signature` is this key's signature over `data`.

        ECDSA signatures are DER, hashed with the curve's hash (SHA-256 for P-256). RSA accepts
        PKCS#1 v1.5 (cosign's default) or PSS, both over SHA-256. Ed25519 signs `data` itself.
        """
        if not signature or len(signature) > MAX_SIGNATURE_BYTES:
            raise VerificationError(f"signature length {len(signature)} is not plausible")
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, data, ec.ECDSA(_CURVES[self.key.curve.name][1]))
            elif isinstance(self.key, rsa.RSAPublicKey):
                try:
                    self.key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
                except InvalidSignature:
                    self.key.verify(
                        signature, data,
                        padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                    salt_length=padding.PSS.AUTO),
                        hashes.SHA256())
            else:
                self.key.verify(signature, data)
        except InvalidSignature as exc:
            raise VerificationError(f"signature does not verify with key {self.name}") from exc
        except (ValueError, UnsupportedAlgorithm) as exc:
            # Malformed DER in an ECDSA signature surfaces as ValueError in some versions.
            raise VerificationError(f"malformed signature for key {self.name}: {exc}") from exc


    def verify_digest(self, signature: bytes, digest: bytes) -> None:
        """Raise `VerificationError` unless `signature` is over the message whose sha256 is
        `digest` (what a Sigstore `messageSignature` signs, so a caller holding only the
        admitted digest can verify it).

        Ed25519 signs the message itself, never a digest, so it cannot be checked this way.
        """
        if not signature or len(signature) > MAX_SIGNATURE_BYTES:
            raise VerificationError(f"signature length {len(signature)} is not plausible")
        if len(digest) != hashes.SHA256.digest_size:
            raise VerificationError("a sha256 digest is 32 bytes")
        prehashed = Prehashed(hashes.SHA256())
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, digest, ec.ECDSA(prehashed))
            elif isinstance(self.key, rsa.RSAPublicKey):
                try:
                    self.key.verify(signature, digest, padding.PKCS1v15(), prehashed)
                except InvalidSignature:
                    self.key.verify(
                        signature, digest,
                        padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                    salt_length=padding.PSS.AUTO),
                        prehashed)
            else:
                raise VerificationError(
                    f"key {self.name}: Ed25519 signatures cannot be checked against a digest")
        except InvalidSignature as exc:
            raise VerificationError(f"signature does not verify with key {self.name}") from exc
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise VerificationError(f"malformed signature for key {self.name}: {exc}") from exc

    def der(self) -> bytes:
        """The key's DER SubjectPublicKeyInfo."""
        return self.key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(der: bytes) -> str:
    """cosign's key hint: base64 of sha256 over the DER SubjectPublicKeyInfo."""
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def load_public_key(pem: bytes | str, *, name: str) -> PublicKey:
    """Load one PEM public key; raise `KeyLoadError` for anything but the accepted types."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyLoadError(f"key {name}: not a PEM public key ({exc})") from exc
    algorithm: Algorithm
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            raise KeyLoadError(f"key {name}: curve {key.curve.name} is not accepted")
        algorithm = _CURVES[key.curve.name][0]
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyLoadError(f"key {name}: RSA keys must have at least {MIN_RSA_BITS} bits")
        algorithm = "rsa"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = "ed25519"
    else:
        raise KeyLoadError(f"key {name}: {type(key).__name__} keys are not accepted")
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PublicKey(name=name, key_id=key_id(der), algorithm=algorithm, key=key)


def keyset_fingerprint(keys: tuple[PublicKey, ...]) -> str:
    """A stable digest of a set of keys (names and ids), for verdict cache keys."""
    parts = sorted(f"{k.name}={k.key_id}" for k in keys)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
