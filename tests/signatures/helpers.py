"""Helpers for the signature tests: requests, configs and verifiers against the real registry."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from controller.review import DeploymentRequest, request_from_manifest
from controller.signatures.config import SignatureConfig
from controller.signatures.verifier import ImageVerifier, VerificationOutcome
from tests.fixtures.registry import COSIGN_DATA

COMMIT = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
"""The gitCommit of the SLSA v1 attestations on v1 and v3."""
RUN_URL = "https://github.com/example-org/payments-api/actions/runs/12345/attempts/1"
TRUSTED_PEM = (COSIGN_DATA / "cosign.pub").read_text()
OTHER_PEM = (COSIGN_DATA / "other-key.pub").read_text()


def deployment(*images: str, namespace: str = "default") -> DeploymentRequest:
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

    def make(host: str, **overrides: Any) -> ImageVerifier:
        verifier = ImageVerifier(make_config(host, **overrides))
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.close()
