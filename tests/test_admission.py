"""controller.admission: stages run in order, deadlines are passed, failures fail closed."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import time

from controller.admission import Admission, Outcome, judge
from controller.config import Config, parse_config
from controller.policy.provenance import Claims
from controller.policy.violations import Reason, Violation
from controller.review import WorkloadRequest, parse_review
from tests.builders import IMAGE, deployment, prov_annotations, review, workload


class Recorder:
    def __init__(self, extra: Violation | None = None, fail: bool = False) -> None:
        self.calls: list[tuple[str, float]] = []
        self.extra = extra
        self.fail = fail

    async def run(self, request: WorkloadRequest, outcome: Outcome, *,
                  deadline: float) -> Outcome:
        self.calls.append((request.uid, deadline))
        if self.fail:
            raise RuntimeError("registry exploded")
        return dataclasses.replace(outcome, decision=outcome.decision.with_violations(
            [self.extra] if self.extra else []))


async def test_stages_run_after_the_checks_with_a_deadline() -> None:
    extra = Violation(Reason.SIGNATURE_MISSING, "no signature", "sign it")
    first, second = Recorder(extra), Recorder()
    admission = Admission(Config(), stages=(first, second), budget_seconds=3)
    request = parse_review(review(deployment()))
    before = time.monotonic()
    decision = (await admission.review(request)).decision
    assert [v.reason for v in decision.violations] == [Reason.SIGNATURE_MISSING]
    assert first.calls[0][0] == request.uid
    assert before + 2.5 < first.calls[0][1] <= time.monotonic() + 3
    assert second.calls, "later stages see the decision so far"


async def test_exempt_requests_skip_the_stages() -> None:
    stage = Recorder()
    admission = Admission(Config(), stages=(stage,))
    await admission.review(parse_review(review(deployment(namespace="kube-system"))))
    assert stage.calls == []


async def test_a_failing_stage_denies_even_in_audit_mode() -> None:
    admission = Admission(parse_config("mode: audit"), stages=(Recorder(fail=True),))
    request = parse_review(review(deployment()))
    outcome = await admission.review(request)
    decision = outcome.decision
    assert not decision.allowed and decision.enforce
    assert [(v.reason, v.subject) for v in decision.violations] == [
        (Reason.INTERNAL_ERROR, request.uid)]
    # Nothing the failed pipeline read is passed on: no claims, nothing deployed or recorded.
    assert outcome.claims == Claims({}) and outcome.deploys is False
    assert outcome.evidence == () and outcome.recorded_seq is None


NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def test_judge_hands_the_later_stages_who_is_behind_the_request() -> None:
    derived = parse_review(review(
        deployment(), username="system:serviceaccount:kube-system:replicaset-controller"))
    assert judge(derived, Config(), now=NOW).role == "derived"
    assert judge(parse_review(review(deployment())), Config(), now=NOW).role == "authored"
    pod = workload("Pod")
    debugged = copy.deepcopy(pod)
    debugged["spec"]["ephemeralContainers"] = [{"name": "d", "image": IMAGE}]
    debug = parse_review(review(debugged, operation="UPDATE", old=pod,
                                sub_resource="ephemeralcontainers"))
    assert judge(debug, Config(), now=NOW).role == "debug"


def test_judge_hands_the_later_stages_the_claims_and_whether_it_deploys() -> None:
    obj = deployment(ann=prov_annotations(git_sha="short", environment="staging"))
    outcome = judge(parse_review(review(obj)), Config(), now=NOW)
    assert [v.reason for v in outcome.decision.violations] == [Reason.INVALID_GIT_SHA]
    assert outcome.claims == Claims({"git-sha": "short", "branch": "main", "build-id": "4182",
                                     "build-timestamp": "2026-11-20T10:15:00Z",
                                     "pipeline-url": "https://ci.example.com/runs/4182",
                                     "deployed-by": "admin", "environment": "staging"})
    assert outcome.deploys is True
    relabelled = copy.deepcopy(obj)
    relabelled["metadata"]["labels"] = {"team": "web"}
    update = judge(parse_review(review(relabelled, operation="UPDATE", old=obj)), Config(),
                   now=NOW)
    assert update.deploys is False and update.decision.violations == ()
    assert update.claims == outcome.claims
