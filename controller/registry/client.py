"""An async OCI distribution v2 client: manifests, blobs, tags and referrers, with hard limits.

One `RegistryClient` lives as long as the controller and owns one aiohttp session, so connections
to a registry are reused across admissions. Every call takes a `Deadline`; each request is further
capped by `request_timeout_seconds`. Every body is read through a size limit, and every
digest-addressed body is hashed and compared with the digest that was asked for: the
`Docker-Content-Digest` header is never trusted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from pydantic import ValidationError

from controller import metrics
from controller.errors import ImageReferenceError
from controller.images import ImageReference, parse_reference
from controller.registry.auth import DOCKER_HUB, Challenge, Credential, parse_challenge
from controller.registry.deadline import Deadline
from controller.registry.errors import (
    DigestMismatchError,
    NotFoundError,
    RegistryAuthError,
    RegistryError,
    RegistryLimitExceeded,
    RegistryProtocolError,
    RegistryUnavailable,
)
from controller.registry.models import (
    MANIFEST_TYPES,
    OCI_INDEX,
    Descriptor,
    ImageIndex,
    ImageManifest,
    Manifest,
)
from controller.registry.settings import RegistrySettings

_ERROR_BODY_LIMIT = 4096
"""How much of an error response is read, for the message only."""
_TOKEN_BODY_LIMIT = 64 * 1024
_TOKEN_DEFAULT_TTL = 60.0
"""Docker's token spec: tokens without `expires_in` last 60 seconds."""
_TOKEN_CACHE_LIMIT = 1024
_NO_REFERRERS_TTL = 600.0
"""How long a registry that answered 404 on the referrers API is assumed not to have it."""


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


