"""AdmissionReview → typed request. Malformed input raises `ReviewError` and nothing else.

Only the fields the controller reads are modelled; Kubernetes objects carry many more, which are
ignored rather than forbidden (the API server, not us, owns their schema). What is modelled is
typed strictly and bounded, because the body comes over the network.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.errors import ReviewError

# No per-field caps on lists or strings here: Kubernetes has none, and a cap it lacks would turn a
# valid object into a 400 (a bypass under failurePolicy Ignore). The webhook bounds the whole
# body instead (MAX_REVIEW_BYTES), which bounds every loop over it.


class _Loose(BaseModel):
    """Kubernetes payloads: unknown fields ignored, known ones typed, the model frozen."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class UserInfo(_Loose):
    """The authenticated user, as the API server vouches for it."""

    username: str = ""
    uid: str = ""
    groups: tuple[str, ...] = ()


class GroupVersionKind(_Loose):
    group: str = ""
    version: str = ""
    kind: str = ""


class GroupVersionResource(_Loose):
    group: str = ""
    version: str = ""
    resource: str = ""


class ObjectMeta(_Loose):
    name: str = ""
    generate_name: str = Field(default="", alias="generateName")
    namespace: str = ""
    uid: str = ""
    generation: int | None = None
    resource_version: str = Field(default="", alias="resourceVersion")
    annotations: dict[str, str] = {}
    labels: dict[str, str] = {}


class Container(_Loose):
    name: str = ""
    image: str = ""


class LocalObjectReference(_Loose):
    name: str = ""


class PodSpec(_Loose):
    containers: tuple[Container, ...] = ()
    init_containers: tuple[Container, ...] = Field(default=(), alias="initContainers")
    ephemeral_containers: tuple[Container, ...] = Field(default=(), alias="ephemeralContainers")
    image_pull_secrets: tuple[LocalObjectReference, ...] = Field(
        default=(), alias="imagePullSecrets")
    service_account_name: str = Field(default="", alias="serviceAccountName")


class PodTemplate(_Loose):
    metadata: ObjectMeta = ObjectMeta()
    spec: PodSpec = PodSpec()


class DeploymentSpec(_Loose):
    replicas: int | None = None
    template: PodTemplate = PodTemplate()


class Deployment(_Loose):
    api_version: str = Field(default="", alias="apiVersion")
    kind: str = ""
    metadata: ObjectMeta = ObjectMeta()
    spec: DeploymentSpec = DeploymentSpec()


class _RequestPayload(_Loose):
    uid: str = Field(min_length=1, max_length=128)
    kind: GroupVersionKind
    resource: GroupVersionResource
    sub_resource: str | None = Field(default=None, alias="subResource")
    name: str = ""
    namespace: str = ""
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    user_info: UserInfo = Field(alias="userInfo")
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = Field(default=None, alias="oldObject")
    dry_run: bool = Field(default=False, alias="dryRun")


class _Review(_Loose):
    api_version: Literal["admission.k8s.io/v1"] = Field(alias="apiVersion")
    kind: Literal["AdmissionReview"]
    request: _RequestPayload


class ContainerImage(BaseModel):
    """One container of the pod template and the image it runs."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["container", "initContainer", "ephemeralContainer"]
    name: str
    image: str

    @property
    def label(self) -> str:
        """How denials name it: `container app`, `initContainer migrate`."""
        return f"{self.kind} {self.name or '(unnamed)'}"


class DeploymentRequest(BaseModel):
    """Everything the checks, the verifier and the ledger need from one admission request."""

    model_config = ConfigDict(frozen=True)

    uid: str
    """The admission request uid: the ledger's idempotency key."""
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    subresource: str | None
    namespace: str
    name: str
    dry_run: bool
    user: UserInfo
    deployment: Deployment
    """The object as it would be stored (the new object on UPDATE)."""
    template_hash: str
    """sha256 of the canonical JSON of the pod template: what actually runs."""
    old_deployment: Deployment | None = None
    """The stored object before an UPDATE; None on CREATE."""
    old_template_hash: str | None = None
    """`template_hash` of `old_deployment`."""

    @property
    def annotations(self) -> Mapping[str, str]:
        """The Deployment's own annotations, where provenance is read from."""
        return self.deployment.metadata.annotations

    @property
    def template_annotations(self) -> Mapping[str, str]:
        return self.deployment.spec.template.metadata.annotations

    @functools.cached_property
    def containers(self) -> tuple[ContainerImage, ...]:
        """Every container that runs an image: init containers first, as the kubelet starts them."""
        spec = self.deployment.spec.template.spec
        return (
            tuple(ContainerImage(kind="initContainer", name=c.name, image=c.image)
                  for c in spec.init_containers)
            + tuple(ContainerImage(kind="container", name=c.name, image=c.image)
                    for c in spec.containers)
            + tuple(ContainerImage(kind="ephemeralContainer", name=c.name, image=c.image)
                    for c in spec.ephemeral_containers)
        )

    @property
    def pull_secret_names(self) -> tuple[str, ...]:
        secrets = self.deployment.spec.template.spec.image_pull_secrets
        return tuple(s.name for s in secrets if s.name)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same bytes on every run for the same value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def template_hash(raw_object: Mapping[str, Any]) -> str:
    """sha256 over the canonical pod template, so two records compare by what would run."""
    template = raw_object.get("spec", {}).get("template", {}) if isinstance(
        raw_object.get("spec"), dict) else {}
    return "sha256:" + hashlib.sha256(canonical_json(template)).hexdigest()


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_review(body: Any) -> DeploymentRequest:
    """Parse a decoded AdmissionReview; raise `ReviewError` if it is not a usable one."""
    if not isinstance(body, dict):
        raise ReviewError("the AdmissionReview must be a JSON object")
    try:
        review = _Review.model_validate(body)
    except ValidationError as exc:
        raise ReviewError(f"malformed AdmissionReview: {_describe(exc)}") from exc
    req = review.request
    raw = req.object if req.object is not None else req.old_object
    if raw is None:
        raise ReviewError("malformed AdmissionReview: request.object is missing")
    try:
        deployment = Deployment.model_validate(raw)
        old = (Deployment.model_validate(req.old_object)
               if req.object is not None and req.old_object is not None else None)
    except ValidationError as exc:
        raise ReviewError(f"malformed Deployment in AdmissionReview: {_describe(exc)}") from exc
    return DeploymentRequest(
        uid=req.uid,
        operation=req.operation,
        subresource=req.sub_resource or None,
        namespace=req.namespace or deployment.metadata.namespace,
        name=req.name or deployment.metadata.name,
        dry_run=req.dry_run,
        user=req.user_info,
        deployment=deployment,
        template_hash=template_hash(raw),
        old_deployment=old,
        old_template_hash=template_hash(req.old_object) if old is not None and req.old_object
        else None,
    )


def request_from_manifest(
    manifest: Mapping[str, Any],
    *,
    username: str,
    groups: tuple[str, ...] = (),
    namespace: str = "default",
) -> DeploymentRequest:
    """A synthetic CREATE request for an offline manifest (`kubectl-provenance check`)."""
    ns = manifest.get("metadata", {}).get("namespace") or namespace
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "offline-check",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "namespace": ns,
            "operation": "CREATE",
            "userInfo": {"username": username, "groups": list(groups)},
            "object": dict(manifest),
            "dryRun": True,
        },
    }
    return parse_review(review)
