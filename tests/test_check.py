"""`kubectl-provenance check`: the shared case table offline, output formats, exit codes, errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from controller.check import check_manifests
from controller.cli import main
from controller.config import load_config
from controller.stamp.manifests import read_manifests
from tests.cases import CONFIG, Case, load_cases
from tests.fixtures.registry import DEMO_REPOSITORY, RegistryServer

CASES = load_cases()
GOOD = next(c for c in CASES if c.name == "compliant")
BAD = next(c for c in CASES if c.name == "several-problems-at-once")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROVENANCE_CONFIG", "PROVENANCE_CHECK_USER"):
        monkeypatch.delenv(name, raising=False)


def check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str, name: str = "deploy.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def as_args(case: Case) -> list[str]:
    return ["--config", str(CONFIG), "--as", case.user,
            *[arg for g in case.groups for arg in ("--as-group", g)]]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_shared_cases_offline(case: Case, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = check([*as_args(case), "-o", "json", write(tmp_path, case.text)], capsys)
    report = json.loads(out)
    [deployment] = report["workloads"]
    assert (deployment["allowed"], [v["reason"] for v in deployment["violations"]]) == (
        case.allowed, list(case.reasons))
    assert code == (0 if case.allowed else 1)


def test_text_output_names_every_problem_with_its_fix(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "kind: ConfigMap\napiVersion: v1\n---\n" + BAD.text)
    code, out, _ = check([*as_args(BAD), path], capsys)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{path}:4: Deployment default/{BAD.name}: DENIED, 3 problems"
    assert lines[1].startswith("  [InvalidGitSha] annotation provenance.dev/git-sha is a short")
    assert lines[2].startswith("      fix: use the full 40-character commit SHA")
    assert "[ImageNotPinned]" in out and "[ActorMismatch]" in out
    assert lines[-1] == "1 workload checked, 1 would be denied"


def test_github_output_is_one_annotation_per_violation(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.text + "---\n" + BAD.text, name="a,b:c.yaml")
    code, out, _ = check([*as_args(BAD), "-o", "github", path], capsys)
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 3
    escaped = path.replace(":", "%3A").replace(",", "%2C")
    first_line = 2 + GOOD.text.count("\n")
    assert lines[0].startswith(
        f"::error file={escaped},line={first_line},title=InvalidGitSha in Deployment "
        f"default/{BAD.name}::annotation provenance.dev/git-sha is a short SHA")
    assert lines[0].endswith("(fix: use the full 40-character commit SHA (git rev-parse HEAD), "
                             "never a branch, tag or short SHA)")


def test_github_output_escapes_newlines_and_percent() -> None:
    from controller.check import _gh_data, _gh_property

    assert _gh_data("50%\nnext\r") == "50%25%0Anext%0D"
    assert _gh_property("a:b,c") == "a%3Ab%2Cc"


def test_audit_mode_reports_but_exits_zero(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, "mode: audit\n", name="audit.yaml")
    path = write(tmp_path, BAD.text)
    code, out, _ = check(["--config", config, "--as", "alice", "-o", "github", path], capsys)
    assert code == 0
    assert out.count("::warning ") == 3
    code, out, _ = check(["--config", config, "--as", "alice", path], capsys)
    assert code == 0 and "admitted in audit mode, 3 problems" in out


def test_json_output_is_complete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, BAD.text)
    _, out, _ = check([*as_args(BAD), "-o", "json", path], capsys)
    report = json.loads(out)
    assert report["allowed"] is False
    [d] = report["workloads"]
    assert {k: d[k] for k in ("file", "document", "line", "namespace", "name", "user", "enforce",
                              "exempt")} == {
        "file": path, "document": 1, "line": 1, "namespace": "default", "name": BAD.name,
        "user": "alice", "enforce": True, "exempt": None}
    assert set(d["violations"][0]) == {"reason", "message", "hint", "subject"}


def test_other_kinds_are_skipped_and_every_workload_kind_judged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = ("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n# just a comment\n---\n"
            "apiVersion: example.com/v1\nkind: Deployment\nmetadata: {name: crd}\n")
    code, out, _ = check(["--as", "alice", write(tmp_path, text)], capsys)
    assert (code, out) == (0, "0 workloads checked, 0 would be denied\n")
    kinds = [("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"), ("apps/v1", "ReplicaSet"),
             ("batch/v1", "Job"), ("batch/v1", "CronJob"), ("v1", "ReplicationController"),
             ("v1", "Pod")]
    text = "---\n".join(f"apiVersion: {v}\nkind: {k}\nmetadata: {{name: x}}\n" for v, k in kinds)
    code, out, _ = check(["--as", "alice", "-o", "json", write(tmp_path, text)], capsys)
    report = json.loads(out)
    assert code == 1
    assert [(w["kind"], w["allowed"]) for w in report["workloads"]] == [
        (k, False) for _v, k in kinds]
    assert all("MissingAnnotation" in {v["reason"] for v in w["violations"]}
               for w in report["workloads"])


def test_invalid_yaml_names_file_and_document(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.text + "---\nkind: Deployment\nmetadata: {name: [\n")
    code, out, err = check(["--as", "alice", path], capsys)
    assert (code, out) == (2, "")
    assert f"{path}: document 2 (line " in err and "invalid YAML" in err


def test_a_deployment_the_api_server_would_reject_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = GOOD.text.replace("branch: main", "branch: 7")  # an annotation that is not a string
    path = write(tmp_path, "apiVersion: v1\nkind: ConfigMap\n---\n" + text)
    code, _, err = check(["--as", "alice", path], capsys)
    assert code == 2
    assert f"{path}: document 2 (line 4): not a valid Deployment" in err


def test_a_bad_configuration_is_a_clear_error(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, "mode: block\n", name="bad-config.yaml")
    code, _, err = check(["--config", config, write(tmp_path, GOOD.text)], capsys)
    assert code == 2 and "bad-config.yaml" in err and "mode" in err


def test_without_as_the_annotated_deployer_is_assumed_and_said(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check([write(tmp_path, GOOD.text)], capsys)
    assert code == 0 and out.endswith("0 would be denied\n")
    assert "no --as given" in err
    code, _, _ = check(["--as", "mallory", write(tmp_path, GOOD.text)], capsys)
    assert code == 1


def test_namespace_flag_applies_to_manifests_without_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = GOOD.text.replace("  namespace: default\n", "")
    path = write(tmp_path, text)
    code, out, _ = check(["--config", str(CONFIG), "--as", "alice", "-n", "prod", path], capsys)
    assert code == 1 and "Deployment prod/compliant" in out and "ActorNotAuthorised" in out


def test_namespace_flag_contradicting_the_manifest_is_refused_as_kubectl_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "kind: ConfigMap\napiVersion: v1\n---\n" + GOOD.text)
    code, _, err = check(["--as", "alice", "-n", "prod", path], capsys)
    assert code == 2
    assert f"{path}: document 2 (line 4): the namespace of the Deployment ('default') does " \
        "not match -n 'prod'" in err
    assert check(["--as", "alice", "-n", "default", path], capsys)[0] == 0


def test_stdin_is_read_when_no_path_is_given(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BAD.text.encode())))
    code, out, _ = check(["--as", "alice"], capsys)
    assert code == 1 and out.startswith("<stdin>:1: Deployment")


def test_stamped_manifests_pass_where_unstamped_ones_fail(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.stamp.gitrepo import make_repo

    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "TF_BUILD", "JENKINS_URL", "JENKINS_HOME"):
        monkeypatch.delenv(name, raising=False)
    make_repo(tmp_path / "repo")
    monkeypatch.chdir(tmp_path / "repo")
    bare = next(c for c in CASES if c.name == "nothing-at-all").text.replace(
        "nginx:1.25", GOOD.manifest["spec"]["template"]["spec"]["containers"][0]["image"])
    path = write(tmp_path, bare)
    assert check(["--as", "alice", path], capsys)[0] == 1
    assert main(["stamp", "-i", path, "--build-id", "run-7", "--deployed-by", "alice"]) == 0
    assert check(["--as", "alice", path], capsys)[0] == 0


def test_signatures_need_verification_enabled_in_the_configuration(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(["--signatures", "--as", "alice", write(tmp_path, GOOD.text)], capsys)
    assert (code, out) == (2, "")
    assert "signatures.enabled is false" in err and "--no-signatures" in err


@pytest.mark.registry
def test_signatures_are_verified_through_the_real_registry(
        tmp_path: Path, registry: RegistryServer, cosign_registry: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    data = Path(__file__).resolve().parent / "data" / "cosign"
    config = write(tmp_path, f"""\
