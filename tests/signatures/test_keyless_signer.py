"""Keyless signers through the admission pipeline, against the real registry.

Every bundle, certificate and log entry is made in the test (`sigstore_instance`) for images
pushed to the test's `docker-registry`, in the places cosign 3, GitHub's `push-to-registry`
and cosign 2 put them; the verdicts come from `Admission` with a `SignatureStage`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controller.admission import Admission, Outcome
from controller.config import Config
from controller.policy.violations import Reason
from controller.review import parse_review
from controller.signatures import ImageVerifier, SignatureConfig
from controller.signatures.certificate import Mismatch
from controller.signatures.discovery import RawArtifact
from controller.signatures.formats import Finding
from controller.signatures.keyless_signer import KeylessSigners
from controller.stages import SignatureStage
from tests.builders import deployment, prov_annotations, review
from tests.fixtures.registry import RegistryServer
from tests.signatures.helpers import push_random_image
from tests.signatures.sigstore_instance import (
    COMMIT,
    GITHUB_ISSUER,
    SLSA_V1,
    SUBJECT,
    LocalSigstore,
    github_claims,
    push_legacy_sig,
    push_referrer,
)

REPO = "keyless/app"
OTHER_COMMIT = "0123456789abcdef0123456789abcdef01234567"
SIGNER: dict[str, Any] = {"name": "gha-release", "issuer": GITHUB_ISSUER, "subject": SUBJECT,
                          "repository": "org/app", "trust_root": "test"}


@pytest.fixture
def sigstore() -> LocalSigstore:
    return LocalSigstore()


def signing_config(registry: RegistryServer, sigstore: LocalSigstore, *,
                   signer: dict[str, Any] | None = None, keys: list[dict[str, str]] | None = None,
                   **rule: Any) -> Config:
    """Verification on, one keyless signer on the test's trust root, one rule for REPO."""
    return Config(signatures=SignatureConfig.model_validate({
        "enabled": True,
        "keys": keys or [],
        "keyless": {"trust_roots": [{"name": "test", "inline": sigstore.trusted_root_json()}],
                    "signers": [{**SIGNER, **(signer or {})}]},
        "rules": [{"prefix": f"{registry.host}/{REPO}", "require": "signature",
                   "signers": ["gha-release"], **rule}],
        "registry": {"insecure_registries": [registry.host]},
    }))


Admit = Callable[..., Awaitable[Outcome]]


@pytest.fixture
async def admit() -> AsyncIterator[Admit]:
    """Run a Deployment of `images` through Admission + SignatureStage under `config`."""
    verifiers: list[ImageVerifier] = []

    async def run(config: Config, *images: str, **annotations: str | None) -> Outcome:
        verifier = ImageVerifier(config.signatures)
        verifiers.append(verifier)
        admission = Admission(config, stages=(SignatureStage(verifier, config),),
                              budget_seconds=10)
        ann = prov_annotations(**{"git_sha": COMMIT, **annotations})
        return await admission.review(parse_review(review(
            deployment(containers=list(images), ann=ann))))

    yield run
    for verifier in verifiers:
        await verifier.close()


def reasons(outcome: Outcome) -> list[Reason]:
    return [v.reason for v in outcome.decision.violations]


def image(registry: RegistryServer, digest: str) -> str:
    return f"{registry.host}/{REPO}@{digest}"


# --- admitted ---------------------------------------------------------------------------------

async def test_a_cosign_keyless_bundle_of_the_accepted_identity_is_admitted(
        registry: RegistryServer, sigstore: LocalSigstore, admit: Admit) -> None:
    digest = push_random_image(registry, REPO)
    push_referrer(registry, REPO, digest, sigstore.sign_image(digest))
    outcome = await admit(signing_config(registry, sigstore), image(registry, digest))
    assert reasons(outcome) == []
    (evidence,) = outcome.evidence
    assert evidence.verified and evidence.signature_formats == ("bundle",)
    assert evidence.key_names == ("gha-release",) and evidence.key_ids == ()
    assert evidence.keyless_identities == (SUBJECT,)


async def test_a_cosign_2_keyless_sig_is_admitted(
        registry: RegistryServer, sigstore: LocalSigstore, admit: Admit) -> None:
    digest = push_random_image(registry, REPO)
    payload, notes = sigstore.legacy_sig(digest, f"{registry.host}/{REPO}")
    push_legacy_sig(registry, REPO, digest, payload, notes)
    outcome = await admit(signing_config(registry, sigstore), image(registry, digest))
    assert reasons(outcome) == []
    assert outcome.evidence[0].signature_formats == ("legacy-sig",)


