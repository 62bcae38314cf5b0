"""Finding an image's signature artifacts: which are fetched, with what, and what a bad one becomes.

The registry is scripted (tests/registry/hostile.py) and wants the pull credential on every
path, so a manifest or blob fetched without it fails the test. What `collect` returns is
compared whole: each artifact's format, source (the blob digest), data, annotations and, for
one that could not be fetched intact, that it carries a problem instead of data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller.registry import (
    Credential,
    Deadline,
    RegistryClient,
    RegistryLimitExceeded,
    RegistryProtocolError,
    RegistrySettings,
)
from controller.registry.models import OCI_INDEX, OCI_MANIFEST
from controller.signatures.discovery import (
    BUNDLE_PREDICATE_ANNOTATION,
    Collected,
    RawArtifact,
    _Budget,
    collect,
)
from controller.signatures.formats import (
    BUNDLE_V03,
    CERTIFICATE_ANNOTATION,
    COSIGN_SIGN_PREDICATE,
    DSSE_LAYER,
    REKOR_BUNDLE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING,
)
from tests.fixtures.registry import serve_app
from tests.registry.hostile import PASSWORD, USER, Answer, ScriptedRegistry

REPO = "signed/app"
CREDENTIAL = Credential(username=USER, password=PASSWORD)
SLSA = "https://slsa.dev/provenance/v1"
EMPTY = {"mediaType": "application/vnd.oci.empty.v1+json",
         "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(), "size": 2}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """A scripted registry behind basic auth, holding one image and what a test adds."""

    def __init__(self, server: ScriptedRegistry, host: str) -> None:
        self.server = server
        self.host = host
        image = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY,
                            "layers": []}).encode()
        self.digest = server.manifest(REPO, sha256(image), image)
        self.tag = self.digest.replace(":", "-")

    def legacy(self, suffix: str, layers: list[dict[str, Any]]) -> None:
        """The `.sig` or `.att` tag, holding `layers`."""
        self.server.manifest(REPO, f"{self.tag}.{suffix}", {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY, "layers": layers})

    def referrers(self, descriptors: list[dict[str, Any]]) -> None:
        """The referrers API's answer."""
        self.server.answers[f"/v2/{REPO}/referrers/{self.digest}"] = Answer(body=json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}).encode())

    def bundle_manifest(self, layers: list[dict[str, Any]], *,
                        annotations: dict[str, str] | None = None) -> dict[str, Any]:
        """Serve a bundle artifact manifest holding `layers`; returns its referrer descriptor."""
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE_V03,
               "config": EMPTY, "layers": layers, "annotations": annotations or {}}
        body = json.dumps(doc).encode()
        digest = self.server.manifest(REPO, sha256(body), body)
        return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body),
                "artifactType": BUNDLE_V03}

    def bundle(self, data: bytes, *, predicate: str | None = SLSA,
               annotations: dict[str, str] | None = None) -> dict[str, Any]:
        """A whole bundle artifact (manifest and its one bundle layer); its descriptor."""
        notes = dict(annotations or {})
        if predicate is not None:
            notes[BUNDLE_PREDICATE_ANNOTATION] = predicate
        return self.bundle_manifest([self.server.blob(REPO, data, media_type=BUNDLE_V03)],
                                    annotations=notes)

    async def collect(self, *, want_attestations: bool = True,
                      **limits: int) -> Collected:
        settings = RegistrySettings(insecure_registries=(self.host,), **limits)
        async with RegistryClient(settings) as client:
            return await collect(client, self.host, REPO, self.digest,
                                 deadline=Deadline.after(5), credential=CREDENTIAL,
                                 want_attestations=want_attestations)


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    server = ScriptedRegistry(basic=(USER, PASSWORD))
    async with serve_app(server.app()) as host:
        yield Registry(server, host)


KEYLESS = {SIGNATURE_ANNOTATION: "MEUCIQ==", CERTIFICATE_ANNOTATION: "-----BEGIN CERT",
           REKOR_BUNDLE_ANNOTATION: '{"SignedEntryTimestamp": "x"}'}


def keyless(source: str, data: bytes = b"") -> RawArtifact:
    """A `.sig` layer's artifact with the KEYLESS annotations."""
    return RawArtifact("legacy-sig", source, data=data, signature="MEUCIQ==",
                       certificate="-----BEGIN CERT", rekor_bundle='{"SignedEntryTimestamp": "x"}')


