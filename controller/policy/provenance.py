"""Reading the provenance claims out of a workload, and whether a request deploys anything.

Each annotation is read from the pod template first, then from the object itself. The template is
what runs: after `kubectl rollout undo` the template (with its annotations) is the old one while
the Deployment's own annotations are not rolled back, so the template is the truthful source. The
objects controllers derive from a template (ReplicaSets, Pods, Jobs) carry its annotations too.
A Pod is its own template. `kubectl-provenance stamp` writes both places.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.config import ANNOTATION_NAMES, AnnotationConfig
from controller.review import WorkloadRequest


@dataclass(frozen=True, slots=True)
class Claims:
    """The provenance annotations of one workload, by short name (`git-sha`, ...)."""

    values: Mapping[str, str]

    def get(self, name: str) -> str | None:
        return self.values.get(name)


def read_claims(request: WorkloadRequest, annotations: AnnotationConfig) -> Claims:
    """Every known provenance annotation present on the template or the object itself."""
    found: dict[str, str] = {}
    for name in ANNOTATION_NAMES:
        key = annotations.key(name)
        value = request.template_annotations.get(key)
        if value is None:
            value = request.annotations.get(key)
        if value is not None:
            found[name] = value
    return Claims(found)


def claims_changed(request: WorkloadRequest, annotations: AnnotationConfig) -> bool:
    """True on CREATE, or when an UPDATE changes what runs or what it claims about provenance.

    For a controller, what runs is its pod template. A Pod's spec is immutable but for its
    images (`kubectl set image pod/x`, `kubectl debug`), while its labels, annotations,
    ownerReferences and tolerations are edited by controllers and people without deploying
    anything; so for a Pod only a change of images counts.
    """
    old = request.old_object
    if old is None:
        return True
    if request.kind.template_path:
        if old.template_hash != request.template_hash:
            return True
    elif old.images != request.object.images:
        return True
    keys = [annotations.key(n) for n in ANNOTATION_NAMES]
    return any(old.metadata.annotations.get(k) != request.annotations.get(k) for k in keys)
