"""Helpers for the signature tests: requests, configs and verifiers against the real registry."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from controller.review import WorkloadRequest, request_from_manifest
from controller.signatures.config import SignatureConfig
from controller.signatures.verifier import ImageVerifier, VerificationOutcome
from tests.fixtures.registry import COSIGN_DATA, RegistryServer, sha256

COMMIT = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
"""The gitCommit of the SLSA v1 attestations on v1 and v3."""
RUN_URL = "https://github.com/example-org/payments-api/actions/runs/12345/attempts/1"
TRUSTED_PEM = (COSIGN_DATA / "cosign.pub").read_text()
OTHER_PEM = (COSIGN_DATA / "other-key.pub").read_text()


def deployment(*images: str, namespace: str = "default") -> WorkloadRequest:
    """A CREATE request for a Deployment running `images`, one container each."""
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {"template": {"spec": {"containers": [
            {"name": f"c{i}", "image": image} for i, image in enumerate(images)]}}},
    }
    return request_from_manifest(manifest, username="alice", namespace=namespace)


def make_config(host: str, **overrides: Any) -> SignatureConfig:
    """Verification on, the fixture key trusted, `host` reachable over plain HTTP."""
    data: dict[str, Any] = {
        "enabled": True,
        "keys": [{"name": "release", "pem": TRUSTED_PEM}],
        "registry": {"insecure_registries": [host]},
    }
    for key, value in overrides.items():
        if key == "registry":
            data["registry"] = {**data["registry"], **value}
        else:
            data[key] = value
    return SignatureConfig.model_validate(data)


async def run(
    verifier: ImageVerifier,
    *images: str,
    git_sha: str | None = COMMIT,
    build_id: str | None = None,
    pipeline_url: str | None = None,
    environment: str | None = None,
    namespace: str = "default",
    seconds: float = 8.0,
) -> VerificationOutcome:
    return await verifier.verify(
        deployment(*images, namespace=namespace), git_sha=git_sha, build_id=build_id,
        pipeline_url=pipeline_url, environment=environment,
        deadline=time.monotonic() + seconds)


VerifierFactory = Callable[..., ImageVerifier]


@pytest.fixture
async def verifier_factory() -> AsyncIterator[VerifierFactory]:
    """Build verifiers from `make_config` arguments; their sessions are closed at teardown."""
    made: list[ImageVerifier] = []

    def make(host: str, *, clock: Callable[[], float] = time.monotonic,
             **overrides: Any) -> ImageVerifier:
        verifier = ImageVerifier(make_config(host, **overrides), clock=clock)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.close()


ROOT = COSIGN_DATA.parent.parent.parent
COSIGN = ROOT / "bin" / "cosign"
KEY = COSIGN_DATA / "cosign.key"
OFFLINE_SIGNING_CONFIG = COSIGN_DATA / "signing-config-offline.json"
BUNDLE_FLAGS = ("--signing-config", str(OFFLINE_SIGNING_CONFIG))
"""cosign 3's default format (Sigstore bundle via referrers), with no log or timestamp service."""
LEGACY_FLAGS = ("--use-signing-config=false", "--tlog-upload=false", "--new-bundle-format=false")
"""cosign's legacy `.sig` / `.att` tags."""


def cosign_binary() -> Path:
    """bin/cosign; a missing one fails the test (`make test` provisions it first).

    Building it here would hide a 30-minute Go build inside a test run, and skipping would let
    a broken test ground pass.
    """
    if not COSIGN.exists():
        pytest.fail("bin/cosign is missing: run `make tools` (or `bash hack/tools.sh cosign`)")
    return COSIGN


def cosign(*args: str, key: Path = KEY) -> None:
    """Run `cosign <args> --key <key>` against the plain-HTTP test registry; fail loudly."""
    env = {**os.environ, "COSIGN_PASSWORD": "", "COSIGN_YES": "true",
           "SIGSTORE_NO_CACHE": "true", "TUF_ROOT": "/nonexistent"}
    result = subprocess.run(
        [str(cosign_binary()), args[0], "--key", str(key), "--allow-http-registry",
         "--allow-insecure-registry", *args[1:]],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]


def push_random_image(registry: RegistryServer, repository: str) -> str:
    """A fresh, never-signed single-layer image; returns its digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []},
                         "nonce": secrets.token_hex(8)}).encode()
    layer = secrets.token_bytes(128)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": registry.push_blob(repository, config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": registry.push_blob(repository, layer), "size": len(layer)}],
    }).encode()
    return registry.push_manifest(repository, sha256(manifest), manifest)
