"""Signers: who may vouch for an image, each kind behind one small protocol.

A `Signer` turns one fetched artifact into a `Finding` (the facts: which of its named signers
verified it, for which digests). Judging those facts against a rule and a workload's claims is
the verifier's. Two kinds exist:

- `KeySigners`: the trusted public keys (legacy `.sig`, `.att`, key-signed bundles);
- `controller.signatures.keyless_signer.KeylessSigners`: OIDC identities in Fulcio certificates
  (keyless bundles, GitHub attestations, cosign 2 keyless `.sig`).

An artifact goes to the first signer that `handles` it; names are unique across kinds, so a
threshold counts distinct signers whichever kind each is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from controller.signatures.discovery import RawArtifact
from controller.signatures.formats import (
    Finding,
    Kind,
    check_bundle,
    check_envelope,
    check_simplesigning,
)
from controller.signatures.keys import PublicKey, keyset_fingerprint


class Signer(Protocol):
    """One kind of signer: it says which artifacts are its own, and verifies them."""

    @property
    def names(self) -> frozenset[str]:
        """The configured names of the signers of this kind."""
        ...

    def fingerprint(self) -> str:
        """A stable digest of what these signers accept, for verdict cache keys."""
        ...

    def handles(self, artifact: RawArtifact) -> bool:
        """True if this kind of signer is the one to judge `artifact`."""
        ...

    def check(self, artifact: RawArtifact, digest: str) -> Finding:
        """Verify `artifact` for the admitted `digest`. Never raises for a bad artifact."""
        ...


class KeySigners:
    """The trusted public keys: every format cosign writes with `--key`."""

    def __init__(self, keys: Sequence[PublicKey]) -> None:
        self.keys = tuple(keys)
        self._names = frozenset(k.name for k in self.keys)
        self._fingerprint = keyset_fingerprint(self.keys)

    @property
    def names(self) -> frozenset[str]:
        """The keys' names."""
        return self._names

    def fingerprint(self) -> str:
        """The key set's fingerprint."""
        return self._fingerprint

    def handles(self, artifact: RawArtifact) -> bool:
        """Any artifact: keys are the fallback for what no other signer claims."""
        return True

    def check(self, artifact: RawArtifact, digest: str) -> Finding:
        """The artifact verified with every trusted key."""
        if artifact.problem is not None:
            kind: Kind = "signature" if artifact.format != "legacy-att" else "attestation"
            return Finding(artifact.format, kind, artifact.source, problem=artifact.problem)
        if artifact.format == "legacy-sig":
            return check_simplesigning(
                artifact.data, artifact.signature, self.keys, digest, source=artifact.source)
        if artifact.format == "legacy-att":
            return check_envelope(artifact.data, self.keys, digest, source=artifact.source)
        return check_bundle(artifact.data, self.keys, digest, source=artifact.source)


def check_artifacts(
    artifacts: Sequence[RawArtifact], signers: Sequence[Signer], digest: str
) -> tuple[Finding, ...]:
    """Each artifact judged by the first signer that handles it (pure CPU work)."""
    out: list[Finding] = []
    for artifact in artifacts:
        signer = next((s for s in signers if s.handles(artifact)), None)
        if signer is None:
            out.append(Finding(artifact.format, "other", artifact.source,
                               problem="no configured signer can verify this artifact"))
        else:
            out.append(signer.check(artifact, digest))
    return tuple(out)


__all__ = ["KeySigners", "Signer", "check_artifacts"]
