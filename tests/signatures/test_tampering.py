"""Tampering and bypass attempts against the real registry: every one must be denied."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from controller.policy.violations import Reason
from tests.fixtures.registry import RegistryServer, serve_app, sha256
from tests.signatures.helpers import OTHER_PEM, TRUSTED_PEM, VerifierFactory, run
from tests.signatures.test_cosign_fixtures import DIGESTS

V1_HEX = DIGESTS["v1"].split(":")[1]
V3_HEX = DIGESTS["v3"].split(":")[1]
V5_HEX = DIGESTS["v5"].split(":")[1]
V3_SIG_PAYLOAD = "sha256:1d32087fd1a9f56e8c3000b677ff6592f3824890118ec59802e2e254c3e79d5d"
V1_SIGN_BUNDLE = "sha256:fa11ff9825a3301a47d1e996934de4202b0bc757e840de0d91e9bd7e80a92c72"
V1_SIGN_ARTIFACT = "sha256:c419ae270da4241dfd8e41b3c7dbcf09e1462bac932799c284b79eb6c75c7eed"


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def fresh_repo(registry: RegistryServer, name: str) -> str:
    repo = f"tamper/{name}"
    registry.load_layout(repo)
    return repo


def reasons(outcome: Any) -> list[Reason]:
    return [v.reason for v in outcome.violations]


def rewrite_sig_layer(registry: RegistryServer, repo: str, change: Callable[
        [dict[str, Any], bytes], tuple[dict[str, Any], bytes]]) -> None:
    """Replace v3's `.sig` manifest with one whose layer (descriptor, payload) was changed."""
    tag = f"sha256-{V3_HEX}.sig"
    manifest = json.loads(registry.get_manifest(repo, tag))
    layer = manifest["layers"][0]
    payload = registry.get_blob(repo, layer["digest"])
    layer, payload = change(layer, payload)
    layer["digest"], layer["size"] = registry.push_blob(repo, payload), len(payload)
    manifest["layers"] = [layer]
    registry.push_manifest(repo, tag, json.dumps(manifest).encode())


def rewrite_bundle(registry: RegistryServer, repo: str,
                   change: Callable[[dict[str, Any]], None]) -> None:
    """Replace v1's signature bundle (blob, artifact manifest and referrers tag) with a changed
    copy, keeping its attestation out so only the signature is judged."""
    bundle = json.loads(registry.get_blob(repo, V1_SIGN_BUNDLE))
    change(bundle)
    blob = json.dumps(bundle).encode()
    artifact = json.loads(registry.get_manifest(repo, V1_SIGN_ARTIFACT))
    artifact["layers"][0].update(digest=registry.push_blob(repo, blob), size=len(blob))
    raw = json.dumps(artifact).encode()
    digest = registry.push_manifest(repo, sha256(raw), raw)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": artifact["mediaType"], "digest": digest,
                            "size": len(raw), "artifactType": artifact["artifactType"]}]}
    registry.push_manifest(repo, f"sha256-{V1_HEX}", json.dumps(index).encode())


# --- replay --------------------------------------------------------------------------------------
async def test_legacy_signature_replayed_onto_another_digest(
    registry: RegistryServer, verifier_factory: VerifierFactory,
) -> None:
    repo = fresh_repo(registry, "replay-sig")
    sig = registry.get_manifest(repo, f"sha256-{V3_HEX}.sig")
    registry.push_manifest(repo, f"sha256-{V5_HEX}.sig", sig)
    outcome = await run(verifier_factory(registry.host), f"{registry.host}/{repo}@{DIGESTS['v5']}")
    assert reasons(outcome) == [Reason.SIGNATURE_WRONG_DIGEST]
    assert DIGESTS["v3"] in outcome.violations[0].message


async def test_bundle_replayed_onto_another_digest(
    registry: RegistryServer, verifier_factory: VerifierFactory,
) -> None:
    repo = fresh_repo(registry, "replay-bundle")
    referrers = registry.get_manifest(repo, f"sha256-{V1_HEX}")
    registry.push_manifest(repo, f"sha256-{V5_HEX}", referrers)
    outcome = await run(verifier_factory(registry.host), f"{registry.host}/{repo}@{DIGESTS['v5']}")
    assert reasons(outcome) == [Reason.SIGNATURE_WRONG_DIGEST]


