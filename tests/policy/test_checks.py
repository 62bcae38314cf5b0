"""controller.policy.checks: each check over tables of good and bad Deployments."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from controller.config import Config, parse_config
from controller.policy.engine import evaluate
from controller.policy.violations import Reason
from controller.review import parse_review
from tests.builders import DIGEST, IMAGE, SHA, deployment, prov_annotations, review

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def reasons(obj: dict[str, Any], config: Config | None = None, **kw: Any) -> list[Reason]:
    decision = evaluate(parse_review(review(obj, **kw)), config or Config(), now=NOW)
    return [v.reason for v in decision.violations]


def test_compliant_deployment_has_no_violations() -> None:
    assert reasons(deployment()) == []


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"git_sha": None}, [Reason.MISSING_ANNOTATION]),
    ({"build_id": None}, [Reason.MISSING_ANNOTATION]),
    ({"deployed_by": None}, [Reason.MISSING_ANNOTATION]),
    ({"git_sha": ""}, [Reason.MISSING_ANNOTATION]),
    ({"branch": None, "pipeline_url": None, "build_timestamp": None}, []),  # optional
    ({"git_sha": SHA[:7]}, [Reason.INVALID_GIT_SHA]),
    ({"git_sha": SHA[:39]}, [Reason.INVALID_GIT_SHA]),
    ({"git_sha": SHA.upper()}, [Reason.INVALID_GIT_SHA]),
    ({"git_sha": "main"}, [Reason.INVALID_GIT_SHA]),
    ({"git_sha": "v1.2.3"}, [Reason.INVALID_GIT_SHA]),
    ({"git_sha": "0" * 40}, [Reason.INVALID_GIT_SHA]),
    ({"git_sha": SHA + "0"}, [Reason.INVALID_GIT_SHA]),
    ({"git_sha": "a" * 64}, []),  # SHA-256 repositories
    ({"build_id": "x" * 257}, [Reason.INVALID_BUILD_ID]),
    ({"build_id": " 12"}, [Reason.INVALID_BUILD_ID]),
    ({"build_id": "20261120-1015"}, [Reason.INVALID_BUILD_ID]),
    ({"build_id": "2026-11-20T10:15:00Z"}, [Reason.INVALID_BUILD_ID]),
    ({"build_id": "20261120"}, [Reason.INVALID_BUILD_ID]),
    ({"build_id": "2026-11-20"}, [Reason.INVALID_BUILD_ID]),
    ({"build_id": "20261120T101500Z"}, [Reason.INVALID_BUILD_ID]),
    ({"build_id": "1732530000"}, []),  # a GitLab pipeline id, not epoch seconds
    ({"build_id": "12345678901"}, []),  # a GitHub run id
    ({"build_id": "45678912"}, []),  # an Azure build id: no such date
    ({"build_id": "20261340"}, []),  # not a valid date either
    ({"build_id": "gh-7321-2"}, []),
    ({"build_timestamp": "yesterday"}, [Reason.INVALID_TIMESTAMP]),
    ({"build_timestamp": "2026-11-20 10:15:00"}, [Reason.INVALID_TIMESTAMP]),
    ({"build_timestamp": "2026-11-20T10:15:00"}, [Reason.INVALID_TIMESTAMP]),  # no offset
    ({"build_timestamp": "2026-13-20T10:15:00Z"}, [Reason.INVALID_TIMESTAMP]),
    ({"build_timestamp": "2026-11-25T12:04:00Z"}, []),  # within the skew
    ({"build_timestamp": "2026-11-25T13:00:00+00:00"}, [Reason.FUTURE_TIMESTAMP]),
    ({"build_timestamp": "2026-11-25T14:00:00.123+02:00"}, []),
    ({"pipeline_url": "http://ci.example.com/1"}, [Reason.INVALID_PIPELINE_URL]),
    ({"pipeline_url": "https://user:pw@ci.example.com/1"}, [Reason.INVALID_PIPELINE_URL]),
    ({"pipeline_url": "ci.example.com/1"}, [Reason.INVALID_PIPELINE_URL]),
    ({"environment": "Prod!"}, [Reason.INVALID_ANNOTATION]),
    ({"branch": "x" * 3000}, [Reason.VALUE_TOO_LONG]),
    ({"deployed_by": "bob"}, [Reason.ACTOR_MISMATCH]),
])
def test_annotations(overrides: dict[str, str | None], expected: list[Reason]) -> None:
    assert reasons(deployment(ann=prov_annotations(**overrides))) == expected


@pytest.mark.parametrize(("containers", "init", "expected"), [
    ([IMAGE], [], []),
    (["nginx:1.25"], [], [Reason.IMAGE_NOT_PINNED]),
    (["nginx"], [], [Reason.IMAGE_NOT_PINNED]),
    ([IMAGE], ["busybox:latest"], [Reason.IMAGE_NOT_PINNED]),  # init containers count
    ([IMAGE, "envoy:v1"], [], [Reason.IMAGE_NOT_PINNED]),  # sidecars count
    ([f"nginx:1.25@{DIGEST}"], [], []),  # judged by the digest
    ([f"nginx@{DIGEST.upper().replace('SHA256', 'sha256')}"], [], [Reason.INVALID_DIGEST]),
    (["nginx@sha512:" + "a" * 128], [], [Reason.INVALID_DIGEST]),
    (["nginx@"], [], [Reason.INVALID_IMAGE]),
    ([""], [], [Reason.INVALID_IMAGE]),
    (["Nginx:1"], [], [Reason.INVALID_IMAGE]),
])
def test_digest_pinning(containers: list[str], init: list[str], expected: list[Reason]) -> None:
    assert reasons(deployment(containers=containers, init_containers=init)) == expected


def test_every_violation_at_once_in_a_stable_order() -> None:
    obj = deployment(ann=prov_annotations(git_sha="abc", build_id=None, deployed_by="mallory"),
                     containers=["nginx:1"], init_containers=["busybox"])
    decision = evaluate(parse_review(review(obj)), Config(), now=NOW)
    assert [v.reason for v in decision.violations] == [
        Reason.MISSING_ANNOTATION, Reason.INVALID_GIT_SHA, Reason.IMAGE_NOT_PINNED,
        Reason.IMAGE_NOT_PINNED, Reason.ACTOR_MISMATCH]
    message = decision.message()
    assert "5 problems" in message
    assert "initContainer init0" in message and "container c0" in message
    assert all("(fix: " in line for line in message.splitlines()[1:])


def test_template_annotations_take_precedence() -> None:
    # After `kubectl rollout undo` the template carries the provenance of what runs.
    obj = deployment(ann=prov_annotations(git_sha="bad"), template_ann=prov_annotations())
    assert reasons(obj) == []


ALLOWLIST = parse_config("""
actor: {rule: ci-allowlist, ci_accounts: ["system:serviceaccount:ci:deployer"]}
""")


@pytest.mark.parametrize(("config", "user", "annotated", "expected"), [
    (Config(), "alice", "alice", []),
    (Config(), "alice", "bob", [Reason.ACTOR_MISMATCH]),
    (Config(), "system:serviceaccount:ci:deployer", "alice", [Reason.ACTOR_MISMATCH]),
    (ALLOWLIST, "system:serviceaccount:ci:deployer", "alice", []),
    (ALLOWLIST, "system:serviceaccount:ci:other", "alice", [Reason.ACTOR_MISMATCH]),
    (ALLOWLIST, "alice", "alice", []),
    (ALLOWLIST, "alice", "bob", [Reason.ACTOR_MISMATCH]),
])
def test_actor_rule(config: Config, user: str, annotated: str, expected: list[Reason]) -> None:
    obj = deployment(ann=prov_annotations(deployed_by=annotated))
    assert reasons(obj, config, username=user) == expected


ENVIRONMENTS = parse_config("""
environments:
  production: {namespaces: [prod], users: [release-bot], groups: [sre]}
