"""AdmissionReview → typed request, for every gated kind. Malformed input raises `ReviewError`.

Only the fields the controller reads are modelled; Kubernetes objects carry many more, which are
ignored rather than forbidden (the API server, not us, owns their schema). What is modelled is
typed strictly and bounded, because the body comes over the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.errors import ReviewError
from controller.workloads import (
    EPHEMERAL_CONTAINERS,
    ImageSource,
    WorkloadKind,
    kind_for_resource,
    kind_of,
    pod_images,
    template_hash,
)

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


class ImageVolumeSource(_Loose):
    reference: str = ""


class Volume(_Loose):
    name: str = ""
    image: ImageVolumeSource | None = None


class PodSpec(_Loose):
    containers: tuple[Container, ...] = ()
    init_containers: tuple[Container, ...] = Field(default=(), alias="initContainers")
    ephemeral_containers: tuple[Container, ...] = Field(default=(), alias="ephemeralContainers")
    volumes: tuple[Volume, ...] = ()
    image_pull_secrets: tuple[LocalObjectReference, ...] = Field(
        default=(), alias="imagePullSecrets")
    service_account_name: str = Field(default="", alias="serviceAccountName")


class PodTemplate(_Loose):
    metadata: ObjectMeta = ObjectMeta()
    spec: PodSpec = PodSpec()


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
    """One image the pod template runs or mounts, and where it appears."""

    model_config = ConfigDict(frozen=True)

    kind: ImageSource
    name: str
    image: str

    @property
    def label(self) -> str:
        """How denials name it: `container app`, `initContainer migrate`, `imageVolume data`."""
        return f"{self.kind} {self.name or '(unnamed)'}"


@dataclass(frozen=True)
class Workload:
    """One object of a gated kind, typed where the controller reads it."""

    kind: WorkloadKind
    metadata: ObjectMeta
    """The object's own metadata (a Pod's is also its template's)."""
    template: PodTemplate
    """The pod template: what runs."""
    images: tuple[ContainerImage, ...]
    """Every image of the template, in the order the kubelet starts them (`pod_images`)."""
    template_hash: str
    """`workloads.template_hash`: sha256 of the canonical pod template."""


def parse_workload(kind: WorkloadKind, raw: Mapping[str, Any]) -> Workload:
    """Type the parts of `raw` the controller reads; `ReviewError` when they are malformed."""
    template = kind.template(raw)
    if template is None:
        path = ".".join(kind.template_path)
        raise ReviewError(f"malformed {kind.kind}: {path} is missing or not an object")
    try:
        metadata = ObjectMeta.model_validate(raw.get("metadata") or {})
        typed = PodTemplate.model_validate(template)
    except ValidationError as exc:
        raise ReviewError(f"malformed {kind.kind} in AdmissionReview: {_describe(exc)}") from exc
    spec = template.get("spec")
    images = tuple(ContainerImage(kind=source, name=name, image=image)
                   for source, name, image in pod_images(spec if isinstance(spec, dict) else {}))
    return Workload(kind=kind, metadata=metadata, template=typed, images=images,
                    template_hash=template_hash(kind, raw))


@dataclass(frozen=True)
class ClientConnection:
    """Who sent the review over TLS: the API server presents a client certificate when the
    webhook is configured with a client CA, and the ledger records whether it did."""

    authenticated: bool = False
    """A client certificate was presented and verified against the configured client CA."""
    subject: str | None = None
    """Its subject common name, when there was one."""

    @classmethod
    def from_peercert(cls, peer: Mapping[str, Any] | None) -> ClientConnection:
        """From `SSLSocket.getpeercert()`: a non-empty dict only for a verified certificate."""
        if not peer:
            return cls()
        common = [value for rdn in peer.get("subject") or () for (key, value) in rdn
                  if key == "commonName"]
        return cls(authenticated=True, subject=str(common[0]) if common else None)