async def test_attestation_replayed_onto_another_digest(
    registry: RegistryServer, verifier_factory: VerifierFactory,
) -> None:
    repo = fresh_repo(registry, "replay-att")
    # v2 is signed but has no attestation; give it v3's.
    att = registry.get_manifest(repo, f"sha256-{V3_HEX}.att")
    v2_hex = DIGESTS["v2"].split(":")[1]
    registry.push_manifest(repo, f"sha256-{v2_hex}.att", att)
    verifier = verifier_factory(registry.host, default_require="attestation")
    outcome = await run(verifier, f"{registry.host}/{repo}@{DIGESTS['v2']}")
    assert reasons(outcome) == [Reason.ATTESTATION_INVALID]
    assert "another digest" in outcome.violations[0].message


async def test_tag_plus_digest_is_judged_by_the_unsigned_digest(
    registry: RegistryServer, cosign_registry: dict[str, str], verifier_factory: VerifierFactory,
) -> None:
    outcome = await run(verifier_factory(registry.host),
                        f"{registry.host}/demo/app:v1@{DIGESTS['v5']}")
    assert reasons(outcome) == [Reason.SIGNATURE_MISSING]


# --- flipped bytes ------------------------------------------------------------------------------
async def test_flipped_byte_in_legacy_signature(
    registry: RegistryServer, verifier_factory: VerifierFactory,
) -> None:
    repo = fresh_repo(registry, "flip-legacy-sig")

    def change(layer: dict[str, Any], payload: bytes) -> tuple[dict[str, Any], bytes]:
        key = "dev.cosignproject.cosign/signature"
        sig = base64.b64decode(layer["annotations"][key])
        layer["annotations"][key] = base64.b64encode(flip(sig, 40)).decode()
        return layer, payload

    rewrite_sig_layer(registry, repo, change)
    outcome = await run(verifier_factory(registry.host), f"{registry.host}/{repo}@{DIGESTS['v3']}")
    assert reasons(outcome) == [Reason.SIGNATURE_UNTRUSTED]


async def test_flipped_byte_in_legacy_payload(
    registry: RegistryServer, verifier_factory: VerifierFactory,
) -> None:
    repo = fresh_repo(registry, "flip-legacy-payload")
    rewrite_sig_layer(registry, repo, lambda layer, payload: (layer, flip(payload, 60)))
    outcome = await run(verifier_factory(registry.host), f"{registry.host}/{repo}@{DIGESTS['v3']}")
    assert reasons(outcome) == [Reason.SIGNATURE_UNTRUSTED]


async def test_flipped_byte_in_bundle_signature(
    registry: RegistryServer, verifier_factory: VerifierFactory,
) -> None:
    repo = fresh_repo(registry, "flip-bundle-sig")

    def change(bundle: dict[str, Any]) -> None:
        sig = base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"])
        bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(flip(sig, 30)).decode()

    rewrite_bundle(registry, repo, change)
    outcome = await run(verifier_factory(registry.host), f"{registry.host}/{repo}@{DIGESTS['v1']}")
    assert reasons(outcome) == [Reason.SIGNATURE_INVALID]


async def test_flipped_byte_in_bundle_payload(
    registry: RegistryServer, verifier_factory: VerifierFactory,
) -> None:
    repo = fresh_repo(registry, "flip-bundle-payload")

    def change(bundle: dict[str, Any]) -> None:
        payload = base64.b64decode(bundle["dsseEnvelope"]["payload"])
        # Byte 150 lies in the predicateType; the statement still parses as JSON.
        bundle["dsseEnvelope"]["payload"] = base64.b64encode(flip(payload, 150)).decode()

    rewrite_bundle(registry, repo, change)
    outcome = await run(verifier_factory(registry.host), f"{registry.host}/{repo}@{DIGESTS['v1']}")
    assert reasons(outcome) == [Reason.SIGNATURE_INVALID]


async def test_payload_type_swap_breaks_pae(
    registry: RegistryServer, verifier_factory: VerifierFactory,
) -> None:
    repo = fresh_repo(registry, "swap-payload-type")

    def change(bundle: dict[str, Any]) -> None:
        bundle["dsseEnvelope"]["payloadType"] = "application/vnd.in-toto+json "

    rewrite_bundle(registry, repo, change)
    outcome = await run(verifier_factory(registry.host), f"{registry.host}/{repo}@{DIGESTS['v1']}")
    assert reasons(outcome) == [Reason.SIGNATURE_INVALID]


# --- bytes that do not match their descriptor (a tampering proxy in front of the registry) ------
@pytest.fixture
async def tampering_proxy(registry: RegistryServer) -> AsyncIterator[tuple[str, dict[str, int]]]:
    """A loopback proxy to the registry that flips one byte of any response whose path ends with
    a key of the returned dict (the value is the byte offset)."""
    targets: dict[str, int] = {}
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.StreamResponse:
        async with session.get(f"{registry.url}{request.rel_url}",
                               headers={"Accept": request.headers.get("Accept", "*/*")}) as up:
            body = await up.read()
            for suffix, offset in targets.items():
                if request.path.endswith(suffix) and up.status == 200:
                    body = flip(body, offset)
            headers = {k: v for k, v in up.headers.items()
                       if k in ("Content-Type", "Docker-Content-Digest")}
            return web.Response(status=up.status, body=body, headers=headers)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", forward)
    async with serve_app(app) as host:
        yield host, targets
    await session.close()


