"""Keyless signer policies: configuration rules, and matching against built certificates."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.signatures.certificate import Mismatch, certificate_identity
from controller.signatures.keyless import (
    KeylessSigner,
    SignerMismatch,
    glob_to_regex,
    is_anchored,
)
from tests.signatures.certs import COMMIT, GITHUB_ISSUER, GITHUB_SUBJECT, fulcio_cert, github_cert


def signer(**fields: Any) -> KeylessSigner:
    base: dict[str, Any] = {"name": "release", "issuer": GITHUB_ISSUER, "subject": GITHUB_SUBJECT}
    base.update(fields)
    return KeylessSigner.model_validate({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize("pattern", [
    r"https://github\.com/org/.*",           # no anchors at all
    r"^https://github\.com/org/.*",          # no end anchor
    r"https://github\.com/org/.*$",          # no start anchor
    r"^https://github\.com/org/.*\$",        # an escaped dollar is a literal, not an anchor
])
def test_an_unanchored_subject_regex_is_refused_at_load(pattern: str) -> None:
    assert not is_anchored(pattern)
    with pytest.raises(ValidationError, match="anchored"):
        signer(subject=None, subject_regex=pattern)


def test_an_anchored_regex_loads_and_a_broken_one_does_not() -> None:
    assert is_anchored(r"^a\\$")  # an escaped backslash, then the anchor
    signer(subject=None, subject_regex=r"^https://github\.com/org/[^/]+/.*@refs/heads/main$")
    with pytest.raises(ValidationError, match="not a regular expression"):
        signer(subject=None, subject_regex=r"^(unclosed$")


def test_exactly_one_of_subject_and_subject_regex() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        signer(subject=None)
    with pytest.raises(ValidationError, match="exactly one"):
        signer(subject_regex="^x$")


def test_the_config_is_strict() -> None:
    with pytest.raises(ValidationError):
        signer(repo="org/app")  # a misspelt field is an error, not ignored
    with pytest.raises(ValidationError):
        signer(workflow_sha="main")  # a SHA is hex
    with pytest.raises(ValidationError):
        KeylessSigner.model_validate({"name": "x", "issuer": 1, "subject": "s"})
    assert signer().trust_root == "public-good"


def test_a_matching_certificate_passes() -> None:
    signer(repository="org/app", ref="refs/heads/main",
           workflow=".github/workflows/release.yml", workflow_sha=COMMIT, trigger="push",
           runner_environment="github-hosted").policy().verify(github_cert())


@pytest.mark.parametrize(("fields", "cert_overrides", "field"), [
    ({}, {"issuer": "https://gitlab.com"}, "issuer"),
    ({"subject": GITHUB_SUBJECT.replace("main", "dev")}, {}, "identity"),
    ({"repository": "org/app"}, {"repository": "https://github.com/evil/app"}, "repository"),
    ({"repository": "https://github.com/org/app"}, {"repository": "https://ghe.example/org/app"},
     "repository"),
    ({"ref": "refs/tags/v*"}, {}, "ref"),
    ({"ref": "refs/heads/main"}, {"ref": "refs/heads/main-fork"}, "ref"),
    ({"workflow": ".github/workflows/release.yml"},
     {"config": "https://github.com/org/app/.github/workflows/ci.yml@refs/heads/main"},
     "workflow"),
    ({"workflow_sha": "a" * 40}, {}, "workflow-sha"),
    ({"trigger": "release"}, {}, "trigger"),
    ({"runner_environment": "github-hosted"}, {"runner": "self-hosted"}, "runner-environment"),
])
def test_each_mismatch_names_its_field(fields: dict[str, str], cert_overrides: dict[str, str],
                                       field: str) -> None:
    with pytest.raises(SignerMismatch) as caught:
        signer(**fields).policy().verify(github_cert(**cert_overrides))
    assert caught.value.mismatch.field == field
    assert caught.value.signer == "release"


def test_a_required_claim_the_certificate_lacks_is_a_mismatch() -> None:
    cert = fulcio_cert(subject_uri=GITHUB_SUBJECT, v2={8: GITHUB_ISSUER})
    with pytest.raises(SignerMismatch) as caught:
        signer(runner_environment="github-hosted").policy().verify(cert)
    assert caught.value.mismatch.found is None


def test_all_mismatches_are_listed_issuer_first() -> None:
    from controller.signatures.certificate import certificate_identity

    ident = certificate_identity(github_cert(issuer="https://gitlab.com", trigger="schedule"))
    found = signer(trigger="push", repository="org/other").policy().mismatches(ident)
    assert [m.field for m in found] == ["issuer", "repository", "trigger"]


def test_a_subject_regex_matches_the_whole_subject() -> None:
    policy = signer(subject=None,
                    subject_regex=r"^https://github\.com/org/[^/]+/\.github/.*@refs/heads/main$"
                    ).policy()
    policy.verify(github_cert())
    with pytest.raises(SignerMismatch, match="identity"):
        policy.verify(fulcio_cert(subject_uri=GITHUB_SUBJECT + "-fork", v2={8: GITHUB_ISSUER}))


@pytest.mark.parametrize(("glob", "ref", "matches"), [
    ("refs/tags/v*", "refs/tags/v1.2.3", True),
    ("refs/tags/v*", "refs/tags/v1/evil", False),
    ("refs/tags/**", "refs/tags/v1/evil", True),
    ("refs/heads/main", "refs/heads/main", True),
    ("refs/heads/main", "refs/heads/mainx", False),
    ("refs/heads/release-?", "refs/heads/release-1", True),
    ("refs/heads/a.b", "refs/heads/aXb", False),
    # What follows a wildcard still has to match.
    ("refs/**/rc", "refs/arc", False),
    ("refs/**/rc", "refs/a/b/rc", True),
    ("refs/tags/v*x", "refs/tags/vab", False),
    ("refs/tags/v*x", "refs/tags/vabx", True),
    ("refs/tags/v?x", "refs/tags/va", False),
    ("refs/tags/v?x", "refs/tags/vax", True),
])
def test_ref_globs(glob: str, ref: str, matches: bool) -> None:
    assert bool(glob_to_regex(glob).fullmatch(ref)) is matches


def test_fingerprints_differ_by_policy() -> None:
    assert signer().policy().fingerprint() == signer().policy().fingerprint()
    assert signer().policy().fingerprint() != signer(ref="refs/heads/main").policy().fingerprint()


def test_a_keyless_config_loads_roots_and_policies() -> None:
    from pathlib import Path

    from controller.signatures.keyless import KeylessConfig

    root = (Path(__file__).parent.parent / "data" / "sigstore-conformance" / "bundle-verify"
            / "rekor2-happy-path" / "trusted_root.json")
    config = KeylessConfig.model_validate({
        "trust_roots": [{"name": "staging", "path": str(root)}],
        "signers": [
            {"name": "release", "issuer": GITHUB_ISSUER, "subject": GITHUB_SUBJECT},
            {"name": "nightly", "issuer": GITHUB_ISSUER, "subject": GITHUB_SUBJECT,
             "trust_root": "staging"},
        ]})
    loaded = config.load()
    assert sorted(loaded.roots) == ["public-good", "staging"]
    policy, trust_root = loaded.signers["nightly"]
    assert policy.name == "nightly" and trust_root.name == "staging"
    assert loaded.signers["release"][1].name == "public-good"


@pytest.mark.parametrize(("doc", "message"), [
    ({"signers": [{"name": "a", "issuer": "i", "subject": "s"},
                  {"name": "a", "issuer": "i", "subject": "t"}]}, "defined twice"),
    ({"signers": [{"name": "a", "issuer": "i", "subject": "s", "trust_root": "github"}]},
     "unknown trust root 'github'"),
])
def test_a_keyless_config_is_checked_whole(doc: dict[str, Any], message: str) -> None:
    from controller.signatures.keyless import KeylessConfig

    with pytest.raises(ValidationError, match=message):
        KeylessConfig.model_validate(doc)


@pytest.mark.parametrize(("fields", "expected"), [
    ({"issuer": "https://issuer.example"}, [
        Mismatch("issuer", "https://issuer.example", GITHUB_ISSUER)]),
    ({"subject": GITHUB_SUBJECT + "x"}, [
        Mismatch("identity", GITHUB_SUBJECT + "x", GITHUB_SUBJECT)]),
    ({"subject": None, "subject_regex": "^x$"}, [
        Mismatch("identity", "a match for ^x$", GITHUB_SUBJECT)]),
    ({"repository": "org/other"}, [
        Mismatch("repository", "org/other", "https://github.com/org/app")]),
    # A repository given as a URL is compared with the certificate's URL only.
    ({"repository": "org/app"}, []),
    ({"repository": "https://github.com/org/app"}, []),
    ({"repository": "https://github.com/org/other"}, [
        Mismatch("repository", "https://github.com/org/other", "https://github.com/org/app")]),
    ({"ref": "refs/tags/*"}, [Mismatch("ref", "refs/tags/*", "refs/heads/main")]),
    ({"workflow": "/.github/workflows/release.yml"}, []),  # a leading slash is the same path
    ({"workflow": "X.github/workflows/release.yml"}, [  # only slashes are dropped
        Mismatch("workflow", "X.github/workflows/release.yml", ".github/workflows/release.yml")]),
    ({"workflow": ".github/workflows/other.yml"}, [
        Mismatch("workflow", ".github/workflows/other.yml", ".github/workflows/release.yml")]),
    ({"workflow_sha": COMMIT.upper()}, []),
    ({"workflow_sha": "f" * 40}, [Mismatch("workflow-sha", "f" * 40, COMMIT)]),
    ({"trigger": "workflow_dispatch"}, [Mismatch("trigger", "workflow_dispatch", "push")]),
    ({"runner_environment": "self-hosted"}, [
        Mismatch("runner-environment", "self-hosted", "github-hosted")]),
])
def test_each_field_a_certificate_fails_is_named_with_both_values(
        fields: dict[str, Any], expected: list[Mismatch]) -> None:
    policy = signer(**fields).policy()
    assert list(policy.mismatches(certificate_identity(github_cert()))) == expected


def test_a_certificate_without_subjects_or_claims_shows_nothing_found() -> None:
    policy = signer(repository="org/app", ref="refs/heads/main").policy()
    bare = certificate_identity(fulcio_cert(v2={8: GITHUB_ISSUER}))
    assert list(policy.mismatches(bare)) == [
        Mismatch("identity", GITHUB_SUBJECT, None), Mismatch("repository", "org/app", None),
        Mismatch("ref", "refs/heads/main", None)]


@pytest.mark.parametrize("fields", [{"subject": GITHUB_SUBJECT + "x"},
                                    {"subject": None, "subject_regex": "^x$"}])
def test_every_subject_of_a_certificate_is_shown_when_none_matches(fields: dict[str, Any]) -> None:
    ident = certificate_identity(fulcio_cert(subject_uri=GITHUB_SUBJECT, email="dev@example.com",
                                             v2={8: GITHUB_ISSUER}))
    [found] = signer(**fields).policy().mismatches(ident)
    assert (found.field, found.found) == ("identity", f"{GITHUB_SUBJECT}, dev@example.com")


def test_a_repository_given_as_a_url_is_compared_with_the_source_repository_only() -> None:
    # Not with the deprecated 1.5 claim, even one written as that URL.
    cert = fulcio_cert(subject_uri=GITHUB_SUBJECT, v1={5: "https://github.com/org/app"},
                       v2={8: GITHUB_ISSUER, 12: "https://github.com/evil/app"})
    ident = certificate_identity(cert)
    assert signer(repository="https://github.com/org/app").policy().mismatches(ident) == (
        Mismatch("repository", "https://github.com/org/app", "https://github.com/evil/app"),)
