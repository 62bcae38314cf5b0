"""Key loading: accepted types, refused types, cosign's key id."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa, x25519

from controller.errors import ConfigError
from controller.signatures.config import TrustedKey
from controller.signatures.errors import KeyLoadError, VerificationError
from controller.signatures.keys import MAX_SIGNATURE_BYTES, keyset_fingerprint, load_public_key
from tests.signatures.helpers import TRUSTED_PEM


def pem(private: object) -> bytes:
    public = private.public_key()  # type: ignore[attr-defined]
    data: bytes = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return data


def test_cosign_key_id_matches_the_bundle_hint() -> None:
    key = load_public_key(TRUSTED_PEM, name="release")
    assert key.algorithm == "ecdsa-p256"
    assert key.key_id == "BaW4aGgJjXRYpWoD4uqc77KSI4C9pA4jMBmNyUaV4To="


@pytest.mark.parametrize(("private", "algorithm"), [
    (ec.generate_private_key(ec.SECP256R1()), "ecdsa-p256"),
    (ec.generate_private_key(ec.SECP384R1()), "ecdsa-p384"),
    (rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa"),
    (ed25519.Ed25519PrivateKey.generate(), "ed25519"),
])
def test_accepted_types_sign_and_verify(private: object, algorithm: str) -> None:
    key = load_public_key(pem(private), name="k")
    assert key.algorithm == algorithm
    data = b"payload"
    if isinstance(private, ec.EllipticCurvePrivateKey):
        h = hashes.SHA256() if algorithm == "ecdsa-p256" else hashes.SHA384()
        sig = private.sign(data, ec.ECDSA(h))
    elif isinstance(private, rsa.RSAPrivateKey):
        sig = private.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(private, ed25519.Ed25519PrivateKey)
        sig = private.sign(data)
    key.verify(sig, data)
    with pytest.raises(VerificationError):
        key.verify(sig, b"other payload")
    with pytest.raises(VerificationError):
        key.verify(b"\x30\x02garbage", data)
    with pytest.raises(VerificationError):
        key.verify(b"", data)


def test_rsa_pss_is_accepted() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sig = private.sign(b"m", padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                         salt_length=padding.PSS.MAX_LENGTH), hashes.SHA256())
    load_public_key(pem(private), name="k").verify(sig, b"m")


@pytest.mark.parametrize("private", [
    dsa.generate_private_key(key_size=2048),
    x25519.X25519PrivateKey.generate(),
    ec.generate_private_key(ec.SECP256K1()),
    rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505 (refused)
])
def test_refused_types(private: object) -> None:
    with pytest.raises(KeyLoadError):
        load_public_key(pem(private), name="k")


def test_a_refused_key_type_is_named() -> None:
    with pytest.raises(KeyLoadError, match="key k: DSAPublicKey keys are not accepted"):
        load_public_key(pem(dsa.generate_private_key(key_size=2048)), name="k")


def test_garbage_and_private_keys_are_refused() -> None:
    with pytest.raises(KeyLoadError):
        load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", name="k")
    private = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(KeyLoadError):
        load_public_key(private, name="k")


def test_trusted_key_from_file_and_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "k.pub"
    path.write_text(TRUSTED_PEM)
    assert TrustedKey(name="f", path=str(path)).load().key_id == load_public_key(
        TRUSTED_PEM, name="x").key_id
    with pytest.raises(ConfigError, match="cannot read"):
        TrustedKey(name="f", path=str(path) + ".missing").load()
    with pytest.raises(ConfigError, match="not accepted"):
        TrustedKey(name="d", pem=pem(dsa.generate_private_key(key_size=2048)).decode()).load()


def test_keyset_fingerprint_is_order_independent() -> None:
    a = load_public_key(TRUSTED_PEM, name="a")
    b = load_public_key(pem(ed25519.Ed25519PrivateKey.generate()), name="b")
    assert keyset_fingerprint((a, b)) == keyset_fingerprint((b, a))
    assert keyset_fingerprint((a,)) != keyset_fingerprint((a, b))


# -- signatures over a digest (Sigstore's messageSignature) --------------------------------------

def test_verify_digest_for_ecdsa_and_rsa() -> None:
    message = b"artifact"
    digest = hashlib.sha256(message).digest()
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ec_pub = load_public_key(ec_key.public_key().public_bytes(*pem), name="ec")
    rsa_pub = load_public_key(rsa_key.public_key().public_bytes(*pem), name="rsa")
    ec_pub.verify_digest(ec_key.sign(message, ec.ECDSA(hashes.SHA256())), digest)
    rsa_pub.verify_digest(rsa_key.sign(message, padding.PKCS1v15(), hashes.SHA256()), digest)
    rsa_pub.verify_digest(rsa_key.sign(message, padding.PSS(
        mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()), digest)
    with pytest.raises(VerificationError, match="does not verify"):
        ec_pub.verify_digest(ec_key.sign(b"other", ec.ECDSA(hashes.SHA256())), digest)
    with pytest.raises(VerificationError, match="32 bytes"):
        ec_pub.verify_digest(b"sig", digest[:20])
    assert ec_pub.der() == ec_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_ed25519_cannot_verify_a_digest() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pub = load_public_key(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), name="ed")
    with pytest.raises(VerificationError, match="Ed25519"):
        pub.verify_digest(key.sign(b"m"), hashlib.sha256(b"m").digest())


def test_a_digest_signature_of_implausible_length_is_refused_before_verifying() -> None:
    key = load_public_key(TRUSTED_PEM, name="release")
    digest = hashlib.sha256(b"m").digest()
    for signature in (b"", b"x" * (MAX_SIGNATURE_BYTES + 1)):
        with pytest.raises(VerificationError, match=f"length {len(signature)} is not plausible"):
            key.verify_digest(signature, digest)
    # The longest plausible one is verified, and fails as a signature.
    with pytest.raises(VerificationError) as caught:
        key.verify_digest(b"x" * MAX_SIGNATURE_BYTES, digest)
    assert "plausible" not in str(caught.value)


def test_a_message_signature_of_implausible_length_is_refused_before_verifying() -> None:
    key = load_public_key(TRUSTED_PEM, name="release")
    for signature in (b"", b"x" * (MAX_SIGNATURE_BYTES + 1)):
        with pytest.raises(VerificationError, match=f"length {len(signature)} is not plausible"):
            key.verify(signature, b"m")
    # The longest plausible one is verified, and fails as a signature.
    with pytest.raises(VerificationError) as caught:
        key.verify(b"x" * MAX_SIGNATURE_BYTES, b"m")
    assert "plausible" not in str(caught.value)
