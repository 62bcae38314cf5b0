"""controller.policy.engine: exemptions, audit mode, UPDATE semantics."""

from __future__ import annotations

import datetime as dt

from controller.config import Config, parse_config
from controller.policy.engine import evaluate
from controller.policy.violations import Reason
from controller.review import parse_review
from tests.builders import deployment, prov_annotations, review

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
BAD = deployment(containers=["nginx:1"])


def test_enforce_denies_and_audit_warns() -> None:
    denied = evaluate(parse_review(review(BAD)), Config(), now=NOW)
    assert not denied.allowed and denied.warnings() == []
    audit = evaluate(parse_review(review(BAD)), parse_config("mode: audit"), now=NOW)
    assert audit.allowed
    assert len(audit.warnings()) == 1 and "[ImageNotPinned]" in audit.warnings()[0]


def test_exempt_namespace_is_not_judged() -> None:
    config = parse_config("exempt_namespaces: [kube-system, tools]")
    decision = evaluate(parse_review(review(deployment(namespace="tools",
                                                       containers=["x:1"]))), config, now=NOW)
    assert decision.allowed and decision.exempt_reason == "namespace tools is exempt"
    assert decision.violations == ()


def test_subresource_is_not_judged() -> None:
    decision = evaluate(parse_review(review(BAD, operation="UPDATE", old=BAD,
                                            sub_resource="scale")), Config(), now=NOW)
    assert decision.allowed and "scale" in decision.exempt_reason


def test_dry_run_is_judged_the_same() -> None:
    wet = evaluate(parse_review(review(BAD)), Config(), now=NOW)
    dry = evaluate(parse_review(review(BAD, dry_run=True)), Config(), now=NOW)
    assert dry.violations == wet.violations


def test_update_is_judged_on_the_new_object() -> None:
    good = deployment()
    decision = evaluate(parse_review(review(BAD, operation="UPDATE", old=good)), Config(),
                        now=NOW)
    assert [v.reason for v in decision.violations] == [Reason.IMAGE_NOT_PINNED]


def test_update_removing_an_annotation_is_denied() -> None:
    old = deployment()
    new = deployment(ann=prov_annotations(git_sha=None))
    decision = evaluate(parse_review(review(new, operation="UPDATE", old=old)), Config(),
                        now=NOW)
    assert [v.reason for v in decision.violations] == [Reason.MISSING_ANNOTATION]


def test_update_that_changes_nothing_that_runs_skips_the_actor() -> None:
    # The deployment controller writes its revision annotation as its own user; nobody is
    # deploying anything, so the actor check does not apply. The object is still checked.
    old = deployment()
    new = deployment()
    new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "2"
    decision = evaluate(parse_review(review(new, operation="UPDATE", old=old,
                                            username="system:kube-controller-manager")),
                        Config(), now=NOW)
    assert decision.violations == ()
    changed = deployment(containers=["registry.example.com/x@sha256:" + "2" * 64])
    decision = evaluate(parse_review(review(changed, operation="UPDATE", old=old,
                                            username="system:kube-controller-manager")),
                        Config(), now=NOW)
    assert [v.reason for v in decision.violations] == [Reason.ACTOR_MISMATCH]


def test_an_exempt_decision_keeps_the_mode() -> None:
    config = parse_config("mode: audit\nexempt_namespaces: [tools]")
    decision = evaluate(parse_review(review(deployment(namespace="tools"))), config, now=NOW)
    assert decision.exempt_reason and decision.enforce is False
    enforced = evaluate(parse_review(review(deployment(namespace="kube-system"))), Config(),
                        now=NOW)
    assert enforced.exempt_reason and enforced.enforce is True


def test_a_changed_provenance_annotation_alone_is_a_deployment() -> None:
    # Same template, new build-id: someone is deploying, so the actor is judged.
    old = deployment(ann=prov_annotations(deployed_by="bob"))
    new = deployment(ann=prov_annotations(deployed_by="bob", build_id="4183"))
    decision = evaluate(parse_review(review(new, operation="UPDATE", old=old)), Config(),
                        now=NOW)
    assert [v.reason for v in decision.violations] == [Reason.ACTOR_MISMATCH]
    same = evaluate(parse_review(review(old, operation="UPDATE", old=old)), Config(), now=NOW)
    assert same.violations == ()
