"""docs/ci-recipes.md, run: each CI recipe's kubectl-provenance lines with that CI's variables.

The page is the source: the configuration file, the predicate script and every
`kubectl-provenance` line are taken out of it, so a recipe that drifts from the tool fails here.
Docker, cosign and kubectl are not run (no daemon, no keys, no cluster here); what is run is
everything the provenance tooling does: print-env, the SLSA predicate, stamp with --pin-digests
against a real registry, and check.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from controller.signatures.provenance import SLSA_V1, extract_provenance
from tests.fixtures.registry import RegistryServer
from tests.stamp import test_ci
from tests.stamp.gitrepo import git, make_repo

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "ci-recipes.md"
CRANE = ROOT / "bin" / "crane"
VENV_BIN = Path(sys.executable).parent
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def sections() -> dict[str, list[tuple[str, str]]]:
    """`## heading` → its fenced blocks as (language, text)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for part in re.split(r"^## ", PAGE.read_text(), flags=re.M)[1:]:
        heading, _, body = part.partition("\n")
        out[heading.strip()] = _FENCE.findall(body)
    return out


def shared_file(path: str) -> str:
    """The shared block whose first line is `# <path>`."""
    for _, text in sections()["Shared files"]:
        if re.match(rf"# {re.escape(path)}[:\n]", text):
            return text
    raise AssertionError(f"docs/ci-recipes.md has no block for {path}")


def provenance_lines(block: str) -> list[str]:
    """The recipe's shell lines that run the provenance tooling, in order."""
    lines = []
    for raw in block.splitlines():
        line = raw.strip()
        line = line[2:] if line.startswith("- ") else line  # GitLab's script list
        if "kubectl-provenance " in line or line.startswith("sh ci/slsa-predicate.sh"):
            lines.append(line)
    return lines


@pytest.fixture
def registry_host(registry: RegistryServer) -> str:
    """The session's shared registry."""
    return registry.host


def _env_for(ci: str, sha: str) -> dict[str, str]:
    """The variables the CI system sets (as in test_ci), for this commit."""
    if ci == "GitHub Actions":
        return {**test_ci.GITHUB, "GITHUB_SHA": sha,
                "REPO_URL": "https://github.com/example-org/payments-api"}
    if ci == "GitLab CI":
        return {**test_ci.GITLAB, "CI_COMMIT_SHA": sha, "CI_ENVIRONMENT_NAME": "production",
                "REPO_URL": "https://gitlab.example.com/team/payments"}
    if ci == "Jenkins":
        return {**test_ci.JENKINS, "GIT_COMMIT": sha,
                "REPO_URL": "https://git.example.com/payments/api"}
    return {**test_ci.AZURE, "BUILD_SOURCEVERSION": sha,
            "REPO_URL": "https://dev.azure.com/example-org/_git/payments"}


EXPECTED = {
    "GitHub Actions": {
        "branch": "main", "build-id": "12345678901", "deployed-by": "octocat",
        "pipeline-url": "https://github.com/example-org/payments-api/actions/runs/12345678901"
                        "/attempts/2"},
    "GitLab CI": {
        "branch": "feature/pay", "build-id": "987654", "deployed-by": "jdoe",
        "build-timestamp": "2026-11-25T11:58:00Z",
        "pipeline-url": "https://gitlab.example.com/team/payments/-/pipelines/987654"},
    "Jenkins": {
        "branch": "release/1.x", "build-id": "412", "deployed-by": "jenkins-alice",
        "pipeline-url": "https://jenkins.example.com/job/payments/412/"},
    "Azure Pipelines": {
        "branch": "feature/pay", "build-id": "5521", "deployed-by": "ada@example.com",
        "pipeline-url": "https://dev.azure.com/example-org/Payments%20Team/_build/results"
                        "?buildId=5521"},
}


def test_every_yaml_block_parses() -> None:
    for heading, blocks in sections().items():
        for language, text in blocks:
            if language == "yaml":
                assert yaml.safe_load(text) is not None, heading


@pytest.mark.parametrize("ci", list(EXPECTED))
def test_the_recipe_runs_with_that_ci_systems_variables(
        ci: str, registry_host: str, tmp_path: Path) -> None:
    [(_, block), *_] = sections()[ci]
    lines = provenance_lines(block)
    assert [line.split()[0:3] for line in lines] == [
        ["eval", '"$(kubectl-provenance', "stamp"], ["sh", "ci/slsa-predicate.sh", ">"],
        ["kubectl-provenance", "stamp", "--pin-digests"],
        ["kubectl-provenance", "check", "--config"]], lines

    # The team's repository: the shared files committed, the rendered manifest untracked.
    repo = tmp_path / "repo"
    sha = make_repo(repo)
    for path in ("k8s/provenance-config.yaml", "ci/slsa-predicate.sh"):
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(shared_file(path))
        git(repo, "add", path)
    git(repo, "commit", "-q", "-m", "ci files")
    sha = git(repo, "rev-parse", "HEAD")
    layer = tmp_path / "layer.tar"
    (tmp_path / "app").write_text(f"{ci}\n")
    with tarfile.open(layer, "w") as tar:
        tar.add(tmp_path / "app", arcname="app")
    image = f"{registry_host}/stamp-recipes/api:{sha}"
    subprocess.run([str(CRANE), "append", "--insecure", "-f", str(layer), "-t", image],
                   check=True, capture_output=True, timeout=120)
    digest = subprocess.run([str(CRANE), "digest", "--insecure", image], check=True,
                            capture_output=True, text=True, timeout=60).stdout.strip()
    service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: payments\n"
    (repo / "deploy.yaml").write_text(service + f"""---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: payments
spec:
  selector:
    matchLabels: {{app: api}}
  template:
    metadata:
      labels: {{app: api}}
    spec:
      containers:
        - name: api
          image: {image}
""")
    # The local registry speaks plain HTTP: the one flag the test adds.
    script = "\n".join(["set -eu", *[
        line.replace("--pin-digests", f"--pin-digests --insecure-registry {registry_host}")
        for line in lines]])
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), **_env_for(ci, sha)}
    done = subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # check passed (set -e): GitHub's format prints only annotations, the text format a summary.
    if "-o github" in lines[-1]:
        assert done.stdout == ""
    else:
        assert done.stdout.endswith("1 workload checked, 0 would be denied\n")

    # The manifest: both sites stamped with this CI's values, the image pinned, the rest as is.
    stamped = (repo / "deploy.yaml").read_text()
    assert stamped.startswith(service + "---\n")
    deployment = yaml.safe_load(stamped.split("---\n", 1)[1])
    annotations = deployment["metadata"]["annotations"]
    assert deployment["spec"]["template"]["metadata"]["annotations"] == annotations
    expected = {"git-sha": sha, "environment": "production", **EXPECTED[ci]}
    got = {k.removeprefix("provenance.dev/"): v for k, v in annotations.items()}
    assert {k: got[k] for k in expected} == expected
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"{registry_host}/stamp-recipes/api@{digest}")

    # The predicate names the same commit, run and timestamp as the annotations.
    predicate = json.loads((repo / "provenance.json").read_text())
    facts = extract_provenance(SLSA_V1, predicate)
    assert facts.has_commit(sha)
    assert facts.has_pipeline_url(got["pipeline-url"])
    assert predicate["runDetails"]["metadata"]["startedOn"] == got["build-timestamp"]
    if ci in ("GitHub Actions", "GitLab CI"):
        assert facts.has_build_id(got["build-id"])
