"""controller.policy.engine: exemptions, audit mode, UPDATE semantics."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from controller.config import Config, parse_config
from controller.policy.engine import evaluate
from controller.policy.violations import Reason
from controller.review import parse_review
from tests.builders import (
    IMAGE,
    WORKLOAD_KINDS,
    deployment,
    prov_annotations,
    review,
    workload,
)

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
    # Someone other than the deployer labels the Deployment: nobody is deploying anything, so
    # nothing is judged.
    old = deployment()
    new = deployment()
    new["metadata"]["labels"] = {"team": "web"}
    decision = evaluate(parse_review(review(new, operation="UPDATE", old=old, username="bob")),
                        Config(), now=NOW)
    assert decision.violations == ()
    changed = deployment(containers=["registry.example.com/x@sha256:" + "2" * 64])
    decision = evaluate(parse_review(review(changed, operation="UPDATE", old=old,
                                            username="bob")), Config(), now=NOW)
    assert [v.reason for v in decision.violations] == [Reason.ACTOR_MISMATCH]


# --- every kind, and who is behind the request ---------------------------------------------

RS_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
PROD = parse_config("environments: {production: {namespaces: [prod], users: [deployer]}}")


def reasons(obj: dict[str, Any], config: Config | None = None, **kwargs: Any) -> list[Reason]:
    return [v.reason for v in evaluate(parse_review(review(obj, **kwargs)), config or Config(),
                                       now=NOW).violations]


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_every_kind_is_judged(kind: str) -> None:
    assert reasons(workload(kind, template_ann=prov_annotations())) == []
    assert reasons(workload(kind, containers=["nginx:1"],
                            template_ann=prov_annotations())) == [Reason.IMAGE_NOT_PINNED]
    assert set(reasons(workload(kind, ann={}))) == {Reason.MISSING_ANNOTATION}
    assert reasons(workload(kind, template_ann=prov_annotations(deployed_by="bob"))) == [
        Reason.ACTOR_MISMATCH]


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_denials_name_the_kind(kind: str) -> None:
    request = parse_review(review(workload(kind, containers=["nginx:1"])))
    decision = evaluate(request, Config(), now=NOW)
    assert decision.message(request.subject).startswith(
        f"provenance-controller denied this {kind} (1 problem):")


def test_a_derived_pod_is_judged_on_its_images_and_the_form_of_its_provenance() -> None:
    # Created by the ReplicaSet controller from an admitted template: no actor or environment
    # check (the person was judged on the Deployment), no required annotations.
    pod = workload("Pod", namespace="prod", ann={})
    assert reasons(pod, PROD, username=RS_CONTROLLER) == []
    pinned_but_claims_someone = workload("Pod", namespace="prod",
                                         ann=prov_annotations(deployed_by="mallory"))
    assert reasons(pinned_but_claims_someone, PROD, username=RS_CONTROLLER) == []
    assert reasons(workload("Pod", containers=["nginx:latest"], ann={}), PROD,
                   username=RS_CONTROLLER) == [Reason.IMAGE_NOT_PINNED]
    malformed = workload("Pod", ann=prov_annotations(git_sha="abc123"))
    assert reasons(malformed, username=RS_CONTROLLER) == [Reason.INVALID_GIT_SHA]


def test_owner_references_grant_nothing() -> None:
    # A person creating a Pod that claims a ReplicaSet as its controller is still its author
    # (Kyverno #2164).
    pod = workload("Pod", namespace="prod", containers=["nginx:1"], ann={})
    pod["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                           "name": "web-123", "uid": "u", "controller": True}]
    assert set(reasons(pod, PROD, username="mallory")) == {
        Reason.MISSING_ANNOTATION, Reason.IMAGE_NOT_PINNED, Reason.ACTOR_NOT_AUTHORISED}


def test_the_controller_identities_are_configurable() -> None:
    config = parse_config("derived: {controllers: [system:serviceaccount:ops:my-controller]}")
    pod = workload("Pod", ann={})
    assert reasons(pod, config, username="system:serviceaccount:ops:my-controller") == []
    assert Reason.MISSING_ANNOTATION in reasons(pod, config, username=RS_CONTROLLER)


def test_kubectl_debug_is_judged_on_the_debugger_and_every_image() -> None:
    old = workload("Pod", namespace="prod", template_ann=prov_annotations(deployed_by="deployer"))
    debug = copy.deepcopy(old)
    debug["spec"]["ephemeralContainers"] = [{"name": "d", "image": "busybox:latest"}]
    kwargs: dict[str, Any] = {"operation": "UPDATE", "old": old,
                              "sub_resource": "ephemeralcontainers"}
    assert reasons(debug, PROD, username="deployer", **kwargs) == [Reason.IMAGE_NOT_PINNED]
    debug["spec"]["ephemeralContainers"][0]["image"] = IMAGE
    assert reasons(debug, PROD, username="deployer", **kwargs) == []
    # deployed-by names the Pod's deployer, not the debugger, so it is not matched; but only
    # those authorised for the environment may add containers to its Pods.
    assert reasons(debug, PROD, username="oncall", **kwargs) == [Reason.ACTOR_NOT_AUTHORISED]
    assert reasons(debug, PROD, username="oncall", groups=["x"], **kwargs) == [
        Reason.ACTOR_NOT_AUTHORISED]


def test_a_pod_update_that_changes_an_image_is_judged() -> None:
    old = workload("Pod", template_ann=prov_annotations())
    relabelled = copy.deepcopy(old)
    relabelled["metadata"]["labels"] = {"release": "x"}
    assert reasons(relabelled, operation="UPDATE", old=old, username="bob") == []
    retagged = copy.deepcopy(old)
    retagged["spec"]["containers"][0]["image"] = "nginx:latest"
    assert reasons(retagged, operation="UPDATE", old=old, username="bob") == [
        Reason.IMAGE_NOT_PINNED, Reason.ACTOR_MISMATCH]


def test_an_object_being_deleted_is_still_judged_when_its_template_changes() -> None:
    # CVE-2023-34091: a pending deletion must not be a way past the gate.
    old = workload("Deployment")
    old["metadata"]["deletionTimestamp"] = "2026-11-25T11:00:00Z"
    old["metadata"]["finalizers"] = ["example.com/hold"]
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:latest"
    assert reasons(new, operation="UPDATE", old=old) == [Reason.IMAGE_NOT_PINNED]


def test_other_subresources_are_not_judged_but_ephemeral_containers_are() -> None:
    pod = workload("Pod", containers=["nginx:1"])
    for sub in ("status", "binding", "resize"):
        decision = evaluate(parse_review(review(pod, operation="UPDATE", old=pod,
                                                sub_resource=sub)), Config(), now=NOW)
        assert decision.exempt_reason == f"subresource {sub} is not judged"
    debugged = copy.deepcopy(pod)
    debugged["spec"]["ephemeralContainers"] = [{"name": "d", "image": "busybox:1"}]
    decision = evaluate(parse_review(review(debugged, operation="UPDATE", old=pod,
                                            sub_resource="ephemeralcontainers")),
                        Config(), now=NOW)
    assert not decision.exempt_reason and not decision.allowed


def test_a_controller_update_that_deploys_nothing_is_not_judged() -> None:
    # Scaling down a ReplicaSet that predates the gate (tagged image) must still work.
    legacy = workload("ReplicaSet", containers=["nginx:1"], ann={})
    scaled = copy.deepcopy(legacy)
    scaled["spec"]["replicas"] = 0
    assert reasons(scaled, operation="UPDATE", old=legacy, username=RS_CONTROLLER) == []
    retagged = copy.deepcopy(legacy)
    retagged["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    assert reasons(retagged, operation="UPDATE", old=legacy, username=RS_CONTROLLER) == [
        Reason.IMAGE_NOT_PINNED]
    # Nor a person's: labelling a derived Pod whose template carried no provenance.
    pod = workload("Pod", containers=["nginx:1"], ann={})
    labelled = copy.deepcopy(pod)
    labelled["metadata"]["labels"] = {"debug": "true"}
    assert reasons(labelled, operation="UPDATE", old=pod, username="bob") == []


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


@pytest.mark.parametrize(("mode", "enforce"), [("enforce", True), ("audit", False)])
def test_an_update_that_deploys_nothing_keeps_the_mode(mode: str, enforce: bool) -> None:
    old = deployment(containers=["nginx:1"])
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"team": "web"}
    decision = evaluate(parse_review(review(new, operation="UPDATE", old=old)),
                        parse_config(f"mode: {mode}"), now=NOW)
    assert decision.violations == () and not decision.exempt_reason
    assert decision.enforce is enforce
