"""controller.review: AdmissionReview parsing; malformed input raises ReviewError only."""

from __future__ import annotations

from typing import Any

import pytest

from controller.errors import ReviewError
from controller.review import parse_review, request_from_manifest
from controller.workloads import KINDS, kind_named, template_hash
from tests.builders import IMAGE, WORKLOAD_KINDS, deployment, review, workload

DEPLOYMENT = KINDS[0]


def test_typed_request_carries_what_the_pipeline_needs() -> None:
    obj = deployment(init_containers=["busybox:1"], containers=[IMAGE, "sidecar:2"])
    obj["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    body = review(obj, username="alice", groups=["dev"], dry_run=True)
    req = parse_review(body)
    assert req.uid == body["request"]["uid"]
    assert (req.namespace, req.name, req.operation, req.dry_run) == ("default", "app", "CREATE",
                                                                     True)
    assert req.user.username == "alice" and req.user.groups == ("dev",)
    assert [(c.kind, c.image) for c in req.containers] == [
        ("initContainer", "busybox:1"), ("container", IMAGE), ("container", "sidecar:2")]
    assert req.pull_secret_names == ("regcred",)
    assert req.template_hash == template_hash(DEPLOYMENT, obj)
    assert req.old_object is None
    assert req.kind is DEPLOYMENT and req.subject == "Deployment"


def test_update_keeps_the_old_object() -> None:
    old = deployment()
    new = deployment(containers=["other@sha256:" + "1" * 64])
    req = parse_review(review(new, operation="UPDATE", old=old))
    assert req.old_object is not None
    assert req.old_template_hash == template_hash(DEPLOYMENT, old)
    assert req.template_hash != req.old_template_hash


def test_template_hash_ignores_key_order() -> None:
    a = deployment()
    b = deployment()
    b["spec"]["template"] = dict(reversed(list(b["spec"]["template"].items())))
    assert template_hash(DEPLOYMENT, a) == template_hash(DEPLOYMENT, b)


def _broken(mutate: Any) -> dict[str, Any]:
    body = review(deployment())
    mutate(body)
    return body


@pytest.mark.parametrize("body", [
    None, [], "text", {},
    _broken(lambda b: b.update(kind="Other")),
    _broken(lambda b: b.update(apiVersion="admission.k8s.io/v1beta1")),
    _broken(lambda b: b.pop("request")),
    _broken(lambda b: b["request"].pop("uid")),
    _broken(lambda b: b["request"].pop("userInfo")),
    _broken(lambda b: b["request"].update(operation="PATCH")),
    _broken(lambda b: b["request"].update(object=None)),
    _broken(lambda b: b["request"]["object"]["spec"]["template"]["spec"].update(containers="x")),
    _broken(lambda b: b["request"]["object"]["metadata"].update(annotations={"a": 1})),
])
def test_malformed_reviews_raise_review_error(body: Any) -> None:
    with pytest.raises(ReviewError):
        parse_review(body)


def test_no_caps_that_kubernetes_does_not_have() -> None:
    # A valid object must never become a 400: under failurePolicy Ignore that is a bypass.
    obj = deployment(containers=["x"] * 300)
    obj["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": f"s{i}"} for i in range(100)]
    req = parse_review(review(obj, groups=[f"g{i}" for i in range(2000)]))
    assert len(req.containers) == 300
    assert len(req.pull_secret_names) == 100


def test_request_from_manifest_matches_the_webhook_shape() -> None:
    obj = deployment(namespace="shop")
    req = request_from_manifest(obj, username="ci")
    assert req.namespace == "shop" and req.user.username == "ci" and req.dry_run
    assert req.template_hash == template_hash(DEPLOYMENT, obj)


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_every_kind_is_parsed_with_its_template(kind: str) -> None:
    obj = workload(kind, init_containers=["busybox:1"], template_ann={"a": "template"},
                   ann={"a": "object"})
    req = parse_review(review(obj))
    assert req.kind is kind_named(kind)
    assert [(c.kind, c.image) for c in req.containers] == [
        ("initContainer", "busybox:1"), ("container", IMAGE)]
    assert req.template_annotations == {"a": "template"}
    # A Pod is its own template: one set of annotations.
    assert req.annotations == ({"a": "template"} if kind == "Pod" else {"a": "object"})


def test_every_place_an_image_can_appear_is_read() -> None:
    obj = workload("Pod", init_containers=["init:1"], containers=["app:1"])
    spec = obj["spec"]
    spec["initContainers"].append({"name": "sidecar", "image": "proxy:1",
                                   "restartPolicy": "Always"})
    spec["ephemeralContainers"] = [{"name": "debugger", "image": "busybox:1"}]
    spec["volumes"] = [{"name": "models", "image": {"reference": "models:1"}},
                       {"name": "scratch", "emptyDir": {}}]
    req = parse_review(review(obj))
    assert [(c.label, c.image) for c in req.containers] == [
        ("initContainer init0", "init:1"), ("initContainer sidecar", "proxy:1"),
        ("container c0", "app:1"), ("ephemeralContainer debugger", "busybox:1"),
        ("imageVolume models", "models:1")]


def test_an_image_volume_without_a_reference_is_still_an_image() -> None:
    obj = workload("Pod")
    obj["spec"]["volumes"] = [{"name": "v", "image": {}}]
    req = parse_review(review(obj))
    assert ("imageVolume", "") in [(c.kind, c.image) for c in req.containers]


def test_the_ephemeral_containers_subresource_is_a_pod_update() -> None:
    old = workload("Pod")
    new = workload("Pod")
    new["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "busybox:latest"}]
    req = parse_review(review(new, operation="UPDATE", old=old,
                              sub_resource="ephemeralcontainers"))
    assert req.subresource == "ephemeralcontainers"
    assert req.subject == "Pod ephemeral containers"
    assert req.containers[-1].image == "busybox:latest"


def test_a_resource_that_is_not_a_gated_kind_is_malformed() -> None:
    body = review(deployment())
    body["request"]["resource"] = {"group": "", "version": "v1", "resource": "configmaps"}
    with pytest.raises(ReviewError, match="not a workload kind"):
        parse_review(body)


def test_a_template_that_is_not_an_object_is_malformed() -> None:
    obj = workload("CronJob")
    obj["spec"]["jobTemplate"]["spec"] = "x"
    with pytest.raises(ReviewError, match="CronJob"):
        parse_review(review(obj))


def test_a_pod_template_hash_ignores_what_the_server_sets_later() -> None:
    pod = workload("Pod")
    stored = {**pod, "metadata": {**pod["metadata"], "uid": "u", "resourceVersion": "9",
                                  "ownerReferences": [{"kind": "ReplicaSet"}]},
              "spec": {**pod["spec"], "nodeName": "node-1"}, "status": {"phase": "Running"}}
    pod_kind = kind_named("Pod")
    assert pod_kind is not None
    assert template_hash(pod_kind, pod) == template_hash(pod_kind, stored)
    changed = {**pod, "spec": {**pod["spec"], "containers": [{"name": "c0", "image": "x"}]}}
    assert template_hash(pod_kind, pod) != template_hash(pod_kind, changed)