@dataclass(frozen=True)
class WorkloadRequest:
    """Everything the checks, the verifier and the ledger need from one admission request."""

    uid: str
    """The admission request uid: the ledger's idempotency key."""
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    subresource: str | None
    namespace: str
    name: str
    dry_run: bool
    user: UserInfo
    object: Workload
    """The object as it would be stored (the new object on UPDATE)."""
    old_object: Workload | None = None
    """The stored object before an UPDATE; None on CREATE."""
    client: ClientConnection = ClientConnection()
    """The TLS client that sent the review (the webhook server fills it in)."""

    @property
    def kind(self) -> WorkloadKind:
        return self.object.kind

    @property
    def template_hash(self) -> str:
        return self.object.template_hash

    @property
    def old_template_hash(self) -> str | None:
        return self.old_object.template_hash if self.old_object is not None else None

    @property
    def annotations(self) -> Mapping[str, str]:
        """The object's own annotations (provenance is read from the template first)."""
        return self.object.metadata.annotations

    @property
    def template_annotations(self) -> Mapping[str, str]:
        return self.object.template.metadata.annotations

    @property
    def containers(self) -> tuple[ContainerImage, ...]:
        """Every image the pod template runs or mounts."""
        return self.object.images

    @property
    def pull_secret_names(self) -> tuple[str, ...]:
        secrets = self.object.template.spec.image_pull_secrets
        return tuple(s.name for s in secrets if s.name)

    @property
    def subject(self) -> str:
        """What a denial says was denied: `StatefulSet`, `Pod ephemeral containers`."""
        if self.subresource == EPHEMERAL_CONTAINERS:
            return f"{self.kind.kind} ephemeral containers"
        return self.kind.kind


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_envelope(body: Any) -> tuple[str, WorkloadKind]:
    """The request uid and the gated kind of a decoded AdmissionReview, checking only its
    envelope (the objects are parsed by `parse_review`); `ReviewError` if it is not one."""
    req, kind = _envelope(body)
    return req.uid, kind


def _envelope(body: Any) -> tuple[_RequestPayload, WorkloadKind]:
    if not isinstance(body, dict):
        raise ReviewError("the AdmissionReview must be a JSON object")
    try:
        review = _Review.model_validate(body)
    except ValidationError as exc:
        raise ReviewError(f"malformed AdmissionReview: {_describe(exc)}") from exc
    req = review.request
    kind = kind_for_resource(req.resource.group, req.resource.resource)
    if kind is None:
        # Only gated kinds are registered; anything else is a configuration this controller
        # does not understand, and answering 400 fails it closed under failurePolicy Fail.
        raise ReviewError(f"resource {req.resource.group or 'core'}/{req.resource.resource} "
                          "is not a workload kind this controller judges")
    if req.object is None and req.old_object is None:
        raise ReviewError("malformed AdmissionReview: request.object is missing")
    return req, kind


def parse_review(body: Any) -> WorkloadRequest:
    """Parse a decoded AdmissionReview; raise `ReviewError` if it is not a usable one."""
    req, kind = _envelope(body)
    raw = req.object if req.object is not None else req.old_object
    assert raw is not None  # _envelope refuses a review with neither
    workload = parse_workload(kind, raw)
    old = (parse_workload(kind, req.old_object)
           if req.object is not None and req.old_object is not None else None)
    return WorkloadRequest(
        uid=req.uid,
        operation=req.operation,
        subresource=req.sub_resource or None,
        namespace=req.namespace or workload.metadata.namespace,
        name=req.name or workload.metadata.name,
        dry_run=req.dry_run,
        user=req.user_info,
        object=workload,
        old_object=old,
    )


def request_from_manifest(
    manifest: Mapping[str, Any],
    *,
    username: str,
    groups: tuple[str, ...] = (),
    namespace: str = "default",
) -> WorkloadRequest:
    """A synthetic CREATE request for an offline manifest (`kubectl-provenance check`)."""
    kind = kind_of(manifest)
    if kind is None:
        raise ReviewError(f"{manifest.get('apiVersion')}/{manifest.get('kind')} is not a "
                          "workload kind the gate judges")
    ns = manifest.get("metadata", {}).get("namespace") or namespace
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "offline-check",
            "kind": {"group": kind.group, "version": kind.version, "kind": kind.kind},
            "resource": {"group": kind.group, "version": kind.version, "resource": kind.plural},
            "namespace": ns,
            "operation": "CREATE",
            "userInfo": {"username": username, "groups": list(groups)},
            "object": dict(manifest),
            "dryRun": True,
        },
    }
    return parse_review(review)
