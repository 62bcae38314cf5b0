"""Finding an image's signatures and attestations in its registry, in both cosign formats.

For an admitted digest `sha256:<hex>` in repository `R`, three places are read in parallel:
1. the image manifest itself (it must exist; its media type tells an index from an image);
2. the legacy tag `R:sha256-<hex>.sig` (simple signing layers) and, when attestations are
   needed, `R:sha256-<hex>.att` (DSSE envelope layers);
3. the referrers of the digest (the API, else the `sha256-<hex>` fallback tag), keeping the
   Sigstore bundle artifacts, whose single layer is the bundle: cosign 3's (key or keyless)
   and GitHub's artifact attestations as `push-to-registry` writes them (artifactType the
   bundle media type, annotations `dev.sigstore.bundle.content` and
   `dev.sigstore.bundle.predicateType`).
Keyless cosign 2 `.sig` layers carry their certificate and Rekor bundle in annotations, which
are kept with the layer for the keyless signer.
Every manifest is fetched by digest and every blob is checked against its descriptor by the
client. A missing tag means "no artifacts of that format"; any other registry failure propagates
as `RegistryError`, except a blob or manifest that fails its digest or shape, which becomes a
per-artifact problem (a tampered artifact must not hide the good ones next to it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from controller.registry.auth import Credential
from controller.registry.client import RegistryClient, parse_image_manifest
from controller.registry.deadline import Deadline
from controller.registry.errors import (
    DigestMismatchError,
    NotFoundError,
    RegistryError,
    RegistryLimitExceeded,
    RegistryProtocolError,
)
from controller.registry.models import OCI_MANIFEST, Descriptor, ImageManifest
from controller.signatures.formats import (
    BUNDLE_MEDIA_PREFIX,
    CERTIFICATE_ANNOTATION,
    COSIGN_SIGN_PREDICATE,
    DSSE_LAYER,
    REKOR_BUNDLE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING,
    Format,
)

BUNDLE_PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RawArtifact:
    """One signature or attestation as fetched, not yet verified."""

    format: Format
    source: str
    """The blob digest."""
    data: bytes = b""
    signature: str = ""
    """For `legacy-sig`: the base64 signature from the layer annotation."""
    certificate: str = ""
    """For keyless `legacy-sig`: the PEM certificate from the layer annotation."""
    rekor_bundle: str = ""
    """For keyless `legacy-sig`: cosign's Rekor bundle (SET and entry) from the annotation."""
    problem: str | None = None
    """Set when the artifact could not be fetched intact."""


@dataclass(frozen=True, slots=True)
class Collected:
    """Everything the registry holds about one digest."""

    media_type: str
    """The admitted manifest's media type (an index for multi-arch images)."""
    artifacts: tuple[RawArtifact, ...]


class _Budget:
    """Counts artifacts across all formats against `max_signatures`, and their declared bytes
    against `max_blob_bytes`: one image's signatures together may not exceed one blob's limit, so
    memory per verification stays bounded however the registry spreads its answer."""

    def __init__(self, registry: str, limit: int, byte_limit: int) -> None:
        self.registry = registry
        self.limit = limit
        self.used = 0
        self.byte_limit = byte_limit
        self.bytes = 0

    def take(self, count: int, where: str) -> None:
        self.used += count
        if self.used > self.limit:
            raise RegistryLimitExceeded(
                self.registry, f"more than {self.limit} signature artifacts ({where})")

    def take_bytes(self, size: int, where: str) -> None:
        # The client reads exactly the descriptor's size or fails, so declared sizes bound reads.
        self.bytes += size
        if self.bytes > self.byte_limit:
            raise RegistryLimitExceeded(
                self.registry, f"signature artifacts exceed {self.byte_limit} bytes ({where})")


