"""A Sigstore instance built in the test: a Fulcio-like CA, a CT log and the one-entry Rekor log.

`LocalSigstore` issues code-signing leaf certificates the way Fulcio does for GitHub Actions
(SAN URI, issuer and source extensions, an embedded precertificate SCT from its CT log key),
logs signatures in `LocalLog` (SET, checkpoint, inclusion proof), and writes the
`trusted_root.json` naming all three. With it the tests make, for real image digests:

- cosign 3 keyless bundles (DSSE, predicate `https://sigstore.dev/cosign/sign/v1`);
- GitHub artifact attestations (DSSE, SLSA v1 provenance), as `push-to-registry` stores them;
- cosign 2 keyless `.sig` layers (certificate and Rekor bundle in annotations),

and push them to the test registry in the places cosign and GitHub push them.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from controller.signatures.dsse import pae
from tests.fixtures.registry import RegistryServer, sha256
from tests.signatures.certs import FULCIO, der_utf8
from tests.signatures.sigstore_log import LocalLog

SCT_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
REPOSITORY = "org/app"
WORKFLOW = ".github/workflows/release.yml"
SUBJECT = f"https://github.com/{REPOSITORY}/{WORKFLOW}@refs/heads/main"
COMMIT = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
"""Also the commit of the SLSA attestations (tests.signatures.helpers.COMMIT)."""
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
SLSA_V1 = "https://slsa.dev/provenance/v1"
IN_TOTO = "application/vnd.in-toto+json"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def github_claims(**overrides: str) -> dict[int, str]:
    """Fulcio's extensions for a release workflow run on main of org/app at COMMIT."""
    claims = {
        8: GITHUB_ISSUER,
        11: "github-hosted",
        12: f"https://github.com/{REPOSITORY}",
        13: COMMIT,
        14: "refs/heads/main",
        18: f"https://github.com/{REPOSITORY}/{WORKFLOW}@refs/heads/main",
        19: COMMIT,
        20: "push",
    }
    arcs = {"issuer": 8, "runner": 11, "repository": 12, "digest": 13, "ref": 14,
            "config": 18, "config_digest": 19, "trigger": 20}
    for name, value in overrides.items():
        claims[arcs[name]] = value
    return claims


