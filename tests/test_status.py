"""controller.status: matching stored workloads to ledger records, the flags, the derived rule,
rendering and exit codes, over built ledger records and workload lists (no cluster)."""

from __future__ import annotations

import argparse
import copy
import io
import json
from datetime import datetime
from typing import Any

from controller import metrics
from controller.config import Config
from controller.ledger.cli import TAMPER_EXIT_CODES
from controller.ledger.entries import build_admission_entry, build_outcome_entry
from controller.ledger.errors import TamperKind
from controller.ledger.models import AdmissionEntry, BreakGlass, Record, SignatureRecord
from controller.ledger.verify import StoredRecord, VerifyReport
from controller.review import parse_review
from controller.status import (
    EXIT_UNRECORDED,
    LedgerIndex,
    Row,
    Scan,
    build_rows,
    render_table,
    report,
    row_dict,
    table_rows,
    workload_from,
)
from controller.workloads import kind_of
from tests.builders import IMAGE, SHA, prov_annotations, review, workload

OTHER_IMAGE = "registry.example.com/shop/app@sha256:" + "c" * 64
START = datetime(2026, 12, 1, 10, 0, 0)
"""When the built ledger's first entry was written."""


class Chain:
    """Admission and outcome entries as `verify_segments` would return them."""

    def __init__(self) -> None:
        self.records: list[StoredRecord] = []

    def _add(self, entry: Any) -> StoredRecord:
        seq = len(self.records)
        stored = StoredRecord(Record(seq=seq, prev="0" * 64, entry=entry), leaf=f"{seq:064x}",
                              head="0" * 64, segment=0)
        self.records.append(stored)
        return stored

    def admit(self, obj: dict[str, Any], *, minute: int = 0, username: str = "admin",
              operation: str = "CREATE", uid: str = "",
              **changes: Any) -> StoredRecord:
        body = copy.deepcopy(obj)
        if uid:
            body["metadata"]["uid"] = uid
        request = parse_review(review(body, username=username, operation=operation,
                                      old=body if operation == "UPDATE" else None))
        entry = build_admission_entry(request, Config(), now=START.replace(minute=minute))
        return self._add(entry.model_copy(update=changes) if changes else entry)

    def persisted(self, admitted: StoredRecord, uid: str) -> None:
        entry = admitted.record.entry
        assert isinstance(entry, AdmissionEntry)
        self._add(build_outcome_entry(
            "persisted", ref_seq=admitted.seq, ref_leaf=admitted.leaf,
            body={"metadata": {"uid": uid}}, namespace=entry.namespace, name=entry.name,
            now=START.replace(minute=59)))

    def index(self, *, first_seq: int = 0) -> LedgerIndex:
        return LedgerIndex.from_report(self.report(first_seq=first_seq))

    def report(self, *, first_seq: int = 0) -> VerifyReport:
        return VerifyReport(size=len(self.records), records=list(self.records),
                            first_seq=first_seq)


def stored(obj: dict[str, Any], *, uid: str, created: str = "2026-12-01T11:00:00Z",
           owner: tuple[str, str] | None = None) -> dict[str, Any]:
    """`obj` as the API server stores it: a uid, a creation time, perhaps a controller owner."""
    body = copy.deepcopy(obj)
    body["metadata"]["uid"] = uid
    body["metadata"]["creationTimestamp"] = created
    if owner is not None:
        body["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": owner[0], "name": "x", "uid": owner[1],
             "controller": True}]
    return body


def rows_for(objs: list[dict[str, Any]], chain: Chain, **kwargs: Any) -> list[Row]:
    workloads = []
    for obj in objs:
        kind = kind_of(obj)
        assert kind is not None
        workloads.append(workload_from(kind, obj, prefix="provenance.dev/"))
    return build_rows(workloads, chain.index(), **kwargs)


def one(rows: list[Row], name: str, kind: str | None = None) -> Row:
    found = [r for r in rows if r.workload.name == name
             and (kind is None or r.workload.kind.kind == kind)]
    assert len(found) == 1, [(r.workload.kind.kind, r.workload.name) for r in rows]
    return found[0]


def test_a_recorded_workload_shows_the_record_of_its_current_template() -> None:
    chain = Chain()
    app = workload("Deployment", "app", "shop")
    chain.admit(app)
    rows = rows_for([stored(app, uid="u1")], chain)
    row = one(rows, "app")
    assert row.record is not None and row.record.seq == 0
    assert row.flags == ()
    cells = table_rows(rows)[1]
    assert cells[:6] == ("Deployment", "shop", "app", SHA[:12], "main", "4182")
    assert cells[6] == "2026-12-01T10:00:00Z" and cells[7] == "admin"
    assert cells[8] == "-/1"  # signature verification was off for this admission


