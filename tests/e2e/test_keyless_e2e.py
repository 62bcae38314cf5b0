"""Keyless signatures end to end: real cosign signs against the local Sigstore (Fulcio with a CT
log, Rekor v2, the TSA, an OIDC issuer the tests mint tokens from), and kubectl → kube-apiserver
→ the controller → docker-registry decides on what cosign pushed.

Every image is fresh (random layer), so no verdict is served from the controller's cache.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.dev.controller import DevController
from controller.dev.controlplane import LocalControlPlane
from tests.builders import deployment, prov_annotations
from tests.fixtures.cluster import kubectl
from tests.fixtures.registry import RegistryServer
from tests.fixtures.sigstore import COMMIT, REPOSITORY, SUBJECT, LocalSigstore
from tests.signatures import sigstore_instance
from tests.signatures.helpers import push_random_image
from tests.signatures.sigstore_instance import push_referrer

NAMESPACE = "keyless-zone"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
SLSA_V1 = "https://slsa.dev/provenance/v1"
OTHER_COMMIT = "f" * 40


@pytest.fixture(scope="module")
def constructed() -> sigstore_instance.LocalSigstore:
    """An in-process Fulcio-like CA and log, for what real Fulcio will not issue: a certificate
    that expired before the only time its bundle can prove."""
    return sigstore_instance.LocalSigstore()


@pytest.fixture(scope="module")
def keyless_controller(
    control_plane: LocalControlPlane, registry: RegistryServer, local_sigstore: LocalSigstore,
    constructed: sigstore_instance.LocalSigstore, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DevController]:
    """A controller whose rules accept only keyless signers of the local Sigstore."""
    workdir = tmp_path_factory.mktemp("keyless")
    config = workdir / "config.yaml"
    host = registry.host
    release = {"issuer": local_sigstore.issuer, "trust_root": "local", "repository": REPOSITORY}
    config.write_text(yaml.safe_dump({
        "signatures": {
            "enabled": True,
            "keyless": {
                "trust_roots": [
                    {"name": "local", "path": str(local_sigstore.trusted_root)},
                    {"name": "constructed", "inline": constructed.trusted_root_json()},
                ],
                "signers": [
                    {"name": "release", "subject": SUBJECT, **release},
                    # Any release workflow of the org: the subject alone lets org/other in, so
                    # only the repository field can refuse it.
                    {"name": "org-release", **release, "subject_regex":
                     r"^https://github\.com/org/[^/]+/\.github/workflows/release\.yml"
                     r"@refs/heads/main$"},
                    {"name": "constructed", "issuer": sigstore_instance.GITHUB_ISSUER,
                     "subject": sigstore_instance.SUBJECT, "trust_root": "constructed"},
                ],
            },
            "registry": {"insecure_registries": [host]},
            "rules": [
                {"prefix": f"{host}/keyless/", "require": "signature", "signers": ["release"]},
                {"prefix": f"{host}/keyless-org/", "require": "signature",
                 "signers": ["org-release"]},
                {"prefix": f"{host}/keyless-att/", "require": "attestation",
                 "signers": ["release"]},
                {"prefix": f"{host}/keyless-constructed/", "require": "signature",
                 "signers": ["constructed"]},
            ],
        },
    }))
    kubectl(control_plane, "create", "namespace", NAMESPACE)
    ctl = DevController(control_plane, workdir, config_file=config, name="provenance-keyless",
                        only_namespaces=[NAMESPACE])
    ctl.start()
    yield ctl
    ctl.stop()


def _image(registry: RegistryServer, repository: str) -> str:
    """A fresh, never-signed image; its `host/repository@digest`."""
    return f"{registry.host}/{repository}@{push_random_image(registry, repository)}"


def _sign(sigstore: LocalSigstore, image: str, token: str) -> None:
    done = sigstore.cosign("sign", "--yes", "--allow-insecure-registry", image, token=token)
    assert done.returncode == 0, done.stderr + sigstore.logs()


def _attest(sigstore: LocalSigstore, image: str, token: str, tmp: Path, *,
            commit: str = COMMIT) -> None:
    """cosign attest: SLSA v1 provenance (GitHub's shape) for `commit`, in a DSSE bundle."""
    predicate = tmp / f"provenance-{uuid.uuid4().hex[:8]}.json"
    predicate.write_text(json.dumps({
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {"workflow": {"ref": "refs/heads/main",
                                                "repository": f"https://github.com/{REPOSITORY}",
                                                "path": ".github/workflows/release.yml"}},
            "resolvedDependencies": [{"uri": f"git+https://github.com/{REPOSITORY}@refs/heads/main",
                                      "digest": {"gitCommit": commit}}],
        },
        "runDetails": {
            "builder": {"id": "https://github.com/actions/runner/github-hosted"},
            "metadata": {"invocationId":
                         f"https://github.com/{REPOSITORY}/actions/runs/42/attempts/1"},
        },
    }))
    done = sigstore.cosign("attest", "--yes", "--allow-insecure-registry", "--type",
                           "slsaprovenance1", "--predicate", str(predicate), image, token=token)
    assert done.returncode == 0, done.stderr + sigstore.logs()


