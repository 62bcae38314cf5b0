"""requirements.lock and requirements-build.lock: hash-pinned, and in step with pyproject.toml.

The image installs them with `pip install --require-hashes` (hack/install-locked.sh). These
tests read them offline, then drive the real hack/lock.sh (uv, against the package index) to
prove `make lock-check` passes on this tree and fails on a stale lock.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCKS = {"requirements.lock": "project.dependencies",
         "requirements-build.lock": "build-system.requires"}
"""Each lock and the pyproject.toml table it pins."""


def _pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _wanted(table: str) -> list[Requirement]:
    node: object = _pyproject()
    for part in table.split("."):
        assert isinstance(node, dict)
        node = node[part]
    assert isinstance(node, list)
    return [Requirement(r) for r in node]


def _entries(lock: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes) of every requirement in a lock."""
    text = (ROOT / lock).read_text()
    out: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        first = block.split("\\", 1)[0].strip()
        if not first or first.startswith("#"):
            continue
        req = Requirement(first)
        [spec] = list(req.specifier)
        assert spec.operator == "==", f"{lock}: {first} is not pinned with =="
        out[canonicalize_name(req.name)] = (spec.version, re.findall(r"--hash=(\S+)", block))
    return out


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_entry_is_pinned_with_sha256_hashes(lock: str) -> None:
    entries = _entries(lock)
    assert entries, f"{lock} pins nothing"
    for name, (_, hashes) in entries.items():
        assert hashes, f"{lock}: {name} has no hash; pip --require-hashes would refuse it"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), (name, hashes)
    header = (ROOT / lock).read_text().splitlines()[:3]
    assert any(re.fullmatch(r"# exclude-newer: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", h)
               for h in header), f"{lock} lost the cutoff that makes re-locking reproducible"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_declared_requirement_is_locked_within_its_range(lock: str) -> None:
    entries = _entries(lock)
    for req in _wanted(LOCKS[lock]):
        name = canonicalize_name(req.name)
        assert name in entries, f"{req} is declared in pyproject.toml but not in {lock}"
        version = entries[name][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"{lock} pins {name}=={version}, outside pyproject.toml's {req}")


def test_the_build_lock_holds_nothing_the_runtime_needs() -> None:
    # setuptools builds the wheel and stays in the build stage; the runtime lock must not need it.
    assert "setuptools" not in _entries("requirements.lock")
    assert set(_entries("requirements-build.lock")) == {"setuptools"}


def _lock_sh(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PYTHON": sys.executable, "UV": str(venv_bin / "uv")}
    return subprocess.run(["bash", str(tree / "hack/lock.sh"), *args], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


def _copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "hack").mkdir(parents=True)
    for name in ("pyproject.toml", *LOCKS, "hack/lock.sh"):
        shutil.copy2(ROOT / name, tree / name)
    return tree


def test_lock_check_passes_on_this_tree(tmp_path: Path) -> None:
    result = _lock_sh(_copy_tree(tmp_path), "--check")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("edit", [
    pytest.param(('"PyYAML>=6",', '"PyYAML>=6",\n    "six>=1.16",'), id="new-dependency"),
    pytest.param(('"kopf>=1.38,<2",', '"kopf>=1.38,<1.39",'), id="narrowed-range"),
    pytest.param(('requires = ["setuptools>=77"]', 'requires = ["setuptools>=77", "wheel"]'),
                 id="new-build-requirement"),
])
def test_lock_check_fails_when_pyproject_moves_on(tmp_path: Path, edit: tuple[str, str]) -> None:
    tree = _copy_tree(tmp_path)
    pyproject = tree / "pyproject.toml"
    old, new = edit
    assert old in pyproject.read_text()
    pyproject.write_text(pyproject.read_text().replace(old, new))
    result = _lock_sh(tree, "--check")
    assert result.returncode == 1, result.stderr
    assert "the lock is stale against pyproject.toml: run 'make lock'" in result.stderr
    # --check never rewrites the committed lock.
    for lock in LOCKS:
        assert (tree / lock).read_text() == (ROOT / lock).read_text()


def test_lock_check_fails_on_a_hand_edited_lock(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    lock = tree / "requirements.lock"
    text = lock.read_text()
    first_hash = re.search(r"--hash=sha256:[0-9a-f]{64}", text)
    assert first_hash
    lock.write_text(text.replace(first_hash.group(), "--hash=sha256:" + "0" * 64, 1))
    result = _lock_sh(tree, "--check")
    assert result.returncode == 1, result.stderr


@pytest.mark.parametrize("platform", ["x86_64-manylinux_2_36", "aarch64-manylinux_2_36"])
def test_every_locked_package_has_a_wheel_for_the_image(platform: str, tmp_path: Path) -> None:
    # The image installs with --only-binary :all: on Python 3.12, Debian 12 (glibc 2.36), for
    # both platforms the release builds; a package without a wheel there would break the build.
    pins = tmp_path / "pins.txt"
    pins.write_text("".join(f"{name}=={version}\n"
                            for name, (version, _) in _entries("requirements.lock").items()))
    cutoff = re.search(r"^# exclude-newer: (\S+)$", (ROOT / "requirements.lock").read_text(),
                       re.M)
    assert cutoff
    uv = Path(sys.executable).parent / "uv"
    result = subprocess.run([str(uv), "pip", "compile", str(pins), "--quiet", "--no-header",
                             "--python-version", "3.12", "--python-platform", platform,
                             "--only-binary", ":all:", "--exclude-newer", cutoff.group(1)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