async def test_a_github_artifact_attestation_satisfies_require_attestation(
        registry: RegistryServer, sigstore: LocalSigstore, admit: Admit) -> None:
    digest = push_random_image(registry, REPO)
    push_referrer(registry, REPO, digest, sigstore.attest_image(digest), predicate_type=SLSA_V1)
    config = signing_config(registry, sigstore, require="attestation")
    outcome = await admit(config, image(registry, digest))
    assert reasons(outcome) == []
    (evidence,) = outcome.evidence
    assert evidence.attestation_commit == COMMIT
    assert evidence.attestation_formats == ("bundle",)
    assert evidence.key_names == ("gha-release",)
    # The attested commit and the certificate's both contradict another git-sha.
    other = await admit(config, image(registry, digest), git_sha=OTHER_COMMIT)
    assert sorted(reasons(other)) == sorted([Reason.CERTIFICATE_COMMIT_MISMATCH,
                                             Reason.ATTESTATION_COMMIT_MISMATCH])


async def test_an_attestation_alone_does_not_satisfy_require_signature(
        registry: RegistryServer, sigstore: LocalSigstore, admit: Admit) -> None:
    digest = push_random_image(registry, REPO)
    push_referrer(registry, REPO, digest, sigstore.attest_image(digest), predicate_type=SLSA_V1)
    outcome = await admit(signing_config(registry, sigstore), image(registry, digest))
    assert reasons(outcome) == [Reason.SIGNATURE_MISSING]


# --- the identity -----------------------------------------------------------------------------

@pytest.mark.parametrize(("issue", "reason", "field"), [
    ({"subject": "https://github.com/org/app/.github/workflows/other.yml@refs/heads/main"},
     Reason.SIGNER_IDENTITY_MISMATCH, "identity"),
    ({"claims": github_claims(issuer="https://gitlab.com")},
     Reason.SIGNER_ISSUER_MISMATCH, "issuer"),
    ({"claims": github_claims(repository="https://github.com/evil/app")},
     Reason.SIGNER_REPOSITORY_MISMATCH, "repository"),
])
async def test_a_certificate_of_another_identity_is_denied_naming_the_field(
        registry: RegistryServer, sigstore: LocalSigstore, admit: Admit,
        issue: dict[str, Any], reason: Reason, field: str) -> None:
    digest = push_random_image(registry, REPO)
    push_referrer(registry, REPO, digest, sigstore.sign_image(digest, sigstore.issue(**issue)))
    outcome = await admit(signing_config(registry, sigstore), image(registry, digest))
    assert reasons(outcome) == [reason]
    message = outcome.decision.violations[0].message
    assert f"certificate {field} is" in message and "gha-release" in message


async def test_a_ref_glob_refuses_another_ref(
        registry: RegistryServer, sigstore: LocalSigstore, admit: Admit) -> None:
    digest = push_random_image(registry, REPO)
    cert = sigstore.issue(claims=github_claims(ref="refs/heads/feature"))
    push_referrer(registry, REPO, digest, sigstore.sign_image(digest, cert))
    config = signing_config(registry, sigstore, signer={"ref": "refs/heads/main"})
    assert reasons(await admit(config, image(registry, digest))) == [Reason.SIGNER_REF_MISMATCH]


# --- the commit and ref from the certificate --------------------------------------------------

async def test_a_certificate_commit_other_than_git_sha_is_denied(
        registry: RegistryServer, sigstore: LocalSigstore, admit: Admit) -> None:
    digest = push_random_image(registry, REPO)
    push_referrer(registry, REPO, digest, sigstore.sign_image(digest))
    outcome = await admit(signing_config(registry, sigstore), image(registry, digest),
                          git_sha=OTHER_COMMIT)
    assert reasons(outcome) == [Reason.CERTIFICATE_COMMIT_MISMATCH]
    assert COMMIT in outcome.decision.violations[0].message
    assert OTHER_COMMIT in outcome.decision.violations[0].message
    # Per rule: off, the same workload is admitted.
    off = signing_config(registry, sigstore, check_certificate_commit=False)
    assert reasons(await admit(off, image(registry, digest), git_sha=OTHER_COMMIT)) == []