def test_every_gated_kind_is_matched_by_its_own_template() -> None:
    chain = Chain()
    objs = []
    for kind in ("Deployment", "StatefulSet", "DaemonSet", "CronJob", "Pod", "Job",
                 "ReplicaSet", "ReplicationController"):
        obj = workload(kind, f"w-{kind.lower()}", "shop")
        chain.admit(obj)
        objs.append(stored(obj, uid=f"uid-{kind}"))
    rows = rows_for(objs, chain)
    assert len(rows) == 8
    assert all(r.record is not None and not r.flags for r in rows), [
        (r.workload.ref, r.flags) for r in rows]


def test_the_newest_matching_admission_wins_after_an_undo() -> None:
    chain = Chain()
    v1 = workload("Deployment", "app", "shop")
    v2 = workload("Deployment", "app", "shop", containers=[OTHER_IMAGE],
                  ann=prov_annotations(git_sha="b" * 40))
    chain.admit(v1, minute=1)
    chain.admit(v2, minute=2, operation="UPDATE", uid="u1")
    chain.admit(v1, minute=3, operation="UPDATE", uid="u1", username="bob")
    row = one(rows_for([stored(v1, uid="u1")], chain), "app")
    assert row.record is not None and row.record.seq == 2
    assert row.record.entry.actor.username == "bob"


def test_another_object_of_the_same_name_is_not_this_ones_record() -> None:
    chain = Chain()
    app = workload("Deployment", "app", "shop")
    created = chain.admit(app)
    chain.persisted(created, uid="old-uid")  # the CREATE's outcome names the first object
    row = one(rows_for([stored(app, uid="new-uid")], chain), "app")
    assert row.unrecorded and row.reason == "gate-off"
    assert row.note == "created while the gate was off"
    # A record whose entry names the uid is matched by it, too.
    chain2 = Chain()
    chain2.admit(app, operation="UPDATE", uid="old-uid")
    assert one(rows_for([stored(app, uid="new-uid")], chain2), "app").unrecorded
    assert not one(rows_for([stored(app, uid="old-uid")], chain2), "app").unrecorded


def test_unrecorded_workloads_say_why_when_it_can_be_told() -> None:
    chain = Chain()
    recorded = workload("Deployment", "changed", "shop")
    chain.admit(recorded, minute=5)
    changed = workload("Deployment", "changed", "shop", containers=[OTHER_IMAGE])
    fresh = workload("Deployment", "fresh", "shop")
    old = workload("StatefulSet", "old", "shop")
    system = workload("DaemonSet", "proxy", "kube-system")
    rows = rows_for([
        stored(changed, uid="c"), stored(fresh, uid="f"),
        stored(old, uid="o", created="2026-11-01T00:00:00Z"), stored(system, uid="s"),
    ], chain, exempt=("kube-system",))
    assert all(r.unrecorded for r in rows)
    assert one(rows, "changed").note == "template changed while the gate was off"
    assert one(rows, "fresh").note == "created while the gate was off"
    assert one(rows, "old").reason == "before-install"
    assert one(rows, "proxy").reason == "exempt-namespace"
    # After pruning, the oldest kept entry is not the install.
    pruned = build_rows([workload_from(one(rows, "old").workload.kind,
                                       stored(old, uid="o", created="2026-11-01T00:00:00Z"),
                                       prefix="provenance.dev/")], chain.index(first_seq=7))
    assert "pruned" in pruned[0].note
    assert table_rows(rows)[1][-1].startswith("unrecorded (")


def test_an_empty_ledger_flags_everything() -> None:
    rows = rows_for([stored(workload("Deployment", "app"), uid="u")], Chain())
    assert rows[0].unrecorded and rows[0].reason == "no-ledger"


def test_a_different_provenance_annotation_is_another_admission() -> None:
    chain = Chain()
    chain.admit(workload("Deployment", "app", "shop"))
    relabelled = workload("Deployment", "app", "shop", ann=prov_annotations(build_id="9999"))
    assert one(rows_for([stored(relabelled, uid="u")], chain), "app").unrecorded


