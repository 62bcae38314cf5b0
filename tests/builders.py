"""Builders for AdmissionReviews and Deployments used across the unit and end-to-end tests."""

from __future__ import annotations

import copy
import uuid
from typing import Any

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
    req: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
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
