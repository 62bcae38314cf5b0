"""A hostile registry on loopback: every way a registry can try to hurt the verifier."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

IMAGE_MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": "sha256:" + "0" * 64, "size": 2},
    "layers": [],
}).encode()
IMAGE_DIGEST = "sha256:" + hashlib.sha256(IMAGE_MANIFEST).hexdigest()
TAG = IMAGE_DIGEST.replace(":", "-")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CHUNK = b"x" * (1024 * 1024)
DEEP = b"[" * 200_000 + b"]" * 200_000
"""Valid JSON nested far beyond Python's recursion limit."""
DEEP_DIGEST = "sha256:" + hashlib.sha256(DEEP).hexdigest()
DEEP_SIG_MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
               "digest": "sha256:" + "0" * 64},
    "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "size": len(DEEP), "digest": DEEP_DIGEST,
                "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="}}]}).encode()
BIG_SIGS_MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
               "digest": "sha256:" + "0" * 64},
    "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "size": 1024 * 1024, "digest": "sha256:" + f"{i:064x}",
                "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="}}
               for i in range(40)]}).encode()
"""40 signatures of 1 MiB each: every one under the blob limit, together far above it."""
USER, PASSWORD, TOKEN = "robot", "s3cret", "tok-123"
REFRESH = "refresh-456"
"""The identity (refresh) token the token endpoint exchanges for TOKEN."""
"""Credentials the `auth-*` repositories accept."""


def _index(count: int) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "size": 100,
                       "digest": "sha256:" + hashlib.sha256(str(i).encode()).hexdigest(),
                       "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"}
                      for i in range(count)]}).encode()


class HostileRegistry:
    """Behaviour is chosen by the repository's first path component."""

    def __init__(self) -> None:
        self.requests = 0
        self.streamed = 0
        """Bytes the server managed to write for the oversized responses."""
        self.stop = asyncio.Event()
        self.token_ttl: int | None = 300
        """`expires_in` of the tokens issued; None leaves it out (Docker's default: 60 s)."""
        self.by_path: dict[str, int] = {}
        """Requests per path, tokens included."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self.token)
        app.router.add_post("/token", self.token)
        app.router.add_get("/v2/{mode}/{rest:.*}", self.handle)
        return app

    async def token(self, request: web.Request) -> web.Response:
        self.by_path[request.path] = self.by_path.get(request.path, 0) + 1
        if request.method == "POST":
            # OAuth2 refresh-token grant (a dockerconfigjson `identitytoken`).
            form = await request.post()
            # A challenge without a service leaves the form's service empty.
            no_service = request.query.get("realm-mode") == "no-service"
            service, mode = ("", "auth-noservice") if no_service else ("hostile", "auth-bearer")
            if (form.get("grant_type") != "refresh_token" or form.get("refresh_token") != REFRESH
                    or form.get("service") != service
                    or form.get("client_id") != "provenance-controller"
                    or form.get("scope") != f"repository:{mode}/app:pull"):
                return web.Response(status=400)
            return web.json_response({"access_token": TOKEN, "expires_in": 300})
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401)
        scope = request.query.get("scope", "")
        if request.query.get("realm-mode") == "no-token":
            return web.json_response({"token": "", "access_token": ""})
        if request.query.get("realm-mode") == "list":
            return web.json_response([TOKEN])
        if request.query.get("realm-mode") == "no-service":
            # The challenge named no service, so the client must send none.
            if "service" in request.query or scope != "repository:auth-noservice/app:pull":
                return web.Response(status=400)
        elif request.query.get("realm-mode") == "scope":
            # The registry asked for its own scope: the client must pass it on, not its guess.
            if scope != "repository:auth-scope/app:pull repository:shared/base:pull":
                return web.Response(status=400)
        elif request.query.get("service") != "hostile" or "pull" not in scope:
            return web.Response(status=400)
        ttl = {} if self.token_ttl is None else {"expires_in": self.token_ttl}
        return web.json_response({"token": TOKEN, **ttl})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.by_path[request.path] = self.by_path.get(request.path, 0) + 1
        mode = request.match_info["mode"]
        rest = request.match_info["rest"]
        is_image = rest.endswith(f"manifests/{IMAGE_DIGEST}")
        if mode == "auth-bearer":
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                realm = f"http://{request.host}/token"
                return web.Response(status=401, headers={"WWW-Authenticate": (
                    f'Bearer realm="{realm}",service="hostile",'
                    f'scope="repository:auth-bearer/app:pull"')})
            return self._manifest_or_404(is_image)
        if mode in ("auth-noservice", "auth-scope", "auth-norealm", "auth-https", "auth-notoken",
                    "auth-list"):
            if request.headers.get("Authorization") == f"Bearer {TOKEN}":
                return self._manifest_or_404(is_image)
            realm = {
                "auth-noservice": f'realm="http://{request.host}/token?realm-mode=no-service"',
                "auth-scope": (f'realm="http://{request.host}/token?realm-mode=scope",'
                               'scope="repository:auth-scope/app:pull '
                               'repository:shared/base:pull"'),
                "auth-norealm": 'service="hostile"',
                "auth-notoken": f'realm="http://{request.host}/token?realm-mode=no-token"',
                "auth-list": f'realm="http://{request.host}/token?realm-mode=list"',
                "auth-https": 'realm="https://127.0.0.1:9/token",service="hostile"',
            }[mode]
            return web.Response(status=401, headers={"WWW-Authenticate": f"Bearer {realm}"})
        if mode == "auth-basic":
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if request.headers.get("Authorization") != expected:
                return web.Response(status=401,
                                    headers={"WWW-Authenticate": 'Basic realm="hostile"'})
            return self._manifest_or_404(is_image)
        if mode == "redirect":
            return web.Response(status=307, headers={"Location": str(request.url)})
        if mode == "redirect-once":
            # Blob stores answer this way: one redirect to where the bytes are.
            target = str(request.url).replace("/redirect-once/", "/plain/", 1)
            return web.Response(status=307, headers={"Location": target})
        if mode == "error":
            return web.Response(status=503, text="upstream exploded")
        if is_image:
            return self._manifest_or_404(True)
        if mode == "malformed":
            return web.Response(status=200, body=b'{"schemaVersion": 2, "manifests": [',
                                content_type=OCI_MANIFEST)
        if mode == "oversize":
            return await self._endless(request, declare=False)
        if mode == "oversize-declared":
            return await self._endless(request, declare=True)
        if mode == "many" and rest.endswith(f"manifests/{TAG}"):
            return web.Response(status=200, body=_index(4000), content_type=OCI_INDEX)
        if mode == "many-layers" and rest.endswith(f"manifests/{TAG}.sig"):
            layers = [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                       "size": 10, "digest": "sha256:" + "1" * 64,
                       "annotations": {"dev.cosignproject.cosign/signature": "AAAA"}}] * 3000
            body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": "x", "size": 2,
                                          "digest": "sha256:" + "0" * 64},
                               "layers": layers}).encode()
            return web.Response(status=200, body=body, content_type=OCI_MANIFEST)
        if mode == "deep-manifest" and rest.endswith(f"manifests/{TAG}.sig"):
            return web.Response(status=200, body=DEEP, content_type=OCI_MANIFEST)
        if mode == "deep-payload" and rest.endswith(f"manifests/{TAG}.sig"):
            return web.Response(status=200, body=DEEP_SIG_MANIFEST, content_type=OCI_MANIFEST)
        if mode == "deep-payload" and rest.endswith(f"blobs/{DEEP_DIGEST}"):
            return web.Response(status=200, body=DEEP)
        if mode == "big-sigs" and rest.endswith(f"manifests/{TAG}.sig"):
            return web.Response(status=200, body=BIG_SIGS_MANIFEST, content_type=OCI_MANIFEST)
        if mode == "tags-bad" and rest == "app/tags/list":
            return web.json_response({"name": "tags-bad/app", "tags": ["v1", 2]})
        if mode == "tags-none" and rest == "app/tags/list":
            return web.json_response({"name": "tags-none/app", "tags": None})
        if mode == "tags-list" and rest == "app/tags/list":
            return web.json_response(["v1"])
        if mode == "teapot":
            return web.Response(status=418, text="short and stout")
        if mode == "throttle":
            return web.Response(status=429)
        if mode == "forbidden":
            return web.Response(status=403)
        if mode == "drip":
            return await self._drip(request)
        return web.Response(status=404)

    def _manifest_or_404(self, is_image: bool) -> web.Response:
        if is_image:
            return web.Response(status=200, body=IMAGE_MANIFEST, content_type=OCI_MANIFEST)
        return web.Response(status=404)

    async def _endless(self, request: web.Request, *, declare: bool) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": OCI_INDEX})
        if declare:
            resp.content_length = 1024 * len(CHUNK)
        await resp.prepare(request)
        try:
            for _ in range(1024):  # up to 1 GiB, far above any limit
                await resp.write(CHUNK)
                self.streamed += len(CHUNK)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": OCI_INDEX,
                                                       "Content-Length": "100000"})
        await resp.prepare(request)
        try:
            while not self.stop.is_set():
                await resp.write(b" ")
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp


@dataclass(frozen=True)
class Answer:
    """One scripted HTTP answer."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