async def test_the_older_workflow_sha_extension_is_checked_too(
        registry: RegistryServer, sigstore: LocalSigstore, admit: Admit) -> None:
    digest = push_random_image(registry, REPO)
    claims = github_claims()
    del claims[13]
    cert = sigstore.issue(claims=claims | {3: OTHER_COMMIT})
    push_referrer(registry, REPO, digest, sigstore.sign_image(digest, cert))
    outcome = await admit(signing_config(registry, sigstore), image(registry, digest))
    assert reasons(outcome) == [Reason.CERTIFICATE_COMMIT_MISMATCH]


async def test_a_certificate_ref_other_than_the_branch_is_denied(
        registry: RegistryServer, sigstore: LocalSigstore, admit: Admit) -> None:
    digest = push_random_image(registry, REPO)
    cert = sigstore.issue(claims=github_claims(ref="refs/heads/feature"))
    push_referrer(registry, REPO, digest, sigstore.sign_image(digest, cert))
    config = signing_config(registry, sigstore)
    assert reasons(await admit(config, image(registry, digest))) == [
        Reason.CERTIFICATE_REF_MISMATCH]
    assert reasons(await admit(config, image(registry, digest), branch="feature")) == []
    off = signing_config(registry, sigstore, check_certificate_ref=False)
    assert reasons(await admit(off, image(registry, digest))) == []


# --- binding and time -------------------------------------------------------------------------

async def test_a_bundle_replayed_onto_another_digest_is_denied(
        registry: RegistryServer, sigstore: LocalSigstore, admit: Admit) -> None:
    signed = push_random_image(registry, REPO)
    target = push_random_image(registry, REPO)
    push_referrer(registry, REPO, target, sigstore.sign_image(signed))
    payload, notes = sigstore.legacy_sig(signed, f"{registry.host}/{REPO}")
    push_legacy_sig(registry, REPO, target, payload, notes)
    outcome = await admit(signing_config(registry, sigstore), image(registry, target))
    assert reasons(outcome) == [Reason.SIGNATURE_WRONG_DIGEST]
    assert signed in outcome.decision.violations[0].message


async def test_an_expired_certificate_without_a_valid_time_is_denied(
        registry: RegistryServer, sigstore: LocalSigstore, admit: Admit) -> None:
    digest = push_random_image(registry, REPO)
    expired = sigstore.issue(valid_from=sigstore.now - 1200, minutes=10)
    push_referrer(registry, REPO, digest, sigstore.sign_image(digest, expired))
    outcome = await admit(signing_config(registry, sigstore), image(registry, digest))
    assert reasons(outcome) == [Reason.SIGNATURE_INVALID]
    # The chain is checked at the logged time, when this certificate had already expired.
    assert "not valid at validation time" in outcome.decision.violations[0].message


async def test_a_legacy_sig_without_its_rekor_bundle_has_no_time_and_is_denied(
        registry: RegistryServer, sigstore: LocalSigstore, admit: Admit) -> None:
    digest = push_random_image(registry, REPO)
    payload, notes = sigstore.legacy_sig(digest, f"{registry.host}/{REPO}")
    del notes["dev.sigstore.cosign/bundle"]
    push_legacy_sig(registry, REPO, digest, payload, notes)
    outcome = await admit(signing_config(registry, sigstore), image(registry, digest))
    assert reasons(outcome) == [Reason.SIGNATURE_INVALID]
    assert "no verified signing time" in outcome.decision.violations[0].message


async def test_a_certificate_of_another_ca_is_denied(
        registry: RegistryServer, sigstore: LocalSigstore, admit: Admit) -> None:
    digest = push_random_image(registry, REPO)
    foreign = LocalSigstore(log=sigstore.log)
    push_referrer(registry, REPO, digest, foreign.sign_image(digest))
    outcome = await admit(signing_config(registry, sigstore), image(registry, digest))
    assert reasons(outcome) == [Reason.SIGNATURE_INVALID]


# --- thresholds across signers ----------------------------------------------------------------

def _key_sig(registry: RegistryServer, digest: str, key: ec.EllipticCurvePrivateKey) -> None:
    payload = json.dumps({"critical": {"identity": {"docker-reference": f"{registry.host}/{REPO}"},
                                       "image": {"docker-manifest-digest": digest},
                                       "type": "cosign container image signature"},
                          "optional": None}).encode()
    sig = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    push_legacy_sig(registry, REPO, digest, payload,
                    {"dev.cosignproject.cosign/signature": sig})


