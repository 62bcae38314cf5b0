"""A hostile registry must end in a clean denial, within the deadline, with bounded memory,
while verifications against a healthy registry run on unaffected."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from controller.policy.violations import Reason
from controller.registry import (
    Deadline,
    NotFoundError,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    RegistryLimitExceeded,
    RegistryProtocolError,
    RegistrySettings,
    RegistryUnavailable,
)
from controller.signatures.config import SignatureConfig
from controller.signatures.verifier import ImageVerifier
from tests.fixtures.registry import RegistryServer, free_port
from tests.registry.hostile import IMAGE_DIGEST, HostileRegistry
from tests.signatures.helpers import TRUSTED_PEM, run

V1 = "sha256:b5b1e7f55d49730ba3119608964ba401309f389835dac7ab40657beafbb5ad07"
REQUEST_TIMEOUT = 0.5
TOTAL_TIMEOUT = 2.0


@pytest.fixture
async def hostile() -> AsyncIterator[tuple[str, HostileRegistry]]:
    server = HostileRegistry()
    runner = web.AppRunner(server.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"127.0.0.1:{port}", server
    server.stop.set()
    await runner.cleanup()


def settings(*hosts: str) -> RegistrySettings:
    return RegistrySettings(
        insecure_registries=hosts, request_timeout_seconds=REQUEST_TIMEOUT,
        total_timeout_seconds=TOTAL_TIMEOUT, max_manifest_bytes=1024 * 1024,
        max_signatures=50, max_redirects=3)


@pytest.fixture
async def verifier(
    hostile: tuple[str, HostileRegistry], registry: RegistryServer,
) -> AsyncIterator[ImageVerifier]:
    host, _ = hostile
    config = SignatureConfig.model_validate({
        "enabled": True, "keys": [{"name": "release", "pem": TRUSTED_PEM}],
        "registry": settings(host, registry.host).model_dump(),
        "cache": {"denial_ttl_seconds": 0}})
    verifier = ImageVerifier(config)
    yield verifier
    await verifier.close()


CASES = [
    ("oversize", "exceeds the limit"),
    ("oversize-declared", "exceeds the limit"),
    ("many", "referrers (limit 50)"),
    ("many-layers", "more than 50 signature artifacts"),
    ("redirect", "more than 3 redirects"),
    ("drip", "no complete answer within"),
    ("error", "HTTP 503"),
    ("malformed", "not valid JSON"),
    ("deep-manifest", "not valid JSON"),
    ("big-sigs", "signature artifacts exceed 8388608 bytes"),
]


@pytest.mark.parametrize(("mode", "why"), CASES)
async def test_each_hostile_behaviour_is_a_clean_denial(
    hostile: tuple[str, HostileRegistry], verifier: ImageVerifier, mode: str, why: str,
) -> None:
    host, _ = hostile
    started = time.monotonic()
    outcome = await run(verifier, f"{host}/{mode}/app@{IMAGE_DIGEST}", seconds=5)
    elapsed = time.monotonic() - started
    assert [v.reason for v in outcome.violations] == [Reason.REGISTRY_ERROR]
    message = outcome.violations[0].message
    assert host in message and why in message, message
    assert "container c0" in message
    assert elapsed < TOTAL_TIMEOUT + 0.5


async def test_deeply_nested_signature_payload_is_an_invalid_signature(
    hostile: tuple[str, HostileRegistry], verifier: ImageVerifier,
) -> None:
    host, _ = hostile
    outcome = await run(verifier, f"{host}/deep-payload/app@{IMAGE_DIGEST}")
    assert [v.reason for v in outcome.violations] == [Reason.SIGNATURE_INVALID]
    assert "malformed simple signing payload" in outcome.violations[0].message


async def test_all_at_once_with_bounded_memory_and_a_healthy_neighbour(
    hostile: tuple[str, HostileRegistry], verifier: ImageVerifier, registry: RegistryServer,
    cosign_registry: dict[str, str],
) -> None:
    host, server = hostile
    healthy = f"{registry.host}/demo/app@{V1}"
    await run(verifier, healthy)  # warm the connection pool, not the cache of the others
    verifier.cache.clear()
    tracemalloc.start()
    try:
        started = time.monotonic()
        hostile_runs = [asyncio.create_task(
            run(verifier, f"{host}/{mode}/app@{IMAGE_DIGEST}", seconds=5)) for mode, _ in CASES]
        healthy_started = time.monotonic()
        good = await run(verifier, healthy)
        healthy_took = time.monotonic() - healthy_started
        bad = await asyncio.gather(*hostile_runs)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert good.violations == ()
    assert healthy_took < 1.0, healthy_took
    for outcome in bad:
        assert [v.reason for v in outcome.violations] == [Reason.REGISTRY_ERROR]
    assert elapsed < TOTAL_TIMEOUT + 0.5
    # The server pushed far more than we kept: the limits, not the server, bound our memory.
    assert peak < 32 * 1024 * 1024, peak
    assert server.streamed > 0


async def test_allow_on_registry_error_admits_with_a_note(
    hostile: tuple[str, HostileRegistry],
) -> None:
    host, _ = hostile
    config = SignatureConfig.model_validate({
        "enabled": True, "keys": [{"name": "release", "pem": TRUSTED_PEM}],
        "on_registry_error": "allow", "registry": settings(host).model_dump()})
    verifier = ImageVerifier(config)
    try:
        outcome = await run(verifier, f"{host}/error/app@{IMAGE_DIGEST}")
    finally:
        await verifier.close()
    assert outcome.violations == ()
    assert len(outcome.notes) == 1 and "HTTP 503" in outcome.notes[0]
    assert outcome.evidence[0].registry_error is not None


async def test_client_errors_are_typed(hostile: tuple[str, HostileRegistry]) -> None:
    host, _ = hostile
    async with RegistryClient(settings(host)) as client:
        deadline = Deadline.after(5)
        with pytest.raises(RegistryLimitExceeded):
            await client.get_manifest(host, "oversize/app", "latest", deadline=deadline)
        with pytest.raises(RegistryLimitExceeded, match="more than 3 redirects"):
            await client.get_manifest(host, "redirect/app", "latest", deadline=deadline)
        with pytest.raises(RegistryUnavailable, match="503"):
            await client.get_manifest(host, "error/app", "latest", deadline=deadline)
        with pytest.raises(RegistryProtocolError):
            await client.get_manifest(host, "malformed/app", "latest", deadline=deadline)
        with pytest.raises(RegistryLimitExceeded):
            await client.referrers(host, "many/app", IMAGE_DIGEST, deadline=deadline)
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable):
            await client.get_manifest(host, "drip/app", "latest", deadline=Deadline.after(0.3))
        assert time.monotonic() - started < 0.6


@pytest.mark.parametrize(("max_redirects", "path", "why"), [
    (0, "redirect-once", "redirects are not allowed"),  # 0 follows none, not one
    (1, "redirect-once", None),
    (3, "redirect-once", None),
    (1, "redirect", "more than 1 redirects"),
    (3, "redirect", "more than 3 redirects"),
])
async def test_max_redirects_is_honoured_exactly(
    hostile: tuple[str, HostileRegistry], max_redirects: int, path: str, why: str | None,
) -> None:
    host, _ = hostile
    limits = settings(host).model_copy(update={"max_redirects": max_redirects})
    async with RegistryClient(limits) as client:
        deadline = Deadline.after(5)
        if why is None:
            manifest = await client.get_manifest(host, f"{path}/app", IMAGE_DIGEST,
                                                 deadline=deadline)
            assert manifest.digest == IMAGE_DIGEST
        else:
            with pytest.raises(RegistryLimitExceeded) as caught:
                await client.get_manifest(host, f"{path}/app", IMAGE_DIGEST, deadline=deadline)
            assert why in str(caught.value)


@pytest.mark.parametrize(("path", "error", "detail"), [
    ("error/app", RegistryUnavailable, "GET error/app/manifests/latest: HTTP 503 "
                                       "(upstream exploded)"),
    ("throttle/app", RegistryUnavailable, "GET throttle/app/manifests/latest: HTTP 429"),
    ("forbidden/app", RegistryAuthError, "GET forbidden/app/manifests/latest: HTTP 403"),
    ("teapot/app", RegistryProtocolError, "GET teapot/app/manifests/latest: HTTP 418 "
                                          "(short and stout)"),
    ("nothing/app", NotFoundError, "GET nothing/app/manifests/latest: HTTP 404"),
])
async def test_each_status_is_its_own_error_naming_the_registry(
    hostile: tuple[str, HostileRegistry], path: str, error: type[RegistryError], detail: str,
) -> None:
    host, _ = hostile
    async with RegistryClient(settings(host)) as client:
        with pytest.raises(error) as caught:
            await client.get_manifest(host, path, "latest", deadline=Deadline.after(5))
    assert type(caught.value) is error
    assert caught.value.registry == host
    assert caught.value.detail == detail


@pytest.mark.parametrize(("mode", "tags", "error"), [
    ("tags-none", (), None),
    ("tags-bad", None, "tag list is not a list of strings"),
    ("tags-list", (), None),  # not an object: no tags, not a crash
    ("malformed", None, "tag list is not valid JSON"),
])
async def test_tag_lists_are_validated(
    hostile: tuple[str, HostileRegistry], mode: str, tags: tuple[str, ...] | None,
    error: str | None,
) -> None:
    host, _ = hostile
    async with RegistryClient(settings(host)) as client:
        if error is None:
            assert await client.list_tags(host, f"{mode}/app", deadline=Deadline.after(5)) == tags
        else:
            with pytest.raises(RegistryProtocolError, match=error) as caught:
                await client.list_tags(host, f"{mode}/app", deadline=Deadline.after(5))
            assert caught.value.registry == host


async def test_a_reference_that_does_not_parse_is_a_protocol_error() -> None:
    async with RegistryClient(RegistrySettings()) as client:
        with pytest.raises(RegistryProtocolError) as caught:
            await client.resolve_digest("Not A Reference")
    assert caught.value.registry == "(unknown)"
    assert caught.value.detail == "'Not A Reference' has upper-case letters in the repository name"
