"""The workload kinds the gate judges, as one table, and the pod-template walk written once.

Every layer that needs to know "where does this kind keep what it runs" reads `KINDS`: the review
parser, the checks, the ledger entry, the reconciler, `stamp` and `check`, the webhook
registration and the chart. A kind is data here, never a branch in those layers.

A Pod is its own pod template: its metadata and spec are what runs. Controllers keep a template
(`spec.template`; a CronJob one level deeper, `spec.jobTemplate.spec.template`) from which their
controller in kube-controller-manager creates the objects below them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

RolloutSignal = Literal["deployment", "replicas", "statefulset", "daemonset", "job", "pod", "none"]
"""How the reconciler reads what became of a persisted template (`controller.ledger.reconcile`)."""


@dataclass(frozen=True, slots=True)
class WorkloadKind:
    """One workload kind: its API coordinates and where its pod template lives."""

    kind: str
    """`Deployment`, as in `kind:`."""
    group: str
    """The API group (`apps`; "" for the core group)."""
    version: str
    """The served version the webhook registers (other versions are converted to it)."""
    plural: str
    """The resource name (`deployments`)."""
    short_names: tuple[str, ...]
    """What kubectl accepts before the slash (`deploy/x`), besides the kind and plural."""
    template_path: tuple[str, ...]
    """Keys from the object to its pod template; empty for a Pod, which is its own."""
    controller: bool
    """Whether a controller in kube-controller-manager creates objects from its template."""
    rollout: RolloutSignal
    """Which status fields say the template rolled out (or completed, or failed)."""
    revisions: Literal["replicaset", "controllerrevision"] | None = None
    """Where its controller keeps earlier templates for `kubectl rollout undo`: a kind with
    revisions can be rolled back through the gate (`stages.RollbackStage`)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def names(self) -> tuple[str, ...]:
        """Every spelling of the kind on a command line: `deploy`, `deployment`, ...,
        `deployment.apps`."""
        base = (*self.short_names, self.kind.lower(), self.plural)
        dotted = tuple(f"{n}.{self.group}" for n in base) if self.group else ()
        return base + dotted

    def path(self, namespace: str, name: str = "") -> str:
        """The API path of the collection in `namespace`, or of the object `name` in it."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        tail = f"/{name}" if name else ""
        return f"{base}/namespaces/{namespace}/{self.plural}{tail}"

    def template(self, obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The pod template of `obj` as stored (a Pod: its own metadata and spec); empty when
        absent (the checks then find no provenance), None when something on the way is not an
        object (malformed: the review parser reports it)."""
        node: Any = obj
        for key in self.template_path:
            if not isinstance(node, Mapping):
                return None
            # Absent and explicit null (as some tools write empty fields) read as empty.
            node = node.get(key) or {}
        return node if isinstance(node, Mapping) else None


POD = WorkloadKind("Pod", "", "v1", "pods", ("po",), (), False, "pod")

KINDS: tuple[WorkloadKind, ...] = (
    WorkloadKind("Deployment", "apps", "v1", "deployments", ("deploy",),
                 ("spec", "template"), True, "deployment", "replicaset"),
    WorkloadKind("ReplicaSet", "apps", "v1", "replicasets", ("rs",),
                 ("spec", "template"), True, "replicas"),
    WorkloadKind("StatefulSet", "apps", "v1", "statefulsets", ("sts",),
                 ("spec", "template"), True, "statefulset", "controllerrevision"),
    WorkloadKind("DaemonSet", "apps", "v1", "daemonsets", ("ds",),
                 ("spec", "template"), True, "daemonset", "controllerrevision"),
    WorkloadKind("Job", "batch", "v1", "jobs", (),
                 ("spec", "template"), True, "job"),
    WorkloadKind("CronJob", "batch", "v1", "cronjobs", ("cj",),
                 ("spec", "jobTemplate", "spec", "template"), True, "none"),
    WorkloadKind("ReplicationController", "", "v1", "replicationcontrollers", ("rc",),
                 ("spec", "template"), True, "replicas"),
    POD,
)
"""Every kind the gate judges on CREATE and UPDATE."""

EPHEMERAL_CONTAINERS = "ephemeralcontainers"
"""The Pod subresource `kubectl debug` writes; judged as an UPDATE of the Pod."""
JUDGED_SUBRESOURCES: Mapping[str, tuple[str, ...]] = {"pods": (EPHEMERAL_CONTAINERS,)}
"""Subresources (by resource) that change what runs, and so are judged like the object."""

_BY_KIND = {k.kind: k for k in KINDS}
_BY_RESOURCE = {(k.group, k.plural): k for k in KINDS}
_BY_NAME = {name: k for k in KINDS for name in k.names}


def kind_named(kind: str) -> WorkloadKind | None:
    """The table row for `kind:` `kind`, or None when the gate does not judge it."""
    return _BY_KIND.get(kind)


def kind_of(obj: Mapping[str, Any]) -> WorkloadKind | None:
    """The row for a manifest's `apiVersion` and `kind`, or None for anything else.

    The group must match too (any version of it: the API server converts between served
    versions): a `kind: Deployment` of some CRD group is not a Deployment.
    """
    row = _BY_KIND.get(str(obj.get("kind", "")))
    api_version = obj.get("apiVersion")
    if row is None or not isinstance(api_version, str):
        return None
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    # extensions/v1beta1 served Deployments, ReplicaSets and DaemonSets before apps/v1.
    legacy = group == "extensions" and row.group == "apps"
    return row if group == row.group or legacy else None


