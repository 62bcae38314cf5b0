"""Cosign signatures and SLSA provenance: formats, keys, DSSE, attestations, the verdict cache.

Public surface: `ImageVerifier` (the admission pipeline's entry point), `VerificationOutcome`,
`ImageEvidence`, `SignatureConfig`, and `VerificationError`.

Keyless Sigstore bundles live in modules of their own, imported where they are used because
sigstore-python is slow to import: `bundle` (`verify_bundle`), `keyless` (signer policies),
`trust` (trust roots), `certificate` (the signer's identity and commit from a certificate).
"""

from controller.signatures.config import ImageRule, SignatureConfig, TrustedKey
from controller.signatures.errors import KeyLoadError, VerificationError
from controller.signatures.verifier import ImageEvidence, ImageVerifier, VerificationOutcome

__all__ = [
    "ImageEvidence",
    "ImageRule",
    "ImageVerifier",
    "KeyLoadError",
    "SignatureConfig",
    "TrustedKey",
    "VerificationError",
    "VerificationOutcome",
]
