"""Kubernetes Events the controller posts for things people must hear about at once (a break
glass, a change to the gate). Best effort: the ledger entry and the metric are the record; an
Event that cannot be posted is logged, never a reason to deny."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from controller.kube import KubeApi, KubeApiError

logger = logging.getLogger("provenance.events")

COMPONENT = "provenance-controller"


async def post_event(api: KubeApi, *, namespace: str, involved: Mapping[str, Any], reason: str,
                     message: str, type_: str = "Warning") -> None:
    """Post a core/v1 Event about `involved` (apiVersion, kind, name, and namespace and uid when
    known). An Event about a cluster-scoped object must be posted in `default` or kube-system,
    with no namespace in `involved`."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{involved.get('name') or 'provenance'}.",
                     "namespace": namespace},
        "involvedObject": dict(involved),
        "reason": reason, "message": message[:1024], "type": type_,
        "source": {"component": COMPONENT},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }
    try:
        await api.request("POST", f"/api/v1/namespaces/{namespace}/events", body=body)
    except KubeApiError as exc:
        logger.warning("could not post a %s Event in %s: %s", reason, namespace, exc)
