"""The keyless signer: artifacts signed with a Fulcio certificate, judged by OIDC identity.

It handles the keyless formats found in registries:
- cosign 3 bundles (DSSE, predicate `https://sigstore.dev/cosign/sign/v1`) and GitHub artifact
  attestations (DSSE, SLSA provenance) found as referrers, whose verification material is a
  certificate;
- cosign 2 keyless `.sig` layers, whose certificate and Rekor bundle are layer annotations.

For each trust root that a configured signer names, the artifact is verified once, with
sigstore-python, for the admitted digest (`controller.signatures.bundle`): chain, SCT, log,
times, signature, log body. Each signer's identity policy is then applied to the verified
certificate; the finding names the signers whose policies accept it, and for the others, which
field was wrong. Verifying once per root and matching policies afterwards gives the same answer
as verifying once per signer (a policy only reads the certificate) for a fraction of the work.

A bundle whose statement names another digest is still verified (against the digest it names),
so that a replay is reported as such rather than as a broken signature; it is never `bound`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping

from cryptography import x509

from controller.signatures.bundle import VerifiedBundle, verify_bundle, verify_legacy_signature
from controller.signatures.certificate import Mismatch
from controller.signatures.discovery import RawArtifact
from controller.signatures.dsse import b64decode
from controller.signatures.errors import VerificationError
from controller.signatures.formats import Finding, check_bundle, check_simplesigning
from controller.signatures.keyless import IdentityPolicy
from controller.signatures.provenance import SLSA_TYPES, extract_provenance
from controller.signatures.trust import TrustRoot


class _AnyIdentity:
    """Accepts every certificate. Only used to verify an artifact once per trust root; the
    configured signers' policies are applied to the verified certificate right after."""

    name = "*"

    def fingerprint(self) -> str:
        return "any"

    def verify(self, cert: x509.Certificate) -> None:
        return None


_ANY = _AnyIdentity()


class KeylessSigners:
    """Every configured keyless signer, grouped by the trust root it chains to."""

    def __init__(self, signers: Mapping[str, tuple[IdentityPolicy, TrustRoot]]) -> None:
        self._roots: dict[str, TrustRoot] = {}
        self._policies: dict[str, list[IdentityPolicy]] = {}
        for policy, root in signers.values():
            self._roots[root.name] = root
            self._policies.setdefault(root.name, []).append(policy)
        self._names = frozenset(signers)
        parts = sorted(f"{name}:{policy.fingerprint()}:{root.fingerprint}"
                       for name, (policy, root) in signers.items())
        self._fingerprint = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]

    @property
    def names(self) -> frozenset[str]:
        """The keyless signers' names."""
        return self._names

    def fingerprint(self) -> str:
        """Over every signer's policy and its root's content."""
        return self._fingerprint

    def handles(self, artifact: RawArtifact) -> bool:
        """Artifacts that carry a certificate: keyless `.sig` layers and certificate bundles."""
        if artifact.problem is not None:
            return False
        if artifact.format == "legacy-sig":
            return bool(artifact.certificate)
        if artifact.format == "bundle":
            return _has_certificate(artifact.data)
        return False

    def check(self, artifact: RawArtifact, digest: str) -> Finding:
        """Verify once per trust root, then match every signer on the roots that verified."""
        if artifact.format == "legacy-sig":
            return self._check_legacy(artifact, digest)
        return self._check_bundle(artifact, digest)

    def _check_bundle(self, artifact: RawArtifact, digest: str) -> Finding:
        # Unverified, only to learn the kind and which digest the statement names; nothing
        # read here counts until the signature over it has verified.
        seen = check_bundle(artifact.data, (), digest, source=artifact.source)
        if seen.problem is not None:
            return seen
        target = digest if seen.bound or not seen.signed_digests else seen.signed_digests[0]

        def verify(root: TrustRoot) -> VerifiedBundle:
            return verify_bundle(artifact.data, digest=target, signer=_ANY, trust_root=root)

        return self._match(seen, verify, bound=target == digest)

    def _check_legacy(self, artifact: RawArtifact, digest: str) -> Finding:
        seen = check_simplesigning(artifact.data, artifact.signature, (), digest,
                                   source=artifact.source)
        if seen.problem is not None:
            return seen
        # check_simplesigning decoded it already: a signature that is not base64 is its problem.
        signature = b64decode(artifact.signature, what="signature annotation")

        def verify(root: TrustRoot) -> VerifiedBundle:
            return verify_legacy_signature(
                artifact.data, signature, certificate_pem=artifact.certificate,
                rekor_bundle=artifact.rekor_bundle, signer=_ANY, trust_root=root)

        return self._match(seen, verify, bound=seen.bound)

    def _match(
        self, seen: Finding, verify: Callable[[TrustRoot], VerifiedBundle], *, bound: bool
    ) -> Finding:
        errors: list[str] = []
        matched: set[str] = set()
        mismatches: list[tuple[str, Mismatch]] = []
        verified: VerifiedBundle | None = None
        for root_name, policies in sorted(self._policies.items()):
            try:
                result = verify(self._roots[root_name])
            except VerificationError as exc:
                errors.append(f"{root_name}: {exc}" if len(self._roots) > 1 else str(exc))
                continue
            verified = verified or result
            if result.identity is None:
                continue
            for policy in policies:
                found = policy.mismatches(result.identity)
                if found:
                    mismatches.append((policy.name, found[0]))
                else:
                    matched.add(policy.name)
        if verified is None:
            return Finding(seen.format, seen.kind, seen.source,
                           signed_digests=seen.signed_digests,
                           problem="; ".join(errors) or "no trust root to verify against")
        statement = verified.statement
        provenance = None
        if statement is not None and statement.predicate_type in SLSA_TYPES and bound:
            provenance = extract_provenance(statement.predicate_type, statement.predicate)
        return Finding(
            seen.format, seen.kind, seen.source, keys=frozenset(matched),
            signed_digests=seen.signed_digests, bound=bound, provenance=provenance,
            docker_reference=seen.docker_reference, identity=verified.identity,
            trust_root=verified.trust_root,
            mismatches=tuple(sorted(mismatches, key=lambda m: m[0])))


def _has_certificate(data: bytes) -> bool:
    """True if a bundle's verification material is a certificate (or a chain), not a key."""
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    material = doc.get("verificationMaterial") if isinstance(doc, dict) else None
    return isinstance(material, dict) and (
        "certificate" in material or "x509CertificateChain" in material)


__all__ = ["KeylessSigners"]
