"""ImageVerifier's judgement of verified facts: thresholds, rule keys, references, attestations.

The verdicts are built here and placed in the verifier's cache, so `verify` judges them without
a registry (the registry named is the discard port: a fetch would be a REGISTRY_ERROR, which
every test would notice). What is pinned is the rule, not the cryptography: `formats` and the
cosign tests check that findings say what the artifacts prove.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller.policy.violations import Reason, Violation
from controller.registry.errors import NotFoundError, RegistryError, RegistryUnavailable
from controller.signatures.config import SignatureConfig
from controller.signatures.formats import Finding
from controller.signatures.provenance import Provenance
from controller.signatures.verifier import (
    ImageEvidence,
    ImageVerdict,
    ImageVerifier,
    VerificationOutcome,
)
from tests.signatures.helpers import COMMIT, OTHER_PEM, TRUSTED_PEM, deployment

HOST = "127.0.0.1:9"
DIGEST = "sha256:" + "d" * 64
OTHER_DIGEST = "sha256:" + "e" * 64
IMAGE = f"{HOST}/team/app@{DIGEST}"
NAME = f"{HOST}/team/app"
RUN_URL = "https://ci.example.com/org/app/actions/runs/777"


def config(**overrides: Any) -> SignatureConfig:
    data: dict[str, Any] = {
        "enabled": True,
        "keys": [{"name": "release", "pem": TRUSTED_PEM}, {"name": "other", "pem": OTHER_PEM}],
        "registry": {"insecure_registries": [HOST]},
    }
    data.update(overrides)
    return SignatureConfig.model_validate(data)


@pytest.fixture
async def made() -> AsyncIterator[list[ImageVerifier]]:
    verifiers: list[ImageVerifier] = []
    yield verifiers
    for verifier in verifiers:
        await verifier.close()


async def judge(
    made: list[ImageVerifier], findings: list[Finding], *, media_type: str = "",
    git_sha: str | None = COMMIT, build_id: str | None = None,
    pipeline_url: str | None = None, image: str = IMAGE, **overrides: Any,
) -> VerificationOutcome:
    verifier = ImageVerifier(config(**overrides))
    made.append(verifier)
    request = deployment(image)
    for target in verifier._targets(request, None):
        verifier.cache.put(verifier._key(target), ImageVerdict(
            target.ref.name, target.digest, media_type, tuple(findings)))
    return await verifier.verify(request, git_sha=git_sha, build_id=build_id,
                                 pipeline_url=pipeline_url, environment=None,
                                 deadline=time.monotonic() + 5)


def sig(*keys: str, fmt: Any = "bundle", digest: str = DIGEST, ref: str | None = None,
        problem: str | None = None, hint: bool = False) -> Finding:
    return Finding(fmt, "signature", f"blob-{fmt}-{'-'.join(keys)}", keys=frozenset(keys),
                   signed_digests=(digest,), bound=digest == DIGEST, docker_reference=ref,
                   problem=problem, key_hint_trusted=hint)


def att(*keys: str, digest: str = DIGEST, commit: str = COMMIT,
        build_ids: tuple[str, ...] = ("777",), urls: tuple[str, ...] = (RUN_URL,)) -> Finding:
    provenance = Provenance("https://slsa.dev/provenance/v1", (commit,), build_ids, urls)
    return Finding("bundle", "attestation", "blob-att", keys=frozenset(keys),
                   signed_digests=(digest,), bound=digest == DIGEST,
                   provenance=provenance if keys else None)


def reasons(outcome: VerificationOutcome) -> list[Reason]:
    return [v.reason for v in outcome.violations]


# --- thresholds and keys ---------------------------------------------------------------------

@pytest.mark.parametrize(("findings", "threshold", "expected"), [
    ([sig("release")], 1, []),
    ([sig("release"), sig("other")], 2, []),
    # One key signing twice (a bundle and a legacy .sig) is one signer, not two.
    ([sig("release"), sig("release", fmt="legacy-sig")], 2, [Reason.SIGNATURE_THRESHOLD]),
    ([sig("release", "other")], 2, []),  # one artifact both keys verify: two signers
    ([sig("release"), sig("other", digest=OTHER_DIGEST)], 2, [Reason.SIGNATURE_THRESHOLD]),
    ([sig("release"), sig("other", problem="bad layer")], 2, [Reason.SIGNATURE_THRESHOLD]),
])
async def test_threshold_counts_distinct_keys_with_bound_signatures(
    made: list[ImageVerifier], findings: list[Finding], threshold: int, expected: list[Reason],
) -> None:
    outcome = await judge(made, findings, rules=[{"prefix": NAME, "threshold": threshold}])
    assert reasons(outcome) == expected
    (evidence,) = outcome.evidence
    assert evidence.verified is (not expected)
    if expected:
        assert f"{threshold} required" in outcome.violations[0].message


async def test_threshold_evidence_names_each_signer_once(made: list[ImageVerifier]) -> None:
    outcome = await judge(made, [sig("release"), sig("release", fmt="legacy-sig"),
                                 sig("other")], rules=[{"prefix": NAME, "threshold": 2}])
    assert outcome.violations == ()
    (evidence,) = outcome.evidence
    assert evidence.key_names == ("other", "release")
    assert evidence.signature_formats == ("bundle", "legacy-sig")
    assert len(evidence.key_ids) == 2 and evidence.key_ids[0] != evidence.key_ids[1]


@pytest.mark.parametrize(("findings", "expected"), [
    ([sig("release")], []),
    ([sig("other")], [Reason.SIGNATURE_UNTRUSTED]),  # trusted globally, not by this rule
    ([sig("other"), sig("release", digest=OTHER_DIGEST)], [Reason.SIGNATURE_WRONG_DIGEST]),
    ([], [Reason.SIGNATURE_MISSING]),
    ([sig(hint=True)], [Reason.SIGNATURE_INVALID]),  # the hint names a key; it did not verify
    ([sig("release", problem="malformed payload")], [Reason.SIGNATURE_INVALID]),
    ([sig()], [Reason.SIGNATURE_UNTRUSTED]),  # no key at all
])
async def test_only_the_rules_keys_count(
    made: list[ImageVerifier], findings: list[Finding], expected: list[Reason],
) -> None:
    outcome = await judge(made, findings, rules=[{"prefix": NAME, "keys": ["release"]}])
    assert reasons(outcome) == expected
    (evidence,) = outcome.evidence
    assert evidence.key_names == (() if expected else ("release",))


async def test_other_kinds_of_finding_are_not_signatures(made: list[ImageVerifier]) -> None:
    # A verified attestation is not a signature: require: signature still wants one.
    outcome = await judge(made, [att("release")])
    assert reasons(outcome) == [Reason.SIGNATURE_MISSING]


# --- docker-reference --------------------------------------------------------------------------

@pytest.mark.parametrize(("ref", "mode", "ok"), [
    (NAME, "match", True),
    (f"{NAME}:v1", "match", True),  # the tag is not part of the name
    (f"{HOST}/team/other", "match", False),
    ("not a reference!", "match", False),  # unparseable: refused, never waved through
    (None, "match", False),
    ("", "match", False),
    ("not a reference!", "ignore", True),
    (f"{HOST}/team/other", "ignore", True),
])
async def test_docker_reference_under_match(
    made: list[ImageVerifier], ref: str | None, mode: str, ok: bool,
) -> None:
    outcome = await judge(made, [sig("release", fmt="legacy-sig", ref=ref)],
                          docker_reference=mode)
    assert reasons(outcome) == ([] if ok else [Reason.SIGNATURE_MISSING])


async def test_docker_reference_binds_only_legacy_signatures(made: list[ImageVerifier]) -> None:
    # Bundles carry no docker-reference; `match` must not drop them for lacking one.
    outcome = await judge(made, [sig("release")], docker_reference="match")
    assert outcome.violations == ()


# --- attestations ------------------------------------------------------------------------------

async def test_an_attestation_by_a_key_outside_the_rule_does_not_count(
    made: list[ImageVerifier],
) -> None:
    rule = {"prefix": NAME, "require": "attestation", "keys": ["release"]}
    outcome = await judge(made, [sig("release"), att("other")], rules=[rule])
    assert reasons(outcome) == [Reason.ATTESTATION_INVALID]
    assert "not signed by an accepted key" in outcome.violations[0].message
    good = await judge(made, [sig("release"), att("release")], rules=[rule])
    assert good.violations == ()
    assert good.evidence[0].attestation_commit == COMMIT


@pytest.mark.parametrize(("findings", "kwargs", "expected"), [
    ([sig("release")], {}, [Reason.ATTESTATION_MISSING]),
    ([sig("release"), att("release", digest=OTHER_DIGEST)], {}, [Reason.ATTESTATION_INVALID]),
    ([sig("release"), att("release", commit="f" * 40)], {},
     [Reason.ATTESTATION_COMMIT_MISMATCH]),
    ([sig("release"), att("release")], {"git_sha": None}, [Reason.ATTESTATION_COMMIT_MISMATCH]),
    ([sig("release"), att("release")], {"git_sha": COMMIT.upper()}, []),
    ([sig("release"), att("release", commit="f" * 40), att("release")], {}, []),
    # Under require: attestation, the attestation's signer counts toward the threshold: GitHub
    # artifact attestations come with no separate signature (require: signature still asks
    # for one; see test_an_attestation_alone_does_not_satisfy_require_signature).
    ([att("release")], {}, []),
])
async def test_attestation_rules(
    made: list[ImageVerifier], findings: list[Finding], kwargs: dict[str, Any],
    expected: list[Reason],
) -> None:
    outcome = await judge(made, findings, default_require="attestation", **kwargs)
    assert reasons(outcome) == expected
    (evidence,) = outcome.evidence
    assert evidence.verified is (not expected)


@pytest.mark.parametrize(("check", "kwargs", "ok"), [
    ("check_build_id", {"build_id": "777"}, True),
    ("check_build_id", {"build_id": "778"}, False),
    ("check_build_id", {"build_id": None}, False),
    ("check_pipeline_url", {"pipeline_url": RUN_URL}, True),
    ("check_pipeline_url", {"pipeline_url": RUN_URL + "0"}, False),
    ("check_pipeline_url", {"pipeline_url": None}, False),
])
async def test_build_id_and_pipeline_url_bindings(
    made: list[ImageVerifier], check: str, kwargs: dict[str, Any], ok: bool,
) -> None:
    rule = {"prefix": NAME, "require": "attestation", check: True}
    outcome = await judge(made, [sig("release"), att("release")], rules=[rule], **kwargs)
    assert reasons(outcome) == ([] if ok else [Reason.ATTESTATION_BUILD_MISMATCH])


async def test_the_commit_check_can_be_turned_off(made: list[ImageVerifier]) -> None:
    rule = {"prefix": NAME, "require": "attestation", "check_commit": False}
    outcome = await judge(made, [sig("release"), att("release", commit="f" * 40)],
                          rules=[rule], git_sha=None)
    assert outcome.violations == ()


async def test_an_index_digest_is_recorded_as_an_index(made: list[ImageVerifier]) -> None:
    for media_type, index in [("application/vnd.oci.image.index.v1+json", True),
                              ("application/vnd.docker.distribution.manifest.list.v2+json", True),
                              ("application/vnd.oci.image.manifest.v1+json", False)]:
        outcome = await judge(made, [sig("release")], media_type=media_type)
        assert outcome.evidence[0].index is index


def full(outcome: VerificationOutcome) -> list[tuple[Reason, str, str, str]]:
    return [(v.reason, v.subject, v.message, v.hint) for v in outcome.violations]


async def test_attestation_violations_in_full(made: list[ImageVerifier]) -> None:
    rule = {"prefix": NAME, "require": "attestation", "keys": ["release", "other"]}
    missing = await judge(made, [sig("release")], rules=[rule])
    assert full(missing) == [(
        Reason.ATTESTATION_MISSING, "container c0",
        f"container c0: image {IMAGE} has no SLSA provenance attestation",
        f"attest it: cosign attest --type slsaprovenance1 --key <key> {NAME}@{DIGEST}")]
    elsewhere = await judge(made, [sig("release"), att("release", digest=OTHER_DIGEST)],
                            rules=[rule])
    assert full(elsewhere) == [(
        Reason.ATTESTATION_INVALID, "container c0",
        f"container c0: image {IMAGE}: its provenance attestation is for another digest",
        f"attest {DIGEST} with one of: other, release")]
    # An attestation by no accepted key, for another digest, is still "not an accepted key".
    foreign = await judge(made, [sig("release"), att(digest=OTHER_DIGEST)], rules=[rule])
    assert full(foreign)[0][2].endswith("is not signed by an accepted key")
    unnamed = await judge(made, [sig("release"), att("release", commit="")], rules=[rule],
                          git_sha=None)
    assert full(unnamed) == [(
        Reason.ATTESTATION_COMMIT_MISMATCH, "container c0",
        f"container c0: image {IMAGE} is attested as built from no commit, but the "
        "workload names no git-sha",
        "set the git-sha annotation to the commit the image was built from")]
    two = await judge(made, [sig("release"), att("release"), att("release", commit="f" * 40)],
                      rules=[rule], git_sha=None)
    assert full(two)[0][2] == (
        f"container c0: image {IMAGE} is attested as built from {COMMIT}, {'f' * 40}, but the "
        "workload names no git-sha")


async def test_binding_violations_in_full(made: list[ImageVerifier]) -> None:
    other = "f" * 40
    commit = await judge(made, [sig("release"), att("release", commit=other),
                                att("release", commit="e" * 40)], default_require="attestation")
    assert full(commit) == [(
        Reason.ATTESTATION_COMMIT_MISMATCH, "container c0",
        f"container c0: image {IMAGE} was built from {'e' * 40}, {other}, not from git-sha "
        f"{COMMIT}", "deploy the image built from this commit, or fix the git-sha annotation")]
    unnamed = await judge(made, [sig("release"), att("release", commit="")],
                          default_require="attestation")
    assert full(unnamed)[0][2] == (f"container c0: image {IMAGE} was built from an unnamed "
                                   f"commit, not from git-sha {COMMIT}")
    both = {"prefix": NAME, "require": "attestation", "check_build_id": True,
            "check_pipeline_url": True}
    two_runs = [sig("release"), att("release", build_ids=("777", "778"),
                                    urls=(RUN_URL, RUN_URL + "8"))]
    wrong = await judge(made, two_runs, rules=[both], build_id="9", pipeline_url=RUN_URL + "9")
    assert full(wrong) == [
        (Reason.ATTESTATION_BUILD_MISMATCH, "container c0",
         f"container c0: image {IMAGE}: build-id '9' does not match the attested build "
         "(777, 778)", "set build-id to the CI run that built this image"),
        (Reason.ATTESTATION_BUILD_MISMATCH, "container c0",
         f"container c0: image {IMAGE}: pipeline-url {RUN_URL + '9'!r} does not match the "
         f"attested run ({RUN_URL}, {RUN_URL}8)",
         "set pipeline-url to the CI run that built this image")]
    bare = await judge(made, [sig("release"), att("release", build_ids=(), urls=())],
                       rules=[both], build_id=None, pipeline_url=None)
    assert [v.message for v in bare.violations] == [
        f"container c0: image {IMAGE}: build-id None does not match the attested build (none)",
        f"container c0: image {IMAGE}: pipeline-url None does not match the attested run "
        "(none)"]
    # The evidence names the attestation that matched the commit, or else what was attested.
    assert commit.evidence[0].attestation_commit == other
    picked = await judge(made, [sig("release"), att("release", commit=other), att("release")],
                         default_require="attestation")
    assert picked.evidence[0].attestation_commit == COMMIT


async def test_without_a_git_sha_no_build_binding_is_judged(made: list[ImageVerifier]) -> None:
    # The commit check failed, so there is no candidate attestation to bind a build to.
    rule = {"prefix": NAME, "require": "attestation", "check_build_id": True}
    outcome = await judge(made, [sig("release"), att("release")], rules=[rule],
                          git_sha=None, build_id="nope")
    assert [v.reason for v in outcome.violations] == [Reason.ATTESTATION_COMMIT_MISMATCH]


async def test_signature_violations_in_full(made: list[ImageVerifier]) -> None:
    rule = {"prefix": NAME, "keys": ["release"]}
    two = {"prefix": NAME, "threshold": 2}
    d1, d2, d3, d4 = ("sha256:" + c * 64 for c in "1234")
    cases: list[tuple[list[Finding], dict[str, Any], tuple[Reason, str, str]]] = [
        ([sig("release")], two, (
            Reason.SIGNATURE_THRESHOLD,
            f"container c0: image {IMAGE} is signed by 1 accepted signer(s) (release), 2 required",
            f"sign {DIGEST} with more of: other")),
        ([], rule, (Reason.SIGNATURE_MISSING, f"container c0: image {IMAGE} has no signature",
                    f"sign it: cosign sign --key <key> {NAME}@{DIGEST}")),
        ([sig("release", digest=d) for d in (d4, d3, d2, d1)], rule, (
            Reason.SIGNATURE_WRONG_DIGEST,
            f"container c0: image {IMAGE} carries a signature for another digest "
            f"({d1}, {d2}, {d3}), not for {DIGEST}",
            "sign the digest the pod spec names; signatures cannot be copied between images")),
        ([sig("other")], rule, (
            Reason.SIGNATURE_UNTRUSTED,
            f"container c0: image {IMAGE} is signed only by keys this rule does not accept "
            "(accepted: release)", "sign it with an accepted key, or add the key to the rule")),
        ([sig("release", problem=p) for p in ("c bad", "a bad", "b bad")], rule, (
            Reason.SIGNATURE_INVALID,
            f"container c0: image {IMAGE} has a signature that does not verify: a bad; b bad",
            "re-sign the image; the stored signature or payload is corrupt or tampered")),
        ([sig(hint=True)], rule, (
            Reason.SIGNATURE_INVALID,
            f"container c0: image {IMAGE} has a signature that does not verify",
            "re-sign the image; the stored signature or payload is corrupt or tampered")),
        ([sig(), sig()], rule, (
            Reason.SIGNATURE_UNTRUSTED,
            f"container c0: image {IMAGE} has 2 signature(s), none by a trusted key",
            "sign it with one of: release")),
    ]
    for findings, rule_data, (reason, message, hint) in cases:
        outcome = await judge(made, findings, rules=[rule_data])
        assert full(outcome) == [(reason, "container c0", message, hint)], findings


async def test_a_problem_artifact_of_another_kind_counts_as_a_bad_signature(
    made: list[ImageVerifier],
) -> None:
    # A bundle that would not even parse is an invalid signature, not no signature at all;
    # a well-formed artifact of another kind (an unknown predicate) is neither.
    broken = Finding("bundle", "other", "blob", problem="malformed bundle: x")
    assert reasons(await judge(made, [broken])) == [Reason.SIGNATURE_INVALID]
    unknown = Finding("bundle", "other", "blob", keys=frozenset({"release"}), bound=True)
    assert reasons(await judge(made, [unknown])) == [Reason.SIGNATURE_MISSING]


def test_signers_are_verified_signature_keys_the_rule_allows() -> None:
    verdict = ImageVerdict(NAME, DIGEST, findings=(
        sig("release"), sig("other", digest=OTHER_DIGEST), att("other"),
        sig("third", problem="bad")))
    assert verdict.signers(frozenset({"release", "other", "third"})) == {"release"}
    assert verdict.signers(frozenset({"other"})) == frozenset()


# --- a registry that could not be read -------------------------------------------------------
async def judge_error(made: list[ImageVerifier], error: RegistryError,
                      on_registry_error: str) -> VerificationOutcome:
    verifier = ImageVerifier(config(on_registry_error=on_registry_error))
    made.append(verifier)
    request = deployment(IMAGE)
    for target in verifier._targets(request, None):
        verifier.cache.put(verifier._key(target), ImageVerdict(
            target.ref.name, target.digest, error=error))
    return await verifier.verify(request, git_sha=COMMIT, build_id=None, pipeline_url=None,
                                 environment=None, deadline=time.monotonic() + 5)


def unverified(error: RegistryError) -> ImageEvidence:
    return ImageEvidence("container c0", IMAGE, DIGEST, "signature", verified=False,
                         registry_error=str(error))


async def test_an_image_missing_from_the_registry_is_denied_saying_so(
        made: list[ImageVerifier]) -> None:
    missing = NotFoundError(HOST, "manifest unknown")
    outcome = await judge_error(made, missing, "deny")
    assert outcome.violations == (Violation(
        Reason.REGISTRY_ERROR,
        f"container c0: image {IMAGE} could not be checked: registry {HOST}: manifest unknown",
        "push the image (and its signatures) to the registry the pod spec names",
        "container c0"),)
    assert outcome.evidence == (unverified(missing),)
    assert outcome.notes == ()


async def test_a_failing_registry_is_denied_naming_it(made: list[ImageVerifier]) -> None:
    down = RegistryUnavailable(HOST, "connection refused")
    outcome = await judge_error(made, down, "deny")
    assert outcome.violations == (Violation(
        Reason.REGISTRY_ERROR,
        f"container c0: image {IMAGE} could not be checked, registry {HOST} failed: "
        "connection refused",
        "retry when the registry is reachable, or check its credentials and limits",
        "container c0"),)
    assert outcome.evidence == (unverified(down),)


@pytest.mark.parametrize("error", [NotFoundError(HOST, "manifest unknown"),
                                   RegistryUnavailable(HOST, "connection refused")])
async def test_under_allow_a_registry_error_admits_with_a_note(
        made: list[ImageVerifier], error: RegistryError) -> None:
    outcome = await judge_error(made, error, "allow")
    assert outcome.violations == ()
    assert outcome.notes == (f"container c0: signatures of {IMAGE} not checked: {error}",)
    assert outcome.evidence == (unverified(error),)


async def test_the_evidence_of_a_verified_image_in_full(made: list[ImageVerifier]) -> None:
    outcome = await judge(made, [sig("release"), sig("other", fmt="legacy-sig", problem="bad")])
    assert outcome.evidence == (ImageEvidence(
        "container c0", IMAGE, DIGEST, "signature", verified=True, signature_formats=("bundle",),
        key_names=("release",), key_ids=("BaW4aGgJjXRYpWoD4uqc77KSI4C9pA4jMBmNyUaV4To=",)),)


async def test_images_that_need_nothing_are_recorded_as_such_and_the_rest_still_judged(
        made: list[ImageVerifier]) -> None:
    tool = f"{HOST}/tools/lint@{OTHER_DIGEST}"
    verifier = ImageVerifier(config(rules=[{"prefix": f"{HOST}/tools/", "require": "none"}]))
    made.append(verifier)
    # The image that needs nothing comes first: the one after it must still be judged.
    request = deployment(tool, IMAGE)
    for target in verifier._targets(request, None):
        verifier.cache.put(verifier._key(target), ImageVerdict(
            target.ref.name, target.digest, "", ()))
    outcome = await verifier.verify(request, git_sha=COMMIT, build_id=None, pipeline_url=None,
                                    environment=None, deadline=time.monotonic() + 5)
    assert outcome.evidence[0] == ImageEvidence(
        "container c0", tool, OTHER_DIGEST, "none", verified=True)
    assert [(e.container, e.requirement, e.verified) for e in outcome.evidence[1:]] == [
        ("container c1", "signature", False)]
    assert [v.subject for v in outcome.violations] == ["container c1"]
