"""SLSA v1 and v0.2 extraction, and the matching rules for commit, build id and pipeline URL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.signatures.provenance import SLSA_V02, SLSA_V1, Provenance, extract_provenance
from tests.fixtures.registry import COSIGN_DATA
from tests.signatures.helpers import COMMIT, RUN_URL


def test_v1_fixture_predicate() -> None:
    predicate = json.loads((COSIGN_DATA / "slsa-provenance-predicate.json").read_text())
    p = extract_provenance(SLSA_V1, predicate)
    assert p.commits == (COMMIT,)
    assert p.has_commit(COMMIT.upper())
    assert not p.has_commit(COMMIT[:7])
    assert p.invocation_urls == (RUN_URL,)
    assert p.has_build_id("12345") and p.has_build_id(RUN_URL)
    assert not p.has_build_id("1234")
    assert not p.has_build_id("1") and not p.has_build_id("runs")
    assert not p.has_build_id("actions")
    assert p.has_pipeline_url("https://github.com/example-org/payments-api/actions/runs/12345")
    assert p.has_pipeline_url(RUN_URL)
    assert not p.has_pipeline_url("https://github.com/example-org/payments-api/actions/runs/1234")
    assert p.builder_id.endswith("release.yml@refs/heads/main")


def test_v02_predicate() -> None:
    predicate = {
        "builder": {"id": "https://gitlab.com/runner"},
        "invocation": {
            "configSource": {"uri": "git+https://gitlab.com/x/y", "digest": {"sha1": "B" * 40}},
            "environment": {"CI_PIPELINE_ID": 987, "CI_PIPELINE_URL":
                            "https://gitlab.com/x/y/-/pipelines/987"},
        },
        "metadata": {"buildInvocationId": "987-1"},
        "materials": [{"uri": "git+https://gitlab.com/x/y", "digest": {"sha1": "a" * 40}},
                      {"uri": "pkg:npm/x", "digest": {"sha512": "c" * 128}}],
    }
    p = extract_provenance(SLSA_V02, predicate)
    assert p.commits == ("a" * 40, "b" * 40)
    assert p.has_build_id("987") and p.has_build_id("987-1")
    assert p.build_ids == ("987", "987-1")  # the environment's number, as text
    assert p.has_pipeline_url("https://gitlab.com/x/y/-/pipelines/987")
    # A trailing slash on either side names the same run.
    assert p.has_pipeline_url("https://gitlab.com/x/y/-/pipelines/987/")
    assert extract_provenance(SLSA_V02, {}).builder_id == ""
    assert extract_provenance("https://example.com/other-predicate/v1", predicate) == Provenance(
        "https://example.com/other-predicate/v1", (), (), (), "")


def test_hostile_predicates_do_not_crash() -> None:
    predicates: tuple[dict[str, Any] | None, ...] = (
        None, {}, {"buildDefinition": []}, {"materials": "x"},
        {"buildDefinition": {"resolvedDependencies": [1, None, {"digest": 3}]}},
        {"runDetails": {"metadata": {"invocationId": 5}}})
    for predicate in predicates:
        p = extract_provenance(SLSA_V1, predicate)
        assert p.commits == () and p.commit is None
        assert p.build_ids == ()  # an invocation id that is not text is none
        extract_provenance(SLSA_V02, predicate)


@pytest.mark.parametrize(("url", "ok"), [
    ("https://ci.example.com/org/app/runs/77", True),
    ("https://ci.example.com/org/app/runs/77/", True),  # a trailing slash is the same URL
    ("https://ci.example.com/org/app/runs", True),  # a prefix on a path boundary
    ("https://ci.example.com/org/app/run", False),  # not on a boundary
    ("https://ci.example.com/org/app/runs/7", False),
    ("https://ci.example.com/org/app/runs/77/attempts/1/x", False),  # longer than attested
    ("https://ci.example.com/org/app/runs/77/attempts/1/", True),  # the attested one, slashed
    ("https://ci.example.com/org/app/runs/77/attempts/1X", False),
    ("https://ci.example.com/org/app/runs/77/attempts/1/X", False),
])
def test_pipeline_url_matches_on_path_boundaries(url: str, ok: bool) -> None:
    p = Provenance("https://slsa.dev/provenance/v1", (), (),
                   ("https://ci.example.com/org/app/runs/77/attempts/1",))
    assert p.has_pipeline_url(url) is ok


@pytest.mark.parametrize(("build_id", "ok"), [
    ("b-9", True),  # attested as a build id
    ("77", True),  # the run id after a run segment of an invocation URL
    ("1", False),  # after `attempts`, not a run segment (or not there at all)
    ("org", False),
    ("runs", False),
])
@pytest.mark.parametrize("url", [
    "https://ci.example.com/org/app/runs/77/attempts/1",
    "https://ci.example.com/org/app/runs/77",  # the run id last in the path
])
def test_build_id_from_ids_or_the_run_segment(build_id: str, ok: bool, url: str) -> None:
    p = Provenance("https://slsa.dev/provenance/v1", (), ("b-9",), (url,))
    assert p.has_build_id(build_id) is ok


@pytest.mark.parametrize(("attested", "url", "ok"), [
    ("https://ci.example.com/runs/77/", "https://ci.example.com/runs/77", True),
    ("https://ci.example.com/runs/77X", "https://ci.example.com/runs/77", False),
    ("https://ci.example.com/runs/77 ", "https://ci.example.com/runs/77", False),
])
def test_the_attested_url_is_compared_as_written(attested: str, url: str, ok: bool) -> None:
    p = Provenance("https://slsa.dev/provenance/v1", (), (), (attested,))
    assert p.has_pipeline_url(url) is ok


def test_v1_extraction_in_full() -> None:
    commit, other = "c" * 40, "d" * 64
    predicate = {
        "buildDefinition": {"resolvedDependencies": [
            {"uri": "git+https://x", "digest": {"gitCommit": commit.upper()}},
            {"uri": "git+https://y", "digest": {"sha1": other}},
            {"uri": "git+https://z", "digest": {"sha1": "e" * 39}},  # not a full SHA
            "not an object",
        ]},
        "runDetails": {"builder": {"id": "https://ci.example.com/builder"},
                       "metadata": {"invocationId": "https://ci.example.com/runs/5"}},
    }
    p = extract_provenance(SLSA_V1, predicate)
    assert p == Provenance(SLSA_V1, (commit, other), ("https://ci.example.com/runs/5",),
                           ("https://ci.example.com/runs/5",), "https://ci.example.com/builder")
    plain = extract_provenance(SLSA_V1, {"runDetails": {"metadata": {"invocationId": "b-7"}}})
    assert plain == Provenance(SLSA_V1, (), ("b-7",), (), "")
    assert extract_provenance(SLSA_V1, {"runDetails": {"builder": {
        "id": "x" * 2000}}}).builder_id == "x" * 1024


def test_v02_extraction_in_full() -> None:
    predicate = {
        "builder": {"id": "https://gitlab.com/runner"},
        "materials": [{"digest": {"gitCommit": "a" * 40}}, {"digest": {"sha1": "b" * 40}}],
        "invocation": {"environment": {"CI_PIPELINE_URL": "http://gitlab.example/p/9"}},
        "metadata": {"buildInvocationId": "https://gitlab.example/jobs/4"},
    }
    p = extract_provenance(SLSA_V02, predicate)
    assert p.commits == ("a" * 40, "b" * 40)
    assert p.invocation_urls == ("http://gitlab.example/p/9", "https://gitlab.example/jobs/4")
    assert p.build_ids == ("https://gitlab.example/jobs/4",)
    assert p.builder_id == "https://gitlab.com/runner"
    assert p.predicate_type == SLSA_V02
    assert extract_provenance(SLSA_V02, {"metadata": {"buildInvocationId": ""}}).build_ids == ()
    assert extract_provenance(SLSA_V02, {"builder": {"id": "y" * 2000}}).builder_id == "y" * 1024
    assert extract_provenance(SLSA_V02, {"invocation": {"environment": {
        "CI_PIPELINE_URL": "ftp://x/1"}}}).invocation_urls == ()
