"""controller.metrics and the health app of controller.observability."""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from controller import metrics
from controller.observability import (
    JsonFormatter,
    admission_context,
    admission_uid,
    build_health_app,
)
from controller.policy.violations import Decision, Reason, Violation
from controller.version import BuildInfo


def value(name: str, **labels: str) -> float:
    got = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if got is None else got


def violation(reason: Reason) -> Violation:
    return Violation(reason=reason, message="m", hint="h")


def test_admission_counts_by_verdict_and_each_distinct_reason() -> None:
    before_missing = value("provenance_admissions_total", verdict="denied",
                           reason="MissingAnnotation")
    before_pinned = value("provenance_admissions_total", verdict="denied",
                          reason="ImageNotPinned")
    decision = Decision(violations=(
        violation(Reason.MISSING_ANNOTATION), violation(Reason.MISSING_ANNOTATION),
        violation(Reason.IMAGE_NOT_PINNED)))
    metrics.record_admission(decision, seconds=0.0004)
    assert value("provenance_admissions_total", verdict="denied",
                 reason="MissingAnnotation") == before_missing + 1
    assert value("provenance_admissions_total", verdict="denied",
                 reason="ImageNotPinned") == before_pinned + 1


@pytest.mark.parametrize(
    ("decision", "verdict"),
    [
        (Decision(), "allowed"),
        (Decision(violations=(violation(Reason.ACTOR_MISMATCH),), enforce=False), "audited"),
        (Decision(exempt_reason="namespace kube-system"), "exempt"),
    ],
)
def test_verdicts(decision: Decision, verdict: str) -> None:
    reason = "none" if verdict != "audited" else "ActorMismatch"
    before = value("provenance_admissions_total", verdict=verdict, reason=reason)
    metrics.record_admission(decision, seconds=0.01)
    assert value("provenance_admissions_total", verdict=verdict, reason=reason) == before + 1


def test_latency_histogram_resolves_one_millisecond() -> None:
    assert metrics.ADMISSION_BUCKETS[0] == 0.001
    name = "provenance_admission_duration_seconds_bucket"
    fast_before = value(name, verdict="allowed", le="0.001")
    slow_before = value(name, verdict="allowed", le="0.0025")
    metrics.record_admission(Decision(), seconds=0.0005)
    metrics.record_admission(Decision(), seconds=0.002)
    assert value(name, verdict="allowed", le="0.001") == fast_before + 1
    assert value(name, verdict="allowed", le="0.0025") == slow_before + 2


def test_cache_registry_and_ledger_metrics() -> None:
    hits = value("provenance_verification_cache_hits_total")
    misses = value("provenance_verification_cache_misses_total")
    metrics.record_cache(hit=True)
    metrics.record_cache(hit=True)
    metrics.record_cache(hit=False)
    assert value("provenance_verification_cache_hits_total") == hits + 2
    assert value("provenance_verification_cache_misses_total") == misses + 1

    count = value("provenance_registry_request_duration_seconds_count", operation="manifest")
    errors = value("provenance_registry_request_errors_total", operation="manifest", kind="5xx")
    metrics.record_registry_request("manifest", seconds=0.02)
    metrics.record_registry_request("manifest", seconds=0.3, error="5xx")
    assert value("provenance_registry_request_duration_seconds_count",
                 operation="manifest") == count + 2
    assert value("provenance_registry_request_errors_total",
                 operation="manifest", kind="5xx") == errors + 1

    appends = value("provenance_ledger_appends_total")
    conflicts = value("provenance_ledger_conflicts_total")
    retries = value("provenance_ledger_retries_total")
    metrics.record_ledger_write(entries=1)
    metrics.record_ledger_write(entries=5)
    metrics.record_ledger_conflict()
    metrics.record_ledger_conflict()
    for _ in range(3):
        metrics.record_ledger_retry()
    assert value("provenance_ledger_appends_total") == appends + 6
    assert value("provenance_ledger_conflicts_total") == conflicts + 2
    assert value("provenance_ledger_retries_total") == retries + 3
    ones = value("provenance_ledger_batch_size_bucket", le="1.0")
    fours = value("provenance_ledger_batch_size_bucket", le="4.0")
    metrics.record_ledger_write(entries=3)
    assert value("provenance_ledger_batch_size_bucket", le="1.0") == ones
    assert value("provenance_ledger_batch_size_bucket", le="4.0") == fours + 1