signatures:
  enabled: true
  keys:
    - name: release
      path: {data / "cosign.pub"}
  registry:
    insecure_registries: ["{registry.host}"]
""", name="config.yaml")
    texts = []
    for tag in ("v1", "v3", "v4", "v5"):
        manifest: dict[str, Any] = json.loads(json.dumps(GOOD.manifest))
        manifest["metadata"]["name"] = f"app-{tag}"
        manifest["spec"]["template"]["spec"]["containers"][0]["image"] = (
            f"{registry.host}/{DEMO_REPOSITORY}@{cosign_registry[tag]}")
        texts.append(json.dumps(manifest))
    path = write(tmp_path, "\n---\n".join(texts))
    code, out, err = check(["--config", config, "--signatures", "--as", "alice", "-o", "json",
                            path], capsys)
    assert code == 1, err
    got = {d["name"]: [v["reason"] for v in d["violations"]]
           for d in json.loads(out)["workloads"]}
    assert got == {"app-v1": [], "app-v3": [], "app-v4": ["SignatureUntrusted"],
                   "app-v5": ["SignatureMissing"]}
    # Without a flag, `check` follows the configuration, as the gate does.
    code, out, _ = check(["--config", config, "--as", "alice", "-o", "json", path], capsys)
    assert code == 1
    assert "SignatureMissing" in out
    # --no-signatures judges the policy only, and says what it leaves to the gate.
    code, _, err = check(["--config", config, "--no-signatures", "--as", "alice", path], capsys)
    assert code == 0
    assert "the gate verifies them" in err
    verdicts = check_manifests(read_manifests([path]), config=load_config(config),
                               username="alice", now=dt.datetime.now(dt.UTC))
    assert all(v.decision.allowed for v in verdicts)


def test_the_table_config_is_valid() -> None:
    assert load_config(CONFIG).environments["production"].groups == ("deployers",)


def test_the_items_of_a_kubectl_list_are_judged(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    listing = {"apiVersion": "v1", "kind": "List", "items": [
        GOOD.manifest, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}},
        BAD.manifest]}
    code, out, _ = check([*as_args(BAD), "-o", "json", write(tmp_path, yaml.safe_dump(listing))],
                         capsys)
    assert code == 1
    assert [(d["name"], d["allowed"]) for d in json.loads(out)["workloads"]] == [
        (GOOD.name, True), (BAD.name, False)]


def test_kubectl_style_filename_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write(tmp_path, GOOD.text, name="a.yaml")
    nested = tmp_path / "more" / "deeper"
    nested.mkdir(parents=True)
    (nested / "b.yaml").write_text(BAD.text)
    code, out, _ = check([*as_args(BAD), "-o", "json", "-f", first, "--filename",
                          str(tmp_path / "more"), "-R"], capsys)
    assert code == 1
    assert [w["name"] for w in json.loads(out)["workloads"]] == [GOOD.name, BAD.name]
