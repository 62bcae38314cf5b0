"""A real git checkout in a temporary directory, for the git fallback and the dirty-tree rule."""

from __future__ import annotations

import subprocess
from pathlib import Path

_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` with a fixed identity and no user configuration."""
    done = subprocess.run(["git", *args], cwd=cwd, env=_ENV, capture_output=True, text=True,
                          check=True, timeout=30)
    return done.stdout.strip()


def make_repo(path: Path, *, branch: str = "main") -> str:
    """A repository at `path` with one commit of `README`; returns the commit SHA."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    (path / "README").write_text("hello\n")
    git(path, "add", "README")
    git(path, "commit", "-q", "-m", "first")
    return git(path, "rev-parse", "HEAD")
