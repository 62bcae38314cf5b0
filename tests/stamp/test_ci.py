"""controller.stamp.ci: each CI system read through its real variable names; git; refusals."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from controller.stamp.ci import BuildInfo, collect, detect_ci, read_git
from controller.stamp.errors import BuildInfoError
from tests.stamp.gitrepo import make_repo

NOW = dt.datetime(2026, 11, 25, 12, 0, 5, tzinfo=dt.UTC)
SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"

# What each CI system sets, as its documentation names the variables.
GITHUB = {
    "GITHUB_ACTIONS": "true", "CI": "true",
    "GITHUB_SHA": SHA, "GITHUB_REF": "refs/heads/main", "GITHUB_REF_NAME": "main",
    "GITHUB_RUN_ID": "12345678901", "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "example-org/payments-api",
    "GITHUB_ACTOR": "octocat", "GITHUB_TRIGGERING_ACTOR": "octocat",
}
GITLAB = {
    "GITLAB_CI": "true", "CI": "true",
    "CI_COMMIT_SHA": SHA, "CI_COMMIT_REF_NAME": "feature/pay", "CI_PIPELINE_ID": "987654",
    "CI_PIPELINE_URL": "https://gitlab.example.com/team/payments/-/pipelines/987654",
    "CI_PIPELINE_CREATED_AT": "2026-11-25T11:58:00Z", "GITLAB_USER_LOGIN": "jdoe",
    "CI_ENVIRONMENT_NAME": "staging",
}
JENKINS = {
    "JENKINS_URL": "https://jenkins.example.com/", "JENKINS_HOME": "/var/jenkins_home",
    "GIT_COMMIT": SHA, "GIT_BRANCH": "origin/release/1.x", "BUILD_ID": "412",
    "BUILD_NUMBER": "412", "BUILD_URL": "https://jenkins.example.com/job/payments/412/",
    "BUILD_USER_ID": "jenkins-alice",
}
AZURE = {
    "TF_BUILD": "True",
    "BUILD_SOURCEVERSION": SHA, "BUILD_SOURCEBRANCH": "refs/heads/feature/pay",
    "BUILD_SOURCEBRANCHNAME": "pay", "BUILD_BUILDID": "5521",
    "SYSTEM_COLLECTIONURI": "https://dev.azure.com/example-org/",
    "SYSTEM_TEAMPROJECT": "Payments Team", "BUILD_REQUESTEDFOR": "Ada Lovelace",
    "BUILD_REQUESTEDFOREMAIL": "ada@example.com",
}


@pytest.mark.parametrize(("env", "expected"), [
    (GITHUB, BuildInfo(
        system="github-actions", git_sha=SHA, branch="main", build_id="12345678901",
        pipeline_url="https://github.com/example-org/payments-api/actions/runs/12345678901"
                     "/attempts/2",
        deployed_by="octocat")),
    (GITLAB, BuildInfo(
        system="gitlab-ci", git_sha=SHA, branch="feature/pay", build_id="987654",
        build_timestamp="2026-11-25T11:58:00Z",
        pipeline_url="https://gitlab.example.com/team/payments/-/pipelines/987654",
        deployed_by="jdoe", environment="staging")),
    (JENKINS, BuildInfo(
        system="jenkins", git_sha=SHA, branch="release/1.x", build_id="412",
        pipeline_url="https://jenkins.example.com/job/payments/412/", deployed_by="jenkins-alice")),
    (AZURE, BuildInfo(
        system="azure-pipelines", git_sha=SHA, branch="feature/pay", build_id="5521",
        pipeline_url="https://dev.azure.com/example-org/Payments%20Team/_build/results"
                     "?buildId=5521",
        deployed_by="ada@example.com")),
], ids=["github", "gitlab", "jenkins", "azure"])
def test_each_ci_system_is_read_through_its_own_variables(
        env: dict[str, str], expected: BuildInfo) -> None:
    assert detect_ci(env) == expected


def test_outside_ci_nothing_is_detected() -> None:
    assert detect_ci({"CI": "true", "HOME": "/root"}) is None


def test_github_re_run_by_someone_else_is_deployed_by_them() -> None:
    env = {**GITHUB, "GITHUB_TRIGGERING_ACTOR": "hubot"}
    assert detect_ci(env) == detect_ci(GITHUB).overridden(deployed_by="hubot")  # type: ignore[union-attr]


def test_jenkins_multibranch_without_git_branch_uses_branch_name() -> None:
    env = {k: v for k, v in JENKINS.items() if k != "GIT_BRANCH"} | {"BRANCH_NAME": "PR-7"}
    info = detect_ci(env)
    assert info is not None and info.branch == "PR-7"


def test_azure_without_full_branch_falls_back_to_the_short_name() -> None:
    env = {k: v for k, v in AZURE.items() if k != "BUILD_SOURCEBRANCH"}
    info = detect_ci(env)
    assert info is not None and info.branch == "pay"


def test_collect_in_ci_fills_the_timestamp_and_honours_flags(tmp_path: Path) -> None:
    info = collect(env=GITHUB, cwd=tmp_path, now=NOW,
                   overrides={"deployed_by": "system:serviceaccount:ci:deployer",
                              "environment": "production", "branch": None})
    assert info.annotations() == {
        "git-sha": SHA, "branch": "main", "build-id": "12345678901",
        "build-timestamp": "2026-11-25T12:00:05Z",
        "pipeline-url": "https://github.com/example-org/payments-api/actions/runs/12345678901"
                        "/attempts/2",
        "deployed-by": "system:serviceaccount:ci:deployer", "environment": "production"}


def test_a_bare_ci_number_that_looks_like_a_timestamp_is_qualified(tmp_path: Path) -> None:
    # GitLab.com pipeline ids have 10 digits: a run id, kept as it is.
    info = collect(env={**GITLAB, "CI_PIPELINE_ID": "1834567890"}, cwd=tmp_path, now=NOW)
    assert info.build_id == "1834567890"
    # A number that reads as a date would be taken for a timestamp: qualified by the CI's name.
    info = collect(env={**GITLAB, "CI_PIPELINE_ID": "20260115"}, cwd=tmp_path, now=NOW)
    assert info.build_id == "gitlab-20260115"
    assert collect(env=GITLAB, cwd=tmp_path, now=NOW).build_id == "987654"


def test_plain_git_checkout_gives_commit_and_branch(tmp_path: Path) -> None:
    sha = make_repo(tmp_path, branch="trunk")
    state = read_git(tmp_path)
    assert state is not None and (state.sha, state.branch, state.dirty_paths) == (
        sha, "trunk", ())
    info = collect(env={}, cwd=tmp_path, now=NOW,
                   overrides={"build_id": "local-1", "deployed_by": "alice"},
                   required=("git-sha", "build-id", "deployed-by"))
    assert (info.system, info.git_sha, info.branch) == ("git", sha, "trunk")


def test_ci_values_win_over_the_checkout(tmp_path: Path) -> None:
    make_repo(tmp_path)
    info = collect(env=JENKINS, cwd=tmp_path, now=NOW)
    assert (info.git_sha, info.branch) == (SHA, "release/1.x")


def test_dirty_tree_is_refused_unless_allowed(tmp_path: Path) -> None:
    make_repo(tmp_path)
    (tmp_path / "README").write_text("changed\n")
    (tmp_path / "untracked.yaml").write_text("a: 1\n")
    with pytest.raises(BuildInfoError, match=r"uncommitted changes \(README\).*--allow-dirty"):
        collect(env={}, cwd=tmp_path, now=NOW)
    assert collect(env={}, cwd=tmp_path, now=NOW, allow_dirty=True).git_sha


def test_untracked_files_alone_are_not_dirty(tmp_path: Path) -> None:
    make_repo(tmp_path)
    (tmp_path / "rendered.yaml").write_text("a: 1\n")
    assert collect(env={}, cwd=tmp_path, now=NOW).system == "git"


def test_missing_sha_outside_git_and_ci_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildInfoError, match=r"no git SHA.*--git-sha"):
        collect(env={}, cwd=tmp_path, now=NOW)


@pytest.mark.parametrize("sha", [SHA[:7], SHA[:39], "main", "v1.2.3", "0" * 40, SHA + "0", ""])
def test_short_or_bogus_sha_is_refused(tmp_path: Path, sha: str) -> None:
    env = {**GITHUB, "GITHUB_SHA": sha}
    with pytest.raises(BuildInfoError, match=r"SHA"):
        collect(env=env, cwd=tmp_path, now=NOW)


def test_upper_case_sha_is_normalised(tmp_path: Path) -> None:
    assert collect(env={**GITHUB, "GITHUB_SHA": SHA.upper()}, cwd=tmp_path,
                   now=NOW).git_sha == SHA


def test_sha256_object_format_commit_is_accepted(tmp_path: Path) -> None:
    sha = "ab" * 32
    assert collect(env={**GITHUB, "GITHUB_SHA": sha}, cwd=tmp_path, now=NOW).git_sha == sha


def test_a_required_value_that_nobody_provides_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in JENKINS.items() if k != "BUILD_USER_ID"}  # a timer-triggered build
    with pytest.raises(BuildInfoError, match=r"deployed-by.*jenkins.*--deployed-by"):
        collect(env=env, cwd=tmp_path, now=NOW, required=("git-sha", "deployed-by"))


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"pipeline_url": "http://ci.example.com/1"}, "InvalidPipelineUrl"),
    ({"build_id": "20261125120000"}, "InvalidBuildId"),
    ({"build_id": " run-7"}, "InvalidBuildId"),
    ({"build_timestamp": "25/11/2026"}, "InvalidBuildTimestamp"),
    ({"build_timestamp": "2999-01-01T00:00:00Z"}, "FutureBuildTimestamp"),
    ({"environment": "Production"}, "InvalidAnnotation"),
    ({"branch": "x" * 3000}, "AnnotationTooLong"),
])
def test_values_the_gate_would_reject_are_refused(
        tmp_path: Path, overrides: dict[str, str], reason: str) -> None:
    expected = rf"the gate would reject these values:\n  \[{reason}\]"
    with pytest.raises(BuildInfoError, match=expected):
        collect(env=GITHUB, cwd=tmp_path, now=NOW, overrides=overrides)


def test_the_gate_limits_come_from_the_configuration(tmp_path: Path) -> None:
    from controller.config import AnnotationConfig

    tight = AnnotationConfig(max_build_id_length=4)
    with pytest.raises(BuildInfoError, match=r"InvalidBuildId.*longer than 4"):
        collect(env=GITHUB, cwd=tmp_path, now=NOW, annotations=tight)


def test_print_env_names(tmp_path: Path) -> None:
    env = collect(env=GITHUB, cwd=tmp_path, now=NOW).env()
    assert env["PROVENANCE_GIT_SHA"] == SHA
    assert env["PROVENANCE_BUILD_ID"] == "12345678901"
    assert "PROVENANCE_ENVIRONMENT" not in env


def test_provenance_variables_override_detection_and_flags_override_them(
        tmp_path: Path) -> None:
    printed = collect(env=GITHUB, cwd=tmp_path, now=NOW).env()
    later = NOW + dt.timedelta(minutes=3)
    # What `eval "$(kubectl-provenance stamp --print-env)"` leaves in the job's environment.
    again = collect(env={**GITHUB, **printed}, cwd=tmp_path, now=later)
    assert again.env() == printed
    env = {**GITHUB, "PROVENANCE_ENVIRONMENT": "staging", "PROVENANCE_BUILD_ID": "x-1"}
    info = collect(env=env, cwd=tmp_path, now=NOW, overrides={"build_id": "x-2"})
    assert (info.environment, info.build_id) == ("staging", "x-2")
