"""controller.revisions: a revision's template as the workload carries it, matched by hash."""

from __future__ import annotations

import copy

from controller.revisions import from_controller_revision, from_replica_set, restore_patch
from controller.workloads import kind_named, template_hash
from tests.builders import as_kind, deployment


def test_a_replica_set_revision_drops_the_pod_template_hash_label() -> None:
    kind = kind_named("Deployment")
    assert kind is not None
    owner = deployment("web")
    rs = {"metadata": {"name": "web-5d4f8", "annotations": {
        "deployment.kubernetes.io/revision": "3"}}, "spec": {"template": copy.deepcopy(
            owner["spec"]["template"])}}
    rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = "5d4f8"
    revision = from_replica_set(kind, rs)
    assert revision is not None and revision.number == 3
    assert revision.template_hash == template_hash(kind, owner)
    assert restore_patch(kind, revision) == [
        {"op": "replace", "path": "/spec/template", "value": owner["spec"]["template"]}]


def test_a_controller_revision_restores_the_template_of_its_patch() -> None:
    kind = kind_named("StatefulSet")
    assert kind is not None
    owner = as_kind(deployment("db"), "StatefulSet")
    cr = {"metadata": {"name": "db-7c9"}, "revision": 2, "data": {"spec": {"template": {
        **copy.deepcopy(owner["spec"]["template"]), "$patch": "replace"}}}}
    revision = from_controller_revision(kind, cr)
    assert revision is not None and revision.number == 2
    assert revision.template_hash == template_hash(kind, owner)
    assert "$patch" not in revision.template


def test_a_revision_without_a_template_is_skipped() -> None:
    deploy, sts = kind_named("Deployment"), kind_named("StatefulSet")
    assert deploy is not None and sts is not None
    assert from_replica_set(deploy, {"spec": {}}) is None
    assert from_controller_revision(sts, {"data": {"spec": {"template": "x"}}}) is None