async def test_every_format_is_fetched_with_the_pull_credential(registry: Registry) -> None:
    server = registry.server
    sig = server.blob(REPO, b'{"critical": {}}', media_type=SIMPLESIGNING, annotations=KEYLESS)
    other = server.blob(REPO, b"not a signature", media_type="application/octet-stream")
    att = server.blob(REPO, b'{"payloadType": "x"}', media_type=DSSE_LAYER)
    registry.legacy("sig", [sig, other])
    registry.legacy("att", [att])
    bundle = registry.bundle(b'{"bundle": 1}')
    # Only image manifests are referrer candidates; an index there is not read.
    registry.referrers([bundle, {"mediaType": OCI_INDEX, "digest": "sha256:" + "9" * 64,
                                 "size": 10}])
    collected = await registry.collect()
    assert collected == Collected(media_type=OCI_MANIFEST, artifacts=(
        keyless(sig["digest"], b'{"critical": {}}'),
        RawArtifact("bundle", sha256(b'{"bundle": 1}'), data=b'{"bundle": 1}'),
        RawArtifact("legacy-att", att["digest"], data=b'{"payloadType": "x"}'),
    ))
    assert "/v2/signed/app/manifests/sha256:" + "9" * 64 not in server.seen


async def test_a_layer_without_annotations_has_empty_ones(registry: Registry) -> None:
    sig = registry.server.blob(REPO, b"{}", media_type=SIMPLESIGNING)
    registry.legacy("sig", [sig])
    collected = await registry.collect()
    assert collected.artifacts == (
        RawArtifact("legacy-sig", sig["digest"], data=b"{}", signature="", certificate="",
                    rekor_bundle=""),)


async def test_attestations_are_fetched_only_when_wanted(registry: Registry) -> None:
    server = registry.server
    att = server.blob(REPO, b'{"payloadType": "x"}', media_type=DSSE_LAYER)
    registry.legacy("att", [att])
    slsa = server.blob(REPO, b'{"slsa": 1}', media_type=BUNDLE_V03)
    registry.referrers([
        registry.bundle_manifest([slsa], annotations={BUNDLE_PREDICATE_ANNOTATION: SLSA}),
        registry.bundle(b'{"sign": 1}', predicate=COSIGN_SIGN_PREDICATE),
        # The annotation is unsigned and may be missing: then the bundle is read, it may be a
        # signature. Other annotations decide nothing.
        registry.bundle(b'{"unknown": 1}', predicate=None, annotations={"": SLSA}),
    ])
    collected = await registry.collect(want_attestations=False)
    assert collected.artifacts == (
        RawArtifact("bundle", sha256(b'{"sign": 1}'), data=b'{"sign": 1}'),
        RawArtifact("bundle", sha256(b'{"unknown": 1}'), data=b'{"unknown": 1}'),
    )
    assert f"/v2/{REPO}/manifests/{registry.tag}.att" not in server.seen
    assert f"/v2/{REPO}/blobs/{att['digest']}" not in server.seen
    assert f"/v2/{REPO}/blobs/{slsa['digest']}" not in server.seen


def _without_problem(artifact: RawArtifact) -> RawArtifact:
    assert artifact.problem, artifact
    return dataclasses.replace(artifact, problem=None)


async def test_a_layer_that_cannot_be_fetched_intact_is_a_problem_not_an_error(
    registry: Registry,
) -> None:
    server = registry.server
    good = server.blob(REPO, b'{"good": 1}', media_type=SIMPLESIGNING, annotations=KEYLESS)
    altered = server.blob(REPO, b'{"altered": 1}', media_type=SIMPLESIGNING,
                          served=b'{"altered": 2}', annotations=KEYLESS)
    missing = server.blob(REPO, b'{"missing": 1}', media_type=DSSE_LAYER,
                          annotations={SIGNATURE_ANNOTATION: "AAAA"})
    del server.answers[f"/v2/{REPO}/blobs/{missing['digest']}"]
    registry.legacy("sig", [altered, good])
    registry.legacy("att", [missing])
    collected = await registry.collect()
    first, second, third = collected.artifacts
    # The problem artifact keeps the layer's annotations, so the signer can still say whose
    # signature it was.
    assert _without_problem(first) == keyless(altered["digest"])
    assert altered["digest"] in (first.problem or "")
    assert second == keyless(good["digest"], b'{"good": 1}')
    assert _without_problem(third) == RawArtifact("legacy-att", missing["digest"],
                                                  signature="AAAA")
    assert "HTTP 404" in (third.problem or "")


