"""Writing the provenance annotations into workloads, on the object and on its pod template.

Every gated kind is stamped (`controller.workloads.KINDS`), and nothing else. The gate reads each
annotation from the pod template first (it is what runs, what `kubectl rollout undo` restores,
and what controllers copy into the objects they derive), then from the object; so both get every
value. A Pod is its own template and is stamped once. Stamping is
idempotent: a document that already carries exactly these values is left untouched, byte for
byte, and the build timestamp of a build already stamped (same commit, same build id) is kept, so
stamping the same build twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from controller.config import AnnotationConfig
from controller.stamp.manifests import Document
from controller.workloads import ImageField, ImageSource, image_fields, kind_of, pod_spec_of

_ANCHOR_KEYS = ("labels", "namespace", "generateName", "name")
"""A new `annotations` mapping goes after the last of these present (where people put it)."""


def is_workload(data: Any) -> bool:
    """Whether a parsed document is a gated workload (any other kind passes through unchanged)."""
    return isinstance(data, dict) and kind_of(data) is not None


def workloads(data: Any) -> list[Any]:
    """The workloads a parsed document holds: itself, or the items of a `kind: List`
    (what `kubectl get -o yaml` prints)."""
    if is_workload(data):
        return [data]
    if isinstance(data, dict) and data.get("kind") == "List" and isinstance(
            data.get("items"), list):
        return [item for item in data["items"] if is_workload(item)]
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
    workloads: int
    """How many workloads the document holds; every other kind passes through unchanged."""
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
    kind = kind_of(data)
    template = kind.template(data) if kind is not None else None
    return template.get("metadata") if isinstance(template, dict) else None


def stamp_document(
    document: Document,
    values: Mapping[str, str],
    *,
    annotations: AnnotationConfig,
    keep_timestamp: bool = True,
) -> StampResult:
    """Write `values` (short annotation name → value) onto every workload of a document.

    `document` must have been parsed. With `keep_timestamp`, a build-timestamp already present
    for the same git-sha and build-id is kept rather than replaced by a new one.
    """
    found = workloads(document.data)
    changed = False
    for data in found:
        changed = _stamp_one(document, data, values, annotations=annotations,
                             keep_timestamp=keep_timestamp) or changed
    document.changed = document.changed or changed
    return StampResult(document, workloads=len(found), changed=changed)


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
    changed = _set_annotations(document, metadata, keyed)
    kind = kind_of(data)
    if kind is None or not kind.template_path:
        return changed  # a Pod: its metadata is its template's
    node = data
    for depth, key in enumerate(kind.template_path):
        node = _mapping(node, key, after=("metadata",) if depth % 2 == 0 else ())
    template_metadata = _mapping(node, "metadata")
    return _set_annotations(document, template_metadata, keyed) or changed


def _metadatas(data: CommentedMap) -> tuple[Any, Any]:
    return data.get("metadata"), _template_metadata(data)


def _existing_at(meta: Any, key: str) -> Any:
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return annotations.get(key) if isinstance(annotations, dict) else None


@dataclass(frozen=True, slots=True)
class ImageSlot:
    """One image of one workload in one document, so that it can be rewritten in place."""

    document: Document
    field: ImageField

    @property
    def kind(self) -> ImageSource:
        """`container`, `initContainer`, `ephemeralContainer` or `imageVolume`."""
        return self.field.source

    @property
    def image(self) -> str:
        return self.field.image

    @property
    def label(self) -> str:
        """`container app`, as the gate names it."""
        return f"{self.field.source} {self.field.name or '(unnamed)'}"

    def replace(self, image: str) -> None:
        """Rewrite the image, keeping the scalar's quoting style."""
        self.document.before_edit()
        holder = self.field.holder
        assert isinstance(holder, dict)  # parsed YAML: ruamel's CommentedMap
        old = holder.get(self.field.key)
        holder[self.field.key] = type(old)(image) if isinstance(old, str) and type(
            old) is not str else image
        self.document.changed = True


def image_slots(document: Document) -> Iterator[ImageSlot]:
    """Every image of every workload's pod template in a document."""
    for data in workloads(document.data):
        kind = kind_of(data)
        if kind is None:
            continue
        for field in image_fields(pod_spec_of(kind, data)):
            if isinstance(field.holder.get(field.key), str):
                yield ImageSlot(document, field)
