"""The ConfigMap layout of a chain, and reading it back.

A chain `C` in the ledger namespace is:
- segments `C-00000000`, `C-00000001`, ...: one per write (a group commit), created whole and
  `immutable: true` from the start, so an append never rewrites what is stored. Each entry sits
  under its own data key `e-<seq, 12 digits>`, whose value is the canonical JSON record; every
  segment after the first starts with a `seal` entry naming its predecessor's uid; the key
  `head` holds the checkpoint the writer signed over the chain as that segment leaves it.
- `C-checkpoints`: the newest signed checkpoint (`latest`), the public key (`public-key`) and,
  after pruning, the first kept segment (`pruned-before`).

Beside the signing key, in the key namespace that writers of the ledger namespace cannot reach,
`<ledger namespace>.<C>.head` holds the newest signed head (`anchor_map_name`): a cut of the
newest segments, even together with the checkpoint ConfigMap, is then caught by a plain verify.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.kube import KubeApi
from controller.ledger.models import parse_entry_key

LABEL_CHAIN = "provenance.dev/ledger-chain"
LABEL_ROLE = "provenance.dev/ledger-role"
LABEL_STATE = "provenance.dev/ledger-state"
ANNOTATION_SEGMENT = "provenance.dev/ledger-segment"
MERGE_PATCH = "application/merge-patch+json"
HEAD_KEY = "head"
"""The data key of a segment's signed head (a `Checkpoint` as JSON)."""
LIST_PAGE = 250
"""ConfigMaps per list page: a segment is one group commit, a few KiB."""


def segment_name(chain: str, number: int) -> str:
    return f"{chain}-{number:08d}"


def checkpoint_map_name(chain: str) -> str:
    return f"{chain}-checkpoints"


def anchor_map_name(namespace: str, chain: str) -> str:
    """The ConfigMap beside the signing key that holds the newest signed heads of a ledger."""
    return f"{namespace}.{chain}.head"


def configmaps_path(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    return f"{base}/{name}" if name else base


def data_bytes(data: Mapping[str, str]) -> int:
    """What the API server counts against the object size limit for `data`."""
    return sum(len(k) + len(v.encode()) for k, v in data.items())


@dataclass
class Segment:
    """One segment ConfigMap as read from the API server; its contents are not yet trusted."""

    number: int
    name: str
    uid: str
    resource_version: str
    sealed: bool
    data: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any], *, chain: str) -> Segment | None:
        """Parse a ConfigMap; None when it is not a segment of `chain`."""
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        prefix = f"{chain}-"
        suffix = name[len(prefix):]
        if not name.startswith(prefix) or len(suffix) != 8 or not suffix.isdigit():
            return None
        raw = obj.get("data") or {}
        data = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        return cls(number=int(suffix), name=name, uid=str(meta.get("uid", "")),
                   resource_version=str(meta.get("resourceVersion", "")),
                   sealed=obj.get("immutable") is True, data=data,
                   labels=dict(meta.get("labels") or {}))

    def entries(self) -> list[tuple[int, str, str]]:
        """(seq, key, raw record) in key order; keys that are not entry keys are skipped."""
        out = []
        for key in sorted(self.data):
            seq = parse_entry_key(key)
            if seq is not None:
                out.append((seq, key, self.data[key]))
        return out

    @property
    def size(self) -> int:
        return data_bytes(self.data)

    @property
    def signed_head(self) -> str | None:
        """The stored signed head (unparsed, untrusted), if any."""
        return self.data.get(HEAD_KEY)

    def relabelled(self, chain: str) -> bool:
        """Its labels are not those the writer gives every segment (state=sealed)."""
        expected = segment_labels(chain, sealed=True)
        return any(self.labels.get(k) != v for k, v in expected.items())


def segment_labels(chain: str, *, sealed: bool) -> dict[str, str]:
    return {LABEL_CHAIN: chain, LABEL_ROLE: "segment", LABEL_STATE: "sealed" if sealed else "open"}


async def list_segments(
    api: KubeApi,
    namespace: str,
    chain: str,
    *,
    progress: Callable[[int], None] | None = None,
) -> list[Segment]:
    """Every segment of `chain`, in number order, paged.

    Segments are found by name, not by label: a label is as easy to remove as to read, and a
    segment hidden from a label selector must be reported, never skipped.
    """
    out = [seg for item in await list_configmaps(api, namespace, progress=progress)
           if (seg := Segment.from_object(item, chain=chain)) is not None]
    out.sort(key=lambda s: s.number)
    return out


async def get_segment(api: KubeApi, namespace: str, chain: str, number: int) -> Segment | None:
    """Segment `number` of `chain` as stored now, or None when it does not exist."""
    from controller.kube import KubeApiError

    try:
        obj = await api.request("GET", configmaps_path(namespace, segment_name(chain, number)))
    except KubeApiError as exc:
        if exc.status == 404:
            return None
        raise
    return Segment.from_object(obj, chain=chain)


async def list_configmaps(api: KubeApi, namespace: str, *,
                          progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Every ConfigMap in `namespace`, paged (the ledger namespace holds only the ledger)."""
    items: list[dict[str, Any]] = []
    cont = ""
    while True:
        params = {"limit": str(LIST_PAGE)}
        if cont:
            params["continue"] = cont
        body = await api.request("GET", configmaps_path(namespace), params=params, timeout=60)
        items += [item for item in body.get("items") or [] if isinstance(item, dict)]
        if progress is not None:
            progress(len(items))
        cont = (body.get("metadata") or {}).get("continue") or ""
        if not cont:
            return items


async def read_checkpoint_map(api: KubeApi, namespace: str, chain: str) -> dict[str, str] | None:
    """The checkpoint ConfigMap's data, or None when there is none yet."""
    from controller.kube import KubeApiError

    try:
        obj = await api.request("GET", configmaps_path(namespace, checkpoint_map_name(chain)))
    except KubeApiError as exc:
        if exc.status == 404:
            return None
        raise
    raw = obj.get("data") or {}
    return {str(k): str(v) for k, v in raw.items()}


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