async def test_a_bundle_manifest_that_cannot_be_read_intact_is_a_problem(
    registry: Registry,
) -> None:
    server = registry.server
    missing = registry.bundle(b'{"missing": 1}')
    del server.answers[f"/v2/{REPO}/manifests/{missing['digest']}"]
    swapped = registry.bundle(b'{"swapped": 1}')
    server.answers[f"/v2/{REPO}/manifests/{swapped['digest']}"] = Answer(
        body=json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY,
                         "layers": []}).encode(), headers={"Content-Type": OCI_MANIFEST})
    index_body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                             "manifests": []}).encode()
    index: dict[str, Any] = {"mediaType": OCI_MANIFEST, "size": len(index_body),
             "digest": server.manifest(REPO, sha256(index_body), index_body,
                                       media_type=OCI_INDEX)}
    two = registry.bundle_manifest([
        server.blob(REPO, b'{"one": 1}', media_type=BUNDLE_V03),
        server.blob(REPO, b'{"two": 2}', media_type=BUNDLE_V03)])
    none = registry.bundle_manifest([server.blob(REPO, b"{}", media_type="text/plain")])
    registry.referrers([missing, swapped, index, two, none])
    collected = await registry.collect()
    assert [_without_problem(a) for a in collected.artifacts] == [
        RawArtifact("bundle", d["digest"]) for d in (missing, swapped, index, two, none)]
    assert [a.problem for a in collected.artifacts][3:] == [
        "bundle artifact has 2 bundle layers, not 1", "bundle artifact has 0 bundle layers, not 1"]


async def test_one_budget_counts_the_artifacts_of_every_format(registry: Registry) -> None:
    server = registry.server
    registry.legacy("sig", [server.blob(REPO, b"%d" % n, media_type=SIMPLESIGNING)
                            for n in range(2)])
    registry.referrers([registry.bundle(b'{"n": %d}' % n) for n in range(2)])
    assert len((await registry.collect(max_signatures=4)).artifacts) == 4
    with pytest.raises(RegistryLimitExceeded) as caught:
        await registry.collect(max_signatures=3)
    assert caught.value.registry == registry.host


async def test_one_budget_counts_the_bytes_of_every_format(registry: Registry) -> None:
    server = registry.server
    registry.legacy("sig", [server.blob(REPO, b"s" * 600, media_type=SIMPLESIGNING)])
    registry.referrers([registry.bundle(b"b" * 500)])
    assert len((await registry.collect(max_blob_bytes=1100)).artifacts) == 2
    with pytest.raises(RegistryLimitExceeded) as caught:
        await registry.collect(max_blob_bytes=1099)
    assert caught.value.registry == registry.host


async def test_a_signature_tag_that_is_not_an_image_manifest_is_a_protocol_error(
    registry: Registry,
) -> None:
    registry.server.manifest(REPO, f"{registry.tag}.sig", {
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}, media_type=OCI_INDEX)
    with pytest.raises(RegistryProtocolError) as caught:
        await registry.collect()
    assert caught.value.registry == registry.host


@pytest.mark.parametrize(("takes", "limit", "refused"), [
    ((1,), 1, None),  # starts at zero; the limit itself is allowed
    ((0, 1), 1, None),
    ((1, 1), 1, 1),  # takes add up
    ((2, 1), 3, None),
    ((2, 2), 3, 1),
    ((4,), 3, 0),
])
def test_the_budget_adds_up_to_an_inclusive_limit(
    takes: tuple[int, ...], limit: int, refused: int | None,
) -> None:
    for method in ("take", "take_bytes"):
        budget = _Budget("registry.example.com", limit, limit)
        for n, count in enumerate(takes):
            if n == refused:
                with pytest.raises(RegistryLimitExceeded) as caught:
                    getattr(budget, method)(count, "here")
                assert caught.value.registry == "registry.example.com"
                break
            getattr(budget, method)(count, "here")
        else:
            assert refused is None


async def test_a_referrer_is_a_bundle_by_its_own_or_its_configs_artifact_type(
    registry: Registry,
) -> None:
    server = registry.server
    descriptors = []
    for n, (own, config) in enumerate([(None, BUNDLE_V03), (None, None), ("text/x", None)]):
        layer = server.blob(REPO, b'{"n": %d}' % n, media_type=BUNDLE_V03)
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {**EMPTY, **({"artifactType": config} if config else {})},
                               "layers": [layer]}
        if own:
            doc["artifactType"] = own
        body = json.dumps(doc).encode()
        descriptors.append({"mediaType": OCI_MANIFEST, "size": len(body),
                            "digest": server.manifest(REPO, sha256(body), body)})
    registry.referrers(descriptors)
    collected = await registry.collect()
    # Only the first is a bundle; the others are other artifacts, passed over.
    assert collected.artifacts == (RawArtifact("bundle", sha256(b'{"n": 0}'),
                                               data=b'{"n": 0}'),)
