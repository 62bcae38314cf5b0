"""Signatures and SLSA provenance end to end: kubectl → kube-apiserver → the controller → the
real docker-registry holding real cosign signatures and attestations."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controller.dev.controller import DevController
from controller.dev.controlplane import LocalControlPlane
from tests.builders import deployment, prov_annotations
from tests.fixtures.cluster import kubectl
from tests.fixtures.registry import RegistryServer

pytestmark = pytest.mark.e2e

ATTESTED_COMMIT = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
"""The gitCommit in the fixtures' SLSA v1 provenance on v1 and v3."""
NAMESPACE = "signed-zone"
KEY = Path(__file__).resolve().parents[1] / "data" / "cosign" / "cosign.pub"


@pytest.fixture(scope="module")
def signing_controller(
    control_plane: LocalControlPlane, registry: RegistryServer,
    cosign_registry: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DevController]:
    """A controller that requires signatures and attestations for the registry's demo/ images."""
    workdir = tmp_path_factory.mktemp("signing")
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump({
        "signatures": {
            "enabled": True,
            "keys": [{"name": "release", "path": str(KEY)}],
            "registry": {"insecure_registries": [registry.host]},
            "rules": [{"prefix": f"{registry.host}/demo/", "require": "attestation",
                       "keys": ["release"]}],
        },
    }))
    kubectl(control_plane, "create", "namespace", NAMESPACE)
    ctl = DevController(control_plane, workdir, config_file=config, name="provenance-signing",
                        only_namespaces=[NAMESPACE])
    ctl.start()
    yield ctl
    ctl.stop()


def _apply(cp: LocalControlPlane, image: str, commit: str) -> tuple[int, str]:
    obj = deployment(f"s-{uuid.uuid4().hex[:8]}", NAMESPACE, containers=[image],
                     ann=prov_annotations(git_sha=commit))
    result = kubectl(cp, "apply", "-f", "-", stdin=yaml.safe_dump(obj))
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("tag", ["v1", "v3"])  # cosign 3 bundle and legacy .sig/.att formats
def test_signed_and_attested_image_is_admitted(
    control_plane: LocalControlPlane, registry: RegistryServer, cosign_registry: dict[str, str],
    signing_controller: DevController, tag: str,
) -> None:
    image = f"{registry.host}/demo/app@{cosign_registry[tag]}"
    code, out = _apply(control_plane, image, ATTESTED_COMMIT)
    assert code == 0, out


def test_unsigned_image_is_rejected(
    control_plane: LocalControlPlane, registry: RegistryServer, cosign_registry: dict[str, str],
    signing_controller: DevController,
) -> None:
    image = f"{registry.host}/demo/app@{cosign_registry['v5']}"
    code, out = _apply(control_plane, image, ATTESTED_COMMIT)
    assert code != 0
    assert "[SignatureMissing]" in out
    assert "container c0" in out
    assert cosign_registry["v5"] in out


def test_signature_by_an_untrusted_key_is_rejected(
    control_plane: LocalControlPlane, registry: RegistryServer, cosign_registry: dict[str, str],
    signing_controller: DevController,
) -> None:
    image = f"{registry.host}/demo/app@{cosign_registry['v4']}"
    code, out = _apply(control_plane, image, ATTESTED_COMMIT)
    assert code != 0
    assert "[SignatureUntrusted]" in out


def test_git_sha_that_differs_from_the_attested_commit_is_rejected(
    control_plane: LocalControlPlane, registry: RegistryServer, cosign_registry: dict[str, str],
    signing_controller: DevController,
) -> None:
    image = f"{registry.host}/demo/app@{cosign_registry['v1']}"
    other = "f" * 40
    code, out = _apply(control_plane, image, other)
    assert code != 0
    assert "[AttestationCommitMismatch]" in out
    assert ATTESTED_COMMIT in out


def test_signed_image_without_an_attestation_is_rejected(
    control_plane: LocalControlPlane, registry: RegistryServer, cosign_registry: dict[str, str],
    signing_controller: DevController,
) -> None:
    image = f"{registry.host}/demo/app@{cosign_registry['v2']}"
    code, out = _apply(control_plane, image, ATTESTED_COMMIT)
    assert code != 0
    assert "[AttestationMissing]" in out
