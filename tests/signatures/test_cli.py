"""`kubectl-provenance verify-bundle` as a real process, the way the conformance harness runs it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.sigstore import SUBJECT as LOCAL_SUBJECT
from tests.fixtures.sigstore import LocalSigstore

CASES = Path(__file__).parent.parent / "data" / "sigstore-conformance" / "bundle-verify"
IDENTITY = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
            ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
ISSUER = "https://token.actions.githubusercontent.com"
ARTIFACT = CASES / "a.txt"


def kubectl_provenance(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "kubectl-provenance"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "controller.cli"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def keyless(case: str, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return kubectl_provenance(
        "verify-bundle", "--bundle", str(CASES / case / "bundle.sigstore.json"),
        "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER, *extra, target)


def test_a_good_bundle_verifies_by_path_with_the_embedded_root() -> None:
    done = keyless("happy-path-v0.3", str(ARTIFACT))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"OK: {ARTIFACT}")
    assert "hashedrekord/0.0.1" in done.stdout


def test_a_good_bundle_verifies_by_digest_with_a_given_root() -> None:
    digest = "sha256:" + hashlib.sha256(ARTIFACT.read_bytes()).hexdigest()
    done = keyless("rekor2-happy-path", digest,
                   "--trusted-root", str(CASES / "rekor2-happy-path" / "trusted_root.json"))
    assert done.returncode == 0, done.stderr
    assert "timestamp-authority" in done.stdout


def test_a_key_signed_bundle_verifies_with_its_key() -> None:
    case = CASES / "managed-key-happy-path"
    done = kubectl_provenance("verify-bundle", "--bundle", str(case / "bundle.sigstore.json"),
                              "--key", str(case / "key.pub"), str(ARTIFACT))
    assert done.returncode == 0, done.stderr


def test_a_bad_bundle_fails_with_the_reason() -> None:
    done = keyless("signature-mismatch_fail", str(ARTIFACT))
    assert done.returncode == 1
    assert done.stderr.startswith(f"FAIL: {ARTIFACT}: ") and "invalid" in done.stderr.lower()
    assert done.stdout == ""


def test_the_wrong_identity_is_named() -> None:
    done = kubectl_provenance(
        "verify-bundle", "--bundle", str(CASES / "happy-path-v0.3" / "bundle.sigstore.json"),
        "--certificate-identity", IDENTITY.replace("main", "dev"),
        "--certificate-oidc-issuer", ISSUER, str(ARTIFACT))
    assert done.returncode == 1
    assert "certificate identity is" in done.stderr


@pytest.mark.parametrize("signer", [
    (),  # neither
    ("--key", "k.pub", "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER),
    ("--certificate-identity", IDENTITY),  # half an identity
])
def test_the_signer_is_a_key_or_a_whole_identity(signer: tuple[str, ...]) -> None:
    done = kubectl_provenance("verify-bundle", "--bundle", "b.json", *signer, str(ARTIFACT))
    assert done.returncode == 2
    assert "give --key, or both" in done.stderr


def test_a_bundle_cosign_made_against_the_local_sigstore_verifies(
    local_sigstore: LocalSigstore, tmp_path: Path,
) -> None:
    """Real cosign, real Fulcio (SCT from a real CT log), Rekor v2 and TSA: the whole path a
    keyless signature takes, checked by our verifier against the trusted root of those services.
    """
    artifact = tmp_path / "artifact.txt"
    artifact.write_text("built by org/app\n")
    bundle = tmp_path / "artifact.sigstore.json"
    signed = local_sigstore.cosign("sign-blob", "--yes", "--bundle", str(bundle), str(artifact),
                                   token=local_sigstore.token())
    assert signed.returncode == 0, signed.stderr + local_sigstore.logs()

    def verify(identity: str, issuer: str) -> subprocess.CompletedProcess[str]:
        return kubectl_provenance(
            "verify-bundle", "--bundle", str(bundle), "--certificate-identity", identity,
            "--certificate-oidc-issuer", issuer,
            "--trusted-root", str(local_sigstore.trusted_root), str(artifact))

    done = verify(LOCAL_SUBJECT, local_sigstore.issuer)
    assert done.returncode == 0, done.stderr
    assert "hashedrekord/0.0.2" in done.stdout  # a Rekor v2 entry
    assert "timestamp-authority" in done.stdout
    wrong = verify(LOCAL_SUBJECT, local_sigstore.other_issuer)
    assert wrong.returncode == 1
    assert "issuer" in wrong.stderr