Script = Answer | Callable[[web.Request], Answer]


class ScriptedRegistry:
    """Answers exactly what a test scripted for a path, and 404 for any other.

    Where `HostileRegistry` has fixed modes, a test here writes the few answers it needs: a
    manifest under a digest it does not hash to, a blob that is missing or altered, a referrers
    API that filters. With `basic` set, every /v2/ path first wants that user and password
    (401 with a Basic challenge otherwise), so a request sent without the credential fails.
    """

    def __init__(self, *, basic: tuple[str, str] | None = None) -> None:
        self.answers: dict[str, Script] = {}
        """Path (`/v2/...`) → its answer, or a function of the request that gives it."""
        self.seen: list[str] = []
        """Paths asked for, in order, the refused unauthenticated tries included."""
        self._basic = ("Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
                       if basic else None)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request.path)
        if self._basic and request.headers.get("Authorization") != self._basic:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        script = self.answers.get(request.path)
        if script is None:
            return web.Response(status=404)
        answer = script(request) if callable(script) else script
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    def manifest(self, repository: str, reference: str, doc: object, *,
                 media_type: str = OCI_MANIFEST) -> str:
        """Serve `doc` (JSON, or bytes as they are) as a manifest; returns its digest."""
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.answers[f"/v2/{repository}/manifests/{reference}"] = Answer(
            body=body, headers={"Content-Type": media_type})
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def blob(self, repository: str, data: bytes, *, media_type: str = "application/json",
             served: bytes | None = None,
             annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Serve a blob and return its descriptor; `served` replaces the bytes on the wire."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.answers[f"/v2/{repository}/blobs/{digest}"] = Answer(
            body=data if served is None else served)
        descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest,
                                      "size": len(data)}
        if annotations:
            descriptor["annotations"] = dict(annotations)
        return descriptor