def test_break_glass_and_waived_admissions_are_flagged_until_replaced() -> None:
    chain = Chain()
    app = workload("Deployment", "app", "shop")
    glass = BreakGlass(reason="sev1: checkout down, signing service out",
                       username="oncall", waived=("SignatureMissing",))
    chain.admit(app, break_glass=glass)
    audited = workload("Deployment", "audited", "shop", containers=["nginx:1"])
    chain.admit(audited, waived=("ImageNotPinned",))
    rows = rows_for([stored(app, uid="a"), stored(audited, uid="b")], chain)
    assert one(rows, "app").flags == ("break-glass",)
    assert one(rows, "audited").flags == ("waived",)
    assert row_dict(one(rows, "app"))["record"]["break_glass"]["username"] == "oncall"  # type: ignore[index]
    # A normal admission of the next template replaces it.
    fixed = workload("Deployment", "app", "shop", ann=prov_annotations(build_id="4183"))
    chain.admit(fixed, operation="UPDATE", uid="a", minute=9)
    assert one(rows_for([stored(fixed, uid="a")], chain), "app").flags == ()


def test_signature_verification_is_counted_per_container() -> None:
    chain = Chain()
    app = workload("Deployment", "app", "shop", containers=[IMAGE, OTHER_IMAGE])
    admitted = chain.admit(app)
    entry = admitted.record.entry
    assert isinstance(entry, AdmissionEntry)
    containers = (entry.containers[0].model_copy(update={"signature": SignatureRecord(
        verified=True, key_ids=("k",))}), entry.containers[1].model_copy(
        update={"signature": SignatureRecord(verified=False)}))
    chain.records[0] = StoredRecord(
        admitted.record.model_copy(update={"entry": entry.model_copy(
            update={"containers": containers})}), admitted.leaf, admitted.head, 0)
    assert table_rows(rows_for([stored(app, uid="u")], chain))[1][8] == "1/2"


def test_ci_deploying_on_someones_behalf_shows_both() -> None:
    chain = Chain()
    app = workload("Deployment", "app", "shop", ann=prov_annotations(deployed_by="alice"))
    chain.admit(app, username="system:serviceaccount:ci:deployer")
    cells = table_rows(rows_for([stored(app, uid="u")], chain))[1]
    assert cells[7] == "system:serviceaccount:ci:deployer (for alice)"


def _deployment_family(chain: Chain, *, pod_image: str = IMAGE,
                       record_deployment: bool = True) -> list[dict[str, Any]]:
    """A recorded Deployment, its ReplicaSet and a Pod, as kube-controller-manager makes them."""
    deploy = workload("Deployment", "web", "shop")
    if record_deployment:
        chain.admit(deploy)
    rs = workload("ReplicaSet", "web-7d4b9", "shop")
    rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = "7d4b9"
    pod = workload("Pod", "web-7d4b9-x1", "shop", containers=[pod_image])
    return [stored(deploy, uid="d"), stored(rs, uid="r", owner=("Deployment", "d")),
            stored(pod, uid="p", owner=("ReplicaSet", "r"))]


def test_derived_objects_are_hidden_by_default_and_listed_with_all_kinds() -> None:
    chain = Chain()
    family = _deployment_family(chain)
    rows = rows_for(family, chain)
    assert [r.workload.ref for r in rows] == ["Deployment/web"]
    every = rows_for(family, chain, all_kinds=True)
    assert [r.workload.ref for r in every] == ["Deployment/web", "ReplicaSet/web-7d4b9",
                                               "Pod/web-7d4b9-x1"]
    pod = one(every, "web-7d4b9-x1")
    assert not pod.unrecorded and pod.record is not None and pod.record.seq == 0
    assert pod.note == "derived from Deployment/web"
    assert row_dict(pod)["derived_from"] == "Deployment/web"


def test_an_owner_reference_alone_does_not_cover_an_image_never_admitted() -> None:
    chain = Chain()
    family = _deployment_family(chain, pod_image=OTHER_IMAGE)
    rows = rows_for(family, chain)
    pod = one(rows, "web-7d4b9-x1")  # listed without --all-kinds
    assert pod.unrecorded and pod.reason == "unadmitted-image"
    assert "Deployment/web" in pod.note


def test_an_owner_that_is_not_listed_or_not_a_creator_makes_nothing_derived() -> None:
    chain = Chain()
    orphan = workload("Pod", "orphan", "shop")
    operated = workload("Deployment", "operated", "shop")
    rows = rows_for([stored(orphan, uid="o", owner=("ReplicaSet", "gone")),
                     stored(operated, uid="x", owner=("Database", "crd-uid"))], chain)
    assert {r.workload.name for r in rows if r.unrecorded} == {"orphan", "operated"}


def test_children_of_an_unrecorded_root_are_not_counted_twice() -> None:
    chain = Chain()
    family = _deployment_family(chain, record_deployment=False)
    rows = rows_for(family, chain)
    assert [(r.workload.ref, r.unrecorded) for r in rows] == [("Deployment/web", True)]
    every = rows_for(family, chain, all_kinds=True)
    assert sum(r.unrecorded for r in every) == 1
    assert one(every, "web-7d4b9-x1").note == "derived from Deployment/web, itself unrecorded"


