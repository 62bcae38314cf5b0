"""Writing the provenance annotations into Deployments, on the Deployment and its pod template.

The gate reads each annotation from the pod template first (it is what runs, and what
`kubectl rollout undo` restores), then from the Deployment; so both get every value. Stamping is
idempotent: a document that already carries exactly these values is left untouched, byte for
byte, and the build timestamp of a build already stamped (same commit, same build id) is kept, so
stamping the same build twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from controller.config import AnnotationConfig
from controller.stamp.manifests import Document

DEPLOYMENT_API_GROUPS = ("apps/", "extensions/")
"""apiVersions under which a `kind: Deployment` is the Deployment the gate judges."""
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
"""Every pod spec list whose entries run an image."""
_ANCHOR_KEYS = ("labels", "namespace", "generateName", "name")
"""A new `annotations` mapping goes after the last of these present (where people put it)."""


def is_deployment(data: Any) -> bool:
    """Whether a parsed document is a Deployment (any other kind passes through unchanged)."""
    return (isinstance(data, dict) and data.get("kind") == "Deployment"
            and isinstance(data.get("apiVersion"), str)
            and data["apiVersion"].startswith(DEPLOYMENT_API_GROUPS))


def deployments(data: Any) -> list[Any]:
    """The Deployments a parsed document holds: itself, or the items of a `kind: List`
    (what `kubectl get -o yaml` prints)."""
    if is_deployment(data):
        return [data]
    if isinstance(data, dict) and data.get("kind") == "List" and isinstance(
            data.get("items"), list):
        return [item for item in data["items"] if is_deployment(item)]
    return []


def _mapping(parent: CommentedMap, key: str, *, after: tuple[str, ...] = ()) -> CommentedMap:
    """`parent[key]`, created (at a natural position) when absent or null."""
    value = parent.get(key)
    if isinstance(value, dict):
        return value  # type: ignore[return-value]
    created = CommentedMap()
    if key in parent:
        parent[key] = created
        return created
    keys = list(parent.keys())
    anchors = [keys.index(k) for k in after if k in keys]
    position = max(anchors) + 1 if anchors else len(keys)
    parent.insert(position, key, created)
    return created


@dataclass(frozen=True, slots=True)
class StampResult:
    """What stamping one document did."""

    document: Document
    deployment: bool
    """Whether the document holds a Deployment; every other kind passes through unchanged."""
    changed: bool


def _set_annotations(document: Document, target: CommentedMap,
                     values: Mapping[str, str]) -> bool:
    current = target.get("annotations")
    if isinstance(current, dict) and all(current.get(k) == v for k, v in values.items()):
        return False
    document.before_edit()
    annotations = _mapping(target, "annotations", after=_ANCHOR_KEYS)
    for key, value in values.items():
        if annotations.get(key) != value:
            annotations[key] = DoubleQuotedScalarString(value)
    return True


def _existing(data: CommentedMap, key: str) -> str | None:
    for meta in (_template_metadata(data), data.get("metadata")):
        if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
            value = meta["annotations"].get(key)
            if isinstance(value, str):
                return value
    return None


def _template_metadata(data: CommentedMap) -> Any:
    spec = data.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    return template.get("metadata") if isinstance(template, dict) else None


def stamp_document(
    document: Document,
    values: Mapping[str, str],
    *,
    annotations: AnnotationConfig,
    keep_timestamp: bool = True,
) -> StampResult:
    """Write `values` (short annotation name → value) onto every Deployment of a document.

    `document` must have been parsed. With `keep_timestamp`, a build-timestamp already present
    for the same git-sha and build-id is kept rather than replaced by a new one.
    """
    found = deployments(document.data)
    changed = False
    for data in found:
        changed = _stamp_one(document, data, values, annotations=annotations,
                             keep_timestamp=keep_timestamp) or changed
    document.changed = document.changed or changed
    return StampResult(document, deployment=bool(found), changed=changed)


def _stamp_one(document: Document, data: CommentedMap, values: Mapping[str, str], *,
               annotations: AnnotationConfig, keep_timestamp: bool) -> bool:
    keyed = {annotations.key(name): value for name, value in values.items()}
    stamp_key = annotations.key("build-timestamp")
    if keep_timestamp and stamp_key in keyed:
        same_build = all(
            _existing(data, annotations.key(n)) == values.get(n) for n in ("git-sha", "build-id"))
        previous = _existing(data, stamp_key)
        if same_build and previous:
            keyed[stamp_key] = previous
    if all(_existing_at(meta, key) == value for meta in _metadatas(data)
           for key, value in keyed.items()):
        return False
    document.before_edit()
    metadata = _mapping(data, "metadata", after=("kind",))
    spec = _mapping(data, "spec", after=("metadata",))
    template = _mapping(spec, "template")
    template_metadata = _mapping(template, "metadata")
    changed = _set_annotations(document, metadata, keyed)
    return _set_annotations(document, template_metadata, keyed) or changed


def _metadatas(data: CommentedMap) -> tuple[Any, Any]:
    return data.get("metadata"), _template_metadata(data)


def _existing_at(meta: Any, key: str) -> Any:
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return annotations.get(key) if isinstance(annotations, dict) else None


@dataclass(frozen=True, slots=True)
class ImageSlot:
    """One container's image in one document, so that it can be rewritten in place."""

    document: Document
    kind: str
    """`containers`, `initContainers` or `ephemeralContainers`."""
    container: CommentedMap

    @property
    def image(self) -> str:
        return str(self.container.get("image", ""))

    @property
    def label(self) -> str:
        """`container app`, as the gate names it."""
        singular = self.kind[:-1] if self.kind != "containers" else "container"
        return f"{singular} {self.container.get('name') or '(unnamed)'}"

    def replace(self, image: str) -> None:
        """Rewrite the image, keeping the scalar's quoting style."""
        self.document.before_edit()
        old = self.container.get("image")
        self.container["image"] = type(old)(image) if isinstance(old, str) and type(
            old) is not str else image
        self.document.changed = True


def image_slots(document: Document) -> Iterator[ImageSlot]:
    """Every image of every Deployment's pod template in a document."""
    for data in deployments(document.data):
        spec = data.get("spec")
        template = spec.get("template") if isinstance(spec, dict) else None
        pod = template.get("spec") if isinstance(template, dict) else None
        if not isinstance(pod, dict):
            continue
        for kind in CONTAINER_LISTS:
            containers = pod.get(kind)
            if isinstance(containers, list | CommentedSeq):
                for container in containers:
                    if isinstance(container, dict) and isinstance(container.get("image"), str):
                        yield ImageSlot(document, kind, container)  # type: ignore[arg-type]
