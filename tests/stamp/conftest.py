"""Fixtures for the stamp tests: a clean environment (no CI variables leak in from the machine that
runs the tests, which may itself be a CI runner) inside a fresh git checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.stamp.gitrepo import make_repo

CI_MARKERS = ("GITHUB_ACTIONS", "GITLAB_CI", "TF_BUILD", "JENKINS_URL", "JENKINS_HOME",
              "PROVENANCE_CONFIG", "PROVENANCE_CHECK_USER", "DOCKER_CONFIG")


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """cwd is a clean one-commit repository; CI variables are removed. Returns (path, sha)."""
    for name in list(os.environ):
        if name in CI_MARKERS or name.startswith(
                ("GITHUB_", "CI_", "BUILD_", "SYSTEM_", "PROVENANCE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.docker/config.json of the host
    repo = tmp_path / "repo"
    sha = make_repo(repo)
    monkeypatch.chdir(repo)
    return repo, sha