""")


@pytest.mark.parametrize(("namespace", "env", "user", "groups", "expected"), [
    ("prod", None, "release-bot", [], []),
    ("prod", None, "alice", ["sre"], []),
    ("prod", None, "alice", ["dev"], [Reason.ACTOR_NOT_AUTHORISED]),
    ("prod", "staging", "alice", ["dev"], [Reason.INVALID_ANNOTATION,
                                           Reason.ACTOR_NOT_AUTHORISED]),
    ("dev", "production", "alice", [], [Reason.ACTOR_NOT_AUTHORISED]),
    ("dev", "staging", "alice", [], []),
    ("dev", None, "alice", [], []),
])
def test_environment_authorisation(
    namespace: str, env: str | None, user: str, groups: list[str], expected: list[Reason],
) -> None:
    obj = deployment(namespace=namespace, ann=prov_annotations(deployed_by=user, environment=env))
    assert reasons(obj, ENVIRONMENTS, username=user, groups=groups) == expected


@pytest.mark.parametrize("name", ["branch", "build-id", "deployed-by", "pipeline-url",
                                  "build-timestamp"])
@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\x85", "\x9b"])
def test_every_unicode_control_character_is_refused(name: str, char: str) -> None:
    # Category Cc: C0, DEL and C1 (U+0085 NEL, U+009B CSI), which terminals and log viewers
    # interpret.
    value = {"branch": "main", "build-id": "4182", "deployed-by": "admin",
             "pipeline-url": "https://ci.example.com/runs/4182",
             "build-timestamp": "2026-11-20T10:15:00Z"}[name]
    obj = deployment(ann=prov_annotations(**{name.replace("-", "_"): value[:2] + char
                                            + value[2:]}))
    decision = evaluate(parse_review(review(obj)), Config(), now=NOW)
    found = [v for v in decision.violations if "control characters" in v.message]
    assert [v.subject for v in found] == [f"annotation provenance.dev/{name}"]


RULES = parse_config("""
environments:
  production:
    namespaces: [prod]
    groups: [deployers]
    branches: [main, "release/*"]
    max_build_age_seconds: 604800
