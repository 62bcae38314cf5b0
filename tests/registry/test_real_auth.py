"""The registry client's basic and bearer paths against docker-registry with its own auth on.

Two more docker-registry processes: one with `auth.htpasswd` (basic auth, bcrypt file), one with
`auth.token`, whose JWTs come from a token server this module runs on loopback and signs with an
EC key; the registry trusts the key's self-signed certificate (`rootcertbundle`) and finds it in
the token's `x5c` header. The cosign fixtures are pushed into both, so a verification through
either path is a real one.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import shutil
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from controller.policy.violations import Reason
from controller.registry import Deadline, RegistryClient, RegistrySettings
from controller.registry.auth import Credential, StaticSecretSource
from controller.registry.errors import RegistryAuthError
from controller.review import request_from_manifest
from controller.signatures.verifier import ImageVerifier
from tests.fixtures.registry import (
    DEMO_REPOSITORY,
    DOCKER_REGISTRY,
    RegistryServer,
    free_port,
    start_registry,
    stop_registry,
)
from tests.signatures.helpers import make_config
from tests.signatures.test_cosign_fixtures import DIGESTS

USER, PASSWORD = "robot", "s3cret-" + secrets.token_hex(4)
SERVICE, ISSUER = "provenance-test-registry", "provenance-test-token-server"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """Docker's token protocol: Basic credentials in, a signed JWT for the asked scope out."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    port: int = field(default_factory=free_port)
    issued: list[str] = field(default_factory=list)
    """The scopes tokens were issued for."""

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def mint(self, subject: str, access: list[dict[str, Any]], ttl: int = 300) -> str:
        now = int(time.time())
        header = {"alg": "ES256", "typ": "JWT", "x5c": [
            base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + ttl,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = (_b64url(json.dumps(header).encode()) + "."
                         + _b64url(json.dumps(claims).encode()))
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(),
                                                  ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def serve(self) -> ThreadingHTTPServer:
        tokens = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if url.path != "/token" or query.get("service") != [SERVICE]:
                    self._answer(400, {"error": "bad request"})
                elif self.headers.get("Authorization") != expected:
                    self._answer(401, {"error": "bad credentials"})
                else:
                    access = []
                    for scope in query.get("scope", []):
                        kind, name, actions = scope.split(":")
                        access.append({"type": kind, "name": name,
                                       "actions": [a for a in actions.split(",") if a == "pull"]})
                        tokens.issued.append(scope)
                    self._answer(200, {"token": tokens.mint(USER, access), "expires_in": 300})

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: pytest shows failures, not every request

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def _self_signed() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _require_registry() -> None:
    if not DOCKER_REGISTRY.exists():
        pytest.fail("docker-registry is not installed (apt-get install docker-registry)")


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """docker-registry with `auth.htpasswd`, holding the cosign fixtures under demo/app."""
    _require_registry()
    root = tmp_path_factory.mktemp("basic-registry")
    htpasswd = root / "htpasswd"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    htpasswd.write_text(f"{USER}:{hashed}\n")
    server = start_registry(root, auth=(
        f"  htpasswd:\n    realm: provenance-test\n    path: {htpasswd}\n"))
    server.authorization = Credential(USER, PASSWORD).basic
    try:
        server.load_layout(DEMO_REPOSITORY)
        yield server
    finally:
        stop_registry(server)
        shutil.rmtree(root / "data", ignore_errors=True)


@pytest.fixture(scope="module")
def tokens() -> Iterator[TokenServer]:
    key, cert = _self_signed()
    server = TokenServer(key, cert)
    http = server.serve()
    yield server
    http.shutdown()
    http.server_close()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory,
                   tokens: TokenServer) -> Iterator[RegistryServer]:
    """docker-registry with `auth.token` trusting the token server's certificate."""
    _require_registry()
    root = tmp_path_factory.mktemp("token-registry")
    bundle = root / "token-ca.pem"
    bundle.write_bytes(tokens.cert.public_bytes(serialization.Encoding.PEM))
    server = start_registry(root, auth=(
        f"  token:\n    realm: {tokens.realm}\n    service: {SERVICE}\n"
        f"    issuer: {ISSUER}\n    rootcertbundle: {bundle}\n"))
    # The fixtures are pushed with a token minted here for push and pull; the client under
    # test only ever gets pull tokens, from the token server.
    push = tokens.mint("pusher", [{"type": "repository", "name": DEMO_REPOSITORY,
                                   "actions": ["push", "pull"]}])
    server.authorization = f"Bearer {push}"
    try:
        server.load_layout(DEMO_REPOSITORY)
        yield server
    finally:
        stop_registry(server)
        shutil.rmtree(root / "data", ignore_errors=True)


def settings(host: str) -> RegistrySettings:
    return RegistrySettings(insecure_registries=(host,))


@pytest.fixture(params=["basic", "token"])
def auth_registry(request: pytest.FixtureRequest) -> RegistryServer:
    name = "basic_registry" if request.param == "basic" else "token_registry"
    server: RegistryServer = request.getfixturevalue(name)
    return server


async def test_the_registry_refuses_anonymous_reads(auth_registry: RegistryServer) -> None:
    # The ground the other tests stand on: without credentials there is nothing to read.
    host = auth_registry.host
    async with RegistryClient(settings(host)) as client:
        with pytest.raises(RegistryAuthError):
            await client.get_manifest(host, DEMO_REPOSITORY, DIGESTS["v1"],
                                      deadline=Deadline.after(5))


async def test_credentials_read_manifests_and_blobs(auth_registry: RegistryServer) -> None:
    host = auth_registry.host
    async with RegistryClient(settings(host)) as client:
        credential = Credential(USER, PASSWORD)
        manifest = await client.get_manifest(host, DEMO_REPOSITORY, DIGESTS["v1"],
                                             deadline=Deadline.after(5), credential=credential)
        assert manifest.digest == DIGESTS["v1"]
        digest = await client.resolve_digest(f"{host}/{DEMO_REPOSITORY}:v1", credential=credential)
        assert digest == DIGESTS["v1"]


async def test_wrong_password_is_an_auth_error(auth_registry: RegistryServer) -> None:
    host = auth_registry.host
    async with RegistryClient(settings(host)) as client:
        with pytest.raises(RegistryAuthError):
            await client.get_manifest(host, DEMO_REPOSITORY, DIGESTS["v1"],
                                      deadline=Deadline.after(5),
                                      credential=Credential(USER, PASSWORD + "x"))


async def test_one_token_per_scope_is_fetched_and_reused(
    token_registry: RegistryServer, tokens: TokenServer,
) -> None:
    host = token_registry.host
    before = len(tokens.issued)
    async with RegistryClient(settings(host)) as client:
        credential = Credential(USER, PASSWORD)
        for tag in ("v1", "v2", "v3"):
            await client.get_manifest(host, DEMO_REPOSITORY, DIGESTS[tag],
                                      deadline=Deadline.after(5), credential=credential)
    assert tokens.issued[before:] == [f"repository:{DEMO_REPOSITORY}:pull"]


async def test_a_token_for_another_repository_is_refused(
    token_registry: RegistryServer, tokens: TokenServer,
) -> None:
    # The registry checks the token's access claim, not just its signature: a pull token for
    # one repository does not read another, so the client must ask for the right scope.
    other = tokens.mint(USER, [{"type": "repository", "name": "other/app", "actions": ["pull"]}])
    status, _, _ = RegistryServer(token_registry.host, token_registry.process,
                                  authorization=f"Bearer {other}")._request(
        "GET", f"{token_registry.url}/v2/{DEMO_REPOSITORY}/manifests/{DIGESTS['v1']}")
    assert status == 401


@pytest.mark.parametrize(("tag", "reason"), [
    ("v1", None), ("v3", None), ("multi", None), ("v4", Reason.SIGNATURE_UNTRUSTED),
])
async def test_signatures_verify_through_the_pull_secret(
    auth_registry: RegistryServer, tag: str, reason: Reason | None,
) -> None:
    host = auth_registry.host
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    secret = json.dumps({"auths": {host: {"auth": auth}}}).encode()
    verifier = ImageVerifier(
        make_config(host, default_require="attestation" if tag in ("v1", "v3") else "signature"),
        secrets=StaticSecretSource({("default", "pull"): secret}))
    manifest = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "default"},
        "spec": {"template": {"spec": {
            "imagePullSecrets": [{"name": "pull"}],
            "containers": [{"name": "c0", "image": f"{host}/{DEMO_REPOSITORY}@{DIGESTS[tag]}"}],
        }}},
    }
    try:
        outcome = await verifier.verify(
            request_from_manifest(manifest, username="alice", namespace="default"),
            git_sha="a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", build_id=None,
            pipeline_url=None, environment=None, deadline=time.monotonic() + 8)
    finally:
        await verifier.close()
    assert [v.reason for v in outcome.violations] == ([reason] if reason else [])
    if reason is None:
        assert outcome.evidence[0].verified



async def test_tags_are_listed_with_credentials(auth_registry: RegistryServer) -> None:
    host = auth_registry.host
    async with RegistryClient(settings(host)) as client:
        tags = await client.list_tags(host, DEMO_REPOSITORY, deadline=Deadline.after(5),
                                      credential=Credential(USER, PASSWORD))
    assert {"v1", "v2", "v3", "v4", "v5", "multi"} <= set(tags)