def test_a_cronjobs_jobs_and_pods_belong_to_the_cronjob() -> None:
    chain = Chain()
    cron = workload("CronJob", "nightly", "shop")
    chain.admit(cron)
    job = workload("Job", "nightly-290", "shop")
    pod = workload("Pod", "nightly-290-abc", "shop")
    rows = rows_for([stored(cron, uid="c"), stored(job, uid="j", owner=("CronJob", "c")),
                     stored(pod, uid="p", owner=("Job", "j"))], chain, all_kinds=True)
    assert all(not r.unrecorded for r in rows)
    assert one(rows, "nightly-290-abc").derived_from is not None


def _args(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"output": "table", "quiet": True, "fail_on_unrecorded": False,
                                 **kw})


def test_exit_codes_for_ci() -> None:
    chain = Chain()
    rows = rows_for([stored(workload("Deployment", "app"), uid="u")], chain)
    result = Scan(rows, chain.report(), found_ledger=True)
    out = io.StringIO()
    assert report(_args(), result, seconds=0.1, out=out) == 0
    assert "unrecorded" in out.getvalue()
    assert report(_args(fail_on_unrecorded=True), result, seconds=0.1,
                  out=io.StringIO()) == EXIT_UNRECORDED
    recorded = Chain()
    recorded.admit(workload("Deployment", "app"))
    clean = Scan(rows_for([stored(workload("Deployment", "app"), uid="u")], recorded),
                 recorded.report(), found_ledger=True)
    assert report(_args(fail_on_unrecorded=True), clean, seconds=0.1, out=io.StringIO()) == 0
    # A ledger that does not verify is never a pass, whatever was found.
    tampered = recorded.report()
    tampered.add(TamperKind.EDITED_ENTRY, "entry 0 was changed", seq=0)
    bad = Scan(clean.rows, tampered, found_ledger=True)
    assert report(_args(), bad, seconds=0.1, out=io.StringIO()) == TAMPER_EXIT_CODES[
        TamperKind.EDITED_ENTRY]


def test_json_output_lists_every_row_and_the_ledger() -> None:
    chain = Chain()
    chain.admit(workload("Deployment", "app"))
    rows = rows_for([stored(workload("Deployment", "app"), uid="u"),
                     stored(workload("Deployment", "gone-wild"), uid="g")], chain)
    out = io.StringIO()
    report(_args(output="json"), Scan(rows, chain.report(), True), seconds=0.1, out=out)
    data = json.loads(out.getvalue())
    assert data["unrecorded"] == 1 and data["ledger"]["ok"] is True
    by_name = {i["name"]: i for i in data["items"]}
    assert by_name["app"]["record"]["provenance"]["commit_sha"] == SHA
    assert by_name["app"]["record"]["user"] == "admin"
    assert by_name["gone-wild"]["record"] is None
    assert by_name["gone-wild"]["reason"] == "gate-off"


def test_table_columns_line_up() -> None:
    chain = Chain()
    chain.admit(workload("Deployment", "app"))
    rows = rows_for([stored(workload("Deployment", "app"), uid="u"),
                     stored(workload("StatefulSet", "a-much-longer-name"), uid="s")], chain)
    out = io.StringIO()
    render_table(out, rows)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["KIND", "NAMESPACE", "NAME", "COMMIT", "BRANCH", "BUILD",
                                "DEPLOYED", "BY", "IMAGES", "ROLLOUT", "FLAGS"]
    # Every column starts where its header does.
    for header in ("NAMESPACE", "NAME ", "COMMIT", "IMAGES"):
        at = lines[0].index(header)
        assert all(line[at - 2:at] == "  " and line[at] != " " for line in lines[1:])


def test_the_gauge_publishes_every_reason() -> None:
    chain = Chain()
    rows = rows_for([stored(workload("Deployment", "a"), uid="1"),
                     stored(workload("Deployment", "b", "kube-system"), uid="2")], chain,
                    exempt=("kube-system",))
    result = Scan(rows, chain.report(), True)
    metrics.record_unrecorded(result.unrecorded_by_reason(), at=1234.0)
    get = metrics.REGISTRY.get_sample_value
    assert get("provenance_unrecorded_workloads", {"reason": "no-ledger"}) == 1
    assert get("provenance_unrecorded_workloads", {"reason": "exempt-namespace"}) == 1
    assert get("provenance_unrecorded_workloads", {"reason": "gate-off"}) == 0
    assert get("provenance_unrecorded_scan_timestamp_seconds", None) == 1234.0
