"""`kubectl-provenance stamp` end to end through the console entry point."""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller.cli import main
from controller.stamp import split_documents
from tests.stamp.gitrepo import git
from tests.stamp.test_stamping import KUBECTL_STYLE

FLAGS = ["--build-id", "412", "--deployed-by", "alice", "--build-timestamp",
         "2026-11-25T12:00:00Z"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None,
        monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_stdin_to_stdout(checkout: tuple[Path, str], capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    _, sha = checkout
    code, out, err = run(["stamp", *FLAGS], capsys, stdin=KUBECTL_STYLE, monkeypatch=monkeypatch)
    assert (code, err) == (0, "")
    assert out.count(f'provenance.dev/git-sha: "{sha}"') == 2
    assert out.count('provenance.dev/branch: "main"') == 2


def test_files_and_directories_in_place(checkout: tuple[Path, str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    repo, _ = checkout
    k8s = repo.parent / "k8s"
    k8s.mkdir()
    (k8s / "app.yaml").write_text(KUBECTL_STYLE)
    (k8s / "config.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n")
    before = (k8s / "config.yaml").stat().st_mtime_ns
    code, out, _ = run(["stamp", "-i", str(k8s), *FLAGS], capsys)
    assert (code, out) == (0, "")
    assert (k8s / "app.yaml").read_text().count("provenance.dev/build-id") == 2
    assert (k8s / "config.yaml").stat().st_mtime_ns == before  # untouched files not rewritten
    stamped = (k8s / "app.yaml").read_text()
    assert run(["stamp", "-i", str(k8s), *FLAGS[:4]], capsys)[0] == 0
    assert (k8s / "app.yaml").read_text() == stamped  # idempotent, timestamp kept


def test_several_files_on_stdout_stay_separate(checkout: tuple[Path, str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    repo, _ = checkout
    (repo.parent / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}")
    (repo.parent / "b.yaml").write_text(KUBECTL_STYLE)
    code, out, _ = run(["stamp", str(repo.parent / "a.yaml"), str(repo.parent / "b.yaml"),
                        *FLAGS], capsys)
    assert code == 0
    assert out.startswith("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n")


def test_invalid_yaml_is_refused_naming_file_and_document_and_nothing_is_written(
        checkout: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    repo, _ = checkout
    good, bad = repo.parent / "good.yaml", repo.parent / "bad.yaml"
    good.write_text(KUBECTL_STYLE)
    bad.write_text("kind: ConfigMap\n---\nkind: Deployment\nmetadata: {name: [\n")
    code, _, err = run(["stamp", "-i", str(good), str(bad), *FLAGS], capsys)
    assert code == 2
    assert f"{bad}: document 2 (line " in err and "invalid YAML" in err
    assert good.read_text() == KUBECTL_STYLE


def test_missing_sha_is_refused(tmp_path: Path, checkout: tuple[Path, str],
                                capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    monkeypatch.chdir(outside)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    code, out, err = run(["stamp", *FLAGS], capsys, stdin=KUBECTL_STYLE, monkeypatch=monkeypatch)
    assert (code, out) == (2, "")
    assert "no git SHA" in err


def test_short_sha_flag_is_refused(checkout: tuple[Path, str],
                                   capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(["stamp", "--git-sha", "a1b2c3d", *FLAGS], capsys, stdin=KUBECTL_STYLE,
                       monkeypatch=monkeypatch)
    assert code == 2 and "not a full commit SHA" in err


def test_dirty_tree_is_refused_then_allowed(checkout: tuple[Path, str],
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    repo, _ = checkout
    (repo / "README").write_text("local edit\n")
    code, _, err = run(["stamp", *FLAGS], capsys, stdin=KUBECTL_STYLE, monkeypatch=monkeypatch)
    assert code == 2 and "uncommitted changes (README)" in err
    code, out, _ = run(["stamp", "--allow-dirty", *FLAGS], capsys, stdin=KUBECTL_STYLE,
                       monkeypatch=monkeypatch)
    assert code == 0 and "provenance.dev/git-sha" in out


def test_required_value_missing_is_refused(checkout: tuple[Path, str],
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(["stamp", "--build-id", "1"], capsys, stdin=KUBECTL_STYLE,
                       monkeypatch=monkeypatch)
    assert code == 2 and "no value for deployed-by" in err and "--deployed-by" in err


def test_in_place_needs_files(checkout: tuple[Path, str],
                              capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["stamp", "-i", *FLAGS], capsys)
    assert code == 2 and "--in-place needs files" in err


def test_print_env_can_be_sourced_by_a_shell(checkout: tuple[Path, str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _, sha = checkout
    code, out, _ = run(["stamp", "--print-env", *FLAGS, "--deployed-by", "Ada O'Neil"], capsys)
    assert code == 0
    echoed = subprocess.run(
        ["sh", "-c", out + 'printf "%s|%s" "$PROVENANCE_GIT_SHA" "$PROVENANCE_DEPLOYED_BY"'],
        capture_output=True, text=True, check=True).stdout
    assert echoed == f"{sha}|Ada O'Neil"
    assert shlex.split(out.splitlines()[0]) == ["export", f"PROVENANCE_GIT_SHA={sha}"]


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "kubectl-provenance"
    done = subprocess.run([str(script), "stamp", "--help"], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0 and "--pin-digests" in done.stdout


def test_every_workload_kind_is_stamped_and_a_crd_of_the_same_name_is_named(
        checkout: tuple[Path, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = ("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n"
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\n---\n"
            "apiVersion: example.com/v1\nkind: Deployment\nmetadata: {name: crd}\n")
    _, sha = checkout
    code, out, err = run(["stamp", *FLAGS], capsys, stdin=text, monkeypatch=monkeypatch)
    assert code == 0
    service, statefulset, crd = (d.load_plain() for d in split_documents(out, source="t"))
    assert "annotations" not in service["metadata"]
    assert statefulset["metadata"]["annotations"]["provenance.dev/git-sha"] == sha
    assert statefulset["spec"]["template"]["metadata"]["annotations"][
        "provenance.dev/git-sha"] == sha
    assert "annotations" not in crd["metadata"]
    assert err.splitlines() == [
        "kubectl-provenance stamp: note: <stdin>: document 3 (line 9): example.com/v1 "
        "Deployment crd passed through unchanged (not a workload API group the gate judges)"]


def test_nothing_to_stamp_is_warned(
        checkout: tuple[Path, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
    code, out, err = run(["stamp", *FLAGS], capsys, stdin=text, monkeypatch=monkeypatch)
    assert (code, out) == (0, text)
    assert "warning: no workload" in err


def test_tracked_manifests_can_be_stamped_again_in_place(
        checkout: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    # The first `stamp -i` dirties the tracked manifest; a second pass over the same file (say,
    # to add --pin-digests) must not be refused for it, while other edits still are.
    repo, _ = checkout
    (repo / "app.yaml").write_text(KUBECTL_STYLE)
    git(repo, "add", "app.yaml")
    git(repo, "commit", "-q", "-m", "manifests")
    assert run(["stamp", "-i", "app.yaml", *FLAGS], capsys)[0] == 0
    assert run(["stamp", "-i", "app.yaml", *FLAGS], capsys)[0] == 0
    (repo / "README").write_text("local edit\n")
    code, _, err = run(["stamp", "-i", "app.yaml", *FLAGS], capsys)
    assert code == 2
    assert "uncommitted changes (README)" in err


def test_an_unreadable_working_tree_is_not_taken_for_clean(
        checkout: tuple[Path, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    repo, _ = checkout
    (repo / ".git" / "index").write_bytes(b"not an index")  # git status now fails
    code, _, err = run(["stamp", *FLAGS], capsys, stdin=KUBECTL_STYLE, monkeypatch=monkeypatch)
    assert code == 2
    assert "git status failed" in err


def test_a_json_manifest_stays_json(checkout: tuple[Path, str],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    repo, _ = checkout
    manifest = repo.parent / "app.json"
    first = next(d for d in yaml.safe_load_all(KUBECTL_STYLE) if d and d["kind"] == "Deployment")
    manifest.write_text(json.dumps(first, indent=2) + "\n")
    assert run(["stamp", "-i", str(manifest), *FLAGS], capsys)[0] == 0
    stamped = json.loads(manifest.read_text())
    assert stamped["metadata"]["annotations"]["provenance.dev/build-id"] == "412"
    assert stamped["spec"]["template"]["metadata"]["annotations"]["provenance.dev/build-id"] == (
        "412")