def api_host(registry: str) -> str:
    """The host that serves the v2 API: Docker Hub's API is not at `docker.io`."""
    return "registry-1.docker.io" if registry == DOCKER_HUB else registry


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class RegistryClient:
    """The OCI distribution client. Long-lived; call `close()` on shutdown."""

    def __init__(self, settings: RegistrySettings | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`clock` (seconds, monotonic) times token lifetimes and the referrers-API memory;
        tests pass their own to expire them without waiting."""
        self.settings = settings or RegistrySettings()
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        # (registry, scope, credential identity) → (Authorization value, expiry on monotonic clock)
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        # registry → monotonic instant until which its referrers API is assumed missing
        self._no_referrers_api: dict[str, float] = {}

    # --- lifecycle ------------------------------------------------------------------------------
    def _session_(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.settings.max_connections, limit_per_host=16, ttl_dns_cache=60)
            # Timeouts are enforced per request with asyncio.timeout (deadline-aware); the session's
            # own total timeout is off so that it cannot disagree with the deadline.
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                headers={"User-Agent": "provenance-controller"})
        return self._session

    async def close(self) -> None:
        """Close the shared session and its pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- public API -----------------------------------------------------------------------------
    async def get_manifest(
        self,
        registry: str,
        repository: str,
        reference: str,
        *,
        deadline: Deadline,
        credential: Credential | None = None,
    ) -> Manifest:
        """Fetch a manifest or index by digest or tag.

        By digest, the bytes must hash to it (`DigestMismatchError` otherwise). By tag, the
        returned digest is computed over the bytes received.
        """
        resp = await self._get(
            registry, repository, f"manifests/{reference}", deadline=deadline,
            accept=", ".join(MANIFEST_TYPES), credential=credential,
            limit=self.settings.max_manifest_bytes)
        digest = sha256_digest(resp.body)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatchError(
                registry, f"manifest {repository}@{reference} hashes to {digest}")
        media_type = _media_type(registry, resp)
        return Manifest(digest=digest, media_type=media_type, raw=resp.body)

    async def get_blob(
        self,
        registry: str,
        repository: str,
        descriptor: Descriptor,
        *,
        deadline: Deadline,
        credential: Credential | None = None,
    ) -> bytes:
        """Fetch a blob; its size and digest must match the descriptor exactly."""
        limit = self.settings.max_blob_bytes
        if descriptor.size > limit:
            raise RegistryLimitExceeded(
                registry, f"blob {descriptor.digest} is {descriptor.size} bytes (limit {limit})")
        resp = await self._get(
            registry, repository, f"blobs/{descriptor.digest}", deadline=deadline,
            accept="*/*", credential=credential, limit=descriptor.size)
        if len(resp.body) != descriptor.size:
            raise DigestMismatchError(
                registry, f"blob {descriptor.digest} is {len(resp.body)} bytes, descriptor says "
                f"{descriptor.size}")
        digest = sha256_digest(resp.body)
        if digest != descriptor.digest:
            raise DigestMismatchError(
                registry, f"blob {repository}@{descriptor.digest} hashes to {digest}")
        return resp.body

    async def list_tags(
        self,
        registry: str,
        repository: str,
        *,
        deadline: Deadline,
        credential: Credential | None = None,
    ) -> tuple[str, ...]:
        """The repository's tags (first page only, bounded by the manifest size limit)."""
        resp = await self._get(
            registry, repository, "tags/list", deadline=deadline, accept="application/json",
            credential=credential, limit=self.settings.max_manifest_bytes)
        doc = _json(registry, resp.body, "tag list")
        tags = doc.get("tags") if isinstance(doc, dict) else None
        if tags is None:
            return ()
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise RegistryProtocolError(registry, "tag list is not a list of strings")
        return tuple(tags)

    async def referrers(
        self,
        registry: str,
        repository: str,
        digest: str,
        *,
        deadline: Deadline,
        credential: Credential | None = None,
        artifact_type: str | None = None,
    ) -> tuple[Descriptor, ...]:
        """Artifacts whose `subject` is `digest`: the referrers API, else the `sha256-<hex>` tag.

        The fallback tag is what cosign and other clients maintain on registries without the API
        (OCI distribution spec 1.1, "referrers tag schema"). Filtering by `artifact_type` is done
        here too, because registries may ignore the query parameter. More entries than
        `max_signatures` raise `RegistryLimitExceeded`.
        """
        index: ImageIndex | None = None
        if self._no_referrers_api.get(registry, 0.0) <= self._clock():
            try:
                resp = await self._get(
                    registry, repository, f"referrers/{digest}", deadline=deadline,
                    accept=OCI_INDEX, credential=credential,
                    limit=self.settings.max_manifest_bytes,
                    params={"artifactType": artifact_type} if artifact_type else None)
                index = _parse(registry, ImageIndex, resp.body, "referrers response")
            except NotFoundError:
                # The spec forbids a 404 from a registry that has the API, so this one has not:
                # skip the round trip for a while and go straight to the fallback tag.
                self._no_referrers_api[registry] = self._clock() + _NO_REFERRERS_TTL
        if index is None:
            tag = digest.replace(":", "-", 1)
            try:
                manifest = await self.get_manifest(
                    registry, repository, tag, deadline=deadline, credential=credential)
            except NotFoundError:
                return ()
            index = _parse(registry, ImageIndex, manifest.raw, f"referrers tag {tag}")
        if len(index.manifests) > self.settings.max_signatures:
            raise RegistryLimitExceeded(
                registry, f"{repository}@{digest} has {len(index.manifests)} referrers (limit "
                f"{self.settings.max_signatures})")
        if artifact_type is None:
            return index.manifests
        return tuple(d for d in index.manifests if d.artifact_type == artifact_type)

    async def resolve_digest(
        self,
        reference: str | ImageReference,
        *,
        deadline: Deadline | None = None,
        credential: Credential | None = None,
    ) -> str:
        """The `sha256:` digest a reference names, computed over the manifest bytes.

        A digest-pinned reference is checked to exist and returned as is; a tag is resolved by
        fetching its manifest (for an index: the index digest, which is what a pod spec pins).
        """
        try:
            ref = parse_reference(reference) if isinstance(reference, str) else reference
        except ImageReferenceError as exc:
            raise RegistryProtocolError("(unknown)", str(exc)) from exc
        deadline = deadline or Deadline.after(self.settings.total_timeout_seconds)
        target = ref.digest or ref.tag or "latest"
        manifest = await self.get_manifest(
            ref.registry, ref.repository, target, deadline=deadline, credential=credential)
        return manifest.digest

    # --- transport ------------------------------------------------------------------------------
    def _base(self, registry: str) -> str:
        scheme = "http" if registry in self.settings.insecure_registries else "https"
        return f"{scheme}://{api_host(registry)}/v2/"

    async def _get(
        self,
        registry: str,
        repository: str,
        path: str,
        *,
        deadline: Deadline,
        accept: str,
        credential: Credential | None,
        limit: int,
        params: Mapping[str, str] | None = None,
    ) -> _Response:
        url = f"{self._base(registry)}{repository}/{path}"
        scope = f"repository:{repository}:pull"
        key = (registry, scope, _identity(credential))
        authorization = self._cached_token(key)
        for attempt in range(2):
            headers = {"Accept": accept}
            if authorization:
                headers["Authorization"] = authorization
            resp = await self._fetch(registry, url, headers, deadline=deadline, limit=limit,
                                     params=params)
            if resp.status == 401 and attempt == 0:
                challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                authorization = await self._answer(
                    registry, challenge, scope, credential, deadline=deadline)
                if authorization is None:
                    break
                continue
            break
        if resp.status == 200:
            if authorization:
                self._remember_token(key, authorization, None)
            return resp
        raise _status_error(registry, f"{repository}/{path}", resp)

    async def _fetch(
        self,
        registry: str,
        url: str,
        headers: Mapping[str, str],
        *,
        deadline: Deadline,
        limit: int,
        params: Mapping[str, str] | None = None,
        method: str = "GET",
        data: Mapping[str, str] | None = None,
    ) -> _Response:
        budget = deadline.budget(self.settings.request_timeout_seconds)
        if budget <= 0:
            raise RegistryUnavailable(registry, "deadline exceeded before the request was sent")
        started = time.perf_counter()
        try:
            resp = await self._fetch_once(registry, url, headers, budget=budget, limit=limit,
                                          params=params, method=method, data=data)
        except RegistryError as exc:
            metrics.record_registry_request(_operation(url), error=type(exc).__name__,
                                            seconds=time.perf_counter() - started)
            raise
        metrics.record_registry_request(_operation(url), seconds=time.perf_counter() - started)
        return resp

    async def _fetch_once(
        self,
        registry: str,
        url: str,
        headers: Mapping[str, str],
        *,
        budget: float,
        limit: int,
        params: Mapping[str, str] | None,
        method: str,
        data: Mapping[str, str] | None,
    ) -> _Response:
        try:
            async with asyncio.timeout(budget):
                async with self._session_().request(
                    method, url, headers=headers, params=params, data=data,
                    allow_redirects=self.settings.max_redirects > 0,
                    # aiohttp raises on the redirect that reaches its count, so a limit of N
                    # there follows N-1: ask it for one more to follow exactly ours.
                    max_redirects=self.settings.max_redirects + 1,
                ) as resp:
                    cap = limit if resp.status == 200 else min(limit, _ERROR_BODY_LIMIT)
                    body = await _read_limited(registry, resp, cap, truncate=resp.status != 200)
                    if 300 <= resp.status < 400:
                        raise RegistryLimitExceeded(registry, "redirects are not allowed")
                    return _Response(resp.status, resp.headers, body)
        except TimeoutError as exc:
            raise RegistryUnavailable(
                registry, f"no complete answer within {budget:.2f}s ({url})") from exc
        except aiohttp.TooManyRedirects as exc:
            raise RegistryLimitExceeded(
                registry, f"more than {self.settings.max_redirects} redirects ({url})") from exc
        except aiohttp.ClientError as exc:
            raise RegistryUnavailable(registry, f"{type(exc).__name__}: {exc}") from exc

    async def _answer(
        self,
        registry: str,
        challenge: Challenge | None,
        scope: str,
        credential: Credential | None,
        *,
        deadline: Deadline,
    ) -> str | None:
        """The Authorization value that answers a 401 challenge, or None if we have none."""
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return credential.basic if credential is not None and credential.username else None
        if challenge.scheme != "bearer":
            return None
        realm = challenge.params.get("realm", "")
        insecure_ok = registry in self.settings.insecure_registries
        if not (realm.startswith("https://") or (insecure_ok and realm.startswith("http://"))):
            raise RegistryAuthError(registry, f"refusing token realm {realm!r} (not https)")
        service = challenge.params.get("service", "")
        params = {"service": service} if service else {}
        params["scope"] = challenge.params.get("scope", scope)
        headers: dict[str, str] = {"Accept": "application/json"}
        data = None
        method = "GET"
        if credential is not None and credential.identity_token:
            method = "POST"
            data = {"grant_type": "refresh_token", "refresh_token": credential.identity_token,
                    "service": service, "scope": params["scope"],
                    "client_id": "provenance-controller"}
        elif credential is not None and credential.username:
            headers["Authorization"] = credential.basic
        resp = await self._fetch(registry, realm, headers, deadline=deadline,
                                 limit=_TOKEN_BODY_LIMIT, params=params, method=method, data=data)
        if resp.status != 200:
            raise RegistryAuthError(registry, f"token endpoint answered {resp.status}")
        doc = _json(registry, resp.body, "token response")
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryAuthError(registry, "token endpoint gave no token")
        ttl = doc.get("expires_in") if isinstance(doc, dict) else None
        value = f"Bearer {token}"
        self._remember_token((registry, scope, _identity(credential)), value,
                             float(ttl) if isinstance(ttl, int | float) else None)
        return value

    def _cached_token(self, key: tuple[str, str, str]) -> str | None:
        hit = self._tokens.get(key)
        if hit is None or hit[1] <= self._clock():
            return None
        return hit[0]

    def _remember_token(self, key: tuple[str, str, str], value: str, ttl: float | None) -> None:
        if key in self._tokens and ttl is None:
            return
        if len(self._tokens) >= _TOKEN_CACHE_LIMIT:
            self._tokens.clear()
        # Refresh 10 s early, so a token never expires between the check and the request.
        lifetime = max((ttl or _TOKEN_DEFAULT_TTL) - 10.0, 1.0)
        self._tokens[key] = (value, self._clock() + lifetime)


def _identity(credential: Credential | None) -> str:
    if credential is None:
        return ""
    secret = f"{credential.username}\0{credential.password}\0{credential.identity_token}"
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def _operation(url: str) -> str:
    """The metrics label of a request: manifests, blobs, tags, referrers, or token."""
    parts = url.split("?", 1)[0].rstrip("/").split("/")
    for kind in ("manifests", "blobs", "referrers"):
        if kind in parts:
            return kind
    return "tags" if "tags" in parts else "token"


async def _read_limited(
    registry: str, resp: aiohttp.ClientResponse, limit: int, *, truncate: bool
) -> bytes:
    """Read at most `limit` bytes; more is an error (or, for error bodies, cut off)."""
    if not truncate and resp.content_length is not None and resp.content_length > limit:
        raise RegistryLimitExceeded(
            registry, f"response of {resp.content_length} bytes exceeds the limit of {limit}")
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        buf += chunk
        if len(buf) > limit:
            if truncate:
                return bytes(buf[:limit])
            raise RegistryLimitExceeded(registry, f"response exceeds the limit of {limit} bytes")
    return bytes(buf)


def _status_error(registry: str, what: str, resp: _Response) -> RegistryError:
    snippet = resp.body[:200].decode("utf-8", "replace").strip()
    message = f"GET {what}: HTTP {resp.status}" + (f" ({snippet})" if snippet else "")
    if resp.status == 404:
        return NotFoundError(registry, message)
    if resp.status in (401, 403):
        return RegistryAuthError(registry, message)
    if resp.status >= 500 or resp.status == 429:
        return RegistryUnavailable(registry, message)
    return RegistryProtocolError(registry, message)


def _media_type(registry: str, resp: _Response) -> str:
    doc = _json(registry, resp.body, "manifest")
    if not isinstance(doc, dict):
        raise RegistryProtocolError(registry, "manifest is not a JSON object")
    media_type = doc.get("mediaType")
    if not isinstance(media_type, str):
        media_type = resp.headers.get("Content-Type", "").split(";", 1)[0].strip()
    if media_type not in MANIFEST_TYPES:
        raise RegistryProtocolError(registry, f"unsupported manifest media type {media_type!r}")
    return media_type


def _json(registry: str, body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RegistryProtocolError(registry, f"{what} is not valid JSON: {exc}") from exc


_M = TypeVar("_M", ImageIndex, ImageManifest)


def _parse(registry: str, model: type[_M], body: bytes, what: str) -> _M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RegistryProtocolError(
            registry, f"{what} is malformed: {where}: {first['msg']}") from exc


def parse_image_manifest(registry: str, manifest: Manifest) -> ImageManifest:
    """Validate a fetched manifest as an image manifest (`RegistryProtocolError` otherwise)."""
    if manifest.is_index:
        raise RegistryProtocolError(registry, f"{manifest.digest} is an index, not a manifest")
    return _parse(registry, ImageManifest, manifest.raw, f"manifest {manifest.digest}")
