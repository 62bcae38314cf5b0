"""The registry client against the real docker-registry, and its auth flows."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from controller.images import parse_reference
from controller.registry import (
    Credential,
    CredentialsError,
    Deadline,
    DigestMismatchError,
    NotFoundError,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    RegistryLimitExceeded,
    RegistryProtocolError,
    RegistrySettings,
    RegistryUnavailable,
    parse_dockerconfigjson,
)
from controller.registry.auth import StaticSecretSource, normalise_registry_host, parse_challenge
from controller.registry.client import _TOKEN_CACHE_LIMIT, _media_type, _Response
from controller.registry.models import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
)
from tests.fixtures.registry import DEMO_REPOSITORY, RegistryServer, serve_app
from tests.registry.hostile import (
    IMAGE_DIGEST,
    PASSWORD,
    REFRESH,
    USER,
    Answer,
    HostileRegistry,
    ScriptedRegistry,
)
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


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[str, ScriptedRegistry]]:
    server = ScriptedRegistry()
    async with serve_app(server.app()) as host:
        yield host, server


def _image_doc(**fields: object) -> dict[str, object]:
    return {"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                           "digest": "sha256:" + "0" * 64, "size": 2},
            "layers": [], **fields}


@pytest.mark.parametrize(("doc", "content_type", "media_type"), [
    # The document's own mediaType wins over the header.
    (_image_doc(mediaType=OCI_INDEX), "application/octet-stream", OCI_INDEX),
    (_image_doc(mediaType=OCI_MANIFEST), DOCKER_LIST, OCI_MANIFEST),
    # Without one (or with one that is not a string), the header's type, parameters dropped.
    (_image_doc(), f"{DOCKER_MANIFEST}; charset=utf-8; profile=x", DOCKER_MANIFEST),
    (_image_doc(mediaType=7), f" {OCI_INDEX} ;q=1", OCI_INDEX),
])
async def test_a_manifest_is_typed_by_its_media_type_else_its_content_type(
    scripted: tuple[str, ScriptedRegistry], doc: dict[str, object], content_type: str,
    media_type: str,
) -> None:
    host, server = scripted
    digest = server.manifest("typed/app", "latest", doc, media_type=content_type)
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        manifest = await client.get_manifest(host, "typed/app", "latest",
                                             deadline=Deadline.after(5))
    assert (manifest.digest, manifest.media_type) == (digest, media_type)
    assert manifest.is_index == (media_type in (OCI_INDEX, DOCKER_LIST))


@pytest.mark.parametrize(("body", "content_type"), [
    (b"[]", OCI_MANIFEST),  # JSON, but not an object
    (b"{not json", OCI_MANIFEST),
    (b'{"schemaVersion": 1}', "application/vnd.docker.distribution.manifest.v1+prettyjws"),
    (b'{"schemaVersion": 2, "mediaType": "text/html"}', OCI_MANIFEST),
])
async def test_a_manifest_that_is_not_a_supported_document_is_refused(
    scripted: tuple[str, ScriptedRegistry], body: bytes, content_type: str,
) -> None:
    host, server = scripted
    server.manifest("odd/app", "latest", body, media_type=content_type)
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(RegistryProtocolError) as caught:
            await client.get_manifest(host, "odd/app", "latest", deadline=Deadline.after(5))
    assert caught.value.registry == host


def test_a_manifest_without_any_media_type_is_refused() -> None:
    # No mediaType and no Content-Type header at all: refused, not a crash.
    response = _Response(200, CIMultiDict(), b'{"schemaVersion": 2}')
    with pytest.raises(RegistryProtocolError) as caught:
        _media_type("registry.example.com", response)
    assert caught.value.registry == "registry.example.com"


async def test_a_manifest_that_does_not_hash_to_its_digest_is_refused(
    scripted: tuple[str, ScriptedRegistry],
) -> None:
    host, server = scripted
    server.manifest("swapped/app", IMAGE_DIGEST, _image_doc(mediaType=OCI_MANIFEST))
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(DigestMismatchError) as caught:
            await client.get_manifest(host, "swapped/app", IMAGE_DIGEST,
                                      deadline=Deadline.after(5))
    assert caught.value.registry == host


@pytest.mark.parametrize("served", [
    b"0123456789",  # shorter than the descriptor says
    b"0123456789A",  # as long, other bytes
])
async def test_a_blob_must_have_the_descriptors_size_and_digest(
    scripted: tuple[str, ScriptedRegistry], served: bytes,
) -> None:
    host, server = scripted
    descriptor = Descriptor.model_validate(
        server.blob("blobs/app", b"0123456789a", served=served))
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(DigestMismatchError) as caught:
            await client.get_blob(host, "blobs/app", descriptor, deadline=Deadline.after(5))
    assert caught.value.registry == host


@pytest.mark.parametrize(("status", "error"), [
    (500, RegistryUnavailable),  # the first of the 5xx
    (599, RegistryUnavailable),
    (429, RegistryUnavailable),
    (400, RegistryProtocolError),
    (499, RegistryProtocolError),
])
async def test_server_errors_and_throttling_are_unavailable_other_answers_protocol_errors(
    scripted: tuple[str, ScriptedRegistry], status: int, error: type[RegistryError],
) -> None:
    host, server = scripted
    server.answers["/v2/status/app/manifests/latest"] = Answer(status=status)
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(RegistryError) as caught:
            await client.get_manifest(host, "status/app", "latest", deadline=Deadline.after(5))
    assert type(caught.value) is error
    assert caught.value.detail == f"GET status/app/manifests/latest: HTTP {status}"


async def test_a_long_error_body_is_cut_to_an_excerpt_not_refused(
    scripted: tuple[str, ScriptedRegistry],
) -> None:
    # 10 KiB, declared: an error body is read only for its excerpt, so its size is no limit
    # breach, and the status decides the error.
    host, server = scripted
    server.answers["/v2/long/app/manifests/latest"] = Answer(status=404, body=b"e" * 10240)
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.get_manifest(host, "long/app", "latest", deadline=Deadline.after(5))
    assert caught.value.detail == f"GET long/app/manifests/latest: HTTP 404 ({'e' * 200})"


async def test_an_error_body_that_is_not_utf8_is_quoted_not_raised(
    scripted: tuple[str, ScriptedRegistry],
) -> None:
    host, server = scripted
    server.answers["/v2/latin/app/manifests/latest"] = Answer(status=404, body=b"\xff\xfegone")
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.get_manifest(host, "latin/app", "latest", deadline=Deadline.after(5))
    assert caught.value.detail == "GET latin/app/manifests/latest: HTTP 404 (\ufffd\ufffdgone)"


@pytest.mark.parametrize("mode", ["oversize", "oversize-declared"])
async def test_an_oversized_answer_names_the_registry(
    hostile_auth: tuple[str, HostileRegistry], mode: str,
) -> None:
    host, _ = hostile_auth
    settings = RegistrySettings(insecure_registries=(host,), max_manifest_bytes=1024 * 1024)
    async with RegistryClient(settings) as client:
        with pytest.raises(RegistryLimitExceeded) as caught:
            await client.get_manifest(host, f"{mode}/app", "latest", deadline=Deadline.after(5))
    assert caught.value.registry == host


def _referrer(n: int, artifact_type: str) -> dict[str, object]:
    return {"mediaType": OCI_MANIFEST, "size": 100, "artifactType": artifact_type,
            "digest": "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()}


BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SBOM = "application/spdx+json"


async def test_referrers_are_asked_for_by_artifact_type_and_filtered_again(
    scripted: tuple[str, ScriptedRegistry],
) -> None:
    host, server = scripted
    everything = [_referrer(0, BUNDLE), _referrer(1, SBOM), _referrer(2, SBOM)]

    def api(request: web.Request) -> Answer:
        # This registry filters by the query parameter; so may a registry not.
        wanted = request.query.get("artifactType")
        manifests = [d for d in everything if wanted in (None, d["artifactType"])]
        return Answer(body=json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                       "manifests": manifests}).encode())

    server.answers[f"/v2/filter/app/referrers/{IMAGE_DIGEST}"] = api
    server.answers[f"/v2/ignore/app/referrers/{IMAGE_DIGEST}"] = Answer(body=json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": everything[:2]}).encode())
    settings = RegistrySettings(insecure_registries=(host,), max_signatures=2)
    async with RegistryClient(settings) as client:
        # Filtered by the registry, the answer stays under the count limit.
        found = await client.referrers(host, "filter/app", IMAGE_DIGEST,
                                       deadline=Deadline.after(5), artifact_type=BUNDLE)
        assert [d.artifact_type for d in found] == [BUNDLE]
        # Not filtered by the registry: filtered here.
        found = await client.referrers(host, "ignore/app", IMAGE_DIGEST,
                                       deadline=Deadline.after(5), artifact_type=SBOM)
        assert [d.digest for d in found] == [everything[1]["digest"]]
        with pytest.raises(RegistryLimitExceeded):
            await client.referrers(host, "filter/app", IMAGE_DIGEST, deadline=Deadline.after(5))


@pytest.mark.parametrize(("count", "allowed"), [(3, True), (4, False)])
async def test_the_referrers_count_limit_is_inclusive(
    scripted: tuple[str, ScriptedRegistry], count: int, allowed: bool,
) -> None:
    host, server = scripted
    server.answers[f"/v2/count/app/referrers/{IMAGE_DIGEST}"] = Answer(body=json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX,
         "manifests": [_referrer(n, BUNDLE) for n in range(count)]}).encode())
    settings = RegistrySettings(insecure_registries=(host,), max_signatures=3)
    async with RegistryClient(settings) as client:
        if allowed:
            found = await client.referrers(host, "count/app", IMAGE_DIGEST,
                                           deadline=Deadline.after(5))
            assert len(found) == count
        else:
            with pytest.raises(RegistryLimitExceeded) as caught:
                await client.referrers(host, "count/app", IMAGE_DIGEST,
                                       deadline=Deadline.after(5))
            assert caught.value.registry == host


@pytest.mark.parametrize("where", ["api", "tag"])
async def test_a_malformed_referrers_index_is_a_protocol_error(
    scripted: tuple[str, ScriptedRegistry], where: str,
) -> None:
    host, server = scripted
    malformed = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": "none"}
    if where == "api":
        server.answers[f"/v2/bad/app/referrers/{IMAGE_DIGEST}"] = Answer(
            body=json.dumps(malformed).encode())
    else:  # no API (404): the fallback tag holds the index
        server.manifest("bad/app", IMAGE_DIGEST.replace(":", "-"), malformed,
                        media_type=OCI_INDEX)
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(RegistryProtocolError) as caught:
            await client.referrers(host, "bad/app", IMAGE_DIGEST, deadline=Deadline.after(5))
    assert caught.value.registry == host


async def test_the_referrers_api_is_asked_whatever_the_clock_reads_and_again_after_ten_minutes(
    hostile_auth: tuple[str, HostileRegistry],
) -> None:
    host, server = hostile_auth
    clock = Clock()
    clock.now = 0.0  # a monotonic clock may start anywhere
    api = f"/v2/plain/app/referrers/{IMAGE_DIGEST}"
    async with RegistryClient(RegistrySettings(insecure_registries=(host,)),
                              clock=clock) as client:
        await client.referrers(host, "plain/app", IMAGE_DIGEST, deadline=Deadline.after(5))
        assert server.by_path[api] == 1
        clock.now += 600  # exactly the memory's end: asked again
        await client.referrers(host, "plain/app", IMAGE_DIGEST, deadline=Deadline.after(5))
        assert server.by_path[api] == 2


def test_the_token_cache_never_holds_more_than_its_limit() -> None:
    client = RegistryClient()
    for n in range(_TOKEN_CACHE_LIMIT + 1):
        client._remember_token(("registry.example.com", f"repository:r{n}:pull", ""),
                               f"Bearer {n}", 300.0)
        assert len(client._tokens) <= _TOKEN_CACHE_LIMIT
    # The newest token survives the eviction.
    newest = ("registry.example.com", f"repository:r{_TOKEN_CACHE_LIMIT}:pull", "")
    assert client._cached_token(newest) == f"Bearer {_TOKEN_CACHE_LIMIT}"


async def test_a_closed_client_opens_a_new_session_when_used_again(
    hostile_auth: tuple[str, HostileRegistry],
) -> None:
    host, _ = hostile_auth
    client = RegistryClient(RegistrySettings(insecure_registries=(host,)))
    for _ in range(2):
        manifest = await client.get_manifest(host, "plain/app", IMAGE_DIGEST,
                                             deadline=Deadline.after(5))
        assert manifest.digest == IMAGE_DIGEST
        await client.close()
    await client.close()  # closing twice is harmless


async def test_an_identity_token_for_a_challenge_without_service_sends_an_empty_service(
    hostile_auth: tuple[str, HostileRegistry],
) -> None:
    host, server = hostile_auth
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        manifest = await client.get_manifest(
            host, "auth-noservice/app", IMAGE_DIGEST, deadline=Deadline.after(5),
            credential=Credential(identity_token=REFRESH))
    assert manifest.digest == IMAGE_DIGEST
    assert server.by_path["/token"] == 1


async def test_a_401_without_a_challenge_is_an_auth_error(
    scripted: tuple[str, ScriptedRegistry],
) -> None:
    host, server = scripted
    server.answers["/v2/bare/app/manifests/latest"] = Answer(status=401)
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(RegistryAuthError) as caught:
            await client.get_manifest(host, "bare/app", "latest", deadline=Deadline.after(5),
                                      credential=Credential(username=USER, password=PASSWORD))
    assert caught.value.detail == "GET bare/app/manifests/latest: HTTP 401"


def test_registries_are_reached_over_https_unless_listed_and_docker_hub_at_its_api_host() -> None:
    client = RegistryClient(RegistrySettings(insecure_registries=("127.0.0.1:5000",)))
    assert client._base("registry.example.com") == "https://registry.example.com/v2/"
    assert client._base("127.0.0.1:5000") == "http://127.0.0.1:5000/v2/"
    assert client._base("docker.io") == "https://registry-1.docker.io/v2/"


async def test_the_session_pools_connections_as_configured_and_names_itself() -> None:
    async with RegistryClient(RegistrySettings(max_connections=5)) as client:
        session = client._session_()
        connector = session.connector
        assert isinstance(connector, aiohttp.TCPConnector)
        assert (connector.limit, connector.limit_per_host) == (5, 16)
        # Deadlines are enforced per request; the session's own total timeout is off.
        assert session.timeout.total is None
        assert session.headers["User-Agent"] == "provenance-controller"


async def test_only_a_401_is_answered_with_credentials(
    scripted: tuple[str, ScriptedRegistry],
) -> None:
    # A challenge on another status is not a reason to send the credential and ask again.
    host, server = scripted
    server.answers["/v2/odd/app/manifests/latest"] = Answer(
        status=404, headers={"WWW-Authenticate": 'Basic realm="x"'})
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(NotFoundError):
            await client.get_manifest(host, "odd/app", "latest", deadline=Deadline.after(5),
                                      credential=Credential(username=USER, password=PASSWORD))
    assert server.seen == ["/v2/odd/app/manifests/latest"]


async def test_a_spent_deadline_sends_no_request(scripted: tuple[str, ScriptedRegistry]) -> None:
    host, server = scripted
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(RegistryUnavailable) as caught:
            await client.get_manifest(host, "late/app", "latest",
                                      deadline=Deadline(time.monotonic()))
    assert caught.value.registry == host
    assert server.seen == []


@pytest.mark.parametrize(("url", "operation"), [
    ("https://r.example/v2/org/app/manifests/latest", "manifests"),
    ("https://r.example/v2/org/app/manifests/sha256:abc?ns=docker.io", "manifests"),
    ("https://r.example/v2/org/app/blobs/sha256:abc", "blobs"),
    ("https://r.example/v2/org/app/blobs/", "blobs"),
    ("https://r.example/v2/org/app/referrers/sha256:abc?artifactType=x/y", "referrers"),
    ("https://r.example/v2/org/app/tags/list", "tags"),
    ("https://r.example/v2/org/app/tags/list?n=100", "tags"),
    ("https://auth.example/token?service=r&scope=repository:org/app:pull", "token"),
    # A repository named like an operation is still its operation's path part, not a label.
    ("https://r.example/v2/tags/app/manifests/latest", "manifests"),
    ("https://r.example/v2/token/blobs/sha256:abc", "blobs"),
    ("https://auth.example/token?scope=repository:blobs/app:pull", "token"),
    # The query is not the path, however many `?` it holds.
    ("https://auth.example/token?scope=repository:org/blobs/app:pull", "token"),
    ("https://auth.example/token?scope=repository:org/blobs/app:pull?x=1", "token"),
])
def test_each_request_is_labelled_by_its_operation(url: str, operation: str) -> None:
    from controller.registry.client import _operation

    assert _operation(url) == operation


async def test_every_request_is_measured_and_a_failed_one_counted_by_its_error(
    scripted: tuple[str, ScriptedRegistry], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from controller import metrics

    host, server = scripted
    seen: list[tuple[str, str | None, float]] = []

    def record(operation: str, *, seconds: float, error: str | None = None) -> None:
        seen.append((operation, error, seconds))

    monkeypatch.setattr(metrics, "record_registry_request", record)
    doc = json.dumps(_image_doc(mediaType=OCI_MANIFEST)).encode()
    server.answers["/v2/ok/app/manifests/latest"] = Answer(body=doc)
    server.answers["/v2/big/app/manifests/latest"] = Answer(body=b" " * 4096 + doc)
    started = time.perf_counter()
    async with RegistryClient(RegistrySettings(insecure_registries=(host,),
                                               max_manifest_bytes=4096)) as client:
        await client.get_manifest(host, "ok/app", "latest", deadline=Deadline.after(5))
        # An error answer is a response like any other; one cut off is the request's error.
        with pytest.raises(RegistryLimitExceeded):
            await client.get_manifest(host, "big/app", "latest", deadline=Deadline.after(5))
    elapsed = time.perf_counter() - started
    assert [(op, error) for op, error, _s in seen] == [
        ("manifests", None), ("manifests", "RegistryLimitExceeded")]
    assert all(0 < s <= elapsed for _op, _e, s in seen)


@pytest.mark.parametrize(("hops", "allowed"), [(1, True), (2, False)])
async def test_the_redirect_limit_is_exact(
    scripted: tuple[str, ScriptedRegistry], hops: int, allowed: bool,
) -> None:
    host, server = scripted
    doc = json.dumps(_image_doc(mediaType=OCI_MANIFEST)).encode()
    server.answers["/v2/hop/app/manifests/latest"] = Answer(
        status=307, headers={"Location": f"http://{host}/v2/hop/app/manifests/hop1"})
    server.answers["/v2/hop/app/manifests/hop1"] = Answer(body=doc) if hops == 1 else Answer(
        status=307, headers={"Location": f"http://{host}/v2/hop/app/manifests/hop2"})
    server.answers["/v2/hop/app/manifests/hop2"] = Answer(body=doc)
    async with RegistryClient(RegistrySettings(insecure_registries=(host,),
                                               max_redirects=1)) as client:
        if allowed:
            await client.get_manifest(host, "hop/app", "latest", deadline=Deadline.after(5))
            return
        with pytest.raises(RegistryLimitExceeded, match="more than 1 redirects"):
            await client.get_manifest(host, "hop/app", "latest", deadline=Deadline.after(5))


async def test_a_redirect_answer_that_is_not_followed_is_refused_as_one(
    scripted: tuple[str, ScriptedRegistry],
) -> None:
    # 300 Multiple Choices is a redirection that aiohttp does not follow.
    host, server = scripted
    server.answers["/v2/many/app/manifests/latest"] = Answer(status=300)
    async with RegistryClient(RegistrySettings(insecure_registries=(host,))) as client:
        with pytest.raises(RegistryLimitExceeded, match="redirects are not allowed"):
            await client.get_manifest(host, "many/app", "latest", deadline=Deadline.after(5))


async def test_dns_answers_are_cached_for_a_minute() -> None:
    async with RegistryClient(RegistrySettings()) as client:
        connector = client._session_().connector
        assert isinstance(connector, aiohttp.TCPConnector) and connector.use_dns_cache
        # A registry that moves is found again within a minute; aiohttp has no public reader.
        assert connector._cached_hosts._ttl == 60


async def test_an_error_body_is_read_no_further_than_its_excerpt_needs(
    scripted: tuple[str, ScriptedRegistry], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from controller.registry import client as module

    caps: list[tuple[int, bool]] = []
    read = module._read_limited

    async def recording(registry: str, resp: aiohttp.ClientResponse, limit: int, *,
                        truncate: bool) -> bytes:
        caps.append((limit, truncate))
        return await read(registry, resp, limit, truncate=truncate)

    monkeypatch.setattr(module, "_read_limited", recording)
    host, server = scripted
    doc = json.dumps(_image_doc(mediaType=OCI_MANIFEST)).encode()
    server.answers["/v2/ok/app/manifests/latest"] = Answer(body=doc)
    server.answers["/v2/gone/app/manifests/latest"] = Answer(status=404, body=b"x" * 100_000)
    settings = RegistrySettings(insecure_registries=(host,), max_manifest_bytes=1024 * 1024)
    async with RegistryClient(settings) as client:
        await client.get_manifest(host, "ok/app", "latest", deadline=Deadline.after(5))
        with pytest.raises(NotFoundError):
            await client.get_manifest(host, "gone/app", "latest", deadline=Deadline.after(5))
    assert caps == [(1024 * 1024, False), (module._ERROR_BODY_LIMIT, True)]
