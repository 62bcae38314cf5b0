"""The signer's identity and source claims, read from certificates built here."""

from __future__ import annotations

import pytest

from controller.signatures.certificate import (
    Mismatch,
    certificate_identity,
    check_source,
    ref_names,
)
from tests.signatures.certs import (
    COMMIT,
    GITHUB_ISSUER,
    GITHUB_SUBJECT,
    der_utf8,
    fulcio_cert,
    github_cert,
)

OLD_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_a_github_certificate_gives_its_claims() -> None:
    ident = certificate_identity(github_cert())
    assert ident.subjects == (GITHUB_SUBJECT,)
    assert ident.issuer == GITHUB_ISSUER
    assert ident.source_repository == "https://github.com/org/app"
    assert ident.repository_names() == ("https://github.com/org/app", "org/app")
    assert ident.source_ref == "refs/heads/main"
    assert ident.source_digest == COMMIT
    assert ident.workflow_path == ".github/workflows/release.yml"
    assert ident.trigger == "push"
    assert ident.runner_environment == "github-hosted"


def test_the_deprecated_extensions_are_the_fallback() -> None:
    # A certificate from before 1.8: raw values, issuer 1.1, commit 1.3, ref 1.6, repo 1.5.
    cert = fulcio_cert(subject_uri=GITHUB_SUBJECT, v1={
        1: GITHUB_ISSUER, 2: "push", 3: OLD_COMMIT, 5: "org/app", 6: "refs/tags/v1.2.0"})
    ident = certificate_identity(cert)
    assert ident.issuer == GITHUB_ISSUER
    assert ident.source_digest == OLD_COMMIT
    assert ident.source_ref == "refs/tags/v1.2.0"
    assert ident.source_repository_legacy == "org/app"
    assert ident.trigger == "push"
    assert ident.source_repository is None and ident.workflow_path is None
    assert ident.repository_names() == ("org/app",)


def test_every_spelling_of_the_repository_is_the_whole_name() -> None:
    # `org/appX` is not `org/app`: only the slashes around the URL's path are dropped.
    cert = fulcio_cert(subject_uri=GITHUB_SUBJECT, v1={5: "org/appX"},
                       v2={12: "https://github.com/org/appX"})
    assert certificate_identity(cert).repository_names() == (
        "https://github.com/org/appX", "org/appX", "org/appX")


def test_the_newer_extension_wins_over_the_deprecated_one() -> None:
    cert = fulcio_cert(subject_uri=GITHUB_SUBJECT, v1={3: OLD_COMMIT, 6: "refs/heads/old"},
                       v2={13: COMMIT, 14: "refs/heads/main"})
    ident = certificate_identity(cert)
    assert (ident.source_digest, ident.source_ref) == (COMMIT, "refs/heads/main")


def test_an_extension_that_is_not_a_utf8string_reads_as_absent() -> None:
    # 1.14 is a DER UTF8String; the bare bytes of the deprecated encoding are not one.
    cert = fulcio_cert(raw={14: b"refs/heads/main"})
    assert certificate_identity(cert).source_ref is None


@pytest.mark.parametrize(("der", "text"), [
    (b"\x0c\x04main", "main"),
    (b"\x0c\x00", ""),  # the empty string is a whole UTF8String
    (b"", None),
    (b"\x0c", None),  # a tag without a length
    (b"\x13\x04main", None),  # a PrintableString, not a UTF8String
    (b"\x0c\x05main", None),  # the value is shorter than its length
    (b"\x0c\x03main", None),  # bytes after the value
    (b"\x0c\x02\xff\xfe", None),  # not UTF-8
    # Long form: the low bits of the length byte count the length bytes that follow, 1 to 4
    # (the reader does not insist on DER's shortest form, so 3 and 4 are seen on short values).
    (b"\x0c\x81\xc8" + b"a" * 200, "a" * 200),
    (b"\x0c\x82\x01\x2c" + b"b" * 300, "b" * 300),
    (b"\x0c\x81\x00", ""),
    (b"\x0c\x83\x00\x00\x04main", "main"),
    (b"\x0c\x84\x00\x00\x00\x04main", "main"),
    (b"\x0c\x85\x00\x00\x00\x00\x04main", None),  # five length bytes
    (b"\x0c\x80", None),  # the indefinite length, which DER forbids
    (b"\x0c\x80main", None),
    (b"\x0c\x82\x01", None),  # the length bytes are cut short
    (b"\x0c\x82", None),
])
def test_the_der_utf8string_reader(der: bytes, text: str | None) -> None:
    # Read through 1.12, which has no deprecated fallback to hide an absent value.
    assert certificate_identity(fulcio_cert(raw={12: der})).source_repository == text