def _apply(cp: LocalControlPlane, image: str, commit: str = COMMIT,
           branch: str = "main") -> tuple[int, str]:
    obj = deployment(f"k-{uuid.uuid4().hex[:8]}", NAMESPACE, containers=[image],
                     ann=prov_annotations(git_sha=commit, branch=branch))
    result = kubectl(cp, "apply", "-f", "-", stdin=yaml.safe_dump(obj))
    return result.returncode, result.stdout + result.stderr


def _referrers(registry: RegistryServer, image: str) -> list[dict[str, Any]]:
    """The manifests cosign listed in the referrers fallback tag of `image`."""
    repository, digest = image.split("/", 1)[1].split("@")
    index = json.loads(registry.get_manifest(repository, digest.replace(":", "-", 1)))
    return [json.loads(registry.get_manifest(repository, str(m["digest"])))
            for m in index["manifests"]]


def test_a_keyless_signature_of_the_accepted_identity_is_admitted(
    control_plane: LocalControlPlane, registry: RegistryServer, local_sigstore: LocalSigstore,
    keyless_controller: DevController,
) -> None:
    image = _image(registry, "keyless/app")
    _sign(local_sigstore, image, local_sigstore.token())
    code, out = _apply(control_plane, image)
    assert code == 0, out


def test_an_unsigned_image_is_denied(
    control_plane: LocalControlPlane, registry: RegistryServer, keyless_controller: DevController,
) -> None:
    code, out = _apply(control_plane, _image(registry, "keyless/app"))
    assert code != 0
    assert "[SignatureMissing]" in out


def test_a_signature_from_another_workflow_is_denied_naming_the_identity(
    control_plane: LocalControlPlane, registry: RegistryServer, local_sigstore: LocalSigstore,
    keyless_controller: DevController,
) -> None:
    image = _image(registry, "keyless/app")
    _sign(local_sigstore, image, local_sigstore.token(workflow=".github/workflows/debug.yml"))
    code, out = _apply(control_plane, image)
    assert code != 0
    assert "[SignerIdentityMismatch]" in out
    assert "debug.yml" in out


def test_a_signature_from_another_issuer_is_denied_naming_the_issuer(
    control_plane: LocalControlPlane, registry: RegistryServer, local_sigstore: LocalSigstore,
    keyless_controller: DevController,
) -> None:
    # Fulcio trusts both issuers and writes the same subject for the same claims: only the
    # issuer tells them apart.
    image = _image(registry, "keyless/app")
    _sign(local_sigstore, image, local_sigstore.token("other"))
    code, out = _apply(control_plane, image)
    assert code != 0
    assert "[SignerIssuerMismatch]" in out
    assert local_sigstore.other_issuer in out


def test_a_signature_from_another_repository_is_denied_naming_the_repository(
    control_plane: LocalControlPlane, registry: RegistryServer, local_sigstore: LocalSigstore,
    keyless_controller: DevController,
) -> None:
    image = _image(registry, "keyless-org/app")
    _sign(local_sigstore, image, local_sigstore.token(repository="org/other"))
    code, out = _apply(control_plane, image)
    assert code != 0
    assert "[SignerRepositoryMismatch]" in out
    assert "org/other" in out
    # The same rule admits the accepted repository: the denial is the repository's doing.
    image = _image(registry, "keyless-org/app")
    _sign(local_sigstore, image, local_sigstore.token())
    code, out = _apply(control_plane, image)
    assert code == 0, out


def test_a_certificate_for_another_commit_than_git_sha_is_denied(
    control_plane: LocalControlPlane, registry: RegistryServer, local_sigstore: LocalSigstore,
    keyless_controller: DevController,
) -> None:
    # Fulcio writes the token's `sha` as SourceRepositoryDigest (1.3.6.1.4.1.57264.1.13).
    image = _image(registry, "keyless/app")
    _sign(local_sigstore, image, local_sigstore.token(sha=OTHER_COMMIT))
    code, out = _apply(control_plane, image, COMMIT)
    assert code != 0
    assert "[CertificateCommitMismatch]" in out
    assert OTHER_COMMIT in out


def test_a_certificate_for_another_ref_than_the_branch_is_denied(
    control_plane: LocalControlPlane, registry: RegistryServer, local_sigstore: LocalSigstore,
    keyless_controller: DevController,
) -> None:
    # Fulcio writes the token's `ref` as SourceRepositoryRef (…1.14): refs/heads/main here.
    image = _image(registry, "keyless/app")
    _sign(local_sigstore, image, local_sigstore.token())
    code, out = _apply(control_plane, image, COMMIT, branch="hotfix")
    assert code != 0
    assert "[CertificateRefMismatch]" in out
    assert "refs/heads/main" in out