def test_every_denial_reason_is_exported_before_it_happens() -> None:
    for reason in Reason:
        assert metrics.REGISTRY.get_sample_value(
            "provenance_admissions_total", {"verdict": "denied", "reason": str(reason)}
        ) is not None


def test_the_registry_holds_only_this_projects_metrics() -> None:
    names = {f.name for f in text_string_to_metric_families(metrics.exposition().decode())}
    assert names
    assert all(name.startswith("provenance_") for name in names), names


# --- the health app ------------------------------------------------------------------------

INFO = BuildInfo(version="1.0.0", commit="c" * 40, build="b-7", built_at="2026-11-26T00:00:00Z",
                 environment="staging", pipeline_url="https://ci.example.com/7",
                 source="https://git.example.com/pc")


async def test_readyz_is_503_until_ready_and_livez_always_200() -> None:
    state = {"ready": False}
    app = build_health_app(ready=lambda: state["ready"], info=INFO)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/livez")).status == 200
        assert (await client.get("/readyz")).status == 503
        state["ready"] = True
        assert (await client.get("/readyz")).status == 200


async def test_readyz_treats_a_crashing_check_as_not_ready() -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    async with TestClient(TestServer(build_health_app(ready=broken, info=INFO))) as client:
        assert (await client.get("/readyz")).status == 503


async def test_version_serves_the_build_info() -> None:
    async with TestClient(TestServer(build_health_app(ready=lambda: True, info=INFO))) as client:
        resp = await client.get("/version")
        assert resp.status == 200
        assert await resp.json() == INFO.as_dict()


async def test_version_defaults_to_the_process_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVENANCE_CONTROLLER_COMMIT", "d" * 40)
    monkeypatch.setenv("PROVENANCE_CONTROLLER_BUILD_ID", "ci-99")
    async with TestClient(TestServer(build_health_app(ready=lambda: True))) as client:
        body = await (await client.get("/version")).json()
        assert body["commit"] == "d" * 40
        assert body["build"] == "ci-99"


async def test_metrics_endpoint_is_parseable_and_reflects_admissions() -> None:
    metrics.record_admission(Decision(violations=(violation(Reason.INVALID_DIGEST),)),
                             seconds=0.003)
    async with TestClient(TestServer(build_health_app(ready=lambda: True, info=INFO))) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }
    key = ("provenance_admissions_total",
           (("reason", "InvalidDigest"), ("verdict", "denied")))
    assert samples[key] >= 1


# --- JSON logs -----------------------------------------------------------------------------

def make_record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("controller.webhook", logging.INFO, __file__, 1, msg, None, None)
    for key, val in extra.items():
        setattr(record, key, val)
    return record


def test_json_log_lines_carry_the_admission_uid_only_inside_the_context() -> None:
    fmt = JsonFormatter()
    with admission_context("705ab4f5-6393-11e8-b7cc-42010a800002"):
        line = json.loads(fmt.format(make_record("judged %s", namespace="team-a")))
    assert line["admission_uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert line["message"] == "judged %s"
    assert line["namespace"] == "team-a"
    assert line["level"] == "info"
    assert line["logger"] == "controller.webhook"
    assert line["time"].endswith("Z")
    assert admission_uid.get() is None
    assert "admission_uid" not in json.loads(fmt.format(make_record("outside")))


def test_json_log_lines_leave_out_the_frameworks_settings_but_keep_the_object() -> None:
    line = json.loads(JsonFormatter().format(make_record(
        "Webhook 'validate' succeeded.", settings=object(), k8s_skip=True,
        k8s_ref={"kind": "Deployment", "name": "web"})))
    assert "settings" not in line and "k8s_skip" not in line
    assert line["k8s_ref"] == {"kind": "Deployment", "name": "web"}


def test_json_log_lines_survive_unserialisable_extras_and_carry_exceptions() -> None:
    fmt = JsonFormatter()
    try:
        raise ValueError("bad")
    except ValueError:
        import sys
        record = make_record("failed", thing=object())
        record.exc_info = sys.exc_info()
    line = json.loads(fmt.format(record))
    assert line["thing"].startswith("<object object")
    assert "ValueError: bad" in line["exception"]
