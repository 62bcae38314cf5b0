"""The revisions a workload's controller keeps of its pod template, for rolling back to one.

A Deployment's revisions are its ReplicaSets (their template is the Deployment's plus the
`pod-template-hash` label the controller adds); a StatefulSet's and a DaemonSet's are
ControllerRevisions, whose `data` is the patch that restores the template. Both are matched to a
ledger entry by `workloads.template_hash`, over the template as the workload itself would carry
it. How many are kept is the workload's `revisionHistoryLimit`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.kube import KubeApi
from controller.workloads import WorkloadKind, template_hash

RS_HASH_LABEL = "pod-template-hash"
"""The label the Deployment controller adds to a ReplicaSet's template (and selector)."""


@dataclass(frozen=True, slots=True)
class Revision:
    """One kept revision: the template it restores, and where it came from."""

    source: str
    """`ReplicaSet web-5d4f8` or `ControllerRevision db-7c9`."""
    number: int | None
    """The revision number (`deployment.kubernetes.io/revision`, or `.revision`)."""
    template: Mapping[str, Any]
    """The pod template as the workload would carry it again."""
    template_hash: str


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(isinstance(r, Mapping) and r.get("uid") == uid and r.get("controller") is True
               for r in refs)


def _as_workload_template(kind: WorkloadKind, template: Mapping[str, Any]) -> str:
    wrapper: dict[str, Any] = {}
    node = wrapper
    for key in kind.template_path[:-1]:
        node = node.setdefault(key, {})
    node[kind.template_path[-1]] = template
    return template_hash(kind, wrapper)


def from_replica_set(kind: WorkloadKind, rs: Mapping[str, Any]) -> Revision | None:
    """A Deployment revision from one of its ReplicaSets."""
    template = copy.deepcopy((rs.get("spec") or {}).get("template"))
    if not isinstance(template, dict):
        return None
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(RS_HASH_LABEL, None)
    meta = rs.get("metadata") or {}
    number = (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision")
    return Revision(f"ReplicaSet {meta.get('name', '')}",
                    int(number) if isinstance(number, str) and number.isdigit() else None,
                    template, _as_workload_template(kind, template))


def from_controller_revision(kind: WorkloadKind, cr: Mapping[str, Any]) -> Revision | None:
    """A StatefulSet or DaemonSet revision from one of its ControllerRevisions."""
    template = copy.deepcopy(((cr.get("data") or {}).get("spec") or {}).get("template"))
    if not isinstance(template, dict):
        return None
    template.pop("$patch", None)  # the strategic-merge directive, not part of the template
    meta = cr.get("metadata") or {}
    number = cr.get("revision")
    return Revision(f"ControllerRevision {meta.get('name', '')}",
                    number if isinstance(number, int) else None,
                    template, _as_workload_template(kind, template))


async def revisions(api: KubeApi, kind: WorkloadKind, namespace: str,
                    obj: Mapping[str, Any]) -> list[Revision]:
    """Every revision the controller keeps of `obj`, newest first."""
    uid = str((obj.get("metadata") or {}).get("uid", ""))
    if kind.revisions == "replicaset":
        listing = await api.request("GET", f"/apis/apps/v1/namespaces/{namespace}/replicasets")
        found = [from_replica_set(kind, rs) for rs in listing.get("items") or []
                 if _owned_by(rs, uid)]
    elif kind.revisions == "controllerrevision":
        listing = await api.request(
            "GET", f"/apis/apps/v1/namespaces/{namespace}/controllerrevisions")
        found = [from_controller_revision(kind, cr) for cr in listing.get("items") or []
                 if _owned_by(cr, uid)]
    else:
        return []
    kept = [r for r in found if r is not None]
    return sorted(kept, key=lambda r: r.number or 0, reverse=True)


def restore_patch(kind: WorkloadKind, revision: Revision) -> list[dict[str, Any]]:
    """The JSON patch that puts `revision`'s template back, byte for byte, as
    `kubectl rollout undo` does."""
    return [{"op": "replace", "path": "/" + "/".join(kind.template_path),
             "value": revision.template}]