def test_a_bundle_replayed_onto_another_digest_is_denied(
    control_plane: LocalControlPlane, registry: RegistryServer, local_sigstore: LocalSigstore,
    keyless_controller: DevController,
) -> None:
    signed = _image(registry, "keyless/app")
    _sign(local_sigstore, signed, local_sigstore.token())
    (bundle_manifest,) = _referrers(registry, signed)
    layer = bundle_manifest["layers"][0]
    repository = "keyless/app"
    bundle = registry.get_blob(repository, layer["digest"])
    # The valid bundle, pushed as a referrer of an image it was not made for.
    other = _image(registry, repository)
    push_referrer(registry, repository, other.split("@")[1], bundle)
    code, out = _apply(control_plane, other)
    assert code != 0
    assert "[SignatureForOtherDigest]" in out
    assert signed.split("@")[1] in out


def test_a_github_style_attestation_is_verified(
    control_plane: LocalControlPlane, registry: RegistryServer, local_sigstore: LocalSigstore,
    keyless_controller: DevController, tmp_path: Path,
) -> None:
    image = _image(registry, "keyless-att/app")
    _attest(local_sigstore, image, local_sigstore.token(), tmp_path)
    # What cosign pushed is what GitHub's push-to-registry pushes: an OCI referrer of the image
    # whose one layer is the bundle, annotated with its content and predicate type.
    (referrer,) = _referrers(registry, image)
    assert referrer["artifactType"] == BUNDLE_V03
    assert referrer["subject"]["digest"] == image.split("@")[1]
    annotations = referrer["annotations"]
    assert annotations["dev.sigstore.bundle.content"] == "dsse-envelope"
    assert annotations["dev.sigstore.bundle.predicateType"] == SLSA_V1
    code, out = _apply(control_plane, image, COMMIT)
    assert code == 0, out
    # Both the attested commit and the certificate's are checked against git-sha.
    code, out = _apply(control_plane, image, OTHER_COMMIT)
    assert code != 0
    assert "[AttestationCommitMismatch]" in out
    assert "[CertificateCommitMismatch]" in out


def test_an_attestation_of_another_commit_is_denied(
    control_plane: LocalControlPlane, registry: RegistryServer, local_sigstore: LocalSigstore,
    keyless_controller: DevController, tmp_path: Path,
) -> None:
    # The certificate names COMMIT, the provenance another: the attestation's commit is wrong.
    image = _image(registry, "keyless-att/app")
    _attest(local_sigstore, image, local_sigstore.token(), tmp_path, commit=OTHER_COMMIT)
    code, out = _apply(control_plane, image, COMMIT)
    assert code != 0
    assert "[AttestationCommitMismatch]" in out


def _only_referrer(registry: RegistryServer, image: str, bundle: bytes) -> None:
    """Make `bundle` the one referrer of `image` (in the fallback tag cosign wrote)."""
    repository, digest = image.split("/", 1)[1].split("@")
    empty = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    registry.push_manifest(repository, digest.replace(":", "-", 1),
                           json.dumps(empty).encode(), OCI_INDEX)
    push_referrer(registry, repository, digest, bundle)


def test_a_bundle_whose_timestamp_is_stripped_is_denied(
    control_plane: LocalControlPlane, registry: RegistryServer, local_sigstore: LocalSigstore,
    keyless_controller: DevController,
) -> None:
    # Rekor v2 gives no integrated time, so the TSA's timestamp is the bundle's only proof that
    # the short-lived certificate was valid when it signed. Without it nothing is proven.
    # (cosign itself refuses to sign for Rekor v2 without a TSA.)
    repository = "keyless/app"
    image = _image(registry, repository)
    _sign(local_sigstore, image, local_sigstore.token())
    (bundle_manifest,) = _referrers(registry, image)
    bundle = json.loads(registry.get_blob(
        repository, bundle_manifest["layers"][0]["digest"]))
    assert bundle["verificationMaterial"].pop("timestampVerificationData")
    _only_referrer(registry, image, json.dumps(bundle).encode())
    code, out = _apply(control_plane, image)
    assert code != 0
    assert "[SignatureInvalid]" in out
    assert "timestamp" in out.lower() or "time" in out.lower()


def test_an_expired_certificate_without_a_valid_time_is_denied(
    control_plane: LocalControlPlane, registry: RegistryServer,
    constructed: sigstore_instance.LocalSigstore, keyless_controller: DevController,
) -> None:
    # Real Fulcio issues certificates valid from now for ten minutes, and cosign gets its
    # timestamp at once, so neither can make this case: the in-process CA issues a certificate
    # that expired an hour before the only time the bundle proves (its log entry's).
    repository = "keyless-constructed/app"
    image = _image(registry, repository)
    digest = image.split("@")[1]
    expired = constructed.issue(valid_from=constructed.now - 3600 - 600, minutes=10)
    push_referrer(registry, repository, digest, constructed.sign_image(digest, expired))
    code, out = _apply(control_plane, image)
    assert code != 0
    assert "[SignatureInvalid]" in out
    # The same CA's certificate valid at the logged time is admitted under the same rule.
    image = _image(registry, repository)
    digest = image.split("@")[1]
    push_referrer(registry, repository, digest, constructed.sign_image(digest))
    code, out = _apply(control_plane, image)
    assert code == 0, out