@dataclass
class Signed:
    """A signing certificate and its key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass
class LocalSigstore:
    """A CA, a CT log and a Rekor log, all keys made in the test."""

    log: LocalLog = field(default_factory=LocalLog)
    ca_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    ct_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    now: int = field(default_factory=lambda: int(time.time()) - 60)
    """The logged (integrated) time of every signature; certificates are valid around it."""

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.test"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "sigstore.test")])
        start = datetime.datetime.fromtimestamp(self.now, datetime.UTC)
        public = self.ca_key.public_key()
        self.ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(public).serial_number(x509.random_serial_number())
                   .not_valid_before(start - datetime.timedelta(days=1))
                   .not_valid_after(start + datetime.timedelta(days=365))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
                   .add_extension(x509.KeyUsage(
                       digital_signature=False, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                       key_cert_sign=True, crl_sign=True, encipher_only=False,
                       decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public),
                                  critical=False)
                   .sign(self.ca_key, hashes.SHA256()))

    # --- the trust root -------------------------------------------------------------------

    def trusted_root_json(self) -> str:
        """The `trusted_root.json` naming this CA, CT log and Rekor log."""
        doc = json.loads(_trust_root_of(self.log))
        ct = self.ct_key.public_key()
        doc["certificateAuthorities"] = [{
            "subject": {"organization": "sigstore.test", "commonName": "sigstore.test"},
            "uri": "https://fulcio.test",
            "certChain": {"certificates": [
                {"rawBytes": _b64(self.ca.public_bytes(serialization.Encoding.DER))}]},
            "validFor": {"start": "2020-01-01T00:00:00Z"},
        }]
        doc["ctlogs"] = [{
            "baseUrl": "https://ctfe.test",
            "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": _b64(_spki(ct)), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                          "validFor": {"start": "2020-01-01T00:00:00Z"}},
            "logId": {"keyId": _b64(hashlib.sha256(_spki(ct)).digest())},
        }]
        return json.dumps(doc)

    # --- certificates -----------------------------------------------------------------------

    def issue(
        self,
        *,
        subject: str = SUBJECT,
        claims: dict[int, str] | None = None,
        valid_from: int | None = None,
        minutes: int = 10,
    ) -> Signed:
        """A leaf as Fulcio issues it, with an embedded SCT from the CT log."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = datetime.datetime.fromtimestamp(
            self.now - 30 if valid_from is None else valid_from, datetime.UTC)
        serial = x509.random_serial_number()
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.KeyUsage(digital_signature=True, content_commitment=False,
                           key_encipherment=False, data_encipherment=False, key_agreement=False,
                           key_cert_sign=False, crl_sign=False, encipher_only=False,
                           decipher_only=False), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
             False),
            (x509.SubjectAlternativeName([x509.UniformResourceIdentifier(subject)]), True),
        ]
        for arc, value in sorted((claims if claims is not None else github_claims()).items()):
            extensions.append((x509.UnrecognizedExtension(
                ObjectIdentifier(f"{FULCIO}.{arc}"), der_utf8(value)), False))

        def build(sct_list: bytes) -> x509.Certificate:
            builder = (x509.CertificateBuilder().subject_name(x509.Name([]))
                       .issuer_name(self.ca.subject).public_key(key.public_key())
                       .serial_number(serial).not_valid_before(start)
                       .not_valid_after(start + datetime.timedelta(minutes=minutes)))
            for ext, critical in extensions:
                builder = builder.add_extension(ext, critical=critical)
            octets = _der_octet_string(sct_list)
            builder = builder.add_extension(x509.UnrecognizedExtension(SCT_OID, octets),
                                            critical=False)
            return builder.sign(self.ca_key, hashes.SHA256())

        # The SCT signs the precertificate's TBS, which is the final TBS without the SCT list:
        # build once with a placeholder, sign that TBS, build again with the real SCT.
        placeholder = build(self._sct_list(b"\x00" * 70, 0))
        stamp = self.now * 1000
        signed = self._sct_signature(placeholder.tbs_precertificate_bytes, stamp)
        return Signed(build(self._sct_list(signed, stamp)), key)

    def _sct_signature(self, tbs: bytes, stamp: int) -> bytes:
        issuer_key_id = hashlib.sha256(_spki(self.ca_key.public_key())).digest()
        entry = issuer_key_id + len(tbs).to_bytes(3, "big") + tbs
        data = struct.pack("!BBQH", 0, 0, stamp, 1) + entry + struct.pack("!H", 0)
        return self.ct_key.sign(data, ec.ECDSA(hashes.SHA256()))

    def _sct_list(self, signature: bytes, stamp: int) -> bytes:
        log_id = hashlib.sha256(_spki(self.ct_key.public_key())).digest()
        sct = (b"\x00" + log_id + struct.pack("!Q", stamp) + struct.pack("!H", 0)
               + bytes([4, 3]) + struct.pack("!H", len(signature)) + signature)
        one = struct.pack("!H", len(sct)) + sct
        return struct.pack("!H", len(one)) + one

    # --- signed artifacts -------------------------------------------------------------------

    def dsse_bundle(self, statement: dict[str, Any], signer: Signed | None = None, *,
                    integrated_time: int | None = None) -> bytes:
        """A v0.3 bundle: `statement` in a DSSE envelope by `signer`, logged as dsse 0.0.1."""
        signer = signer or self.issue()
        payload = json.dumps(statement).encode()
        sig = signer.key.sign(pae(IN_TOTO, payload), ec.ECDSA(hashes.SHA256()))
        body = {
            "apiVersion": "0.0.1", "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": "00" * 32},
                "payloadHash": {"algorithm": "sha256",
                                "value": hashlib.sha256(payload).hexdigest()},
                "signatures": [{"signature": _b64(sig), "verifier": _b64(_pem(signer.cert))}],
            },
        }
        entry = self.log.entry(body, kind="dsse", version="0.0.1",
                               integrated_time=integrated_time or self.now)
        return json.dumps({
            "mediaType": BUNDLE_V03,
            "verificationMaterial": {
                "certificate": {"rawBytes": _b64(signer.cert.public_bytes(
                    serialization.Encoding.DER))},
                "tlogEntries": [entry],
            },
            "dsseEnvelope": {"payload": _b64(payload), "payloadType": IN_TOTO,
                             "signatures": [{"sig": _b64(sig), "keyid": ""}]},
        }).encode()

    def sign_image(self, digest: str, signer: Signed | None = None, **kw: Any) -> bytes:
        """What `cosign sign` (cosign 3, keyless) stores: a DSSE bundle over the digest."""
        return self.dsse_bundle(_statement(digest, COSIGN_SIGN, {}), signer, **kw)

    def attest_image(self, digest: str, signer: Signed | None = None, *,
                     commit: str = COMMIT, **kw: Any) -> bytes:
        """What `actions/attest-build-provenance` stores: SLSA v1 provenance in a bundle."""
        predicate = {
            "buildDefinition": {
                "buildType": "https://actions.github.io/buildtypes/workflow/v1",
                "externalParameters": {"workflow": {"ref": "refs/heads/main",
                                                    "repository": "https://github.com/org/app",
                                                    "path": WORKFLOW}},
                "resolvedDependencies": [{"uri": "git+https://github.com/org/app@refs/heads/main",
                                          "digest": {"gitCommit": commit}}],
            },
            "runDetails": {
                "builder": {"id": "https://github.com/actions/runner/github-hosted"},
                "metadata": {"invocationId":
                             "https://github.com/org/app/actions/runs/12345/attempts/1"},
            },
        }
        return self.dsse_bundle(_statement(digest, SLSA_V1, predicate), signer, **kw)

    def legacy_sig(self, digest: str, reference: str, signer: Signed | None = None
                   ) -> tuple[bytes, dict[str, str]]:
        """cosign 2 keyless `.sig`: the simple signing payload and its layer annotations."""
        signer = signer or self.issue()
        payload = json.dumps({
            "critical": {"identity": {"docker-reference": reference},
                         "image": {"docker-manifest-digest": digest},
                         "type": "cosign container image signature"},
            "optional": None}).encode()
        sig = signer.key.sign(payload, ec.ECDSA(hashes.SHA256()))
        body = {
            "apiVersion": "0.0.1", "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256",
                                  "value": hashlib.sha256(payload).hexdigest()}},
                "signature": {"content": _b64(sig),
                              "publicKey": {"content": _b64(_pem(signer.cert))}},
            },
        }
        entry = self.log.entry(body, kind="hashedrekord", version="0.0.1",
                               integrated_time=self.now)
        rekor = {"SignedEntryTimestamp": entry["inclusionPromise"]["signedEntryTimestamp"],
                 "Payload": {"body": entry["canonicalizedBody"], "integratedTime": self.now,
                             "logIndex": 0, "logID": self.log.log_id.hex()}}
        return payload, {
            "dev.cosignproject.cosign/signature": _b64(sig),
            "dev.sigstore.cosign/certificate": _pem(signer.cert).decode(),
            "dev.sigstore.cosign/chain": _pem(self.ca).decode(),
            "dev.sigstore.cosign/bundle": json.dumps(rekor),
        }


