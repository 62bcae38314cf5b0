"""The signature layer's one error tree.

`cryptography.exceptions.InvalidSignature` and malformed envelopes, bundles and statements all
become `VerificationError` at this boundary, so callers handle one type. Errors are per artifact:
the verifier records them as findings and keeps looking at the other artifacts, because one bad
signature next to a good one must not deny an image.
"""

from __future__ import annotations

from controller.errors import ProvenanceError


class VerificationError(ProvenanceError):
    """A signature, envelope, bundle or statement did not verify or could not be parsed."""


class KeyLoadError(VerificationError):
    """A trusted key is unreadable or of a type we do not accept."""
