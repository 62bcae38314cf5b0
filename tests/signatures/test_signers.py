"""Signers: what an artifact no signer handles becomes, and what a key signer's finding records."""

from __future__ import annotations

import pytest

from controller.signatures.config import SignatureConfig
from controller.signatures.discovery import RawArtifact
from controller.signatures.formats import Finding, Format
from controller.signatures.signers import KeySigners, check_artifacts
from tests.signatures.helpers import TRUSTED_PEM

DIGEST = "sha256:" + "d" * 64


def key_signers() -> KeySigners:
    config = SignatureConfig.model_validate(
        {"enabled": True, "keys": [{"name": "release", "pem": TRUSTED_PEM}]})
    return KeySigners(config.load_keys())


class Nobody:
    """A signer that claims no artifact (a keyless signer, shown a key-signed one)."""

    names = frozenset({"ci"})

    def fingerprint(self) -> str:
        return "nobody"

    def handles(self, artifact: RawArtifact) -> bool:
        return False

    def check(self, artifact: RawArtifact, digest: str) -> Finding:
        raise AssertionError("never asked")


def test_an_artifact_no_signer_handles_is_a_problem_of_its_own_kind() -> None:
    # Not "no signature": the judge counts it as a signature that does not verify.
    (finding,) = check_artifacts([RawArtifact("bundle", "sha256:blob")], [Nobody()], DIGEST)
    assert (finding.format, finding.kind, finding.source) == ("bundle", "other", "sha256:blob")
    assert finding.problem is not None and not finding.verified


@pytest.mark.parametrize(("fmt", "kind"), [
    ("legacy-sig", "signature"), ("legacy-att", "attestation"), ("bundle", "signature")])
def test_an_artifact_fetched_broken_keeps_its_kind_and_source(fmt: Format, kind: str) -> None:
    broken = RawArtifact(fmt, "sha256:blob", problem="layer larger than the limit")
    assert key_signers().check(broken, DIGEST) == Finding(
        fmt, kind, "sha256:blob", problem="layer larger than the limit")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["legacy-sig", "legacy-att", "bundle"])
def test_a_key_signers_finding_names_the_artifact_it_judged(fmt: Format) -> None:
    finding = key_signers().check(RawArtifact(fmt, "sha256:blob", b"{}"), DIGEST)
    assert finding.source == "sha256:blob" and finding.format == fmt
    assert not finding.verified