@pytest.mark.parametrize(("blob", "tag"), [(V3_SIG_PAYLOAD, "v3"), (V1_SIGN_BUNDLE, "v1")])
async def test_blob_not_matching_its_descriptor(
    cosign_registry: dict[str, str], tampering_proxy: tuple[str, dict[str, int]],
    verifier_factory: VerifierFactory, blob: str, tag: str,
) -> None:
    host, targets = tampering_proxy
    targets[f"/blobs/{blob}"] = 20
    outcome = await run(verifier_factory(host), f"{host}/demo/app@{DIGESTS[tag]}")
    assert reasons(outcome) == [Reason.SIGNATURE_INVALID]
    assert "hashes to" in outcome.violations[0].message


async def test_image_manifest_not_matching_its_digest(
    cosign_registry: dict[str, str], tampering_proxy: tuple[str, dict[str, int]],
    verifier_factory: VerifierFactory,
) -> None:
    host, targets = tampering_proxy
    targets[f"/manifests/{DIGESTS['v1']}"] = 5
    outcome = await run(verifier_factory(host), f"{host}/demo/app@{DIGESTS['v1']}")
    assert reasons(outcome) == [Reason.REGISTRY_ERROR]
    assert host in outcome.violations[0].message


async def test_untampered_proxy_passes(
    cosign_registry: dict[str, str], tampering_proxy: tuple[str, dict[str, int]],
    verifier_factory: VerifierFactory,
) -> None:
    host, _ = tampering_proxy
    outcome = await run(verifier_factory(host), f"{host}/demo/app@{DIGESTS['v1']}",
                        f"{host}/demo/app@{DIGESTS['v3']}")
    assert outcome.violations == ()


# --- keys ---------------------------------------------------------------------------------------
def _pem(private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> str:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.parametrize("pem", [
    _pem(ed25519.Ed25519PrivateKey.generate()),
    _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
])
async def test_key_of_the_wrong_type_verifies_nothing(
    registry: RegistryServer, cosign_registry: dict[str, str], verifier_factory: VerifierFactory,
    pem: str,
) -> None:
    verifier = verifier_factory(registry.host, keys=[{"name": "release", "pem": pem}])
    for tag in ("v1", "v3"):
        outcome = await run(verifier, f"{registry.host}/demo/app@{DIGESTS[tag]}")
        assert reasons(outcome) in (
            [Reason.SIGNATURE_UNTRUSTED], [Reason.SIGNATURE_INVALID]), tag
        assert not outcome.evidence[0].verified


async def test_threshold_and_key_subsets(
    registry: RegistryServer, cosign_registry: dict[str, str], verifier_factory: VerifierFactory,
) -> None:
    keys = [{"name": "release", "pem": TRUSTED_PEM}, {"name": "other", "pem": OTHER_PEM}]
    host = registry.host
    two = verifier_factory(host, keys=keys, rules=[{"prefix": f"{host}/demo/", "threshold": 2}])
    outcome = await run(two, f"{host}/demo/app@{DIGESTS['v1']}")
    assert reasons(outcome) == [Reason.SIGNATURE_THRESHOLD]
    only_release = verifier_factory(
        host, keys=keys, rules=[{"prefix": f"{host}/demo/app", "keys": ["release"]}])
    outcome = await run(only_release, f"{host}/demo/app@{DIGESTS['v4']}",
                        f"{host}/demo/app@{DIGESTS['v2']}")
    assert reasons(outcome) == [Reason.SIGNATURE_UNTRUSTED]
    assert "does not accept" in outcome.violations[0].message
    either = verifier_factory(host, keys=keys)
    outcome = await run(either, f"{host}/demo/app@{DIGESTS['v4']}")
    assert outcome.violations == ()
    assert outcome.evidence[0].key_names == ("other",)


async def test_docker_reference_rule(
    registry: RegistryServer, cosign_registry: dict[str, str], verifier_factory: VerifierFactory,
) -> None:
    # The fixture's legacy payload names 127.0.0.1:5000/demo/app, not this registry.
    image = f"{registry.host}/demo/app@{DIGESTS['v3']}"
    assert (await run(verifier_factory(registry.host), image)).violations == ()
    strict = verifier_factory(registry.host, docker_reference="match")
    assert reasons(await run(strict, image)) == [Reason.SIGNATURE_MISSING]