def kind_for_resource(group: str, resource: str) -> WorkloadKind | None:
    """The row for an AdmissionReview's `request.resource` (group and plural)."""
    return _BY_RESOURCE.get((group, resource))


def parse_target(target: str) -> tuple[WorkloadKind, str] | None:
    """`deploy/x`, `sts/x`, `statefulset.apps/x`, `pod/x` → (kind, name), kubectl-style."""
    kind, _, name = target.partition("/")
    row = _BY_NAME.get(kind.lower())
    if row is None or not name or "/" in name:
        return None
    return row, name


def target_names() -> str:
    """The accepted `KIND/NAME` spellings, for help texts and errors."""
    return ", ".join(f"{k.short_names[0] if k.short_names else k.kind.lower()}/NAME"
                     for k in KINDS)


ImageSource = Literal["initContainer", "container", "ephemeralContainer", "imageVolume"]
POD_IMAGE_LISTS: tuple[tuple[str, ImageSource], ...] = (
    ("initContainers", "initContainer"), ("containers", "container"),
    ("ephemeralContainers", "ephemeralContainer"))
"""Pod spec lists whose entries run an image, in the order the kubelet starts them."""


@dataclass(frozen=True, slots=True)
class ImageField:
    """Where one image reference sits in a pod spec, so it can be read or rewritten in place."""

    source: ImageSource
    name: str
    """The container's or volume's name."""
    holder: Mapping[str, Any]
    """The container (key `image`) or the image volume source (key `reference`)."""
    key: str

    @property
    def image(self) -> str:
        """The reference as written; "" when absent or not a string (the pinning check says so)."""
        return _str(self.holder.get(self.key))


def image_fields(pod_spec: Mapping[str, Any]) -> Iterator[ImageField]:
    """Every image a pod spec runs or mounts, in the order the kubelet starts them.

    Image volumes (`volumes[].image.reference`, behind the ImageVolume feature gate) are
    included: turning the gate on must not open a way to run unpinned, unsigned content.
    """
    for key, source in POD_IMAGE_LISTS:
        for item in _list(pod_spec.get(key)):
            if isinstance(item, Mapping):
                yield ImageField(source, str(item.get("name") or ""), item, "image")
    for volume in _list(pod_spec.get("volumes")):
        if isinstance(volume, Mapping) and isinstance(volume.get("image"), Mapping):
            yield ImageField("imageVolume", str(volume.get("name") or ""), volume["image"],
                             "reference")


def pod_images(pod_spec: Mapping[str, Any]) -> Iterator[tuple[ImageSource, str, str]]:
    """(source, name, image) for every image of a pod spec (`image_fields`)."""
    for field in image_fields(pod_spec):
        yield field.source, field.name, field.image


def pod_spec_of(kind: WorkloadKind, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod spec of `obj`'s template; empty when it has none."""
    template = kind.template(obj) or {}
    spec = template.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def controlled(meta: Mapping[str, Any]) -> bool:
    """Whether an object's metadata names a controller among its owners. Only a hint (whoever
    creates an object writes its ownerReferences); never a reason to judge it less."""
    return any(isinstance(ref, Mapping) and ref.get("controller") is True
               for ref in meta.get("ownerReferences") or [])


def plain(value: Any) -> Any:
    """Mappings and sequences (kopf's Body and its views included) as plain dicts and lists, so
    that hashing and pydantic see exactly the stored object."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same bytes on every run for the same value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# Fields of a Pod set after it was admitted by someone other than its author: the scheduler's
# binding, and the server's own bookkeeping. They are not part of what the Pod runs.
_POD_METADATA_KEPT = ("labels", "annotations")
_POD_SPEC_DROPPED = ("nodeName",)


def hashed_template(kind: WorkloadKind, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The part of `obj` its template hash covers.

    A controller's template is hashed as stored (the ledger's hashes of Deployments written before
    other kinds were gated stay valid). A Pod's metadata and spec carry server-set fields (uid,
    ownerReferences, nodeName after scheduling), so only its labels, annotations and spec count.
    """
    template = kind.template(obj) or {}
    if kind.template_path:
        return template
    meta = template.get("metadata")
    spec = template.get("spec")
    return {
        "metadata": {k: meta[k] for k in _POD_METADATA_KEPT if isinstance(meta, Mapping)
                     and k in meta},
        "spec": {k: v for k, v in spec.items() if k not in _POD_SPEC_DROPPED}
        if isinstance(spec, Mapping) else {},
    }


def template_hash(kind: WorkloadKind, obj: Mapping[str, Any]) -> str:
    """sha256 over the canonical pod template, so two records compare by what would run."""
    return "sha256:" + hashlib.sha256(canonical_json(hashed_template(kind, obj))).hexdigest()


def webhook_rules() -> list[dict[str, Any]]:
    """The ValidatingWebhookConfiguration `rules` that send every gated kind (and the judged
    subresources) to the webhook; the chart renders the same list (a test compares them)."""
    by_group: dict[tuple[str, str], list[str]] = {}
    for kind in KINDS:
        resources = by_group.setdefault((kind.group, kind.version), [])
        resources.append(kind.plural)
        resources.extend(f"{kind.plural}/{sub}" for sub in JUDGED_SUBRESOURCES.get(kind.plural, ()))
    return [{"apiGroups": [group], "apiVersions": [version], "resources": resources,
             "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}
            for (group, version), resources in by_group.items()]
