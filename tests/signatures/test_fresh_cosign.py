"""Signatures and attestations made at test time by the real cosign, in both formats."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from controller.policy.violations import Reason
from tests.fixtures.registry import COSIGN_DATA, RegistryServer, sha256
from tests.signatures.helpers import (
    BUNDLE_FLAGS,
    COMMIT,
    LEGACY_FLAGS,
    RUN_URL,
    VerifierFactory,
    cosign,
    cosign_binary,
    push_random_image,
    run,
)

FORMATS = {"bundle": BUNDLE_FLAGS, "legacy": LEGACY_FLAGS}


def slsa_predicate(tmp_path: Path, commit: str) -> Path:
    predicate = json.loads((COSIGN_DATA / "slsa-provenance-predicate.json").read_text())
    predicate["buildDefinition"]["resolvedDependencies"][0]["digest"]["gitCommit"] = commit
    path = tmp_path / f"predicate-{commit[:8]}.json"
    path.write_text(json.dumps(predicate))
    return path


@pytest.fixture
def fresh_key(tmp_path: Path) -> tuple[Path, str]:
    """A key pair made by `cosign generate-key-pair` now; returns (private key, public PEM)."""
    subprocess.run([str(cosign_binary()), "generate-key-pair"], cwd=tmp_path,
                   env={"COSIGN_PASSWORD": "", "PATH": "/usr/bin:/bin"}, check=True,
                   capture_output=True, timeout=60)
    return tmp_path / "cosign.key", (tmp_path / "cosign.pub").read_text()


@pytest.mark.parametrize("fmt", ["bundle", "legacy"])
async def test_fresh_signature_verifies_and_unsigned_sibling_does_not(
    registry: RegistryServer, verifier_factory: VerifierFactory, fresh_key: tuple[Path, str],
    fmt: str,
) -> None:
    key, pem = fresh_key
    repo = f"fresh/{fmt}-sign"
    signed = push_random_image(registry, repo)
    unsigned = push_random_image(registry, repo)
    cosign("sign", *FORMATS[fmt], f"{registry.host}/{repo}@{signed}", key=key)
    verifier = verifier_factory(registry.host, keys=[{"name": "fresh", "pem": pem}])
    outcome = await run(verifier, f"{registry.host}/{repo}@{signed}",
                        f"{registry.host}/{repo}@{unsigned}")
    assert [(v.reason, v.subject) for v in outcome.violations] == [
        (Reason.SIGNATURE_MISSING, "container c1")]
    assert outcome.evidence[0].verified
    assert outcome.evidence[0].signature_formats == (
        ("bundle",) if fmt == "bundle" else ("legacy-sig",))
    assert outcome.evidence[0].key_names == ("fresh",)


@pytest.mark.parametrize("fmt", ["bundle", "legacy"])
async def test_fresh_signature_by_untrusted_key_is_rejected(
    registry: RegistryServer, verifier_factory: VerifierFactory, fresh_key: tuple[Path, str],
    fmt: str,
) -> None:
    key, _ = fresh_key
    repo = f"fresh/{fmt}-untrusted"
    digest = push_random_image(registry, repo)
    cosign("sign", *FORMATS[fmt], f"{registry.host}/{repo}@{digest}", key=key)
    verifier = verifier_factory(registry.host)  # trusts only tests/data/cosign/cosign.pub
    outcome = await run(verifier, f"{registry.host}/{repo}@{digest}")
    assert [v.reason for v in outcome.violations] == [Reason.SIGNATURE_UNTRUSTED]


@pytest.mark.parametrize("fmt", ["bundle", "legacy"])
async def test_fresh_attestation_commit_build_and_pipeline(
    registry: RegistryServer, verifier_factory: VerifierFactory, tmp_path: Path, fmt: str,
) -> None:
    repo = f"fresh/{fmt}-attest"
    digest = push_random_image(registry, repo)
    ref = f"{registry.host}/{repo}@{digest}"
    cosign("sign", *FORMATS[fmt], ref)
    cosign("attest", *FORMATS[fmt], "--type", "slsaprovenance1",
           "--predicate", str(slsa_predicate(tmp_path, COMMIT)), ref)
    verifier = verifier_factory(registry.host, rules=[{
        "prefix": f"{registry.host}/fresh/", "require": "attestation",
        "check_build_id": True, "check_pipeline_url": True}])
    good = await run(verifier, ref, git_sha=COMMIT, build_id="12345",
                     pipeline_url="https://github.com/example-org/payments-api/actions/runs/12345")
    assert good.violations == ()
    assert good.evidence[0].attestation_commit == COMMIT
    assert good.evidence[0].attestation_formats == (
        ("bundle",) if fmt == "bundle" else ("legacy-att",))
    other_commit = await run(verifier, ref, git_sha="f" * 40, build_id="12345",
                             pipeline_url=RUN_URL)
    assert [v.reason for v in other_commit.violations] == [Reason.ATTESTATION_COMMIT_MISMATCH]
    assert COMMIT in other_commit.violations[0].message
    wrong_build = await run(verifier, ref, git_sha=COMMIT, build_id="1234",
                            pipeline_url="https://ci.example.com/runs/12345")
    assert [v.reason for v in wrong_build.violations] == [
        Reason.ATTESTATION_BUILD_MISMATCH, Reason.ATTESTATION_BUILD_MISMATCH]


async def test_attestation_for_another_commit_is_rejected(
    registry: RegistryServer, verifier_factory: VerifierFactory, tmp_path: Path,
) -> None:
    repo = "fresh/other-commit"
    digest = push_random_image(registry, repo)
    ref = f"{registry.host}/{repo}@{digest}"
    cosign("sign", *BUNDLE_FLAGS, ref)
    cosign("attest", *BUNDLE_FLAGS, "--type", "slsaprovenance1",
           "--predicate", str(slsa_predicate(tmp_path, "0" * 40)), ref)
    verifier = verifier_factory(registry.host, default_require="attestation")
    outcome = await run(verifier, ref, git_sha=COMMIT)
    assert [v.reason for v in outcome.violations] == [Reason.ATTESTATION_COMMIT_MISMATCH]
    assert "0" * 40 in outcome.violations[0].message


async def test_index_rule_signature_must_cover_the_pinned_digest(
    registry: RegistryServer, verifier_factory: VerifierFactory,
) -> None:
    """A signed index vouches for the index digest only, not for a platform manifest below it."""
    repo = "fresh/multi-arch"
    children = [push_random_image(registry, repo) for _ in range(2)]
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": d, "size": len(registry.get_manifest(repo, d)),
                       "platform": {"architecture": arch, "os": "linux"}}
                      for d, arch in zip(children, ("amd64", "arm64"), strict=True)]}).encode()
    index_digest = registry.push_manifest(repo, sha256(index), index)
    cosign("sign", *BUNDLE_FLAGS, f"{registry.host}/{repo}@{index_digest}")
    verifier = verifier_factory(registry.host)
    outcome = await run(verifier, f"{registry.host}/{repo}@{index_digest}",
                        f"{registry.host}/{repo}@{children[0]}")
    assert [(v.reason, v.subject) for v in outcome.violations] == [
        (Reason.SIGNATURE_MISSING, "container c1")]
    assert outcome.evidence[0].index and outcome.evidence[0].verified
