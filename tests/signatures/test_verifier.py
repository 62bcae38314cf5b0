"""ImageVerifier behaviour: fetch once per Deployment, single-flight, cache, credentials."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from controller.policy.violations import Reason
from controller.registry.auth import StaticSecretSource
from controller.review import request_from_manifest
from controller.signatures.verifier import ImageVerifier
from tests.fixtures.registry import RegistryServer, serve_app
from tests.registry.hostile import IMAGE_DIGEST, PASSWORD, USER, HostileRegistry
from tests.signatures.helpers import VerifierFactory, make_config, run
from tests.signatures.test_cache import Clock
from tests.signatures.test_cosign_fixtures import DIGESTS


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