def test_a_long_value_uses_the_long_der_length() -> None:
    long_ref = "refs/heads/" + "b" * 300
    assert der_utf8(long_ref)[1] == 0x82
    assert certificate_identity(github_cert(ref=long_ref)).source_ref == long_ref


def test_email_and_othername_subjects() -> None:
    assert certificate_identity(fulcio_cert(email="dev@example.com")).subjects == (
        "dev@example.com",)
    cert = fulcio_cert(other_name="ci-bot")
    assert certificate_identity(cert).subjects == ("ci-bot",)


def test_matching_commit_and_branch() -> None:
    ident = certificate_identity(github_cert())
    assert check_source(ident, git_sha=COMMIT, branch="main") == ()
    assert check_source(ident, git_sha=COMMIT.upper(), branch="refs/heads/main") == ()


def test_a_commit_that_differs_is_named() -> None:
    ident = certificate_identity(github_cert())
    [m] = check_source(ident, git_sha=OLD_COMMIT, branch="main")
    assert (m.field, m.expected, m.found) == ("commit", OLD_COMMIT, COMMIT)
    assert "commit" in str(m) and COMMIT in str(m)


def test_a_ref_that_differs_is_named_and_both_are_listed() -> None:
    ident = certificate_identity(github_cert())
    found = check_source(ident, git_sha=OLD_COMMIT, branch="release")
    assert [m.field for m in found] == ["commit", "ref"]
    assert (found[1].expected, found[1].found) == ("release", "refs/heads/main")
    assert str(found[1]) == "certificate ref is 'refs/heads/main', expected release"


def test_a_tag_release_matches_its_tag_name() -> None:
    ident = certificate_identity(github_cert(ref="refs/tags/v1.2.0"))
    assert check_source(ident, git_sha=COMMIT, branch="v1.2.0") == ()
    assert check_source(ident, git_sha=COMMIT, branch="refs/heads/v1.2.0")[0].field == "ref"


def test_the_older_workflow_sha_is_the_commit_too() -> None:
    ident = certificate_identity(fulcio_cert(subject_uri=GITHUB_SUBJECT, v1={3: OLD_COMMIT}))
    assert check_source(ident, git_sha=OLD_COMMIT, branch=None) == ()
    assert check_source(ident, git_sha=COMMIT, branch=None)[0].field == "commit"


def test_the_checks_can_be_turned_off_per_rule() -> None:
    ident = certificate_identity(github_cert())
    assert check_source(ident, git_sha=OLD_COMMIT, branch="dev", check_commit=False,
                        check_ref=False) == ()


def test_a_certificate_without_source_claims_claims_nothing() -> None:
    # Not a GitHub certificate (an email identity): nothing to compare, nothing to deny.
    ident = certificate_identity(fulcio_cert(email="dev@example.com", v2={8: "https://x"}))
    assert check_source(ident, git_sha=COMMIT, branch="main") == ()


@pytest.mark.parametrize(("branch", "refs"), [
    ("main", {"main", "refs/heads/main", "refs/tags/main"}),
    ("refs/heads/main", {"refs/heads/main"}),
])
def test_ref_names(branch: str, refs: set[str]) -> None:
    assert ref_names(branch) == refs


def test_a_claim_the_certificate_lacks_is_printed_as_nothing() -> None:
    assert str(Mismatch("ref", "main", None)) == "certificate ref is nothing, expected main"
    assert str(Mismatch("ref", "main", "")) == "certificate ref is '', expected main"
