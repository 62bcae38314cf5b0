"""`stamp --pin-digests` against a real registry (Debian's docker-registry), images pushed by crane.

The expected digests come from `crane digest`, an independent implementation, never from our own
client.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from controller.cli import main
from tests.fixtures.registry import RegistryServer
from tests.stamp.test_command import FLAGS, run

CRANE = Path(__file__).resolve().parents[2] / "bin" / "crane"
PREFIX = "stamp-pin"
"""This module's repositories in the session's shared registry."""


def crane(*args: str) -> str:
    if not CRANE.exists():
        pytest.fail("bin/crane is missing: run `bash hack/tools.sh crane`")
    done = subprocess.run([str(CRANE), *args, "--insecure"], capture_output=True, text=True,
                          check=True, timeout=120)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def images(registry: RegistryServer,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """The session's live registry, holding `demo/web:1.0`, `demo/worker:2.0` and an index
    `demo/multi:3` under this module's own prefix; returns (host, reference → digest as crane
    reports it)."""
    root = tmp_path_factory.mktemp("pin-images")
    digests: dict[str, str] = {}
    for n, ref in enumerate(("demo/web:1.0", "demo/worker:2.0")):
        content = root / f"file{n}.txt"
        content.write_text(f"layer {n}\n")
        layer = root / f"layer{n}.tar"
        with tarfile.open(layer, "w") as tar:
            tar.add(content, arcname=content.name)
        crane("append", "-f", str(layer), "-t", f"{registry.host}/{PREFIX}/{ref}")
        digests[ref] = crane("digest", f"{registry.host}/{PREFIX}/{ref}")
    crane("index", "append", "-m", f"{registry.host}/{PREFIX}/demo/web:1.0", "-m",
          f"{registry.host}/{PREFIX}/demo/worker:2.0", "-t",
          f"{registry.host}/{PREFIX}/demo/multi:3")
    digests["demo/multi:3"] = crane("digest", f"{registry.host}/{PREFIX}/demo/multi:3")
    return f"{registry.host}/{PREFIX}", digests


def bare(host: str) -> str:
    """The registry host of `host/prefix`."""
    return host.split("/", 1)[0]


def manifest(host: str, pinned: str) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
spec:
  template:
    spec:
      initContainers:
      - name: migrate
        image: {host}/demo/worker:2.0
      containers:
      - name: web
        image: "{host}/demo/web:1.0"  # quoted on purpose
      - name: sidecar
        image: {host}/demo/multi:3
      - name: pinned
        image: {pinned}
"""


def test_every_tag_is_rewritten_to_the_digest_crane_reports(
        images: tuple[str, dict[str, str]], checkout: tuple[Path, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    host, digests = images
    repo, _ = checkout
    pinned = f"{host}/demo/web:1.0@{digests['demo/web:1.0']}"
    path = repo.parent / "shop.yaml"
    path.write_text(manifest(host, pinned))
    code, out, err = run(["stamp", "--pin-digests", "--insecure-registry", bare(host),
                          str(path), *FLAGS], capsys)
    assert (code, err) == (0, "")
    assert f"image: {host}/demo/worker@{digests['demo/worker:2.0']}\n" in out
    # Quoting and the trailing comment survive (the comment moves right to fit the longer value).
    assert f'image: "{host}/demo/web@{digests["demo/web:1.0"]}" # quoted on purpose\n' in out
    # An index tag pins the index digest: what a multi-arch pod spec names.
    assert f"image: {host}/demo/multi@{digests['demo/multi:3']}\n" in out
    # An already pinned reference is left exactly as written.
    assert f"image: {pinned}\n" in out


def test_pinning_is_idempotent(images: tuple[str, dict[str, str]], checkout: tuple[Path, str],
                               capsys: pytest.CaptureFixture[str]) -> None:
    host, digests = images
    repo, _ = checkout
    path = repo.parent / "shop.yaml"
    path.write_text(manifest(host, f"{host}/demo/web@{digests['demo/web:1.0']}"))
    argv = ["stamp", "-i", "--pin-digests", "--insecure-registry", bare(host), str(path),
            *FLAGS]
    assert main(argv) == 0
    once = path.read_text()
    assert main(argv) == 0
    assert path.read_text() == once
    capsys.readouterr()


def test_an_unknown_tag_names_file_document_container_and_writes_nothing(
        images: tuple[str, dict[str, str]], checkout: tuple[Path, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    host, _ = images
    repo, _ = checkout
    path = repo.parent / "shop.yaml"
    text = "kind: ConfigMap\n---\n" + manifest(host, f"{host}/demo/web:9.9")
    path.write_text(text)
    code, out, err = run(["stamp", "-i", "--pin-digests", "--insecure-registry", bare(host),
                          str(path), *FLAGS], capsys)
    assert (code, out) == (2, "")
    assert f"{path}: document 2 (line 3), container pinned, image {host}/demo/web:9.9" in err
    assert path.read_text() == text


def test_an_unreachable_registry_is_a_clear_refusal(
        checkout: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    repo, _ = checkout
    path = repo.parent / "shop.yaml"
    path.write_text(manifest("127.0.0.1:9", "127.0.0.1:9/demo/web:1"))
    code, _, err = run(["stamp", "--pin-digests", "--insecure-registry", "127.0.0.1:9",
                        str(path), *FLAGS], capsys)
    assert code == 2 and "cannot resolve image tags to digests" in err and "127.0.0.1:9" in err


def test_docker_config_credentials(tmp_path: Path) -> None:
    from controller.stamp.errors import PinError
    from controller.stamp.pin import docker_credentials

    config = tmp_path / "config.json"
    assert docker_credentials(config) == {}  # no file: anonymous
    config.write_text('{"auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwdw=="},'
                      ' "ghcr.io": {}}, "credsStore": "desktop"}')
    got = docker_credentials(config)
    assert list(got) == ["docker.io"]
    assert (got["docker.io"].username, got["docker.io"].password) == ("user", "pw")
    config.write_text('{"credsStore": "desktop"}')
    assert docker_credentials(config) == {}
    config.write_text("{not json")
    with pytest.raises(PinError, match=r"docker config .*config\.json"):
        docker_credentials(config)
