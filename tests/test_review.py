"""controller.review: AdmissionReview parsing; malformed input raises ReviewError only."""

from __future__ import annotations

from typing import Any

import pytest

from controller.errors import ReviewError
from controller.review import parse_review, request_from_manifest, template_hash
from tests.builders import IMAGE, deployment, review


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
    assert req.template_hash == template_hash(obj)
    assert req.old_deployment is None


def test_update_keeps_the_old_object() -> None:
    old = deployment()
    new = deployment(containers=["other@sha256:" + "1" * 64])
    req = parse_review(review(new, operation="UPDATE", old=old))
    assert req.old_deployment is not None
    assert req.old_template_hash == template_hash(old)
    assert req.template_hash != req.old_template_hash


def test_template_hash_ignores_key_order() -> None:
    a = deployment()
    b = deployment()
    b["spec"]["template"] = dict(reversed(list(b["spec"]["template"].items())))
    assert template_hash(a) == template_hash(b)


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
    assert req.template_hash == template_hash(obj)