""")


@pytest.mark.parametrize(("branch", "expected"), [
    ("main", []), ("release/1.4", []), ("release/1.4/hotfix", []),
    ("feature/x", [Reason.BRANCH_NOT_ALLOWED]), ("mainline", [Reason.BRANCH_NOT_ALLOWED]),
    ("release", [Reason.BRANCH_NOT_ALLOWED]), (None, [Reason.BRANCH_NOT_ALLOWED]),
])
def test_production_takes_builds_of_allowed_branches_only(
        branch: str | None, expected: list[Reason]) -> None:
    obj = deployment(namespace="prod", ann=prov_annotations(branch=branch))
    assert reasons(obj, RULES, groups=["deployers"]) == expected


@pytest.mark.parametrize(("stamp", "expected"), [
    ("2026-11-20T10:15:00Z", []),  # 5 days before NOW
    ("2026-11-18T12:00:01Z", []),  # just inside 7 days
    ("2026-11-18T12:00:00Z", []),  # exactly 7 days: the limit is inclusive
    ("2026-11-18T11:59:59Z", [Reason.BUILD_TOO_OLD]),
    ("2025-01-01T00:00:00Z", [Reason.BUILD_TOO_OLD]),
    ("2026-11-20t10:15:00z", []),  # RFC 3339 allows lower-case t and z
    (None, [Reason.BUILD_TOO_OLD]),
])
def test_production_takes_builds_up_to_a_maximum_age(
        stamp: str | None, expected: list[Reason]) -> None:
    obj = deployment(namespace="prod", ann=prov_annotations(build_timestamp=stamp))
    assert reasons(obj, RULES, groups=["deployers"]) == expected


def test_a_build_too_old_is_named_with_its_age() -> None:
    old = deployment(namespace="prod", ann=prov_annotations(build_timestamp="2026-11-18T10:00:00Z"))
    assert full(old, RULES, groups=["deployers"]) == [(
        Reason.BUILD_TOO_OLD, f"{ANN}build-timestamp",
        "the build is 7d 2h old; environment 'production' takes builds at most 604800s old",
        "rebuild and redeploy, or roll back through the gate")]
    unstamped = deployment(namespace="prod", ann=prov_annotations(build_timestamp=None))
    assert full(unstamped, RULES, groups=["deployers"]) == [(
        Reason.BUILD_TOO_OLD, f"{ANN}build-timestamp",
        f"environment 'production' limits build age, and {ANN}build-timestamp is missing or not "
        "RFC 3339", "set the build-timestamp (kubectl-provenance stamp writes it)")]


def test_build_rules_apply_only_where_configured_and_only_to_what_people_deploy() -> None:
    old = deployment(namespace="prod", ann=prov_annotations(branch="feature/x"))
    assert reasons(deployment(ann=prov_annotations(branch="feature/x")), RULES) == []
    relabelled = deployment(namespace="prod", ann=prov_annotations(branch="feature/x"))
    relabelled["metadata"]["labels"] = {"x": "y"}
    assert reasons(relabelled, RULES, operation="UPDATE", old=old, groups=["deployers"]) == []
    assert reasons(old, RULES, groups=["deployers"],
                   username="system:serviceaccount:kube-system:replicaset-controller") == []


def test_the_control_character_class_is_exactly_unicode_category_cc() -> None:
    import sys
    import unicodedata

    from controller.policy.checks import has_control_characters

    for code in range(sys.maxunicode + 1):
        char = chr(code)
        assert has_control_characters(char) == (unicodedata.category(char) == "Cc"), hex(code)


# Every character of Unicode category Cc: C0, DEL and C1 (U+0085 is NEL, a line break to some
# log readers; U+009B is CSI, a terminal escape).
CONTROL = ["\x00", "\n", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9b", "\x9f"]


@pytest.mark.parametrize("char", CONTROL)
@pytest.mark.parametrize(("field", "reason"), [
    ("build_id", Reason.INVALID_BUILD_ID),
    ("deployed_by", Reason.INVALID_ANNOTATION),
    ("branch", Reason.INVALID_ANNOTATION),
])
def test_control_characters_are_refused(field: str, reason: Reason, char: str) -> None:
    value = f"admin{char}x"
    obj = deployment(ann=prov_annotations(**{field: value}))
    # The user is named as annotated, so that the control character is the only problem.
    user = value if field == "deployed_by" else "admin"
    assert reasons(obj, username=user) == [reason]


@pytest.mark.parametrize("value", ["main", "feature/ü-umlaut", "release-1.2", "a\u00a0b"])
def test_printable_branches_pass(value: str) -> None:
    # U+00A0 is a space separator (Zs), not a control character: names may use it.
    assert reasons(deployment(ann=prov_annotations(branch=value))) == []


@pytest.mark.parametrize("url", [
    "https://:token@ci.example.com/1",  # a password with no user
    "https://:@ci.example.com/1",  # an empty user and password still say "credentials here"
    "https://@ci.example.com/1",
    "https://user@ci.example.com/1",
    "https:///runs/1",  # no host
    "HTTPS://ci.example.com/1x",  # urlsplit lower-cases the scheme; accepted below
])
def test_pipeline_url_credentials_and_host(url: str) -> None:
    got = reasons(deployment(ann=prov_annotations(pipeline_url=url)))
    assert got == ([] if url.startswith("HTTPS") else [Reason.INVALID_PIPELINE_URL])


@pytest.mark.parametrize("rule", ["match-username", "ci-allowlist"])
def test_ci_accounts_are_honoured_only_under_the_allowlist_rule(rule: str) -> None:
    config = parse_config(f"""
