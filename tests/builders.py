"""Builders for AdmissionReviews and workloads used across the unit and end-to-end tests."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from controller.workloads import KINDS, kind_named, kind_of

SHA = "3f2a9c41d5e8b7f60a1c2d3e4f5a6b7c8d9e0f12"
DIGEST = "sha256:b5b1e7f55d49730ba3119608964ba401309f389835dac7ab40657beafbb5ad07"
IMAGE = f"registry.example.com/shop/app@{DIGEST}"
PREFIX = "provenance.dev/"


def prov_annotations(**overrides: str | None) -> dict[str, str]:
    """A complete, valid set of provenance annotations; None removes one."""
    base: dict[str, str | None] = {
        "git-sha": SHA, "branch": "main", "build-id": "4182",
        "build-timestamp": "2026-11-20T10:15:00Z",
        "pipeline-url": "https://ci.example.com/runs/4182", "deployed-by": "admin",
    }
    base.update({k.replace("_", "-"): v for k, v in overrides.items()})
    return {PREFIX + k: v for k, v in base.items() if v is not None}


def deployment(
    name: str = "app",
    namespace: str = "default",
    *,
    ann: dict[str, str] | None = None,
    containers: list[str] | None = None,
    init_containers: list[str] | None = None,
    template_ann: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An apps/v1 Deployment manifest."""
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": img}
                       for i, img in enumerate(containers if containers is not None else [IMAGE])],
    }
    if init_containers:
        spec["initContainers"] = [{"name": f"init{i}", "image": img}
                                  for i, img in enumerate(init_containers)]
    template_meta: dict[str, Any] = {"labels": {"app": name}}
    if template_ann:
        template_meta["annotations"] = template_ann
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace,
                     "annotations": ann if ann is not None else prov_annotations()},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": template_meta, "spec": spec}},
    }


def workload(
    kind: str,
    name: str = "app",
    namespace: str = "default",
    *,
    ann: dict[str, str] | None = None,
    containers: list[str] | None = None,
    init_containers: list[str] | None = None,
    template_ann: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A manifest of any gated kind, with the pod template of `deployment` where the kind keeps
    it; provenance on the object (`ann`) and the template (`template_ann`) as given. A Pod has a
    single place for both: `template_ann` when given, else `ann`."""
    return as_kind(deployment(name, namespace, ann=ann, containers=containers,
                              init_containers=init_containers, template_ann=template_ann), kind)


def as_kind(shape: dict[str, Any], kind: str) -> dict[str, Any]:
    """The Deployment manifest `shape` as a `kind`: the same metadata, with its pod template
    where `kind` keeps it, and the fields the API server requires of that kind. A Pod takes the
    template's metadata (labels, annotations) merged over the Deployment's."""
    row = kind_named(kind)
    assert row is not None, kind
    name = shape["metadata"]["name"]
    template = copy.deepcopy(shape["spec"]["template"])
    if not row.template_path:
        meta = {**shape["metadata"], **template.get("metadata", {})}
        return {"apiVersion": row.api_version, "kind": kind, "metadata": meta,
                "spec": template["spec"]}
    obj: dict[str, Any] = {"apiVersion": row.api_version, "kind": kind,
                           "metadata": copy.deepcopy(shape["metadata"])}
    node = obj
    for key in row.template_path[:-1]:
        node = node.setdefault(key, {})
    node[row.template_path[-1]] = template
    if kind in ("Job", "CronJob"):
        template["spec"]["restartPolicy"] = "Never"
    else:
        obj["spec"]["selector"] = {"matchLabels": {"app": name}}
    if kind == "CronJob":
        obj["spec"]["schedule"] = "*/5 * * * *"
    if kind == "ReplicationController":
        obj["spec"]["selector"] = {"app": name}
    if kind == "StatefulSet":
        obj["spec"]["serviceName"] = name
    return obj


WORKLOAD_KINDS = tuple(k.kind for k in KINDS)
"""Every gated kind's name, for parametrised tests."""


def review(
    obj: dict[str, Any],
    *,
    operation: str = "CREATE",
    username: str = "admin",
    groups: list[str] | None = None,
    old: dict[str, Any] | None = None,
    dry_run: bool = False,
    sub_resource: str | None = None,
) -> dict[str, Any]:
    """An admission.k8s.io/v1 AdmissionReview as the API server sends it."""
    row = kind_of(obj)
    assert row is not None, obj.get("kind")
    gvk = {"group": row.group, "version": row.version, "kind": row.kind}
    gvr = {"group": row.group, "version": row.version, "resource": row.plural}
    req: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": obj["metadata"]["name"],
        "namespace": obj["metadata"]["namespace"],
        "operation": operation,
        "userInfo": {"username": username, "uid": "u-1", "groups": groups or []},
        "object": copy.deepcopy(obj),
        "oldObject": copy.deepcopy(old),
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }
    if sub_resource:
        req["subResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}
