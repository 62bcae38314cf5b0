"""ImageVerifier behaviour: fetch once per Deployment, single-flight, cache, credentials."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controller import metrics
from controller.policy.violations import Reason
from controller.registry.auth import StaticSecretSource
from controller.registry.deadline import Deadline
from controller.registry.errors import RegistryError
from controller.review import WorkloadRequest, request_from_manifest
from controller.signatures import verifier as verifier_module
from controller.signatures.certificate import CertificateIdentity, Mismatch
from controller.signatures.discovery import Collected, RawArtifact
from controller.signatures.formats import Finding
from controller.signatures.signers import check_artifacts
from controller.signatures.verifier import (
    THREAD_BYTES,
    THREAD_THRESHOLD,
    ImageEvidence,
    ImageVerdict,
    ImageVerifier,
    VerificationOutcome,
)
from tests.fixtures.registry import RegistryServer, serve_app
from tests.registry.hostile import IMAGE_DIGEST, PASSWORD, USER, HostileRegistry
from tests.signatures.helpers import (
    COMMIT,
    OTHER_PEM,
    TRUSTED_PEM,
    VerifierFactory,
    deployment,
    make_config,
    run,
)
from tests.signatures.test_cache import Clock
from tests.signatures.test_cosign_fixtures import DIGESTS
from tests.signatures.test_judgement import (
    DIGEST,
    HOST,
    IMAGE,
    NAME,
    OTHER_DIGEST,
    att,
    full,
    reasons,
    sig,
)


@pytest.fixture
async def counting_proxy(registry: RegistryServer) -> AsyncIterator[tuple[str, Counter[str]]]:
    """A loopback proxy to the registry that counts requests by path."""
    counts: Counter[str] = Counter()
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        counts[request.path] += 1
        async with session.get(f"{registry.url}{request.rel_url}",
                               headers={"Accept": request.headers.get("Accept", "*/*")}) as up:
            body = await up.read()
            return web.Response(status=up.status, body=body, headers={
                "Content-Type": up.headers.get("Content-Type", "application/octet-stream")})

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", forward)
    async with serve_app(app) as host:
        yield host, counts
    await session.close()


async def test_each_digest_is_fetched_once_per_deployment(
    cosign_registry: dict[str, str], counting_proxy: tuple[str, Counter[str]],
    verifier_factory: VerifierFactory,
) -> None:
    host, counts = counting_proxy
    v1 = f"{host}/demo/app@{DIGESTS['v1']}"
    outcome = await run(verifier_factory(host), v1, v1, f"{host}/demo/app:v1@{DIGESTS['v1']}")
    assert outcome.violations == () and len(outcome.evidence) == 3
    assert counts[f"/v2/demo/app/manifests/{DIGESTS['v1']}"] == 1
    assert max(counts.values()) == 1


async def test_concurrent_admissions_share_one_verification_and_the_cache(
    cosign_registry: dict[str, str], counting_proxy: tuple[str, Counter[str]],
    verifier_factory: VerifierFactory,
) -> None:
    host, counts = counting_proxy
    verifier = verifier_factory(host)
    images = [f"{host}/demo/app@{DIGESTS[t]}" for t in ("v1", "v2", "v3")]
    outcomes = await asyncio.gather(*(run(verifier, *images) for _ in range(20)))
    assert all(o.violations == () for o in outcomes)
    assert max(counts.values()) == 1
    assert verifier.cache.misses == 3 and verifier.cache.joins + verifier.cache.hits == 57
    before = sum(counts.values())
    again = await run(verifier, *images)
    assert again.violations == ()
    assert sum(counts.values()) == before  # warm: no registry traffic at all


async def test_denials_are_not_cached_long(
    cosign_registry: dict[str, str], registry: RegistryServer, verifier_factory: VerifierFactory,
) -> None:
    verifier = verifier_factory(registry.host, cache={"denial_ttl_seconds": 0})
    image = f"{registry.host}/demo/app@{DIGESTS['v5']}"
    assert [v.reason for v in (await run(verifier, image)).violations] == [
        Reason.SIGNATURE_MISSING]
    assert len(verifier.cache) == 0


async def test_disabled_unpinned_and_not_required(
    registry: RegistryServer, cosign_registry: dict[str, str], verifier_factory: VerifierFactory,
) -> None:
    host = registry.host
    off = ImageVerifier(make_config(host).model_copy(update={"enabled": False}))
    assert (await run(off, f"{host}/demo/app@{DIGESTS['v5']}")).evidence == ()
    await off.close()
    verifier = verifier_factory(host, rules=[{"prefix": f"{host}/demo/", "require": "none"}])
    outcome = await run(verifier, f"{host}/demo/app:v5", f"{host}/demo/app@{DIGESTS['v5']}",
                        "Not A Reference")
    assert outcome.violations == ()
    assert [(e.container, e.requirement) for e in outcome.evidence] == [("container c1", "none")]


async def test_namespace_scoped_attestation_rule(
    registry: RegistryServer, cosign_registry: dict[str, str], verifier_factory: VerifierFactory,
) -> None:
    host = registry.host
    verifier = verifier_factory(host, rules=[
        {"prefix": f"{host}/demo/", "require": "attestation", "namespaces": ["prod"]}])
    image = f"{host}/demo/app@{DIGESTS['v2']}"
    assert (await run(verifier, image, namespace="dev")).violations == ()
    prod = await run(verifier, image, namespace="prod")
    assert [v.reason for v in prod.violations] == [Reason.ATTESTATION_MISSING]
    no_sha = await run(verifier, f"{host}/demo/app@{DIGESTS['v1']}", namespace="prod",
                       git_sha=None)
    assert [v.reason for v in no_sha.violations] == [Reason.ATTESTATION_COMMIT_MISMATCH]


@pytest.fixture
async def auth_registry() -> AsyncIterator[str]:
    async with serve_app(HostileRegistry().app()) as host:
        yield host


async def test_image_pull_secrets_are_used(auth_registry: str) -> None:
    host = auth_registry
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    secret = json.dumps({"auths": {host: {"auth": auth}}}).encode()
    # Denials uncached, so the second request really goes to the registry again. (Verdicts are
    # shared across credentials on purpose: they say what is signed, not who may pull it.)
    verifier = ImageVerifier(make_config(host, cache={"denial_ttl_seconds": 0}),
                             secrets=StaticSecretSource({("apps", "pull"): secret}))
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "x", "namespace": "apps"}, "spec": {"template": {"spec": {
        "imagePullSecrets": [{"name": "pull"}],
        "containers": [{"name": "c", "image": f"{host}/auth-bearer/app@{IMAGE_DIGEST}"}]}}}}
    anonymous = dict(manifest, spec={"template": {"spec": {
        "containers": manifest["spec"]["template"]["spec"]["containers"]}}})  # type: ignore[index]
    try:
        with_secret = await verifier.verify(
            request_from_manifest(manifest, username="u"), git_sha=None, build_id=None,
            pipeline_url=None, environment=None, deadline=time.monotonic() + 5)
        without = await verifier.verify(
            request_from_manifest(anonymous, username="u"), git_sha=None, build_id=None,
            pipeline_url=None, environment=None, deadline=time.monotonic() + 5)
    finally:
        await verifier.close()
    # With the secret the registry answers, and the image simply has no signature.
    assert [v.reason for v in with_secret.violations] == [Reason.SIGNATURE_MISSING]
    assert [v.reason for v in without.violations] == [Reason.REGISTRY_ERROR]
    assert "401" in without.violations[0].message


async def test_an_impatient_caller_does_not_poison_the_shared_verification(
    cosign_registry: dict[str, str], registry: RegistryServer, verifier_factory: VerifierFactory,
) -> None:
    verifier = verifier_factory(registry.host)
    image = f"{registry.host}/demo/app@{DIGESTS['v1']}"
    impatient = asyncio.create_task(run(verifier, image, seconds=0.0005))
    patient = asyncio.create_task(run(verifier, image))
    hurried, calm = await asyncio.gather(impatient, patient)
    assert [v.reason for v in hurried.violations] == [Reason.REGISTRY_ERROR]
    assert "did not finish in time" in hurried.violations[0].message
    assert calm.violations == ()
    assert verifier.cache.misses == 1
    assert (await run(verifier, image, seconds=0.0005)).violations == ()  # now cached


async def test_a_memoised_answer_lives_no_longer_than_its_verdicts(
    cosign_registry: dict[str, str], counting_proxy: tuple[str, Counter[str]],
    verifier_factory: VerifierFactory,
) -> None:
    host, counts = counting_proxy
    clock = Clock()
    verifier = verifier_factory(host, clock=clock, cache={"denial_ttl_seconds": 0.3})
    signed, unsigned = f"{host}/demo/app@{DIGESTS['v1']}", f"{host}/demo/app@{DIGESTS['v5']}"
    first = await run(verifier, signed, unsigned)
    assert [v.reason for v in first.violations] == [Reason.SIGNATURE_MISSING]
    traffic = sum(counts.values())
    # Warm: the same Deployment is answered from the memo, with no registry traffic.
    assert await run(verifier, signed, unsigned) == first
    assert sum(counts.values()) == traffic
    # The denial's short TTL bounds the memoised answer: after it, the registry is asked again.
    clock.now += 0.2
    assert await run(verifier, signed, unsigned) == first
    assert sum(counts.values()) == traffic  # still within the denial TTL
    clock.now += 0.2
    assert (await run(verifier, signed, unsigned)).violations == first.violations
    assert sum(counts.values()) > traffic
    # Clearing the verdicts (new trusted keys) drops memoised answers too.
    await run(verifier, signed)
    traffic = sum(counts.values())
    await run(verifier, signed)
    assert sum(counts.values()) == traffic  # memoised
    verifier.cache.clear()
    await run(verifier, signed)
    assert sum(counts.values()) > traffic


TWO_KEYS = [{"name": "release", "pem": TRUSTED_PEM}, {"name": "other", "pem": OTHER_PEM}]


# --- answers from verdicts placed in the cache (no registry) -----------------------------------
# The registry is the discard port: a fetch, where none should happen, is a REGISTRY_ERROR.

def place(verifier: ImageVerifier, request: WorkloadRequest, *findings: Finding) -> None:
    for target in verifier._targets(request, None):
        verifier.cache.put(verifier._key(target), ImageVerdict(
            target.ref.name, target.digest, "", findings))


async def answer(verifier: ImageVerifier, request: WorkloadRequest, *,
                 git_sha: str | None = COMMIT, branch: str | None = None) -> VerificationOutcome:
    return await verifier.verify(request, git_sha=git_sha, build_id=None, pipeline_url=None,
                                 environment=None, deadline=time.monotonic() + 5, branch=branch)


def hits_and_misses() -> tuple[float, float]:
    return (metrics.REGISTRY.get_sample_value("provenance_verification_cache_hits_total") or 0,
            metrics.REGISTRY.get_sample_value("provenance_verification_cache_misses_total") or 0)


async def test_a_memoised_answer_is_served_until_the_instant_its_verdict_expires(
    verifier_factory: VerifierFactory,
) -> None:
    clock = Clock()
    verifier = verifier_factory(HOST, clock=clock, cache={"ttl_seconds": 60})
    request = deployment(IMAGE)
    place(verifier, request, sig("release"))
    first = await answer(verifier, request)
    assert first.violations == () and verifier.cache.hits == 1
    clock.now += 59.5
    # The very same answer, without even a verdict lookup: a passing verdict lives the long TTL.
    assert await answer(verifier, request) is first
    assert verifier.cache.hits == 1
    clock.now += 0.5  # the verdict's expiry instant: neither it nor the memo is fresh any more
    assert reasons(await answer(verifier, request)) == [Reason.REGISTRY_ERROR]


async def test_a_memoised_answer_counts_a_cache_hit_per_image(
    verifier_factory: VerifierFactory,
) -> None:
    verifier = verifier_factory(HOST, clock=Clock())
    request = deployment(IMAGE, f"{NAME}@{OTHER_DIGEST}", IMAGE)
    place(verifier, request, sig("release"))
    first = await answer(verifier, request)
    hits, misses = hits_and_misses()
    assert await answer(verifier, request) is first
    assert hits_and_misses() == (hits + 2, misses)  # two images, however many containers


async def test_memoised_answers_are_bounded_least_recently_used_first(
    verifier_factory: VerifierFactory,
) -> None:
    verifier = verifier_factory(HOST, clock=Clock(), cache={"max_entries": 2})
    request = deployment(IMAGE)
    place(verifier, request, sig("release"))
    # One verdict, three workload shapes: the memo is keyed by the claims too.
    a, b, c = ("a" * 40, "b" * 40, "c" * 40)
    first_a = await answer(verifier, request, git_sha=a)
    first_b = await answer(verifier, request, git_sha=b)
    assert await answer(verifier, request, git_sha=a) is first_a  # both kept; a used last
    first_c = await answer(verifier, request, git_sha=c)  # b goes
    assert await answer(verifier, request, git_sha=c) is first_c
    assert await answer(verifier, request, git_sha=a) is first_a
    again_b = await answer(verifier, request, git_sha=b)
    assert again_b == first_b and again_b is not first_b


async def test_an_image_that_needs_nothing_is_not_fetched(
    verifier_factory: VerifierFactory,
) -> None:
    verifier = verifier_factory(HOST, rules=[{"prefix": NAME, "require": "none"}])
    outcome = await answer(verifier, deployment(IMAGE))
    assert outcome.evidence == (
        ImageEvidence("container c0", IMAGE, DIGEST, "none", verified=True),)
    assert verifier.cache.misses == 0 and len(verifier.cache) == 0


async def test_an_unparseable_image_does_not_hide_the_ones_after_it(
    verifier_factory: VerifierFactory,
) -> None:
    verifier = verifier_factory(HOST)
    request = deployment("Not A Reference", IMAGE)
    place(verifier, request, sig("release"))
    outcome = await answer(verifier, request)
    assert [(e.container, e.verified) for e in outcome.evidence] == [("container c1", True)]


class CountingSecrets:
    def __init__(self) -> None:
        self.reads: list[tuple[str, str]] = []

    async def dockerconfigjson(self, namespace: str, name: str) -> bytes | None:
        self.reads.append((namespace, name))
        return None


async def test_pull_secrets_are_read_only_when_the_registry_must_be_asked() -> None:
    secrets = CountingSecrets()
    verifier = ImageVerifier(make_config(HOST, registry={
        "pull_secret": {"namespace": "provenance", "name": "pull"}}), secrets=secrets)
    try:
        warm = deployment(IMAGE)
        place(verifier, warm, sig("release"))
        assert (await answer(verifier, warm)).violations == ()
        assert secrets.reads == []
        cold = deployment(f"{NAME}@{OTHER_DIGEST}")
        assert reasons(await answer(verifier, cold)) == [Reason.REGISTRY_ERROR]
        assert secrets.reads == [("provenance", "pull")]
    finally:
        await verifier.close()


async def test_a_verifier_given_keys_uses_those_and_not_the_configured_ones() -> None:
    # Given none at all, a rule's signers can only be keyless ones: the hint says so.
    verifier = ImageVerifier(make_config(HOST, rules=[{"prefix": NAME, "keys": ["release"]}]),
                             keys=[])
    try:
        assert verifier.keys == ()
        request = deployment(IMAGE)
        place(verifier, request)
        assert full(await answer(verifier, request)) == [(
            Reason.SIGNATURE_MISSING, "container c0",
            f"container c0: image {IMAGE} has no signature",
            "sign it: cosign sign (keyless, in the CI job of an accepted identity) "
            f"{NAME}@{DIGEST}")]
    finally:
        await verifier.close()


async def test_a_timed_out_verification_is_a_registry_error_for_that_digest(
    verifier_factory: VerifierFactory,
) -> None:
    verifier = verifier_factory(HOST)
    (target,) = verifier._targets(deployment(IMAGE), None)
    verdict = await verifier._verdict(target, None, Deadline(time.monotonic()))
    assert (verdict.name, verdict.digest, verdict.findings) == (NAME, DIGEST, ())
    assert verdict.error is not None and verdict.error.registry == HOST
    assert "did not finish in time" in str(verdict.error)


async def test_a_registry_that_cannot_be_read_gives_an_error_verdict_for_that_digest(
    verifier_factory: VerifierFactory,
) -> None:
    verifier = verifier_factory(HOST)
    (target,) = verifier._targets(deployment(IMAGE), None)
    verdict = await verifier._fetch_and_verify(target, None, Deadline.after(5))
    assert (verdict.name, verdict.digest, verdict.findings) == (NAME, DIGEST, ())
    assert isinstance(verdict.error, RegistryError) and verdict.error.registry == HOST


async def test_close_leaves_a_running_verification_and_drops_the_queued_ones(
    verifier_factory: VerifierFactory,
) -> None:
    verifier = verifier_factory(HOST)
    started, gate = threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        gate.wait(2)
        return threading.current_thread().name

    # One verification thread (see VERIFY_THREADS): the second job waits for the first.
    running = verifier._executor.submit(work)
    queued = verifier._executor.submit(work)
    assert started.wait(2)
    await verifier.close()
    # Shutting down must not block the event loop on a verification in progress.
    assert not running.done() and queued.cancelled()
    gate.set()
    # Named, so that a thread dump tells the verification thread from the loop's.
    assert running.result(2).startswith("verify")


# --- judging keyless certificates and signatures ------------------------------------------------

def keyless(signer: str, *, commit: str = COMMIT, ref: str = "refs/heads/main",
            digest: str = DIGEST) -> Finding:
    identity = CertificateIdentity(
        subjects=(f"https://github.com/org/{signer}/.github/workflows/release.yml@{ref}",),
        issuer="https://token.actions.githubusercontent.com",
        source_repository=f"https://github.com/org/{signer}", source_repository_legacy=None,
        source_ref=ref, source_digest=commit, build_config_uri=None, build_config_digest=None,
        trigger="push", runner_environment="github-hosted")
    return Finding("bundle", "signature", f"blob-{signer}", keys=frozenset({signer}),
                   signed_digests=(digest,), bound=digest == DIGEST, identity=identity)


def two_keys(**rule: Any) -> dict[str, Any]:
    return {"keys": TWO_KEYS, "rules": [{"prefix": NAME, **rule}]}


@pytest.mark.parametrize(("rule", "finding", "expected"), [
    ({"check_certificate_ref": False}, keyless("release", commit="f" * 40, ref="refs/heads/x"), (
        Reason.CERTIFICATE_COMMIT_MISMATCH,
        f"container c0: image {IMAGE} was signed by a certificate for commit {'f' * 40}, "
        f"not git-sha {COMMIT}",
        "deploy the image built from this commit, or fix the git-sha annotation")),
    ({"check_certificate_commit": False}, keyless("release", commit="f" * 40,
                                                  ref="refs/heads/x"), (
        Reason.CERTIFICATE_REF_MISMATCH,
        f"container c0: image {IMAGE} was signed by a certificate for ref refs/heads/x, not "
        "branch main",
        "deploy the image built from this branch, or fix the branch annotation")),
])
async def test_each_certificate_check_works_on_its_own(
    verifier_factory: VerifierFactory, rule: dict[str, Any], finding: Finding,
    expected: tuple[Reason, str, str],
) -> None:
    verifier = verifier_factory(HOST, **two_keys(**rule))
    request = deployment(IMAGE)
    place(verifier, request, finding)
    reason, message, hint = expected
    assert full(await answer(verifier, request, branch="main")) == [
        (reason, "container c0", message, hint)]


async def test_only_the_rules_verified_certificates_are_held_to_the_claims(
    verifier_factory: VerifierFactory,
) -> None:
    verifier = verifier_factory(HOST, **two_keys(keys=["release"]))
    request = deployment(IMAGE)
    # A signer outside the rule, and the rule's own signer for another digest, claim other
    # commits; neither vouches for this image, so neither contradicts the workload.
    place(verifier, request, keyless("other", commit="e" * 40),
          keyless("release", commit="c" * 40, digest=OTHER_DIGEST),
          keyless("release", commit="f" * 40))
    outcome = await answer(verifier, request)
    assert [(v.reason, v.message.split("commit ")[1][:40]) for v in outcome.violations] == [
        (Reason.CERTIFICATE_COMMIT_MISMATCH, "f" * 40)]
    (evidence,) = outcome.evidence
    assert evidence.keyless_identities == (
        "https://github.com/org/release/.github/workflows/release.yml@refs/heads/main",)


def third_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


async def test_threshold_denials_name_every_signer(verifier_factory: VerifierFactory) -> None:
    keys = [*TWO_KEYS, {"name": "third", "pem": third_key_pem()}]
    cases = [
        ([sig("release")], "1 accepted signer(s) (release)", "other, third"),
        ([sig("release"), sig("other")], "2 accepted signer(s) (other, release)", "third"),
    ]
    for findings, signed, more in cases:
        verifier = verifier_factory(HOST, keys=keys, rules=[{"prefix": NAME, "threshold": 3}])
        request = deployment(IMAGE)
        place(verifier, request, *findings)
        assert full(await answer(verifier, request)) == [(
            Reason.SIGNATURE_THRESHOLD, "container c0",
            f"container c0: image {IMAGE} is signed by {signed}, 3 required",
            f"sign {DIGEST} with more of: {more}")]


def refused(*fields: str, bound: bool = True) -> Finding:
    # A verified certificate that names no accepted signer: each signer's first refused field.
    mismatches = tuple((name, Mismatch(field, "expected", f"found-{i}"))  # type: ignore[arg-type]
                       for i, (name, field) in enumerate(
                           zip(("release", "other", "release", "other"), fields, strict=False)))
    return Finding("bundle", "signature", "blob-keyless", signed_digests=(DIGEST,), bound=bound,
                   mismatches=mismatches)


@pytest.mark.parametrize(("findings", "expected"), [
    ([refused("repository", "issuer", "ref", "identity")], (
        Reason.SIGNER_REPOSITORY_MISMATCH,
        f"container c0: image {IMAGE} is signed keyless, but not by an accepted identity "
        "(release: certificate repository is 'found-0', expected expected; other: certificate "
        "issuer is 'found-1', expected expected; release: certificate ref is 'found-2', "
        "expected expected)",
        "sign it from the workflow, repository and ref the rule's signers name, or fix the "
        "signer in the configuration")),
    # A certificate for another image is not judged by its fields: it vouches for nothing here.
    ([refused("repository", bound=False)], (
        Reason.SIGNATURE_UNTRUSTED,
        f"container c0: image {IMAGE} has 1 signature(s), none by a trusted key",
        "sign it with one of: other, release")),
    ([sig(digest=OTHER_DIGEST)], (
        Reason.SIGNATURE_UNTRUSTED,
        f"container c0: image {IMAGE} has 1 signature(s), none by a trusted key",
        "sign it with one of: other, release")),
    ([sig("stranger")], (
        Reason.SIGNATURE_UNTRUSTED,
        f"container c0: image {IMAGE} is signed only by keys this rule does not accept "
        "(accepted: other, release)", "sign it with an accepted key, or add the key to the rule")),
])
async def test_signature_denials_name_what_was_wrong(
    verifier_factory: VerifierFactory, findings: list[Finding],
    expected: tuple[Reason, str, str],
) -> None:
    verifier = verifier_factory(HOST, **two_keys())
    request = deployment(IMAGE)
    place(verifier, request, *findings)
    reason, message, hint = expected
    assert full(await answer(verifier, request)) == [(reason, "container c0", message, hint)]


# --- where verification runs: inline, or on the verification thread ------------------------------

class Claiming:
    """A signer that claims every artifact, as the keyless signer claims certificates."""

    names = frozenset({"ci"})

    def fingerprint(self) -> str:
        return "claiming"

    def handles(self, artifact: RawArtifact) -> bool:
        return True

    def check(self, artifact: RawArtifact, digest: str) -> Finding:
        return Finding(artifact.format, "signature", artifact.source)


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Awaitable[str]]:
    """Verify artifacts of the given sizes; returns the name of the thread that checked them."""
    ran: list[str] = []
    real = check_artifacts

    def recording(*args: Any) -> tuple[Finding, ...]:
        ran.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(verifier_module, "check_artifacts", recording)

    async def verify(verifier: ImageVerifier, *sizes: int) -> str:
        artifacts = tuple(RawArtifact("bundle", f"sha256:{i}", b"x" * n)
                          for i, n in enumerate(sizes))

        async def collect(*args: Any, **kwargs: Any) -> Collected:
            return Collected("application/vnd.oci.image.manifest.v1+json", artifacts)

        monkeypatch.setattr(verifier_module, "collect", collect)
        (target,) = verifier._targets(deployment(IMAGE), None)
        verdict = await verifier._fetch_and_verify(target, None, Deadline.after(5))
        assert (verdict.name, verdict.digest) == (NAME, DIGEST)
        assert [f.source for f in verdict.findings] == [a.source for a in artifacts]
        return ran.pop()

    return verify


async def test_a_few_small_artifacts_are_verified_inline_and_more_on_the_thread(
    verifier_factory: VerifierFactory, threads: Callable[..., Awaitable[str]],
) -> None:
    verifier = verifier_factory(HOST)
    loop_thread = threading.current_thread().name
    assert await threads(verifier, *[10] * THREAD_THRESHOLD) == loop_thread
    assert (await threads(verifier, *[10] * (THREAD_THRESHOLD + 1))).startswith("verify")


async def test_artifacts_hashed_once_per_key_go_to_the_thread_past_the_byte_limit(
    verifier_factory: VerifierFactory, threads: Callable[..., Awaitable[str]],
) -> None:
    loop_thread = threading.current_thread().name
    one_key = verifier_factory(HOST)
    assert await threads(one_key, THREAD_BYTES) == loop_thread
    assert (await threads(one_key, THREAD_BYTES + 1)).startswith("verify")
    assert await threads(one_key, THREAD_BYTES // 2 + 1) == loop_thread
    # Each payload is hashed once per key: two keys double the work.
    two = verifier_factory(HOST, keys=TWO_KEYS)
    assert (await threads(two, THREAD_BYTES // 2 + 1)).startswith("verify")


async def test_an_artifact_another_signer_claims_goes_to_the_thread(
    verifier_factory: VerifierFactory, threads: Callable[..., Awaitable[str]],
) -> None:
    verifier = verifier_factory(HOST)
    # Only the signers before the keys (keyless ones) make a small artifact worth a thread.
    verifier.signers = (Claiming(), *verifier.signers)
    assert (await threads(verifier, 10)).startswith("verify")


async def test_verification_on_the_thread_is_bounded_by_the_deadline(
    verifier_factory: VerifierFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = verifier_factory(HOST)
    gate = threading.Event()

    def stuck(*args: Any) -> tuple[Finding, ...]:
        gate.wait(2)
        return ()

    async def collect(*args: Any, **kwargs: Any) -> Collected:
        return Collected("", tuple(RawArtifact("bundle", f"sha256:{i}") for i in range(9)))

    monkeypatch.setattr(verifier_module, "check_artifacts", stuck)
    monkeypatch.setattr(verifier_module, "collect", collect)
    (target,) = verifier._targets(deployment(IMAGE), None)
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            await verifier._fetch_and_verify(target, None, Deadline.after(0.1))
        assert time.monotonic() - started < 1
    finally:
        gate.set()


async def test_without_a_secret_source_the_registry_is_asked_anonymously(
    verifier_factory: VerifierFactory,
) -> None:
    # A configured pull secret with nowhere to read it from (`check`, offline) is not a crash.
    verifier = verifier_factory(HOST, registry={
        "pull_secret": {"namespace": "provenance", "name": "pull"}})
    assert reasons(await answer(verifier, deployment(IMAGE))) == [Reason.REGISTRY_ERROR]


class StuckSecrets:
    async def dockerconfigjson(self, namespace: str, name: str) -> bytes | None:
        await asyncio.Event().wait()
        return None


async def test_a_pull_secret_that_never_comes_is_given_up_within_the_deadline() -> None:
    verifier = ImageVerifier(make_config(HOST, registry={
        "pull_secret": {"namespace": "provenance", "name": "pull"}}), secrets=StuckSecrets())
    try:
        outcome = await asyncio.wait_for(verifier.verify(
            deployment(IMAGE), git_sha=COMMIT, build_id=None, pipeline_url=None,
            environment=None, deadline=time.monotonic() + 0.5), timeout=5)
        assert reasons(outcome) == [Reason.REGISTRY_ERROR]
    finally:
        await verifier.close()


async def test_both_certificate_claims_are_judged_and_each_wrong_value_named_once(
    verifier_factory: VerifierFactory,
) -> None:
    verifier = verifier_factory(HOST, **two_keys())
    request = deployment(IMAGE)
    wrong = keyless("release", commit="f" * 40, ref="refs/heads/x")
    place(verifier, request, wrong, replace(wrong, source="blob-again"),
          keyless("other", commit="e" * 40, ref="refs/heads/x"))
    outcome = await answer(verifier, request, branch="main")
    assert [v.reason for v in outcome.violations] == [
        Reason.CERTIFICATE_COMMIT_MISMATCH, Reason.CERTIFICATE_REF_MISMATCH,
        Reason.CERTIFICATE_COMMIT_MISMATCH]
    assert [v.message.split(" for ")[1].split(",")[0] for v in outcome.violations] == [
        f"commit {'f' * 40}", "ref refs/heads/x", f"commit {'e' * 40}"]


async def test_the_evidence_names_only_the_formats_of_the_rules_signers(
    verifier_factory: VerifierFactory,
) -> None:
    verifier = verifier_factory(HOST, **two_keys(keys=["release"]))
    request = deployment(IMAGE)
    place(verifier, request, sig("release"), sig("other", fmt="legacy-sig"))
    outcome = await answer(verifier, request)
    assert outcome.violations == ()
    assert outcome.evidence[0].signature_formats == ("bundle",)


async def test_without_the_commit_check_the_build_id_is_still_bound(
    verifier_factory: VerifierFactory,
) -> None:
    verifier = verifier_factory(HOST, rules=[{
        "prefix": NAME, "require": "attestation", "check_commit": False,
        "check_build_id": True}])
    request = deployment(IMAGE)
    place(verifier, request, att("release"))
    right = await verifier.verify(request, git_sha=None, build_id="777", pipeline_url=None,
                                  environment=None, deadline=time.monotonic() + 5)
    assert right.violations == ()
    wrong = await verifier.verify(request, git_sha=None, build_id="778", pipeline_url=None,
                                  environment=None, deadline=time.monotonic() + 5)
    assert reasons(wrong) == [Reason.ATTESTATION_BUILD_MISMATCH]