actor: {{rule: {rule}, ci_accounts: ["system:serviceaccount:ci:deployer"]}}
""")
    obj = deployment(ann=prov_annotations(deployed_by="alice"))
    got = reasons(obj, config, username="system:serviceaccount:ci:deployer")
    assert got == ([] if rule == "ci-allowlist" else [Reason.ACTOR_MISMATCH])


def test_an_update_that_deploys_nothing_is_not_judged() -> None:
    # Nothing runs that did not run before, and no claim changed: judging it would only stop
    # an object that predates the gate from being labelled or scaled.
    obj = deployment(ann=prov_annotations(deployed_by="bob", git_sha="short"))
    decision = evaluate(parse_review(review(obj, operation="UPDATE", old=obj)), Config(), now=NOW)
    assert decision.violations == () and decision.allowed
    # The same object deploying (a claim changed) is judged in full.
    older = deployment(ann=prov_annotations(deployed_by="bob", git_sha="older"))
    judged = evaluate(parse_review(review(obj, operation="UPDATE", old=older)), Config(), now=NOW)
    assert [v.reason for v in judged.violations] == [Reason.INVALID_GIT_SHA,
                                                     Reason.ACTOR_MISMATCH]


@pytest.mark.parametrize(("digest", "expected"), [
    ("sha256:" + "a" * 64, []),
    ("sha256:" + "a" * 65, [Reason.INVALID_DIGEST]),  # a suffix after the 64 hex
    ("sha256:" + "a" * 128, [Reason.INVALID_DIGEST]),
    ("sha256:" + "a" * 63, [Reason.INVALID_DIGEST]),
    ("sha384:" + "a" * 96, [Reason.INVALID_DIGEST]),
])
def test_a_pin_is_exactly_sha256_and_64_hex(digest: str, expected: list[Reason]) -> None:
    assert reasons(deployment(containers=[f"registry.example.com/shop/app@{digest}"])) == expected


@pytest.mark.parametrize("stamp", [
    "2026-11-20t10:15:00z",  # RFC 3339 allows lower-case t and z
    "2026-11-20T10:15:00z",
    "2026-11-20t10:15:00Z",
    "2026-11-25T12:05:00Z",  # exactly at the skew: not yet the future
])
def test_rfc3339_lower_case_and_the_skew_boundary(stamp: str) -> None:
    assert reasons(deployment(ann=prov_annotations(build_timestamp=stamp))) == []


def test_the_build_id_length_limit_is_inclusive() -> None:
    assert reasons(deployment(ann=prov_annotations(build_id="b" * 256))) == []


def violations(obj: dict[str, Any], **kw: Any) -> list[tuple[Reason, str, str, str]]:
    decision = evaluate(parse_review(review(obj, **kw)), Config(), now=NOW)
    return [(v.reason, v.subject, v.message, v.hint) for v in decision.violations]


TS_HINT = "use RFC 3339 UTC, e.g. 2026-01-31T12:00:00Z (date -u +%Y-%m-%dT%H:%M:%SZ)"
ANN = "annotation provenance.dev/"


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"git_sha": "3F2A9C4"}, (Reason.INVALID_GIT_SHA, f"{ANN}git-sha",
                              f"{ANN}git-sha is a short SHA: '3F2A9C4'",
                              "use the full 40-character commit SHA (git rev-parse HEAD), never "
                              "a branch, tag or short SHA")),
    ({"git_sha": "m" * 100}, (Reason.INVALID_GIT_SHA, f"{ANN}git-sha",
                              f"{ANN}git-sha is not a lower-case hex commit SHA: {'m' * 80!r}",
                              "use the full 40-character commit SHA (git rev-parse HEAD), never "
                              "a branch, tag or short SHA")),
    ({"build_id": "b" * 257}, (Reason.INVALID_BUILD_ID, f"{ANN}build-id",
                               f"{ANN}build-id is longer than 256 characters",
                               "use the CI system's run id")),
    ({"build_id": " 12"}, (Reason.INVALID_BUILD_ID, f"{ANN}build-id",
                           f"{ANN}build-id has leading or trailing whitespace",
                           "use the CI system's run id")),
    ({"build_id": "20261120"}, (Reason.INVALID_BUILD_ID, f"{ANN}build-id",
                                f"{ANN}build-id is only a timestamp: '20261120'",
                                "use the CI system's build or run id, which names one build")),
    ({"pipeline_url": "http://ci.example.com/" + "p" * 200}, (
        Reason.INVALID_PIPELINE_URL, f"{ANN}pipeline-url",
        f"{ANN}pipeline-url is not an https URL without credentials: "
        f"{('http://ci.example.com/' + 'p' * 200)[:120]!r}", "use the https URL of the CI run")),
    ({"build_timestamp": "x" * 100}, (Reason.INVALID_TIMESTAMP, f"{ANN}build-timestamp",
                                      f"{ANN}build-timestamp is not RFC 3339: {'x' * 64!r}",
                                      TS_HINT)),
    ({"build_timestamp": "2026-02-30T10:00:00Z"}, (
        Reason.INVALID_TIMESTAMP, f"{ANN}build-timestamp",
        f"{ANN}build-timestamp is not a valid date and time: '2026-02-30T10:00:00Z'", TS_HINT)),
    ({"build_timestamp": "2026-11-25T12:05:01Z"}, (
        Reason.FUTURE_TIMESTAMP, f"{ANN}build-timestamp",
        f"{ANN}build-timestamp 2026-11-25T12:05:01Z is in the future",
        "set it from the build's clock when the build ran")),
])
def test_each_violation_names_its_subject_and_fix(
    overrides: dict[str, str], expected: tuple[Reason, str, str, str],
) -> None:
    assert violations(deployment(ann=prov_annotations(**overrides))) == [expected]


def full(obj: dict[str, Any], config: Config | None = None,
         **kw: Any) -> list[tuple[Reason, str, str, str]]:
    decision = evaluate(parse_review(review(obj, **kw)), config or Config(), now=NOW)
    return [(v.reason, v.subject, v.message, v.hint) for v in decision.violations]


def test_missing_and_too_long_annotations_in_full() -> None:
    assert full(deployment(ann=prov_annotations(build_id=None))) == [(
        Reason.MISSING_ANNOTATION, f"{ANN}build-id",
        f"required {ANN}build-id is missing or empty",
        "set provenance.dev/build-id (kubectl-provenance stamp writes it)")]
    assert full(deployment(ann=prov_annotations(branch="b" * 2049))) == [(
        Reason.VALUE_TOO_LONG, f"{ANN}branch", f"{ANN}branch is 2049 characters long",
        "keep it under 2048 characters")]
    assert full(deployment(ann=prov_annotations(branch="b" * 2048))) == []


@pytest.mark.parametrize(("config", "hint"), [
    (Config(), "set deployed-by to the authenticated user"),
    (ALLOWLIST, "set deployed-by to the authenticated user or deploy through an allow-listed "
                "CI account"),
])
def test_actor_mismatch_in_full(config: Config, hint: str) -> None:
    assert full(deployment(ann=prov_annotations(deployed_by="m" * 200)), config) == [(
        Reason.ACTOR_MISMATCH, f"{ANN}deployed-by",
        f"{ANN}deployed-by says {'m' * 120!r} but the request was made by 'admin'", hint)]


def test_environment_violations_in_full() -> None:
    obj = deployment(namespace="prod",
                     ann=prov_annotations(deployed_by="alice", environment="s" * 100))
    assert full(obj, ENVIRONMENTS, username="alice") == [
        (Reason.INVALID_ANNOTATION, f"{ANN}environment",
         f"{ANN}environment is not a lower-case name: {'s' * 64!r}",
         "use a name such as production or staging"),
        (Reason.INVALID_ANNOTATION, f"{ANN}environment",
         f"{ANN}environment says {'s' * 64!r} but namespace 'prod' belongs to environment "
         "'production'", "set it to production"),
        (Reason.ACTOR_NOT_AUTHORISED, "environment production",
         "user 'alice' may not deploy to environment 'production'",
         "deploy through the pipeline or an account listed for this environment"),
    ]


def test_image_violations_in_full() -> None:
    long = "n" * 300
    assert full(deployment(containers=[long])) == [(
        Reason.INVALID_IMAGE, f"container c0 image {long[:200]!r}",
        "container c0: the repository name is longer than 255",
        "use registry/repository@sha256:<64 hex>")]
    digest = "sha512:" + "a" * 128
    assert full(deployment(containers=[f"nginx@{digest}"])) == [(
        Reason.INVALID_DIGEST, f"container c0 image {'nginx@' + digest!r}",
        f"container c0 has digest {digest[:80]!r}, which is not sha256 with 64 lower-case hex",
        "use the sha256 digest the registry reports")]


def test_every_container_is_judged_after_a_bad_one() -> None:
    # The first image does not parse, the second is a tag: both are denied, each naming its own.
    found = full(deployment(containers=["bad image", "nginx:1.25"]))
    assert found == [
        (Reason.INVALID_IMAGE, "container c0 image 'bad image'",
         "container c0: 'bad image' is not a valid image reference",
         "use registry/repository@sha256:<64 hex>"),
        (Reason.IMAGE_NOT_PINNED, "container c1 image 'nginx:1.25'",
         "container c1 uses 'nginx:1.25', a tag, not a digest",
         "pin it as name@sha256:<digest> (kubectl-provenance stamp --pin-digests)")]


def test_a_branch_not_allowed_in_full() -> None:
    rules = parse_config("""
