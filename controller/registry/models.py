"""OCI and Docker manifest shapes, validated strictly before anything reads them.

Registry responses are untrusted input: only the fields the verifier reads are modelled, each is
typed and bounded, and a digest must be `sha256:` and 64 lower-case hex characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
"""What we ask for in `Accept`; schema 1 manifests are refused (unsigned by cosign anyway)."""
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})

MAX_ENTRIES = 10_000
"""Static bound on list lengths before the configured, smaller count limit is applied."""

Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]


class _Loose(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Descriptor(_Loose):
    """A content descriptor: what a manifest points at."""

    media_type: str = Field(alias="mediaType", max_length=256)
    digest: Digest
    size: int = Field(ge=0)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=256)
    artifact_type: str | None = Field(default=None, alias="artifactType", max_length=256)


class ImageManifest(_Loose):
    """An OCI image manifest or a Docker v2 schema 2 manifest."""

    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType", max_length=256)
    artifact_type: str | None = Field(default=None, alias="artifactType", max_length=256)
    config: Descriptor
    layers: tuple[Descriptor, ...] = Field(default=(), max_length=MAX_ENTRIES)
    subject: Descriptor | None = None
    annotations: dict[str, str] = Field(default_factory=dict, max_length=256)


class ImageIndex(_Loose):
    """An OCI image index or a Docker manifest list; also the referrers API response."""

    schema_version: int = Field(alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType", max_length=256)
    manifests: tuple[Descriptor, ...] = Field(default=(), max_length=MAX_ENTRIES)
    subject: Descriptor | None = None
    annotations: dict[str, str] = Field(default_factory=dict, max_length=256)


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest as fetched: its bytes, the digest we computed over them, and its media type."""

    digest: str
    """`sha256:` over `raw`, computed here, never taken from a header."""
    media_type: str
    """From the document's `mediaType`, else from the Content-Type header."""
    raw: bytes
    """The exact bytes, for hashing and for tests."""

    @property
    def is_index(self) -> bool:
        """True for an image index or a manifest list (a multi-arch image)."""
        return self.media_type in INDEX_TYPES