async def test_a_threshold_counts_keys_and_keyless_signers_once_each(
        registry: RegistryServer, sigstore: LocalSigstore, admit: Admit) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    config = signing_config(registry, sigstore, keys=[{"name": "release-key", "pem": pem}],
                            signers=["gha-release", "release-key"], threshold=2)
    # The keyless signer twice, as a bundle and as a cosign 2 `.sig`: one signer.
    twice = push_random_image(registry, REPO)
    push_referrer(registry, REPO, twice, sigstore.sign_image(twice))
    payload, notes = sigstore.legacy_sig(twice, f"{registry.host}/{REPO}")
    push_legacy_sig(registry, REPO, twice, payload, notes)
    outcome = await admit(config, image(registry, twice))
    assert reasons(outcome) == [Reason.SIGNATURE_THRESHOLD]
    assert "1 accepted signer(s) (gha-release), 2 required" in (
        outcome.decision.violations[0].message)
    # The keyless signer and the key: two signers.
    both = push_random_image(registry, REPO)
    push_referrer(registry, REPO, both, sigstore.sign_image(both))
    _key_sig(registry, both, key)
    outcome = await admit(config, image(registry, both))
    assert reasons(outcome) == []
    assert outcome.evidence[0].key_names == ("gha-release", "release-key")
    assert outcome.evidence[0].signature_formats == ("bundle", "legacy-sig")


# --- the signer on its own --------------------------------------------------------------------

def test_the_sct_is_checked_against_the_roots_ct_logs(sigstore: LocalSigstore) -> None:
    digest = "sha256:" + "ab" * 32
    # The same root, but its CT log's key is another one: the embedded SCT does not verify.
    doc = json.loads(sigstore.trusted_root_json())
    doc["ctlogs"] = json.loads(LocalSigstore(log=sigstore.log).trusted_root_json())["ctlogs"]
    config = SignatureConfig.model_validate({"keyless": {
        "trust_roots": [{"name": "test", "inline": json.dumps(doc)}], "signers": [SIGNER]}})
    signers = KeylessSigners(config.keyless.load().signers)
    artifact = RawArtifact("bundle", "sha256:x", data=sigstore.sign_image(digest))
    assert signers.handles(artifact)
    finding = signers.check(artifact, digest)
    assert not finding.verified and finding.problem is not None
    assert "SCT" in finding.problem


def test_key_bundles_and_key_sigs_are_left_to_the_keys(sigstore: LocalSigstore) -> None:
    config = SignatureConfig.model_validate({"keyless": {
        "trust_roots": [{"name": "test", "inline": sigstore.trusted_root_json()}],
        "signers": [SIGNER]}})
    signers = KeylessSigners(config.keyless.load().signers)
    keyed = json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                        "verificationMaterial": {"publicKey": {"hint": "k"}}}).encode()
    assert not signers.handles(RawArtifact("bundle", "sha256:x", data=keyed))
    assert not signers.handles(RawArtifact("legacy-sig", "sha256:x", data=b"{}",
                                           signature="c2ln"))
    assert not signers.handles(RawArtifact("legacy-att", "sha256:x", data=b"{}"))


# --- what a broken cosign 2 `.sig` becomes, without a registry ---------------------------------

def keyless_signers(sigstore: LocalSigstore) -> KeylessSigners:
    config = SignatureConfig.model_validate({
        "enabled": True,
        "keyless": {"trust_roots": [{"name": "test", "inline": sigstore.trusted_root_json()}],
                    "signers": [SIGNER]}})
    return KeylessSigners(config.keyless.load().signers)


LEGACY_DIGEST = "sha256:" + "a" * 64


def legacy_artifact(sigstore: LocalSigstore, **change: str) -> RawArtifact:
    payload, notes = sigstore.legacy_sig(LEGACY_DIGEST, "registry.example.com/keyless/app")
    fields = {"signature": notes["dev.cosignproject.cosign/signature"],
              "certificate": notes["dev.sigstore.cosign/certificate"],
              "rekor_bundle": notes["dev.sigstore.cosign/bundle"], **change}
    return RawArtifact("legacy-sig", "sha256:" + "b" * 64, data=payload, **fields)


def test_a_legacy_sig_with_a_signature_that_is_not_base64_is_a_problem(
        sigstore: LocalSigstore) -> None:
    finding = keyless_signers(sigstore).check(
        legacy_artifact(sigstore, signature="%%%"), LEGACY_DIGEST)
    assert finding == Finding("legacy-sig", "signature", "sha256:" + "b" * 64,
                              problem="signature annotation is not base64")


