"""controller.workloads: the kinds table, the pod-template walk, and the webhook rules."""

from __future__ import annotations

from typing import Any

import pytest

from controller.workloads import (
    KINDS,
    kind_for_resource,
    kind_named,
    kind_of,
    parse_target,
    pod_images,
    webhook_rules,
)
from tests.builders import WORKLOAD_KINDS, workload

TEMPLATE_PATHS = {
    "Deployment": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Pod": (),
}


def test_the_table_covers_every_kind_the_gate_promises() -> None:
    assert {k.kind for k in KINDS} == set(TEMPLATE_PATHS)
    assert {(k.kind, k.template_path) for k in KINDS} == set(TEMPLATE_PATHS.items())
    assert {k.kind for k in KINDS if not k.controller} == {"Pod"}


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_the_template_is_found_where_the_kind_keeps_it(kind: str) -> None:
    row = kind_named(kind)
    assert row is not None
    obj = workload(kind, template_ann={"where": "template"})
    template = row.template(obj)
    assert template is not None
    assert template["metadata"]["annotations"] == {"where": "template"}
    assert [image for _s, _n, image in pod_images(template["spec"])] == [
        obj_image(obj, row.template_path)]


def obj_image(obj: dict[str, Any], path: tuple[str, ...]) -> str:
    node: Any = obj
    for key in path:
        node = node[key]
    return str(node["spec"]["containers"][0]["image"])


@pytest.mark.parametrize(("manifest", "expected"), [
    ({"apiVersion": "apps/v1", "kind": "Deployment"}, "Deployment"),
    ({"apiVersion": "apps/v1beta2", "kind": "StatefulSet"}, "StatefulSet"),
    ({"apiVersion": "extensions/v1beta1", "kind": "DaemonSet"}, "DaemonSet"),
    ({"apiVersion": "batch/v1beta1", "kind": "CronJob"}, "CronJob"),
    ({"apiVersion": "v1", "kind": "Pod"}, "Pod"),
    ({"apiVersion": "example.com/v1", "kind": "Deployment"}, None),  # a CRD's own Deployment
    ({"apiVersion": "apps/v1", "kind": "Pod"}, None),
    ({"apiVersion": "v1", "kind": "Job"}, None),
    ({"apiVersion": "v1", "kind": "Service"}, None),
    ({"kind": "Pod"}, None),
])
def test_a_manifest_is_a_gated_kind_only_in_its_own_group(
        manifest: dict[str, Any], expected: str | None) -> None:
    row = kind_of(manifest)
    assert (row.kind if row else None) == expected


@pytest.mark.parametrize(("target", "kind", "name"), [
    ("deploy/web", "Deployment", "web"), ("deployment.apps/web", "Deployment", "web"),
    ("sts/db", "StatefulSet", "db"), ("statefulsets/db", "StatefulSet", "db"),
    ("ds/agent", "DaemonSet", "agent"), ("rs/x", "ReplicaSet", "x"), ("job/j", "Job", "j"),
    ("cronjob/c", "CronJob", "c"), ("cj/c", "CronJob", "c"),
    ("rc/r", "ReplicationController", "r"), ("pod/p", "Pod", "p"), ("po/p", "Pod", "p"),
    ("Deploy/web", "Deployment", "web"),
])
def test_kubectl_style_targets(target: str, kind: str, name: str) -> None:
    found = parse_target(target)
    assert found is not None and (found[0].kind, found[1]) == (kind, name)


@pytest.mark.parametrize("target", ["web", "svc/web", "deploy/", "deploy/a/b", "/web"])
def test_bad_targets(target: str) -> None:
    assert parse_target(target) is None


def test_api_paths() -> None:
    deploy, pod = kind_named("Deployment"), kind_named("Pod")
    assert deploy is not None and pod is not None
    assert deploy.path("shop", "web") == "/apis/apps/v1/namespaces/shop/deployments/web"
    assert pod.path("shop") == "/api/v1/namespaces/shop/pods"


def test_webhook_rules_send_every_kind_and_the_ephemeral_containers_subresource() -> None:
    resources = {(group, r) for rule in webhook_rules() for group in rule["apiGroups"]
                 for r in rule["resources"]}
    assert resources == {(k.group, k.plural) for k in KINDS} | {("", "pods/ephemeralcontainers")}
    for rule in webhook_rules():
        assert rule["operations"] == ["CREATE", "UPDATE"]
        assert rule["scope"] == "Namespaced"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert kind_for_resource(group, resource.partition("/")[0]) is not None
