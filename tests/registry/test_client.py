"""The registry client against the real docker-registry, and its auth flows."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest

from controller.images import parse_reference
from controller.registry import (
    Credential,
    CredentialsError,
    Deadline,
    NotFoundError,
    RegistryAuthError,
    RegistryClient,
    RegistryLimitExceeded,
    RegistrySettings,
    RegistryUnavailable,
    parse_dockerconfigjson,
)
from controller.registry.auth import StaticSecretSource, normalise_registry_host, parse_challenge
from controller.registry.models import Descriptor
from tests.fixtures.registry import DEMO_REPOSITORY, RegistryServer, serve_app
from tests.registry.hostile import IMAGE_DIGEST, PASSWORD, REFRESH, USER, HostileRegistry
from tests.signatures.helpers import push_random_image

V1 = "sha256:b5b1e7f55d49730ba3119608964ba401309f389835dac7ab40657beafbb5ad07"
MULTI = "sha256:467c8c03ab45b3f54258ddeea936ed8e356bf898826ead1e0c8ca746d37e6646"


@pytest.fixture
async def client(registry: RegistryServer) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(RegistrySettings(insecure_registries=(registry.host,))) as c:
        yield c


@pytest.mark.registry
async def test_manifests_tags_blobs_referrers(
    registry: RegistryServer, cosign_registry: dict[str, str], client: RegistryClient,
) -> None:
    host, repo, deadline = registry.host, DEMO_REPOSITORY, Deadline.after(5)
    by_tag = await client.get_manifest(host, repo, "v1", deadline=deadline)
    assert by_tag.digest == V1 and not by_tag.is_index
    index = await client.get_manifest(host, repo, MULTI, deadline=deadline)
    assert index.is_index
    assert await client.resolve_digest(f"{host}/{repo}:multi") == MULTI
    assert await client.resolve_digest(f"{host}/{repo}:v1@{V1}") == V1
    tags = await client.list_tags(host, repo, deadline=deadline)
    assert {"v1", "v2", "v3", "v4", "v5", "multi"} <= set(tags)
    referrers = await client.referrers(host, repo, V1, deadline=deadline)
    assert len(referrers) == 2  # the signature bundle and the SLSA attestation
    config = json.loads(by_tag.raw)["config"]
    blob = await client.get_blob(host, repo, Descriptor.model_validate(config), deadline=deadline)
    assert len(blob) == config["size"]
    assert await client.referrers(host, repo, "sha256:" + "a" * 64, deadline=deadline) == ()
    with pytest.raises(NotFoundError, match=host):
        await client.get_manifest(host, repo, "sha256:" + "a" * 64, deadline=deadline)


async def test_https_is_the_default(registry: RegistryServer) -> None:
    async with RegistryClient(RegistrySettings(request_timeout_seconds=1)) as client:
        # The same registry, not listed as insecure: TLS to a plain-HTTP port fails.
        with pytest.raises(RegistryUnavailable, match=registry.host):
            await client.get_manifest(registry.host, DEMO_REPOSITORY, "v1",
                                      deadline=Deadline.after(2))


@pytest.fixture
async def auth_server() -> AsyncIterator[str]:
    async with serve_app(HostileRegistry().app()) as host:
        yield host


@pytest.mark.parametrize("mode", ["auth-bearer", "auth-basic"])
async def test_auth_challenges(auth_server: str, mode: str) -> None:
    good = Credential(username=USER, password=PASSWORD)
    bad = Credential(username=USER, password="wrong")
    async with RegistryClient(RegistrySettings(insecure_registries=(auth_server,))) as client:
        deadline = Deadline.after(5)
        manifest = await client.get_manifest(
            auth_server, f"{mode}/app", IMAGE_DIGEST, deadline=deadline, credential=good)
        assert manifest.digest == IMAGE_DIGEST
        # The token (or basic credential) is reused: a second call needs no challenge round.
        await client.get_manifest(
            auth_server, f"{mode}/app", IMAGE_DIGEST, deadline=deadline, credential=good)
        with pytest.raises(RegistryAuthError):
            await client.get_manifest(
                auth_server, f"{mode}/app", IMAGE_DIGEST, deadline=deadline, credential=bad)
        with pytest.raises(RegistryAuthError):
            await client.get_manifest(auth_server, f"{mode}/app", IMAGE_DIGEST, deadline=deadline)


async def test_bearer_realm_must_be_https_for_secure_registries() -> None:
    async with RegistryClient() as client:
        challenge = parse_challenge('Bearer realm="http://evil.example/token",service="x"')
        with pytest.raises(RegistryAuthError, match="not https") as caught:
            await client._answer("registry.example.com", challenge, "repository:a:pull",
                                 Credential(username="u", password="p"),
                                 deadline=Deadline.after(1))
    assert caught.value.registry == "registry.example.com"


def test_parse_challenge() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"')
    assert c is not None and c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                        "scope": "repository:library/nginx:pull"}
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None and basic.scheme == "basic"
    assert parse_challenge("") is None


def test_dockerconfigjson() -> None:
    auth = base64.b64encode(b"alice:pa:ss").decode()
    data = json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": auth},
        "registry.example.com:5000": {"username": "bob", "password": "pw"},
        "ghcr.io": {"identitytoken": "refresh"},
    }}).encode()
    creds = parse_dockerconfigjson(data)
    assert creds["docker.io"] == Credential(username="alice", password="pa:ss")
    assert creds["registry.example.com:5000"].username == "bob"
    assert creds["ghcr.io"].identity_token == "refresh"
    assert "pa:ss" not in repr(creds["docker.io"])
    legacy = parse_dockerconfigjson(json.dumps({"quay.io": {"auth": auth}}).encode())
    assert legacy["quay.io"].password == "pa:ss"
    for bad in (b"not json", b"[]", b'{"auths": []}', b'{"auths": {"x": {"auth": "%%%"}}}',
                b'{"auths": {"x": {"auth": "bm9jb2xvbg=="}}}', b" " * (300 * 1024)):
        with pytest.raises(CredentialsError):
            parse_dockerconfigjson(bad)
    assert normalise_registry_host("registry-1.docker.io") == "docker.io"
    assert normalise_registry_host("HTTPS://Reg.Example.com/v2/") == "reg.example.com"


async def test_static_secret_source() -> None:
    source = StaticSecretSource({("ns", "pull"): b"{}"})
    assert await source.dockerconfigjson("ns", "pull") == b"{}"
    assert await source.dockerconfigjson("ns", "other") is None


async def test_a_reference_without_tag_or_digest_resolves_latest(
    registry: RegistryServer, client: RegistryClient,
) -> None:
    digest = push_random_image(registry, "resolve/latest")
    registry.push_manifest("resolve/latest", "latest",
                           registry.get_manifest("resolve/latest", digest))
    assert await client.resolve_digest(f"{registry.host}/resolve/latest") == digest
    other = push_random_image(registry, "resolve/latest")
    assert await client.resolve_digest(f"{registry.host}/resolve/latest@{other}") == other


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _fetch(client: RegistryClient, host: str, mode: str) -> None:
    await client.get_manifest(host, f"{mode}/app", IMAGE_DIGEST, deadline=Deadline.after(5),
                              credential=Credential(username=USER, password=PASSWORD))


@pytest.fixture
async def hostile_auth() -> AsyncIterator[tuple[str, HostileRegistry]]:
    server = HostileRegistry()
    async with serve_app(server.app()) as host:
        yield host, server


@pytest.mark.parametrize("mode", ["auth-bearer", "auth-basic"])
async def test_the_answer_to_a_challenge_is_reused(
    hostile_auth: tuple[str, HostileRegistry], mode: str,
) -> None:
    host, server = hostile_auth
    path = f"/v2/{mode}/app/manifests/{IMAGE_DIGEST}"
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        await _fetch(client, host, mode)
        assert server.by_path[path] == 2  # the challenge, then the answer
        await _fetch(client, host, mode)
        await _fetch(client, host, mode)
        assert server.by_path[path] == 4  # one request each, no new challenge
    assert server.by_path.get("/token", 0) == (1 if mode == "auth-bearer" else 0)


@pytest.mark.parametrize(("ttl", "lifetime"), [
    (300, 290.0),  # refreshed 10 s before it expires
    (None, 50.0),  # no expires_in: Docker's 60 s
    (5, 1.0),  # never less than a second
])
async def test_tokens_live_as_long_as_the_server_says_less_ten_seconds(
    hostile_auth: tuple[str, HostileRegistry], ttl: int | None, lifetime: float,
) -> None:
    host, server = hostile_auth
    server.token_ttl = ttl
    clock = Clock()
    async with RegistryClient(RegistrySettings(insecure_registries=(host,)),
                              clock=clock) as client:
        await _fetch(client, host, "auth-bearer")
        clock.now += lifetime - 0.1
        await _fetch(client, host, "auth-bearer")
        assert server.by_path["/token"] == 1
        clock.now += 0.2
        await _fetch(client, host, "auth-bearer")
        assert server.by_path["/token"] == 2


async def test_a_registry_without_the_referrers_api_is_remembered_for_ten_minutes(
    hostile_auth: tuple[str, HostileRegistry],
) -> None:
    host, server = hostile_auth
    clock = Clock()
    api = f"/v2/plain/app/referrers/{IMAGE_DIGEST}"
    async with RegistryClient(RegistrySettings(insecure_registries=(host,)),
                              clock=clock) as client:
        for _ in range(2):
            assert await client.referrers(host, "plain/app", IMAGE_DIGEST,
                                          deadline=Deadline.after(5)) == ()
        assert server.by_path[api] == 1  # the 404 is remembered
        clock.now += 599
        await client.referrers(host, "plain/app", IMAGE_DIGEST, deadline=Deadline.after(5))
        assert server.by_path[api] == 1
        clock.now += 2
        await client.referrers(host, "plain/app", IMAGE_DIGEST, deadline=Deadline.after(5))
        assert server.by_path[api] == 2


async def test_resolve_takes_a_parsed_reference(
    registry: RegistryServer, cosign_registry: dict[str, str], client: RegistryClient,
) -> None:
    ref = parse_reference(f"{registry.host}/{DEMO_REPOSITORY}:v1")
    assert await client.resolve_digest(ref) == V1


@pytest.mark.parametrize("mode", ["auth-noservice", "auth-scope"])
async def test_the_token_request_carries_what_the_challenge_named(
    hostile_auth: tuple[str, HostileRegistry], mode: str,
) -> None:
    # No service in the challenge: none is sent. A scope in it: that one, not our guess.
    host, server = hostile_auth
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        await _fetch(client, host, mode)
    assert server.by_path["/token"] == 1


async def test_an_identity_token_is_exchanged_by_refresh_grant(
    hostile_auth: tuple[str, HostileRegistry],
) -> None:
    host, server = hostile_auth
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        assert "/token" not in server.by_path
        manifest = await client.get_manifest(
            host, "auth-bearer/app", IMAGE_DIGEST, deadline=Deadline.after(5),
            credential=Credential(identity_token=REFRESH))
        assert manifest.digest == IMAGE_DIGEST
        assert server.by_path["/token"] == 1
        with pytest.raises(RegistryAuthError, match="token endpoint answered 400"):
            await client.get_manifest(
                host, "auth-bearer/app", IMAGE_DIGEST, deadline=Deadline.after(5),
                credential=Credential(identity_token="stale"))


async def test_a_challenge_without_a_realm_is_refused(
    hostile_auth: tuple[str, HostileRegistry],
) -> None:
    host, _ = hostile_auth
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(RegistryAuthError) as caught:
            await _fetch(client, host, "auth-norealm")
    assert caught.value.registry == host
    assert caught.value.detail == "refusing token realm '' (not https)"


async def test_an_https_realm_is_followed_for_a_secure_registry() -> None:
    challenge = parse_challenge('Bearer realm="https://127.0.0.1:9/token",service="x"')
    async with RegistryClient(RegistrySettings(request_timeout_seconds=1)) as client:
        # Accepted, then unreachable: the realm check let it through.
        with pytest.raises(RegistryUnavailable) as caught:
            await client._answer("registry.example.com", challenge, "repository:a:pull",
                                 Credential(username="u", password="p"),
                                 deadline=Deadline.after(2))
    assert caught.value.registry == "registry.example.com"


@pytest.mark.parametrize(("mode", "detail"), [
    ("auth-notoken", "token endpoint gave no token"),
    ("auth-list", "token endpoint gave no token"),  # JSON, but not an object
])
async def test_a_token_response_without_a_token_is_refused(
    hostile_auth: tuple[str, HostileRegistry], mode: str, detail: str,
) -> None:
    host, _ = hostile_auth
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(RegistryAuthError) as caught:
            await _fetch(client, host, mode)
    assert caught.value.registry == host and caught.value.detail == detail


async def test_a_refused_token_request_names_the_registry(
    hostile_auth: tuple[str, HostileRegistry],
) -> None:
    host, _ = hostile_auth
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(RegistryAuthError) as caught:
            await client.get_manifest(host, "auth-bearer/app", IMAGE_DIGEST,
                                      deadline=Deadline.after(5),
                                      credential=Credential(username=USER, password="wrong"))
    assert caught.value.registry == host
    assert caught.value.detail == "token endpoint answered 401"


async def test_tags_and_digests_are_read_with_the_credential(
    hostile_auth: tuple[str, HostileRegistry],
) -> None:
    # Behind basic auth: with the credential the registry answers (404 for the tag list it does
    # not serve, the manifest for the digest); without, it refuses.
    host, _ = hostile_auth
    good = Credential(username=USER, password=PASSWORD)
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(NotFoundError):
            await client.list_tags(host, "auth-basic/app", deadline=Deadline.after(5),
                                   credential=good)
        with pytest.raises(RegistryAuthError):
            await client.list_tags(host, "auth-basic/app", deadline=Deadline.after(5))
        ref = f"{host}/auth-basic/app@{IMAGE_DIGEST}"
        assert await client.resolve_digest(ref, credential=good) == IMAGE_DIGEST
        with pytest.raises(RegistryAuthError):
            await client.resolve_digest(ref)


async def test_the_blob_limit_is_inclusive_and_named(registry: RegistryServer) -> None:
    data = b"x" * 2048
    digest = registry.push_blob("limits/app", data)
    descriptor = Descriptor.model_validate(
        {"mediaType": "application/octet-stream", "digest": digest, "size": len(data)})
    host = registry.host
    async with RegistryClient(RegistrySettings(insecure_registries=(host,),
                                               max_blob_bytes=2048)) as client:
        assert await client.get_blob(host, "limits/app", descriptor,
                                     deadline=Deadline.after(5)) == data
    async with RegistryClient(RegistrySettings(insecure_registries=(host,),
                                               max_blob_bytes=2047)) as client:
        with pytest.raises(RegistryLimitExceeded) as caught:
            await client.get_blob(host, "limits/app", descriptor, deadline=Deadline.after(5))
    assert caught.value.registry == host
    assert caught.value.detail == f"blob {digest} is 2048 bytes (limit 2047)"
