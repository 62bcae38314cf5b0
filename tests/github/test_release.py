""".github/workflows/release.yml: linted by the real actionlint, every action pinned by commit,
and the release's order: push by digest, sign, attest, verify, and only then tag.

actionlint (built by hack/tools.sh from its Go module) runs with shellcheck over the `run:`
scripts, and is shown refusing a broken copy so the lint cannot pass vacuously.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.dev.controlplane import find_binary

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github/workflows/release.yml"
SUPPLY_CHAIN = ROOT / "docs/supply-chain.md"
PIN = re.compile(r"^\s*(?:-\s+)?uses:\s*([\w.-]+/[\w./-]+)@(\S+)(?:\s+#\s*(\S+))?\s*$")


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    doc: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return doc


def _actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is missing: `make tools` installs it (actionlint checks scripts)")
    return subprocess.run([str(find_binary("actionlint")), "-no-color", "-oneline",
                           f"-shellcheck={shellcheck}", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_actionlint_passes() -> None:
    result = _actionlint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("old", "new", "complaint"), [
    ("steps.build.outputs.digest }}\n        run: cosign sign",
     "steps.biuld.outputs.digest }}\n        run: cosign sign", "biuld"),
    ('run: cosign sign --yes "${IMAGE}@${DIGEST}"', "run: cosign sign --yes ${IMAGE}@$DIGEST",
     "SC2086"),
    ("runs-on: ubuntu-24.04\n    timeout-minutes: 60", "runs-on: ubuntu-24.04\n    timeout: 60",
     "timeout"),
])
def test_actionlint_refuses_a_broken_workflow(tmp_path: Path, old: str, new: str,
                                              complaint: str) -> None:
    text = WORKFLOW.read_text()
    assert old in text
    broken = tmp_path / ".github/workflows/release.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(old, new, 1))
    result = _actionlint(broken)
    assert result.returncode != 0
    assert complaint in result.stdout, result.stdout


def _pins() -> list[tuple[int, str, str, str | None]]:
    out = []
    for number, line in enumerate(WORKFLOW.read_text().splitlines(), 1):
        if "uses:" in line:
            match = PIN.match(line)
            assert match, f"line {number}: cannot read {line.strip()!r}"
            out.append((number, match.group(1), match.group(2), match.group(3)))
    return out


def test_every_action_is_pinned_by_a_full_commit_sha_with_its_version() -> None:
    pins = _pins()
    assert pins
    for number, action, ref, comment in pins:
        assert re.fullmatch(r"[0-9a-f]{40}", ref), (
            f"line {number}: {action}@{ref} is not pinned by a full commit SHA (a tag can move)")
        assert comment and re.fullmatch(r"v\d+\.\d+\.\d+", comment), (
            f"line {number}: {action}@{ref} needs its release as a comment: # vX.Y.Z")
    # One action, one pin: two commits for one action would be two versions in one release.
    by_action: dict[str, set[tuple[str, str | None]]] = {}
    for _, action, ref, comment in pins:
        by_action.setdefault(action, set()).add((ref, comment))
    assert all(len(v) == 1 for v in by_action.values()), by_action


def test_the_pins_are_the_ones_documented() -> None:
    # docs/supply-chain.md lists each pin with where its SHA was read from; they must agree.
    doc = SUPPLY_CHAIN.read_text()
    for _, action, ref, comment in _pins():
        assert re.search(rf"`{re.escape(action)}`\s*\|\s*`{comment}`\s*\|\s*`{ref}`", doc), (
            f"{action}@{ref} # {comment} is not in docs/supply-chain.md's table of pins")


def _steps(workflow: dict[Any, Any], job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return steps


def _index(steps: list[dict[str, Any]], predicate: str) -> int:
    hits = [i for i, s in enumerate(steps)
            if predicate in str(s.get("uses", "")) or predicate in str(s.get("run", ""))]
    assert len(hits) == 1, f"expected one step with {predicate!r}, found {len(hits)}"
    return hits[0]


def test_runs_on_version_tags_only_with_least_privilege(workflow: dict[Any, Any]) -> None:
    # PyYAML reads the key `on` as True.
    trigger = workflow[True]
    assert set(trigger) == {"push"} and set(trigger["push"]) == {"tags"}
    assert all(t.startswith("v") for t in trigger["push"]["tags"])
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        permissions = job["permissions"]
        assert permissions["contents"] == "read", name
        assert permissions["id-token"] == "write", f"{name} signs keyless"
        assert set(permissions) <= {"contents", "packages", "id-token", "attestations"}, name
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, (
                    f"{name}: the checkout must not leave the token in .git/config")


def test_the_image_is_pushed_by_digest_signed_and_attested_before_it_is_tagged(
        workflow: dict[Any, Any]) -> None:
    steps = _steps(workflow, "image")
    build = steps[_index(steps, "docker/build-push-action@")]
    outputs = build["with"]["outputs"]
    assert "push-by-digest=true" in outputs and "push=true" in outputs
    assert "tags" not in build["with"], "the build must not tag: the tag comes last"
    assert set(build["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    sign = _index(steps, "cosign sign --yes")
    provenance = _index(steps, "actions/attest-build-provenance@")
    sbom = _index(steps, "actions/attest-sbom@")
    make_sbom = _index(steps, "make sbom")
    verify = _index(steps, "cosign verify")
    tag = _index(steps, "imagetools create --tag")
    assert make_sbom < sbom
    assert max(sign, provenance, sbom, verify) < tag
    for i in (provenance, sbom):
        with_ = steps[i]["with"]
        assert with_["push-to-registry"] is True
        assert with_["subject-digest"] == "${{ steps.build.outputs.digest }}"
        assert with_["subject-name"] == "${{ steps.names.outputs.image }}"
    assert "${IMAGE}@${DIGEST}" in steps[sign]["run"], "sign the digest, never a tag"
    assert steps[sign]["env"]["DIGEST"] == "${{ steps.build.outputs.digest }}"
    # The self-check uses the identity README's verification configuration expects.
    assert ".github/workflows/release.yml@${GITHUB_REF}" in steps[verify]["run"]
    assert workflow["env"]["OIDC_ISSUER"] == "https://token.actions.githubusercontent.com"
    # Build arguments come from hack/image.sh, so the labels are make image's.
    args = steps[_index(steps, "PRINT_BUILD_ARGS")]["run"]
    assert "PRINT_BUILD_ARGS=1 bash hack/image.sh" in args


def test_the_chart_is_pinned_to_the_digest_pushed_as_oci_and_signed(
        workflow: dict[Any, Any]) -> None:
    job = workflow["jobs"]["chart"]
    assert job["needs"] == "image"
    steps = job["steps"]
    package = steps[_index(steps, "hack/chart-release.sh")]
    assert package["env"]["IMAGE_DIGEST"] == "${{ needs.image.outputs.digest }}"
    assert package["env"]["GIT_SHA"] == "${{ github.sha }}"
    assert set(package["env"]) == {"VERSION", "IMAGE_REPOSITORY", "IMAGE_DIGEST", "GIT_SHA",
                                   "BUILD_ID", "PIPELINE_URL", "BUILD_TIMESTAMP"}
    push = _index(steps, "helm push")
    sign = _index(steps, "cosign sign --yes")
    attest = _index(steps, "actions/attest-build-provenance@")
    login = _index(steps, "docker/login-action@")
    assert '"oci://' in steps[push]["run"]
    assert push < sign < attest
    # cosign and the attest action push with Docker's credentials, not helm's.
    assert login < sign
    assert steps[attest]["with"]["subject-digest"] == "${{ steps.push.outputs.digest }}"
    assert steps[sign]["env"]["DIGEST"] == "${{ steps.push.outputs.digest }}"


README = ROOT / "README.md"
IDENTITY = ("https://github.com/provenance-dev/provenance-controller/.github/workflows/"
            "release.yml@refs/tags/")


def _verification_config() -> str:
    text = README.read_text()
    section = text[text.index("## Verifying this project's own release"):]
    match = re.search(r"```yaml\n(# verify-provenance-controller\.yaml\n.*?)```", section, re.S)
    assert match, "README lost the release verification configuration"
    return match.group(1)


def test_the_readme_verification_names_this_workflow_on_tags_only() -> None:
    doc = yaml.safe_load(_verification_config())
    [signer] = doc["signatures"]["keyless"]["signers"]
    assert signer["issuer"] == "https://token.actions.githubusercontent.com"
    pattern = re.compile(signer["subject_regex"])
    assert signer["subject_regex"].startswith("^") and signer["subject_regex"].endswith("$")
    for good in ("v1.4.0", "v0.1.0", "v2.0.0-rc.1"):
        assert pattern.fullmatch(IDENTITY + good), good
    for bad in (IDENTITY.replace("refs/tags/", "refs/heads/") + "main",
                IDENTITY.replace("release.yml", "ci.yml") + "v1.4.0",
                IDENTITY.replace("provenance-dev/", "attacker/") + "v1.4.0",
                IDENTITY + "v1.4.0.evil", IDENTITY + "main",
                "https://github.com/provenance-dev/provenance-controllerx/.github/workflows/"
                "release.yml@refs/tags/v1.4.0"):
        assert not pattern.fullmatch(bad), bad
    # The tags the workflow runs on are the tags the regex accepts.
    [tags] = yaml.safe_load(WORKFLOW.read_text())[True]["push"]["tags"]
    assert tags == "v[0-9]+.[0-9]+.[0-9]+*"
    [rule] = doc["signatures"]["rules"]
    assert rule["require"] == "attestation" and rule["signers"] == [signer["name"]]


def test_the_readme_verification_loads() -> None:
    # The README's configuration is what users copy: its key names must be the model's.
    from controller.config import parse_config

    config = parse_config(_verification_config(), source="README")
    assert config.signatures.enabled
    assert [s.name for s in config.signatures.keyless.signers] == ["provenance-controller-release"]


def test_the_builder_is_pinned_too(workflow: dict[Any, Any]) -> None:
    # The emulator and BuildKit build the image; their actions default to moving tags.
    env = workflow["env"]
    for key in ("BINFMT_IMAGE", "BUILDKIT_IMAGE"):
        assert re.fullmatch(r"[a-z0-9./-]+:[\w.-]+@sha256:[0-9a-f]{64}", env[key]), env[key]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", env["BUILDX_VERSION"])
    steps = _steps(workflow, "image")
    qemu = steps[_index(steps, "docker/setup-qemu-action@")]["with"]
    assert qemu["image"] == "${{ env.BINFMT_IMAGE }}" and qemu["cache-image"] is False
    buildx = steps[_index(steps, "docker/setup-buildx-action@")]["with"]
    assert buildx["driver-opts"] == "image=${{ env.BUILDKIT_IMAGE }}"
    assert buildx["version"] == "${{ env.BUILDX_VERSION }}"
    doc = SUPPLY_CHAIN.read_text()
    for key in ("BINFMT_IMAGE", "BUILDKIT_IMAGE"):
        assert env[key].removeprefix("docker.io/") in doc, f"{key} is not documented"
