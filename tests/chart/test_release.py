"""The chart as the release publishes it passes the gate it installs.

hack/chart-release.sh (what .github/workflows/release.yml runs) is given release-like values;
its package is rendered by the real helm and judged by the real `kubectl-provenance check` with
the default policy. The controller's own Deployment must pass, and the unreleased chart, which
carries no provenance and a tag, must not, so the check is shown able to fail.

Needs the helm binary (`make tools`), not a cluster; marked e2e like the other chart renders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import Config
from controller.dev.controlplane import find_binary
from tests.chart.helm import CHART, KUBE_VERSION, RELEASE_NAMESPACE, ROOT, find, helm, objects

RELEASE = {
    "VERSION": "1.4.0",
    "IMAGE_REPOSITORY": "ghcr.io/provenance-dev/provenance-controller",
    "IMAGE_DIGEST": "sha256:" + "5e" * 32,
    "GIT_SHA": "3f2a9c41d5e8b7f60a1c2d3e4f5a6b7c8d9e0f12",
    "BUILD_ID": "12207719364",
    "PIPELINE_URL": "https://github.com/provenance-dev/provenance-controller/actions/runs/12207719364",
    "BUILD_TIMESTAMP": "2026-11-30T17:04:11Z",
}
"""What the release workflow passes: the tag's version, the pushed digest, the run."""
INSTALLER = "platform-admin@example.com"
"""The user who runs `helm install` (and so the Deployment's deployed-by)."""


def _helm_env(home: Path) -> dict[str, str]:
    return {**os.environ, "HELM": str(find_binary("helm")), "PYTHON": sys.executable,
            "HOME": str(home), "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}


def _chart_release(out: Path, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "hack/chart-release.sh"), str(out)],
                          env={**_helm_env(home), **env}, capture_output=True, text=True,
                          timeout=180)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory, helm_home: Path) -> Path:
    out = tmp_path_factory.mktemp("release")
    result = _chart_release(out, helm_home, **RELEASE)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path == out / f"provenance-controller-{RELEASE['VERSION']}.tgz" and path.is_file()
    return path


def _render(chart: Path, home: Path, *sets: str) -> str:
    args = ["template", "pc", str(chart), "--namespace", RELEASE_NAMESPACE,
            "--kube-version", KUBE_VERSION, "--skip-tests"]
    for setting in sets:
        args += ["--set", setting]
    return helm(*args, home=home).stdout


