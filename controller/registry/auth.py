"""Registry credentials: the dockerconfigjson parser, the challenge parser, and Secret sources.

The parsers are pure functions over bytes and strings, so a test can feed them anything. Fetching
a Secret is behind the small `SecretSource` protocol; `KubeSecretSource` implements it on the
project's async `KubeApi`, and tests can implement it with a dict.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from controller.errors import ProvenanceError

if TYPE_CHECKING:
    from controller.kube import KubeApi

MAX_DOCKERCONFIG_BYTES = 256 * 1024
"""A dockerconfigjson larger than this is refused: a Secret holds a handful of registries."""

DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io", "docker.io"})


class CredentialsError(ProvenanceError):
    """A dockerconfigjson or a pull Secret could not be read."""


@dataclass(frozen=True, slots=True)
class Credential:
    """How to authenticate to one registry. Never logged: `__repr__` hides the secret."""

    username: str = ""
    password: str = ""
    identity_token: str = ""
    """An OAuth2 refresh token (`identitytoken`), exchanged at the token realm."""

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, password=<hidden>)"

    @property
    def basic(self) -> str:
        """The `Authorization: Basic` value."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def normalise_registry_host(key: str) -> str:
    """`https://index.docker.io/v1/` → `docker.io`; `registry.example.com:5000/x` → its host."""
    host = re.sub(r"^[a-z]+://", "", key.strip(), flags=re.IGNORECASE).split("/", 1)[0].lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


def parse_dockerconfigjson(data: bytes) -> dict[str, Credential]:
    """Parse a `kubernetes.io/dockerconfigjson` (or legacy `.dockercfg`) payload.

    Returns registry host → credential. Raises `CredentialsError` on anything malformed, because
    a silently ignored Secret would turn into a confusing 401 later.
    """
    if len(data) > MAX_DOCKERCONFIG_BYTES:
        raise CredentialsError(f"dockerconfigjson is larger than {MAX_DOCKERCONFIG_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise CredentialsError(f"dockerconfigjson is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise CredentialsError("dockerconfigjson must be a JSON object")
    # `.dockerconfigjson` nests under "auths"; the legacy `.dockercfg` is the mapping itself.
    auths = doc.get("auths", doc if "auths" not in doc else None)
    if not isinstance(auths, dict):
        raise CredentialsError("dockerconfigjson 'auths' must be an object")
    out: dict[str, Credential] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise CredentialsError(f"dockerconfigjson entry {key!r} must be an object")
        out[normalise_registry_host(key)] = _credential(key, entry)
    return out


def _credential(key: str, entry: Mapping[str, Any]) -> Credential:
    username = entry.get("username") or ""
    password = entry.get("password") or ""
    auth = entry.get("auth") or ""
    token = entry.get("identitytoken") or ""
    if not all(isinstance(v, str) for v in (username, password, auth, token)):
        raise CredentialsError(f"dockerconfigjson entry {key!r} has non-string fields")
    if auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise CredentialsError(f"dockerconfigjson entry {key!r}: 'auth' is not base64") from exc
        if ":" not in decoded:
            raise CredentialsError(f"dockerconfigjson entry {key!r}: 'auth' is not user:password")
        username, password = decoded.split(":", 1)
    return Credential(username=username, password=password, identity_token=token)


@dataclass(frozen=True, slots=True)
class Challenge:
    """One parsed `WWW-Authenticate` header."""

    scheme: str
    """`bearer` or `basic`, lower-cased."""
    params: Mapping[str, str]
    """realm, service, scope, error, ..."""


_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> Challenge | None:
    """Parse `Bearer realm="...",service="...",scope="..."`; None if it is not a challenge."""
    header = header.strip()
    if not header or len(header) > 4096:
        return None
    scheme, _, rest = header.partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3) or "").replace(
            '\\"', '"')
        for m in _PARAM.finditer(rest)
    }
    return Challenge(scheme=scheme.lower(), params=params)


class SecretSource(Protocol):
    """Where pull Secrets come from: the API server in production, a dict in tests."""

    async def dockerconfigjson(self, namespace: str, name: str) -> bytes | None:
        """The Secret's `.dockerconfigjson` (or `.dockercfg`) bytes; None if it does not exist."""
        ...


class KubeSecretSource:
    """Reads pull Secrets through the project's async `KubeApi` (needs `get` on secrets)."""

    def __init__(self, api: KubeApi, *, timeout: float = 2.0) -> None:
        self._api = api
        self._timeout = timeout

    async def dockerconfigjson(self, namespace: str, name: str) -> bytes | None:
        from controller.kube import KubeApiError

        try:
            secret = await self._api.request(
                "GET", f"/api/v1/namespaces/{namespace}/secrets/{name}", timeout=self._timeout)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise CredentialsError(f"cannot read Secret {namespace}/{name}: {exc}") from exc
        data = (secret or {}).get("data") or {}
        raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
        if not isinstance(raw, str):
            return None
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error as exc:
            raise CredentialsError(f"Secret {namespace}/{name} is not base64") from exc


class StaticSecretSource:
    """Secrets held in memory: tests, and the CLI's `--docker-config` path."""

    def __init__(self, secrets: Mapping[tuple[str, str], bytes]) -> None:
        self._secrets = dict(secrets)

    async def dockerconfigjson(self, namespace: str, name: str) -> bytes | None:
        return self._secrets.get((namespace, name))
