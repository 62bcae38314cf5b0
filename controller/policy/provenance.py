"""Reading the provenance claims out of a Deployment.

Each annotation is read from the pod template first, then from the Deployment itself. The template
is what runs: after `kubectl rollout undo` the template (with its annotations) is the old one while
the Deployment's own annotations are not rolled back, so the template is the truthful source.
`kubectl-provenance stamp` writes both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.config import ANNOTATION_NAMES, AnnotationConfig
from controller.review import DeploymentRequest


@dataclass(frozen=True, slots=True)
class Claims:
    """The provenance annotations of one Deployment, by short name (`git-sha`, ...)."""

    values: Mapping[str, str]

    def get(self, name: str) -> str | None:
        return self.values.get(name)


def read_claims(request: DeploymentRequest, annotations: AnnotationConfig) -> Claims:
    """Every known provenance annotation present on the template or the Deployment."""
    found: dict[str, str] = {}
    for name in ANNOTATION_NAMES:
        key = annotations.key(name)
        value = request.template_annotations.get(key)
        if value is None:
            value = request.annotations.get(key)
        if value is not None:
            found[name] = value
    return Claims(found)


def claims_changed(request: DeploymentRequest, annotations: AnnotationConfig) -> bool:
    """True on CREATE, or when an UPDATE changes what runs or what it claims about provenance."""
    old = request.old_deployment
    if old is None or request.old_template_hash != request.template_hash:
        return True
    keys = [annotations.key(n) for n in ANNOTATION_NAMES]
    return any(old.metadata.annotations.get(k) != request.annotations.get(k) for k in keys)