def test_a_legacy_sig_whose_certificate_does_not_parse_names_the_certificate(
        sigstore: LocalSigstore) -> None:
    finding = keyless_signers(sigstore).check(
        legacy_artifact(sigstore, certificate="not a certificate"), LEGACY_DIGEST)
    assert (finding.format, finding.kind, finding.source) == (
        "legacy-sig", "signature", "sha256:" + "b" * 64)
    assert not finding.verified and not finding.keys
    # One trust root: its name is not prefixed to the reason.
    assert finding.problem == "the certificate annotation is not a PEM certificate"


def test_a_legacy_sig_that_verifies_is_bound_to_the_digest(sigstore: LocalSigstore) -> None:
    finding = keyless_signers(sigstore).check(legacy_artifact(sigstore), LEGACY_DIGEST)
    assert finding.problem is None, finding.problem
    assert finding.verified and finding.bound and finding.keys == frozenset({"gha-release"})
    assert (finding.format, finding.kind) == ("legacy-sig", "signature")


# --- the finding of one artifact, without a registry -------------------------------------------

SOURCE = "sha256:" + "c" * 64
DIGEST = "sha256:" + "d" * 64
OTHER_DIGEST = "sha256:" + "e" * 64


def signers_on(roots: dict[str, LocalSigstore], *signers: dict[str, Any]) -> KeylessSigners:
    """Keyless signers on named trust roots, one per root if none are given."""
    config = SignatureConfig.model_validate({"keyless": {
        "trust_roots": [{"name": name, "inline": instance.trusted_root_json()}
                        for name, instance in roots.items()],
        "signers": list(signers) or [{**SIGNER, "name": f"{name}-release", "trust_root": name}
                                     for name in roots]}})
    return KeylessSigners(config.keyless.load().signers)


def bundle(data: bytes) -> RawArtifact:
    return RawArtifact("bundle", SOURCE, data=data)


def test_a_verified_keyless_bundle_finding_in_full(sigstore: LocalSigstore) -> None:
    finding = keyless_signers(sigstore).check(bundle(sigstore.sign_image(DIGEST)), DIGEST)
    assert finding.identity is not None and finding.identity.subjects == (SUBJECT,)
    assert dataclasses.replace(finding, identity=None) == Finding(
        "bundle", "signature", SOURCE, keys=frozenset({"gha-release"}), signed_digests=(DIGEST,),
        bound=True, trust_root="test")
    assert finding.provenance is None  # not an attestation


def test_a_verified_keyless_legacy_sig_finding_in_full(sigstore: LocalSigstore) -> None:
    finding = keyless_signers(sigstore).check(legacy_artifact(sigstore), LEGACY_DIGEST)
    assert dataclasses.replace(finding, identity=None) == Finding(
        "legacy-sig", "signature", "sha256:" + "b" * 64, keys=frozenset({"gha-release"}),
        signed_digests=(LEGACY_DIGEST,), bound=True,
        docker_reference="registry.example.com/keyless/app", trust_root="test")


def test_a_keyless_bundle_that_fails_keeps_what_it_names(sigstore: LocalSigstore) -> None:
    foreign = LocalSigstore(log=sigstore.log)
    finding = keyless_signers(sigstore).check(bundle(foreign.sign_image(DIGEST)), DIGEST)
    assert finding.problem is not None
    assert dataclasses.replace(finding, problem=None) == Finding(
        "bundle", "signature", SOURCE, signed_digests=(DIGEST,))


def test_with_no_keyless_signer_nothing_verifies(sigstore: LocalSigstore) -> None:
    finding = KeylessSigners({}).check(bundle(sigstore.sign_image(DIGEST)), DIGEST)
    assert finding.problem == "no trust root to verify against" and not finding.keys


def test_a_replayed_bundle_is_verified_for_the_digest_it_names(sigstore: LocalSigstore) -> None:
    # Verified against the digest its statement names, so the finding says who signed which
    # digest (a replay), not that the signature is broken; it is not bound to the admitted one.
    signers = keyless_signers(sigstore)
    finding = signers.check(bundle(sigstore.sign_image(OTHER_DIGEST)), DIGEST)
    assert finding.problem is None, finding.problem
    assert finding.keys == frozenset({"gha-release"}) and finding.trust_root == "test"
    assert finding.signed_digests == (OTHER_DIGEST,) and not finding.bound
    assert not finding.verified
    # A replayed attestation's predicate is not read: it is not about the admitted image.
    attested = signers.check(bundle(sigstore.attest_image(OTHER_DIGEST)), DIGEST)
    assert attested.kind == "attestation" and attested.keys and not attested.bound
    assert attested.provenance is None
    assert signers.check(bundle(sigstore.attest_image(DIGEST)), DIGEST).provenance is not None