async def collect(
    client: RegistryClient,
    registry: str,
    repository: str,
    digest: str,
    *,
    deadline: Deadline,
    credential: Credential | None,
    want_attestations: bool,
) -> Collected:
    """Fetch the image manifest and every signature (and attestation) artifact for `digest`."""
    budget = _Budget(registry, client.settings.max_signatures, client.settings.max_blob_bytes)
    tag = digest.replace(":", "-", 1)

    async def image() -> str:
        manifest = await client.get_manifest(
            registry, repository, digest, deadline=deadline, credential=credential)
        return manifest.media_type

    async def legacy(suffix: str, layer_type: str, fmt: Format) -> list[RawArtifact]:
        try:
            manifest = await client.get_manifest(
                registry, repository, f"{tag}.{suffix}", deadline=deadline, credential=credential)
        except NotFoundError:
            return []
        parsed = parse_image_manifest(registry, manifest)
        layers = [d for d in parsed.layers if d.media_type == layer_type]
        budget.take(len(layers), f"{tag}.{suffix}")
        return await _all([
            _blob(client, registry, repository, d, fmt, budget, deadline=deadline,
                  credential=credential)
            for d in layers])

    async def bundles() -> list[RawArtifact]:
        referrers = await client.referrers(
            registry, repository, digest, deadline=deadline, credential=credential)
        # The descriptor's artifactType is not trusted to filter: cosign 3 writes the empty
        # config's media type there. Each referrer manifest is read and judged by its own
        # artifactType; the count limit bounds the work.
        candidates = [d for d in referrers if d.media_type == OCI_MANIFEST]
        budget.take(len(candidates), "referrers")
        found = await _all([
            _bundle(client, registry, repository, d, want_attestations, budget,
                    deadline=deadline, credential=credential)
            for d in candidates])
        return [a for a in found if a is not None]

    async def attestations() -> list[RawArtifact]:
        return await legacy("att", DSSE_LAYER, "legacy-att") if want_attestations else []

    try:
        async with asyncio.TaskGroup() as group:
            media_type = group.create_task(image())
            sigs = group.create_task(legacy("sig", SIMPLESIGNING, "legacy-sig"))
            found = group.create_task(bundles())
            atts = group.create_task(attestations())
    except BaseExceptionGroup as exc:
        raise _first(exc) from None
    return Collected(media_type=media_type.result(),
                     artifacts=(*sigs.result(), *found.result(), *atts.result()))


async def _all(jobs: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run `jobs` concurrently; the first failure cancels the others (no orphaned fetches keep
    a hostile registry's connections busy after the verdict) and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(job) for job in jobs]
    except BaseExceptionGroup as exc:
        raise _first(exc) from None
    return [t.result() for t in tasks]


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real exception in a (possibly nested) exception group."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def _blob(
    client: RegistryClient,
    registry: str,
    repository: str,
    descriptor: Descriptor,
    fmt: Format,
    budget: _Budget,
    *,
    deadline: Deadline,
    credential: Credential | None,
) -> RawArtifact:
    notes = descriptor.annotations
    signature = notes.get(SIGNATURE_ANNOTATION, "")
    certificate = notes.get(CERTIFICATE_ANNOTATION, "")
    rekor_bundle = notes.get(REKOR_BUNDLE_ANNOTATION, "")
    # Annotations live in the manifest, which the size limits on manifests already bound.
    budget.take_bytes(descriptor.size, descriptor.digest)
    try:
        data = await client.get_blob(
            registry, repository, descriptor, deadline=deadline, credential=credential)
    except (DigestMismatchError, NotFoundError) as exc:
        return RawArtifact(fmt, descriptor.digest, signature=signature, certificate=certificate,
                           rekor_bundle=rekor_bundle, problem=exc.detail)
    return RawArtifact(fmt, descriptor.digest, data=data, signature=signature,
                       certificate=certificate, rekor_bundle=rekor_bundle)


async def _bundle(
    client: RegistryClient,
    registry: str,
    repository: str,
    descriptor: Descriptor,
    want_attestations: bool,
    budget: _Budget,
    *,
    deadline: Deadline,
    credential: Credential | None,
) -> RawArtifact | None:
    try:
        manifest = await client.get_manifest(
            registry, repository, descriptor.digest, deadline=deadline, credential=credential)
        parsed: ImageManifest = parse_image_manifest(registry, manifest)
    except (DigestMismatchError, NotFoundError, RegistryProtocolError) as exc:
        return RawArtifact("bundle", descriptor.digest, problem=exc.detail)
    artifact_type = parsed.artifact_type or parsed.config.artifact_type or ""
    if not artifact_type.startswith(BUNDLE_MEDIA_PREFIX):
        return None
    predicate = parsed.annotations.get(BUNDLE_PREDICATE_ANNOTATION, "")
    if not want_attestations and predicate and predicate != COSIGN_SIGN_PREDICATE:
        # The annotation is unsigned, so it only decides what to skip fetching, never what
        # counts: a bundle that lies here is still verified by what its envelope says.
        return None
    layers = [d for d in parsed.layers if d.media_type.startswith(BUNDLE_MEDIA_PREFIX)]
    if len(layers) != 1:
        return RawArtifact("bundle", manifest.digest,
                           problem=f"bundle artifact has {len(layers)} bundle layers, not 1")
    return await _blob(client, registry, repository, layers[0], "bundle", budget,
                       deadline=deadline, credential=credential)


__all__ = ["Collected", "RawArtifact", "RegistryError", "collect"]
