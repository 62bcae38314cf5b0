"""`UnadmittedDetector` on a real ledger: what counts as admitted, and recording once."""

from __future__ import annotations

import copy
from typing import Any

from controller.ledger.entries import build_admission_entry
from controller.ledger.models import UnadmittedEntry
from controller.ledger.reconcile import Reconciler
from controller.ledger.store import Ledger
from controller.ledger.unadmitted import UnadmittedDetector
from controller.ledger.verify import load_chain, verify_segments
from tests.ledger.helpers import CONFIG, deployment, review


def stored(obj: dict[str, Any], uid: str) -> dict[str, Any]:
    """`obj` as the API server stores it: with a uid and a resourceVersion."""
    body = copy.deepcopy(obj)
    body["metadata"].update(uid=uid, resourceVersion="7", generation=1)
    return body


async def recorded(ledger: Ledger) -> list[UnadmittedEntry]:
    data = await load_chain(ledger.api, ledger.config.namespace, ledger.config.chain,
                            key_namespace=ledger.config.checkpoint_key_namespace)
    report = verify_segments(data, chain=ledger.config.chain)
    assert report.ok, report.problems
    return [r.record.entry for r in report.records
            if isinstance(r.record.entry, UnadmittedEntry)]


async def test_only_workloads_without_an_admission_are_recorded_once(ledger: Ledger) -> None:
    admitted = deployment("admitted")
    await ledger.append(build_admission_entry(review(admitted), CONFIG))
    # A second process starts later: it must find the admission in the chain, not in memory.
    detector = UnadmittedDetector(Reconciler(ledger), exempt_namespaces=["kube-system"])
    await detector.load()

    sneaky = deployment("sneaky", image="nginx:1")
    changed = deployment("admitted", env="v2")  # the admitted one, changed with the gate off
    derived = stored(deployment("derived"), "uid-d")
    derived["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment",
                                               "name": "x", "uid": "u", "controller": True}]
    for body in (stored(admitted, "uid-a"), stored(sneaky, "uid-s"), stored(changed, "uid-a"),
                 derived, stored(deployment("exempt", namespace="kube-system"), "uid-e")):
        detector.observe(body)
    first = await detector.sweep()
    assert sorted((e.name, e.object_uid) for e in first) == [("admitted", "uid-a"),
                                                              ("sneaky", "uid-s")]
    # Seen again (every status update is an event): nothing new.
    detector.observe(stored(sneaky, "uid-s"))
    assert await detector.sweep() == []
    entries = await recorded(ledger)
    assert sorted(e.name for e in entries) == ["admitted", "sneaky"]
    # A restarted detector knows what is already on record.
    again = UnadmittedDetector(Reconciler(ledger), exempt_namespaces=["kube-system"])
    await again.load()
    again.observe(stored(sneaky, "uid-s"))
    assert await again.sweep() == []
    assert len(await recorded(ledger)) == 2


async def test_an_admission_planted_in_a_new_lane_does_not_hide_a_workload(
        ledger: Ledger) -> None:
    from controller.ledger.chain import record_bytes
    from controller.ledger.models import Record, entry_key
    from controller.ledger.segments import configmaps_path, segment_labels

    # A writer of the ledger namespace, without the key, invents a lane holding an admission
    # of the workload it runs with the gate off. Found by name, it must still not count.
    planted = deployment("planted", image="nginx:1")
    raw = record_bytes(Record(seq=0, prev="00" * 32,
                              entry=build_admission_entry(review(planted), CONFIG)))
    await ledger.api.request("POST", configmaps_path(ledger.config.namespace), body={
        "apiVersion": "v1", "kind": "ConfigMap", "immutable": True,
        "data": {entry_key(0): raw.decode()},
        "metadata": {"name": f"{ledger.config.chain}-lane7-00000000",
                     "labels": segment_labels(f"{ledger.config.chain}-lane7", sealed=True)}})
    detector = UnadmittedDetector(Reconciler(ledger), exempt_namespaces=["kube-system"])
    await detector.load()
    detector.observe(stored(planted, "uid-p"))
    assert [e.name for e in await detector.sweep()] == ["planted"]
