"""A one-entry Rekor v1 log, built in the test: key-signed bundles whose log we control.

The conformance corpus has key-signed bundles only as hashedrekord message signatures, and its
log entries cannot be altered without breaking the log's signatures. Here the test is the log:
it signs checkpoints and SETs over entries it chooses, so a bundle can carry an *honestly logged*
entry of another key or payload, which only the body check (step 8) can catch.

The entry is the only leaf of a tree of size 1, so its inclusion proof is empty and the root hash
is the leaf hash (RFC 6962: sha256(0x00 || body)).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controller.signatures.dsse import pae
from controller.signatures.trust import TrustRoot, parse_trust_root

ORIGIN = "rekor.test - 1"
"""The checkpoint's origin line; Rekor's is `<host> - <tree id>`."""
KEY_NAME = "rekor.test"
"""The name on the checkpoint's signature line (one word, as the signed-note format wants)."""
INTEGRATED_TIME = 1_750_000_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class LocalLog:
    """A log key, the trust root naming it, and bundles logged in it."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    @property
    def log_id(self) -> bytes:
        return hashlib.sha256(self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()

    def trust_root(self) -> TrustRoot:
        """A trusted_root.json with this log; its CA is only there because sigstore-python's
        verifier refuses a root without one (a key-signed bundle never consults it)."""
        ca_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unused test CA")])
        ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
              .public_key(ca_key.public_key()).serial_number(1)
              .not_valid_before(now - datetime.timedelta(days=1))
              .not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        doc = {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{
                "baseUrl": "https://rekor.test",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": _b64(der), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                              "validFor": {"start": "2020-01-01T00:00:00Z"}},
                "logId": {"keyId": _b64(self.log_id)},
            }],
            "certificateAuthorities": [{
                "subject": {"organization": "test", "commonName": "unused test CA"},
                "uri": "https://ca.test",
                "certChain": {"certificates": [
                    {"rawBytes": _b64(ca.public_bytes(serialization.Encoding.DER))}]},
                "validFor": {"start": "2020-01-01T00:00:00Z"},
            }],
            "ctlogs": [],
            "timestampAuthorities": [],
        }
        return parse_trust_root(json.dumps(doc), name="test-log")

    def _sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))

    def entry(self, body: dict[str, Any], *, kind: str, version: str,
              integrated_time: int = INTEGRATED_TIME) -> dict[str, Any]:
        """A tlogEntries item for `body`: inclusion proof, signed checkpoint and SET."""
        raw = json.dumps(body, separators=(",", ":")).encode()
        root = hashlib.sha256(b"\x00" + raw).digest()
        note = f"{ORIGIN}\n1\n{_b64(root)}\n"
        signature = _b64(self.log_id[:4] + self._sign(note.encode()))
        checkpoint = f"{note}\n\u2014 {KEY_NAME} {signature}\n"
        set_payload = rfc8785.dumps({"body": _b64(raw), "integratedTime": integrated_time,
                                     "logID": self.log_id.hex(), "logIndex": 0})
        return {
            "logIndex": "0",
            "logId": {"keyId": _b64(self.log_id)},
            "kindVersion": {"kind": kind, "version": version},
            "integratedTime": str(integrated_time),
            "inclusionPromise": {"signedEntryTimestamp": _b64(self._sign(set_payload))},
            "inclusionProof": {"logIndex": "0", "rootHash": _b64(root), "treeSize": "1",
                               "hashes": [], "checkpoint": {"envelope": checkpoint}},
            "canonicalizedBody": _b64(raw),
        }


def key_signed_dsse_bundle(
    log: LocalLog,
    signer: ec.EllipticCurvePrivateKey,
    statement: dict[str, Any],
    *,
    logged_key: ec.EllipticCurvePublicKey | None = None,
    logged_payload: bytes | None = None,
) -> bytes:
    """A v0.3 bundle: `statement` in a DSSE envelope signed by `signer`, logged as dsse 0.0.1.

    `logged_key` / `logged_payload` make the log record another key or payload than the bundle's
    (the log still signs it: the log is honest about what it was given).
    """
    payload = json.dumps(statement).encode()
    payload_type = "application/vnd.in-toto+json"
    sig = signer.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
    body = {
        "apiVersion": "0.0.1", "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": "00" * 32},
            "payloadHash": {"algorithm": "sha256",
                            "value": hashlib.sha256(logged_payload or payload).hexdigest()},
            "signatures": [{"signature": _b64(sig),
                            "verifier": _b64(_pem(logged_key or signer.public_key()))}],
        },
    }
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {
            "publicKey": {"hint": "test"},
            "tlogEntries": [log.entry(body, kind="dsse", version="0.0.1")],
        },
        "dsseEnvelope": {"payload": _b64(payload), "payloadType": payload_type,
                         "signatures": [{"sig": _b64(sig), "keyid": ""}]},
    }
    return json.dumps(bundle).encode()


def key_signed_blob_bundle(
    log: LocalLog,
    signer: ec.EllipticCurvePrivateKey,
    artifact: bytes,
    *,
    logged_key: ec.EllipticCurvePublicKey | None = None,
) -> bytes:
    """A v0.3 bundle: a message signature over `artifact`, logged as hashedrekord 0.0.1."""
    digest = hashlib.sha256(artifact).digest()
    sig = signer.sign(artifact, ec.ECDSA(hashes.SHA256()))
    body = {
        "apiVersion": "0.0.1", "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
            "signature": {"content": _b64(sig),
                          "publicKey": {"content": _b64(_pem(logged_key or signer.public_key()))}},
        },
    }
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {
            "publicKey": {"hint": "test"},
            "tlogEntries": [log.entry(body, kind="hashedrekord", version="0.0.1")],
        },
        "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": _b64(digest)},
                             "signature": _b64(sig)},
    }
    return json.dumps(bundle).encode()
