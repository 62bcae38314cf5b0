"""Prometheus metrics, in a registry of the controller's own.

A dedicated `CollectorRegistry` keeps `/metrics` to what this project defines (no surprise
collectors from imported libraries) and lets tests read exact values. Other modules call the small
`record_*` functions or use the metric objects directly; label values are bounded sets (verdicts,
`Reason` codes, registry operation names), never user input, so cardinality stays fixed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from controller.policy.violations import Decision, Reason

REGISTRY = CollectorRegistry(auto_describe=True)
"""Every metric below is registered here and only here."""

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The Content-Type of what `exposition()` returns: text format 0.0.4, which every Prometheus
version parses (the library's "latest", 1.0.0, is newer than many scrapers in the field)."""

# Admission latency is dominated by policy checks (sub-millisecond) on cache hits and by registry
# round trips on misses; the webhook timeout caps it at 30 s. Buckets start at 1 ms so a cached
# admission is not lumped in with a slow one.
ADMISSION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
REGISTRY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Entries per ledger write: 1 when admissions arrive one at a time, up to the group-commit limit
# (`group_commit_max_entries`, at most 512) under load.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

VERDICT_ALLOWED = "allowed"
VERDICT_DENIED = "denied"
VERDICT_AUDITED = "audited"
"""Admitted in audit mode although violations were found."""
VERDICT_EXEMPT = "exempt"
VERDICT_ERROR = "error"
"""The review itself was malformed (HTTP 400); no verdict was given."""
VERDICTS = (VERDICT_ALLOWED, VERDICT_DENIED, VERDICT_AUDITED, VERDICT_EXEMPT, VERDICT_ERROR)

NO_REASON = "none"
"""The reason label of an admission without violations."""

admissions_total = Counter(
    "provenance_admissions",
    "Admission reviews answered, by verdict and reason code. A request with several violations "
    "counts once per distinct reason.",
    ["verdict", "reason"],
    registry=REGISTRY,
)
admission_duration_seconds = Histogram(
    "provenance_admission_duration_seconds",
    "Time from receiving an AdmissionReview to answering it, by verdict.",
    ["verdict"],
    buckets=ADMISSION_BUCKETS,
    registry=REGISTRY,
)
break_glass_total = Counter(
    "provenance_break_glass",
    "Admissions let through by break glass, by environment (page on any increase).",
    ["environment"],
    registry=REGISTRY,
)
verification_cache_hits_total = Counter(
    "provenance_verification_cache_hits",
    "Signature verdicts served from the verification cache.",
    registry=REGISTRY,
)
verification_cache_misses_total = Counter(
    "provenance_verification_cache_misses",
    "Signature verdicts that had to be computed (registry round trips).",
    registry=REGISTRY,
)
registry_request_duration_seconds = Histogram(
    "provenance_registry_request_duration_seconds",
    "Latency of requests to OCI registries, by operation (manifest, blob, referrers, token).",
    ["operation"],
    buckets=REGISTRY_BUCKETS,
    registry=REGISTRY,
)
registry_request_errors_total = Counter(
    "provenance_registry_request_errors",
    "Failed requests to OCI registries, by operation and error kind (status code class, timeout, "
    "too-large, unreachable).",
    ["operation", "kind"],
    registry=REGISTRY,
)
ledger_appends_total = Counter(
    "provenance_ledger_appends",
    "Entries appended to the provenance ledger by this process.",
    registry=REGISTRY,
)
ledger_conflicts_total = Counter(
    "provenance_ledger_conflicts",
    "Ledger writes rejected by the API server with 409 Conflict (another replica appended first).",
    registry=REGISTRY,
)
ledger_retries_total = Counter(
    "provenance_ledger_retries",
    "Ledger write attempts retried after a conflict or a transient error.",
    registry=REGISTRY,
)
ledger_batch_size = Histogram(
    "provenance_ledger_batch_size",
    "Entries per ledger write (group commit).",
    buckets=BATCH_BUCKETS,
    registry=REGISTRY,
)
ledger_tail_failures_total = Counter(
    "provenance_ledger_tail_verification_failures",
    "Times the tail this writer was about to extend did not verify (a segment skipped, did not "
    "chain, disappeared or was recreated); the write was refused.",
    registry=REGISTRY,
)
ledger_anchor_failures_total = Counter(
    "provenance_ledger_anchor_failures",
    "Times the newest signed head could not be written beside the ledger key (cut detection "
    "lags until a later write succeeds).",
    registry=REGISTRY,
)
ledger_lanes_held = Gauge(
    "provenance_ledger_lanes_held",
    "Writer lanes of the ledger this process holds (1 while it may write, 0 while it has "
    "none).",
    registry=REGISTRY,
)
gate_intact = Gauge(
    "provenance_gate_intact",
    "1 while the controller's ValidatingWebhookConfiguration exists as expected, 0 while it is "
    "missing or has drifted (the gate may be off).",
    registry=REGISTRY,
)
gate_changes_total = Counter(
    "provenance_gate_changes",
    "Deletions of, or drifts in, the controller's ValidatingWebhookConfiguration, by what "
    "happened next (restored, or left as found when the controller does not own it).",
    ["outcome"],
    registry=REGISTRY,
)
unadmitted_total = Counter(
    "provenance_unadmitted_workloads",
    "Workloads seen in the cluster with no admission entry in the ledger (created while the "
    "gate was off, before install, or through a path the gate missed), by kind.",
    ["kind"],
    registry=REGISTRY,
)