environments:
  production:
    namespaces: [prod]
    groups: [deployers]
    branches: [main, "release/*"]
""")
    long = "feature/" + "x" * 200
    obj = deployment(namespace="prod", ann=prov_annotations(branch=long))
    assert full(obj, rules, groups=["deployers"]) == [(
        Reason.BRANCH_NOT_ALLOWED, f"{ANN}branch",
        f"environment 'production' takes builds of main, release/*, not {long[:120]!r}",
        "deploy a build of an allowed branch")]
    unbranched = deployment(namespace="prod", ann=prov_annotations(branch=None))
    assert full(unbranched, rules, groups=["deployers"])[0][2] == (
        "environment 'production' takes builds of main, release/*, not no branch annotation")
    # A missing branch is matched as the empty name: a pattern that needs a character refuses it.
    some = parse_config("""
environments:
  production:
    namespaces: [prod]
    groups: [deployers]
    branches: ["?*"]
""")
    assert reasons(unbranched, some, groups=["deployers"]) == [Reason.BRANCH_NOT_ALLOWED]
    assert reasons(obj, some, groups=["deployers"]) == []


def test_a_value_too_long_does_not_hide_the_annotations_after_it() -> None:
    # The branch sorts first; the annotations after it are still judged, each on its own.
    obj = deployment(ann=prov_annotations(branch="b" * 2049, git_sha="short",
                                          pipeline_url="http://ci.example.com/1"))
    assert reasons(obj) == [Reason.VALUE_TOO_LONG, Reason.INVALID_GIT_SHA,
                            Reason.INVALID_PIPELINE_URL]


@pytest.mark.parametrize(("field", "reason"), [
    ("build-id", Reason.INVALID_BUILD_ID),
    ("branch", Reason.INVALID_ANNOTATION),
])
def test_a_control_character_denial_names_its_annotation(field: str, reason: Reason) -> None:
    obj = deployment(ann=prov_annotations(**{field: "4182\x1b[2J"}))
    assert full(obj) == [(reason, f"{ANN}{field}", f"{ANN}{field} contains control characters",
                          "remove them")]


def test_build_rules_of_an_environment_named_only_by_its_annotation() -> None:
    # No namespace maps to production here: the annotation alone names the environment, and its
    # rules about the build apply.
    obj = deployment(namespace="dev", ann=prov_annotations(
        environment="production", branch="feature/x", build_timestamp="2025-01-01T00:00:00Z"))
    assert reasons(obj, RULES, groups=["deployers"]) == [Reason.BRANCH_NOT_ALLOWED,
                                                         Reason.BUILD_TOO_OLD]
    staging = deployment(namespace="dev", ann=prov_annotations(
        environment="staging", branch="feature/x", build_timestamp="2025-01-01T00:00:00Z"))
    assert reasons(staging, RULES, groups=["deployers"]) == []