def _statement(*digests: dict[str, str]) -> dict[str, Any]:
    return {"_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "image", "digest": d} for d in digests],
            "predicateType": "https://sigstore.dev/cosign/sign/v1", "predicate": {}}


def test_a_statement_naming_the_digest_after_another_is_bound(sigstore: LocalSigstore) -> None:
    data = sigstore.dsse_bundle(_statement({"sha256": OTHER_DIGEST[7:]}, {"sha256": DIGEST[7:]}))
    finding = keyless_signers(sigstore).check(bundle(data), DIGEST)
    assert finding.problem is None, finding.problem
    assert finding.verified and finding.signed_digests == (OTHER_DIGEST, DIGEST)


def test_a_statement_naming_no_sha256_is_verified_for_the_admitted_digest(
        sigstore: LocalSigstore) -> None:
    data = sigstore.dsse_bundle(_statement({"sha512": "f" * 128}))
    finding = keyless_signers(sigstore).check(bundle(data), DIGEST)
    assert finding.signed_digests == () and not finding.keys
    assert finding.problem is not None and DIGEST in finding.problem


def test_a_failing_trust_root_does_not_stop_the_next(sigstore: LocalSigstore) -> None:
    # Roots are tried by name: "a-foreign" first, which fails, then "test", which verifies.
    foreign = LocalSigstore(log=sigstore.log)
    signers = signers_on({"a-foreign": foreign, "test": sigstore})
    finding = signers.check(bundle(sigstore.sign_image(DIGEST)), DIGEST)
    assert finding.problem is None, finding.problem
    assert finding.verified and finding.keys == frozenset({"test-release"})
    assert finding.trust_root == "test"


def test_with_several_roots_each_failure_is_named_by_its_root(sigstore: LocalSigstore) -> None:
    signers = signers_on({"a-foreign": LocalSigstore(log=sigstore.log), "test": sigstore})
    third = LocalSigstore(log=sigstore.log)
    finding = signers.check(bundle(third.sign_image(DIGEST)), DIGEST)
    assert finding.problem is not None and not finding.keys
    first, second = finding.problem.split("; ")
    assert first.startswith("a-foreign: ") and second.startswith("test: ")


def test_every_root_that_verifies_matches_its_signers(sigstore: LocalSigstore) -> None:
    # The same CA under two names: both verify, the finding names the first.
    signers = signers_on({"a-copy": sigstore, "test": sigstore})
    finding = signers.check(bundle(sigstore.sign_image(DIGEST)), DIGEST)
    assert finding.keys == frozenset({"a-copy-release", "test-release"})
    assert finding.trust_root == "a-copy"


def test_the_signers_a_certificate_fails_are_listed_by_name(sigstore: LocalSigstore) -> None:
    signers = signers_on(
        {"test": sigstore},
        {**SIGNER, "name": "zz-nightly", "subject": SUBJECT.replace("main", "nightly")},
        SIGNER,
        {**SIGNER, "name": "aa-dev", "ref": "refs/heads/dev"})
    finding = signers.check(bundle(sigstore.sign_image(DIGEST)), DIGEST)
    assert finding.keys == frozenset({"gha-release"})
    assert finding.mismatches == (
        ("aa-dev", Mismatch("ref", "refs/heads/dev", "refs/heads/main")),
        ("zz-nightly", Mismatch("identity", SUBJECT.replace("main", "nightly"), SUBJECT)))


def test_which_artifacts_the_keyless_signers_claim(sigstore: LocalSigstore) -> None:
    signers = keyless_signers(sigstore)
    signed = sigstore.sign_image(DIGEST)
    assert signers.handles(bundle(signed))
    # The bundle format before v0.3 carries the leaf in a chain.
    doc = json.loads(signed)
    doc["verificationMaterial"]["x509CertificateChain"] = {
        "certificates": [doc["verificationMaterial"].pop("certificate")]}
    assert signers.handles(bundle(json.dumps(doc).encode()))
    for data in (b"not json", b"[]", b'{"verificationMaterial": []}', b"{}"):
        assert not signers.handles(bundle(data)), data
    # An artifact that could not be fetched intact is nobody's, whatever it holds.
    assert not signers.handles(RawArtifact("bundle", SOURCE, data=signed, problem="truncated"))
    legacy = legacy_artifact(sigstore)
    assert signers.handles(legacy)
    assert not signers.handles(dataclasses.replace(legacy, problem="truncated"))
