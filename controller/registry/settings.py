"""Registry client settings: the one frozen, strict model the client and the config file share."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator


class PullSecretRef(BaseModel):
    """A dockerconfigjson Secret the controller reads for every registry request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = Field(min_length=1, max_length=63)
    """Namespace of the Secret (usually the controller's own)."""
    name: str = Field(min_length=1, max_length=253)
    """Name of the Secret; its type must be `kubernetes.io/dockerconfigjson`."""


class RegistrySettings(BaseModel):
    """How the controller talks to registries: transport, deadlines, and hard limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    insecure_registries: tuple[str, ...] = ()
    """Registry hosts (with port) reached over plain HTTP. Everything else is HTTPS only; list a
    host here only for a local test registry."""
    request_timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    """Cap on one HTTP request (connect, headers and body). The total deadline still applies."""
    total_timeout_seconds: float = Field(default=8.0, gt=0, le=30)
    """Cap on the whole verification of one Deployment; keep it below the webhook's
    `timeoutSeconds` (10 by default) so the controller answers before the API server gives up."""
    max_manifest_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    """Largest manifest or index accepted (the distribution spec suggests 4 MiB)."""
    max_blob_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    """Largest blob read: only signature payloads, bundles and attestations are ever fetched."""
    max_signatures: int = Field(default=64, ge=1, le=4096)
    """Most signature/attestation artifacts considered per image; more is treated as hostile."""
    max_redirects: int = Field(default=3, ge=0, le=10)
    """Redirects followed per request (blob storage often redirects once)."""
    max_connections: int = Field(default=32, ge=1, le=1024)
    """Pooled connections shared by all registries (keep-alive reuse)."""
    pull_secret: PullSecretRef | None = None
    """A Secret consulted for every image, after the Deployment's own imagePullSecrets."""
    use_image_pull_secrets: bool = True
    """Read the Deployment's `imagePullSecrets` (needs `get` on Secrets in its namespace)."""

    @field_validator("insecure_registries")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for host in value:
            if not re.fullmatch(r"[a-zA-Z0-9.\-\[\]:]+", host):
                raise ValueError(f"{host!r} is not a registry host[:port]")
        return value