unrecorded_workloads = Gauge(
    "provenance_unrecorded_workloads",
    "Workloads running with no admitted ledger record of their current template, by likely "
    "reason (`kubectl provenance status -A` lists them); from the controller's last scan.",
    ["reason"],
    registry=REGISTRY,
)
unrecorded_scan_timestamp_seconds = Gauge(
    "provenance_unrecorded_scan_timestamp_seconds",
    "When the last scan behind provenance_unrecorded_workloads completed (Unix time): alert "
    "when it grows old, since the count is then stale.",
    registry=REGISTRY,
)


def record_unrecorded(counts: Mapping[str, int], *, at: float) -> None:
    """Publish one scan's unrecorded counts (every reason, zeros included)."""
    for reason, count in counts.items():
        unrecorded_workloads.labels(reason=reason).set(count)
    unrecorded_scan_timestamp_seconds.set(at)


def verdict_of(decision: Decision) -> str:
    """The verdict label for a decision."""
    if decision.exempt_reason:
        return VERDICT_EXEMPT
    if not decision.violations:
        return VERDICT_ALLOWED
    return VERDICT_DENIED if decision.enforce else VERDICT_AUDITED


def _reasons(decision: Decision) -> Iterable[str]:
    seen: list[str] = []
    for violation in decision.violations:
        code = str(violation.reason)
        if code not in seen:
            seen.append(code)
    return seen or [NO_REASON]


def record_admission(decision: Decision, *, seconds: float) -> None:
    """Count one answered admission and observe how long it took."""
    verdict = verdict_of(decision)
    for reason in _reasons(decision):
        admissions_total.labels(verdict=verdict, reason=reason).inc()
    admission_duration_seconds.labels(verdict=verdict).observe(seconds)


def record_review_error(*, seconds: float) -> None:
    """Count one malformed AdmissionReview (answered with HTTP 400)."""
    admissions_total.labels(verdict=VERDICT_ERROR, reason=NO_REASON).inc()
    admission_duration_seconds.labels(verdict=VERDICT_ERROR).observe(seconds)


def record_break_glass(environment: str | None) -> None:
    """One admission let through by break glass."""
    break_glass_total.labels(environment=environment or "").inc()


def record_cache(*, hit: bool) -> None:
    """Count one verification-cache lookup."""
    (verification_cache_hits_total if hit else verification_cache_misses_total).inc()


def record_registry_request(operation: str, *, seconds: float, error: str | None = None) -> None:
    """Observe one registry request; `error` is a short bounded kind (`5xx`, `timeout`, ...)."""
    registry_request_duration_seconds.labels(operation=operation).observe(seconds)
    if error is not None:
        registry_request_errors_total.labels(operation=operation, kind=error).inc()


def record_ledger_write(*, entries: int) -> None:
    """Count one successful ledger write of `entries` entries (one group commit)."""
    ledger_appends_total.inc(entries)
    ledger_batch_size.observe(entries)


def record_ledger_conflict() -> None:
    """Count one ledger write rejected with 409 Conflict."""
    ledger_conflicts_total.inc()


def record_ledger_retry() -> None:
    """Count one retried ledger write attempt."""
    ledger_retries_total.inc()


def record_ledger_anchor_failure() -> None:
    """Count one failed write of the signed head beside the key."""
    ledger_anchor_failures_total.inc()


def set_ledger_lanes_held(count: int) -> None:
    """How many writer lanes this process holds now."""
    ledger_lanes_held.set(count)


def record_ledger_tail_failure() -> None:
    """Count one tail that failed verification before a write."""
    ledger_tail_failures_total.inc()


GATE_RESTORED = "restored"
GATE_REPORTED = "reported"
"""The configuration is not the controller's to restore; the change was recorded only."""


def record_gate(*, intact: bool, outcome: str | None = None) -> None:
    """Set whether the gate is intact; count a change and its outcome when there was one."""
    gate_intact.set(1 if intact else 0)
    if outcome is not None:
        gate_changes_total.labels(outcome=outcome).inc()


def record_unadmitted(kind: str) -> None:
    """Count one workload found without an admission entry; `kind` is a gated kind's name."""
    unadmitted_total.labels(kind=kind).inc()


def _prime() -> None:
    # Export every (verdict, reason) series at zero from the start, so a dashboard's rate() and an
    # alert on "denials by reason" work before the first such admission.
    for verdict in (VERDICT_DENIED, VERDICT_AUDITED):
        for reason in Reason:
            admissions_total.labels(verdict=verdict, reason=str(reason))
    for verdict in (VERDICT_ALLOWED, VERDICT_EXEMPT, VERDICT_ERROR):
        admissions_total.labels(verdict=verdict, reason=NO_REASON)
    for verdict in VERDICTS:
        admission_duration_seconds.labels(verdict=verdict)
    for outcome in (GATE_RESTORED, GATE_REPORTED):
        gate_changes_total.labels(outcome=outcome)


_prime()


def exposition() -> bytes:
    """The text exposition of every metric in `REGISTRY`."""
    return bytes(generate_latest(REGISTRY))
