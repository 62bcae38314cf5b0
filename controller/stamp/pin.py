"""`stamp --pin-digests`: every image tag resolved to its digest through the registry client.

The digest is computed over the manifest bytes the registry returns (the client never trusts the
`Docker-Content-Digest` header), and the reference is rewritten as `registry/repository@sha256:…`:
the tag is dropped because the runtime ignores it next to a digest and the gate judges the digest
alone. References already carrying a digest are left as they are.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from controller.errors import ImageReferenceError
from controller.images import parse_reference
from controller.registry import (
    Credential,
    CredentialsError,
    Deadline,
    RegistryClient,
    RegistryError,
    RegistrySettings,
    parse_dockerconfigjson,
)
from controller.stamp.errors import PinError
from controller.stamp.stamping import ImageSlot

MAX_PARALLEL = 8
"""Tags resolved at once: enough for a large chart, gentle on a registry's rate limits."""
PIN_TIMEOUT_SECONDS = 30.0
"""Budget per tag resolution (the CLI is not under a webhook deadline, but must not hang)."""


def docker_credentials(path: Path | None = None) -> dict[str, Credential]:
    """Registry host → credential from a docker config (`$DOCKER_CONFIG/config.json`,
    `~/.docker/config.json`), as `docker login` and `crane auth login` write it.

    Credential helpers (`credsStore`, `credHelpers`) are not run; a missing file means anonymous.
    """
    if path is None:
        base = os.environ.get("DOCKER_CONFIG")
        path = Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise PinError(f"cannot read docker config {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(raw)
        if isinstance(doc, dict) and "auths" not in doc:
            return {}  # only credential helpers or settings: nothing we can use
        credentials = parse_dockerconfigjson(raw)
    except (ValueError, CredentialsError) as exc:
        raise PinError(f"docker config {path}: {exc}") from exc
    # Docker Desktop leaves empty entries when a credential helper holds the secret: sending
    # empty credentials would turn an anonymous pull into a 401.
    return {host: c for host, c in credentials.items()
            if c.username or c.password or c.identity_token}


async def resolve_tags(
    images: Sequence[str],
    *,
    client: RegistryClient,
    credentials: Mapping[str, Credential],
    timeout: float = PIN_TIMEOUT_SECONDS,
    where: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Image reference as written → pinned reference, for every one not yet pinned.

    Raises `PinError` naming the first image that could not be resolved (every one is tried).
    """
    limit = asyncio.Semaphore(MAX_PARALLEL)
    unique = sorted(set(images))

    async def one(image: str) -> tuple[str, str | Exception]:
        try:
            ref = parse_reference(image)
        except ImageReferenceError as exc:
            return image, exc
        if ref.digest is not None:
            return image, image
        async with limit:
            try:
                digest = await client.resolve_digest(
                    ref, deadline=Deadline.after(timeout),
                    credential=credentials.get(ref.registry))
            except RegistryError as exc:
                return image, exc
        return image, str(ref.with_digest(digest))

    results = await asyncio.gather(*(one(image) for image in unique))
    failures = [(image, outcome) for image, outcome in results if isinstance(outcome, Exception)]
    if failures:
        where = where or {}
        lines = [f"  {where.get(image, image)}: {error}" for image, error in failures]
        raise PinError("cannot resolve image tags to digests:\n" + "\n".join(lines))
    return {image: outcome for image, outcome in results if isinstance(outcome, str)}


async def pin_slots(
    slots: Sequence[ImageSlot],
    *,
    settings: RegistrySettings,
    credentials: Mapping[str, Credential],
) -> int:
    """Rewrite every tagged image in `slots` to its digest; return how many were rewritten."""
    where: dict[str, str] = {}
    for slot in slots:
        doc = slot.document
        where.setdefault(slot.image, f"{doc.source}: document {doc.index} (line {doc.line}), "
                                     f"{slot.label}, image {slot.image}")
    async with RegistryClient(settings) as client:
        pinned = await resolve_tags([s.image for s in slots], client=client,
                                    credentials=credentials, where=where)
    count = 0
    for slot in slots:
        new = pinned[slot.image]
        if new != slot.image:
            slot.replace(new)
            count += 1
    return count