def _check(rendered: str, tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "rendered.yaml"
    path.write_text(rendered)
    script = Path(sys.executable).parent / "kubectl-provenance"
    result = subprocess.run([str(script), "check", "--as", INSTALLER, "-o", "json", *extra,
                             str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, body


def _reasons(body: dict[str, Any]) -> set[str]:
    return {v["reason"] for d in body["workloads"] for v in d["violations"]}


def test_the_released_chart_passes_the_default_policy(packaged: Path, helm_home: Path,
                                                      tmp_path: Path) -> None:
    rendered = _render(packaged, helm_home, f"provenance.deployedBy={INSTALLER}")
    code, body = _check(rendered, tmp_path)
    [deployment] = body["workloads"]
    assert deployment["name"] == "pc-provenance-controller"
    assert deployment["namespace"] == RELEASE_NAMESPACE
    assert deployment["exempt"] is None, "the check must judge it, not exempt it"
    assert deployment["violations"] == []
    assert code == 0 and body["allowed"] is True


def test_the_released_chart_carries_the_release(packaged: Path, helm_home: Path) -> None:
    docs = objects(_render(packaged, helm_home, f"provenance.deployedBy={INSTALLER}"))
    deployment = find(docs, "Deployment")
    claims = {
        "provenance.dev/git-sha": RELEASE["GIT_SHA"],
        "provenance.dev/build-id": RELEASE["BUILD_ID"],
        "provenance.dev/pipeline-url": RELEASE["PIPELINE_URL"],
        "provenance.dev/build-timestamp": RELEASE["BUILD_TIMESTAMP"],
        "provenance.dev/deployed-by": INSTALLER,
    }
    assert deployment["metadata"]["annotations"] == claims
    template = deployment["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in template.items() if k.startswith("provenance.dev/")} == claims
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{RELEASE['IMAGE_REPOSITORY']}@{RELEASE['IMAGE_DIGEST']}"
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/version"] == RELEASE["VERSION"]


def test_the_default_policy_requires_what_the_chart_writes() -> None:
    # deployed-by is written because the default policy requires it; if the default grows a
    # requirement the chart does not fill, the released chart would fail its own gate.
    written = {"git-sha", "build-id", "pipeline-url", "build-timestamp", "deployed-by"}
    assert set(Config().annotations.required) <= written


def test_without_the_installer_the_deployment_fails(packaged: Path, helm_home: Path,
                                                    tmp_path: Path) -> None:
    code, body = _check(_render(packaged, helm_home), tmp_path)
    assert code == 1
    [deployment] = body["workloads"]
    assert [v["reason"] for v in deployment["violations"]] == ["MissingAnnotation"]
    assert "deployed-by" in deployment["violations"][0]["message"]


def test_the_unreleased_chart_fails_the_gate(helm_home: Path, tmp_path: Path) -> None:
    code, body = _check(_render(CHART, helm_home, f"provenance.deployedBy={INSTALLER}"),
                        tmp_path)
    assert code == 1 and body["allowed"] is False
    # A tag, and no commit or build: what the repository's chart honestly is.
    assert {"ImageNotPinned", "MissingAnnotation"} <= _reasons(body)
    docs = objects(_render(CHART, helm_home))
    assert "annotations" not in find(docs, "Deployment")["metadata"], (
        "empty provenance values must not render as empty annotations")


def test_the_annotations_follow_a_custom_prefix(packaged: Path, helm_home: Path,
                                                tmp_path: Path) -> None:
    prefix = "provenance.example.com/"
    rendered = _render(packaged, helm_home, f"provenance.deployedBy={INSTALLER}",
                       f"config.annotations.prefix={prefix}")
    deployment = find(objects(rendered), "Deployment")
    assert set(deployment["metadata"]["annotations"]) == {
        prefix + n for n in ("git-sha", "build-id", "pipeline-url", "build-timestamp",
                             "deployed-by")}
    config = tmp_path / "config.yaml"
    config.write_text(f"annotations:\n  prefix: {prefix}\n")
    code, body = _check(rendered, tmp_path, "--config", str(config))
    assert code == 0, body


@pytest.mark.parametrize(("name", "value"), [
    ("GIT_SHA", "3f2a9c4"),
    ("IMAGE_DIGEST", "sha256:abc"),
    ("PIPELINE_URL", "http://ci.example.com/runs/1"),
    ("BUILD_TIMESTAMP", "2026-11-30 17:04"),
    ("VERSION", "v1.4.0"),
    ("BUILD_ID", ""),
])
def test_chart_release_refuses_what_the_gate_would(name: str, value: str, helm_home: Path,
                                                   tmp_path: Path) -> None:
    result = _chart_release(tmp_path / "out", helm_home, **{**RELEASE, name: value})
    assert result.returncode != 0
    assert name in result.stderr
    assert not (tmp_path / "out").exists(), "nothing may be packaged from a refused value"


def test_the_packaged_values_keep_their_comments(packaged: Path, tmp_path: Path) -> None:
    subprocess.run(["tar", "-xzf", str(packaged), "-C", str(tmp_path)], check=True)
    values = (tmp_path / "provenance-controller/values.yaml").read_text()
    original = (CHART / "values.yaml").read_text()
    comments = [line for line in original.splitlines() if line.strip().startswith("#")]
    assert comments and all(c in values for c in comments), "the round trip lost comments"
    filled = yaml.safe_load(values)
    assert filled["image"]["digest"] == RELEASE["IMAGE_DIGEST"]
    assert filled["provenance"]["buildId"] == RELEASE["BUILD_ID"], "a run id stays a string"
    assert filled["provenance"]["deployedBy"] == "", "the installer, not the release, says who"


@pytest.mark.parametrize(("setting", "complaint"), [
    ("provenance.gitSha=3f2a9c4", "/provenance/gitSha"),
    ("provenance.pipelineUrl=http://ci.example.com/1", "/provenance/pipelineUrl"),
    ("provenance.buildTimestamp=yesterday", "/provenance/buildTimestamp"),
    ("provenance.commit=abc", "additional properties 'commit' not allowed"),
])
def test_the_schema_refuses_provenance_the_gate_would(setting: str, complaint: str,
                                                     helm_home: Path) -> None:
    result = helm("lint", str(CHART), "--set", setting, home=helm_home, check=False)
    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr


def test_a_numeric_build_id_from_set_renders_as_a_string(helm_home: Path) -> None:
    docs = objects(_render(CHART, helm_home, "provenance.buildId=4182"))
    annotations = find(docs, "Deployment")["metadata"]["annotations"]
    assert annotations == {"provenance.dev/build-id": "4182"}