def _statement(digest: str, predicate_type: str, predicate: dict[str, Any]) -> dict[str, Any]:
    return {"_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "image", "digest": {"sha256": digest.split(":", 1)[1]}}],
            "predicateType": predicate_type, "predicate": predicate}


def _der_octet_string(data: bytes) -> bytes:
    if len(data) < 0x80:
        return bytes([0x04, len(data)]) + data
    size = len(data).to_bytes((len(data).bit_length() + 7) // 8, "big")
    return bytes([0x04, 0x80 | len(size)]) + size + data


def _trust_root_of(log: LocalLog) -> str:
    """The log's own root document (its tlog entry), as JSON."""
    root = log.trust_root()
    return root.root._inner.to_json()


# --- pushing, as cosign 3, GitHub's push-to-registry and cosign 2 do -------------------------

def push_referrer(registry: RegistryServer, repository: str, subject: str, bundle: bytes, *,
                  predicate_type: str = COSIGN_SIGN) -> str:
    """A bundle as an OCI referrer of `subject`, listed in the referrers fallback tag.

    The manifest is what GitHub's `push-to-registry` writes (and cosign 3's differs only in
    its annotations): artifactType the bundle media type, the empty config, one bundle layer,
    `dev.sigstore.bundle.content` and `dev.sigstore.bundle.predicateType`.
    """
    empty = b"{}"
    subject_raw = registry.get_manifest(repository, subject)
    annotations = {"dev.sigstore.bundle.content": "dsse-envelope",
                   "dev.sigstore.bundle.predicateType": predicate_type,
                   "org.opencontainers.image.created": "2025-06-15T00:00:00Z"}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE_V03,
        "config": {"mediaType": EMPTY_CONFIG, "digest": registry.push_blob(repository, empty),
                   "size": len(empty)},
        "layers": [{"mediaType": BUNDLE_V03, "digest": registry.push_blob(repository, bundle),
                    "size": len(bundle)}],
        "subject": {"mediaType": json.loads(subject_raw)["mediaType"], "digest": subject,
                    "size": len(subject_raw)},
        "annotations": annotations,
    }).encode()
    digest = registry.push_manifest(repository, sha256(manifest), manifest)
    tag = subject.replace(":", "-", 1)
    try:
        index = json.loads(registry.get_manifest(repository, tag))
    except AssertionError:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": digest,
                               "size": len(manifest), "artifactType": BUNDLE_V03,
                               "annotations": annotations})
    registry.push_manifest(repository, tag, json.dumps(index).encode(), OCI_INDEX)
    return digest


def push_legacy_sig(registry: RegistryServer, repository: str, digest: str, payload: bytes,
                    annotations: dict[str, str]) -> None:
    """cosign 2's `sha256-<hex>.sig` tag: one simple signing layer with its annotations."""
    config = json.dumps({"architecture": "", "os": "", "rootfs": {"type": "layers",
                                                                  "diff_ids": []}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": registry.push_blob(repository, config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": registry.push_blob(repository, payload), "size": len(payload),
                    "annotations": annotations}],
    }).encode()
    registry.push_manifest(repository, f"{digest.replace(':', '-', 1)}.sig", manifest)
