"""The newest signed head of each chain, kept beside the ledger key.

Whoever can write the ledger namespace can delete its newest segments together with the
checkpoint ConfigMap, and what is left is a valid, shorter chain. The key namespace is out of
their reach (that is why the key lives there), so the writer keeps the newest signed head there
too: `ledger verify` and a starting writer then see that the chain is shorter than its signed
head, and say so. The ConfigMap `<ledger namespace>.<chain>.head` holds one `AnchorHead` per
writer lane (data key: the lane's chain name) and the ledger's public key (`public-key`), which
a verifier may trust on first use more safely than the copy inside the ledger namespace.
"""

from __future__ import annotations

from pydantic import ValidationError

from controller.kube import KubeApi, KubeApiError
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import LedgerCorrupt
from controller.ledger.models import AnchorHead
from controller.ledger.segments import MERGE_PATCH, anchor_map_name, configmaps_path

PUBLIC_KEY = "public-key"


async def read_anchors(api: KubeApi, config: LedgerConfig) -> dict[str, str] | None:
    """The anchor ConfigMap's data, or None when the ledger has none yet (404).

    Any other error (403 included) propagates: without the anchor, cuts are not detectable,
    so a writer must not start and a verifier must say it could not look.
    """
    path = configmaps_path(config.checkpoint_key_namespace,
                           anchor_map_name(config.namespace, config.chain))
    try:
        obj = await api.request("GET", path)
    except KubeApiError as exc:
        if exc.status == 404:
            return None
        raise
    raw = obj.get("data") or {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def parse_anchor(text: str, *, chain: str) -> AnchorHead:
    try:
        return AnchorHead.model_validate_json(text)
    except ValidationError as exc:
        raise LedgerCorrupt(f"the signed head of chain {chain} beside the key does not parse "
                            f"({exc.error_count()} problems)") from exc


async def read_anchor(api: KubeApi, config: LedgerConfig, chain: str) -> AnchorHead | None:
    """The signed head of `chain` beside the key, or None when none was ever written."""
    data = await read_anchors(api, config)
    if data is None or chain not in data:
        return None
    return parse_anchor(data[chain], chain=chain)


async def write_anchor(api: KubeApi, config: LedgerConfig, chain: str, anchor: AnchorHead, *,
                       public_pem: str) -> None:
    """Set the signed head of `chain` (a merge patch of one data key: lanes never conflict)."""
    ns, name = config.checkpoint_key_namespace, anchor_map_name(config.namespace, config.chain)
    data = {chain: anchor.model_dump_json(), PUBLIC_KEY: public_pem}
    try:
        await api.request("PATCH", configmaps_path(ns, name), body={"data": data},
                          content_type=MERGE_PATCH)
        return
    except KubeApiError as exc:
        if exc.status != 404:
            raise
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"provenance.dev/ledger-role": "signed-heads"}},
            "data": data}
    try:
        await api.request("POST", configmaps_path(ns), body=body)
    except KubeApiError as exc:
        if exc.status != 409:
            raise
        await api.request("PATCH", configmaps_path(ns, name), body={"data": data},
                          content_type=MERGE_PATCH)
