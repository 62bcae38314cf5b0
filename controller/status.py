"""`kubectl-provenance status`: what is running right now, and the ledger record of each template.

The first question of an incident is "what is running, from which commit, deployed by whom, and
is any of it unrecorded?". This module answers it from two reads: the ledger, once (`load_ledger`
and `verify_ledger`), and every workload of every gated kind (`controller.workloads.KINDS`),
by paginated list calls. Everything between the reads and the output is a pure function over
data (`workload_from`, `LedgerIndex`, `build_rows`, `render_table`), so tests drive it without a
cluster; the controller runs the same `scan` for its `provenance_unrecorded_workloads` gauge.

The record of a workload is the newest admission entry of the same kind, namespace and name
whose template hash and provenance-annotations hash are the stored object's (as the reconciler
matches them), and whose object uid, when the entry has one or its `persisted` outcome names
one, is the object's. A template restored while the gate was off matches the earlier admission
of the same template: the same content was admitted once; who restored it is not known.

Derived objects, and the rule that decides them:

- An object is derived when its controller `ownerReference` names, by uid, an object listed in
  the same scan of the kind that creates it (`DERIVED_PARENTS`: a ReplicaSet under a
  Deployment, a Job under a CronJob, a Pod under a ReplicaSet, StatefulSet, DaemonSet, Job or
  ReplicationController). Derived objects are not listed by default (`--all-kinds` lists them):
  they are what their authored ancestor (the root) runs.
- Owning grants nothing by itself: `ownerReferences` are written by whoever creates the object.
  A derived object with no record of its own is covered only when every image it runs was
  admitted in some entry of its root. Otherwise it is listed, flagged `unrecorded`, even
  without `--all-kinds` (a Pod made while the gate was off, with a borrowed owner, or a debug
  container added then).
- When the root itself is unrecorded, its derived objects are not flagged again: the root's
  row already says so.
- Any other owner (an operator's custom resource owning a Deployment) makes nothing derived:
  such a workload needs its own record like any other.

Exit codes (besides those of the ledger commands, `controller.ledger.cli`): `EXIT_UNRECORDED`
when `--fail-on-unrecorded` is given and a listed workload is unrecorded; a tamper code (10..)
when the ledger does not verify, whatever else was found.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TextIO

from controller import metrics
from controller.config import Config, load_config
from controller.errors import ConfigError, ProvenanceError
from controller.kube import KubeApi, KubeApiError
from controller.ledger.chain import CheckpointVerifier, parse_timestamp
from controller.ledger.cli import (
    EXIT_ERROR,
    EXIT_FORBIDDEN,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    TAMPER_EXIT_CODES,
)
from controller.ledger.entries import annotations_hash
from controller.ledger.errors import LedgerError
from controller.ledger.follow import LedgerFollower
from controller.ledger.models import (
    AdmissionEntry,
    CheckpointEntry,
    OutcomeEntry,
    SealEntry,
)
from controller.ledger.query import AdmissionView, admissions, object_uid
from controller.ledger.verify import ChainData, VerifyReport, load_ledger, verify_ledger
from controller.workloads import KINDS, WorkloadKind, pod_images, pod_spec_of, template_hash

log = logging.getLogger("provenance.status")

EXIT_UNRECORDED = 6
"""`--fail-on-unrecorded` and at least one listed workload has no admitted record."""
LIST_PAGE = 500
"""Objects per list call: large enough that 5,000 workloads take a few round trips per kind,
small enough that one page stays well under the API server's response limits."""
SCAN_INTERVAL_SECONDS = 300.0
"""How often the controller recomputes `provenance_unrecorded_workloads`: the scan lists every
workload and reads what the ledger gained since (`controller.ledger.follow`), so it runs minutes
apart, never per admission."""
FIRST_SCAN_DELAY_SECONDS = 30.0
"""The first scan waits this long after start-up, when the API server starts sending reviews."""

DERIVED_PARENTS: Mapping[str, tuple[str, ...]] = {
    "ReplicaSet": ("Deployment",),
    "Job": ("CronJob",),
    "Pod": ("ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController"),
}
"""Kind → the kinds whose controllers create it from their template. Nothing else is derived."""

Flag = Literal["unrecorded", "break-glass", "waived"]
UnrecordedReason = Literal["exempt-namespace", "before-install", "gate-off", "unadmitted-image",
                           "no-ledger"]
"""Why a workload is likely unrecorded: a bounded set, the label of the controller's gauge."""
UNRECORDED_REASONS: tuple[UnrecordedReason, ...] = (
    "exempt-namespace", "before-install", "gate-off", "unadmitted-image", "no-ledger")


@dataclass(frozen=True, slots=True)
class Workload:
    """One stored object of a gated kind, reduced to what matching and rendering need."""

    kind: WorkloadKind
    namespace: str
    name: str
    uid: str
    created: str
    """metadata.creationTimestamp (RFC 3339); "" when absent."""
    template_hash: str
    annotations_hash: str
    images: frozenset[str]
    """Every image its pod template runs or mounts, as written."""
    owner: tuple[str, str] | None
    """(kind, uid) of its controller owner, when it names one."""

    @property
    def ref(self) -> str:
        return f"{self.kind.kind}/{self.name}"


def workload_from(kind: WorkloadKind, obj: Mapping[str, Any], *, prefix: str) -> Workload:
    """The `Workload` of a stored object, hashed as the admission path hashes it."""
    meta = obj.get("metadata") or {}
    owner = None
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            owner = (str(ref.get("kind", "")), str(ref.get("uid", "")))
            break
    images = frozenset(img for _s, _n, img in pod_images(pod_spec_of(kind, obj)) if img)
    return Workload(
        kind=kind, namespace=str(meta.get("namespace", "")), name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")), created=str(meta.get("creationTimestamp") or ""),
        template_hash=template_hash(kind, obj),
        annotations_hash=annotations_hash(meta.get("annotations") or {}, prefix),
        images=images, owner=owner)



def _entry_time(entry: object) -> str | None:
    if isinstance(entry, AdmissionEntry):
        return entry.deploy_timestamp
    if isinstance(entry, OutcomeEntry):
        return entry.observed_at
    if isinstance(entry, CheckpointEntry):
        return entry.checkpoint.time
    if isinstance(entry, SealEntry) and entry.checkpoint is not None:
        return entry.checkpoint.time
    return None


@dataclass
class LedgerIndex:
    """The ledger's admissions grouped by (kind, namespace, name), oldest first."""

    by_name: dict[tuple[str, str, str], list[AdmissionView]] = field(default_factory=dict)
    start: datetime | None = None
    """The time of the oldest kept record: the controller's install, unless pruned."""
    pruned: bool = False
    """Older segments were pruned: `start` is then not the install."""

    @classmethod
    def from_report(cls, report: VerifyReport) -> LedgerIndex:
        index = cls(pruned=report.first_seq > 0)
        for stored in report.records:
            moment = _entry_time(stored.record.entry)
            if moment is not None:
                index.start = parse_timestamp(moment)
                break
        for view in admissions(report.records):
            e = view.entry
            index.by_name.setdefault((e.kind, e.namespace, e.name), []).append(view)
        return index

    def history(self, w: Workload) -> list[AdmissionView]:
        """This object's records (an earlier object of the same name excluded when known)."""
        return [v for v in self.by_name.get((w.kind.kind, w.namespace, w.name), ())
                if not (uid := object_uid(v)) or uid == w.uid]

    def current(self, w: Workload) -> AdmissionView | None:
        """The record of `w`'s current template: the newest matching admission."""
        for view in reversed(self.history(w)):
            e = view.entry
            if e.template_hash == w.template_hash and e.annotations_hash == w.annotations_hash:
                return view
        return None

    def admitting(self, root: Workload, images: frozenset[str]) -> AdmissionView | None:
        """The newest record of `root` that admitted every one of `images`."""
        for view in reversed(self.history(root)):
            if images <= {c.image for c in view.entry.containers}:
                return view
        return None


@dataclass(frozen=True)
class Row:
    """One line of the output: a workload, the record of what it runs, and its flags."""

    workload: Workload
    record: AdmissionView | None
    flags: tuple[Flag, ...] = ()
    note: str = ""
    """Why it is likely unrecorded, or what it is derived from."""
    derived_from: Workload | None = None
    """The authored root, for a derived object."""
    reason: UnrecordedReason | None = None
    """For an unrecorded row, the likely reason as a code."""

    @property
    def unrecorded(self) -> bool:
        return "unrecorded" in self.flags


def _record_flags(view: AdmissionView) -> tuple[Flag, ...]:
    flags: list[Flag] = []
    if view.entry.break_glass is not None:
        flags.append("break-glass")
    if view.entry.waived:
        flags.append("waived")
    return tuple(flags)


def unrecorded_reason(w: Workload, index: LedgerIndex,
                      exempt: Iterable[str]) -> tuple[UnrecordedReason, str]:
    """Why `w` likely has no admitted record, from what can be told after the fact: a code and
    the words for it."""
    if w.namespace in set(exempt):
        return "exempt-namespace", "exempt namespace"
    if index.start is None:
        return "no-ledger", "the ledger holds no records"
    created = _parse(w.created)
    if created is not None and created < index.start:
        return "before-install", (
            "created before the oldest kept ledger record (earlier segments pruned)"
            if index.pruned else "created before install")
    if index.history(w):
        return "gate-off", "template changed while the gate was off"
    return "gate-off", "created while the gate was off"


def _unrecorded(w: Workload, index: LedgerIndex, exempt: Iterable[str]) -> Row:
    code, text = unrecorded_reason(w, index, exempt)
    return Row(w, None, ("unrecorded",), text, reason=code)


def _parse(text: str) -> datetime | None:
    try:
        return parse_timestamp(text) if text else None
    except ValueError:
        return None


def build_rows(workloads: Sequence[Workload], index: LedgerIndex, *,
               exempt: Iterable[str] = (), all_kinds: bool = False) -> list[Row]:
    """The rows of `status`, by the rules in the module docstring, sorted by namespace, kind
    (in `KINDS` order) and name."""
    exempt = tuple(exempt)
    by_uid = {w.uid: w for w in workloads if w.uid}

    def parent(w: Workload) -> Workload | None:
        if w.owner is None or w.owner[0] not in DERIVED_PARENTS.get(w.kind.kind, ()):
            return None
        found = by_uid.get(w.owner[1])
        return found if found is not None and found.kind.kind == w.owner[0] \
            and found.namespace == w.namespace else None

    def root(w: Workload) -> Workload | None:
        node, seen = parent(w), set[str]()
        while node is not None and node.uid not in seen:
            seen.add(node.uid)
            up = parent(node)
            if up is None:
                return node
            node = up
        return node

    authored: dict[str, Row] = {}
    rows: list[Row] = []
    derived: list[tuple[Workload, Workload]] = []
    for w in workloads:
        top = root(w)
        if top is not None:
            derived.append((w, top))
            continue
        view = index.current(w)
        row = (Row(w, view, _record_flags(view)) if view is not None else
               _unrecorded(w, index, exempt))
        authored[w.uid] = row
        rows.append(row)
    for w, top in derived:
        own = index.current(w)
        top_row = authored.get(top.uid)
        if own is not None:
            row = Row(w, own, _record_flags(own), f"derived from {top.ref}", top)
        elif top_row is None:
            # Not reachable through the kinds in DERIVED_PARENTS (no kind is both a parent
            # and derived in a cycle); should it happen, list it rather than hide it.
            rows.append(_unrecorded(w, index, exempt))
            continue
        elif top_row.unrecorded:
            row = Row(w, None, (), f"derived from {top.ref}, itself unrecorded", top)
        elif (covering := index.admitting(top, w.images)) is not None:
            row = Row(w, covering, _record_flags(covering), f"derived from {top.ref}", top)
        else:
            # Owning grants nothing: an image its root never admitted is unrecorded, listed.
            rows.append(Row(w, None, ("unrecorded",),
                            f"owned by {top.ref}, but runs images none of its records admitted",
                            top, reason="unadmitted-image"))
            continue
        if all_kinds:
            rows.append(row)
    order = {k.kind: i for i, k in enumerate(KINDS)}
    rows.sort(key=lambda r: (r.workload.namespace, order.get(r.workload.kind.kind, 99),
                             r.workload.name))
    return rows


# --- rendering ------------------------------------------------------------------------------


def _by(entry: AdmissionEntry) -> str:
    annotated = entry.actor.annotated
    user = entry.actor.username
    return f"{user} (for {annotated})" if annotated and annotated != user else user


def _images(entry: AdmissionEntry) -> str:
    total = len(entry.containers)
    if all(c.signature is None for c in entry.containers):
        return f"-/{total}"  # signature verification was off for this admission
    verified = sum(1 for c in entry.containers if c.signature is not None and c.signature.verified)
    return f"{verified}/{total}"


def _rollout(view: AdmissionView) -> str:
    return view.status


def table_rows(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    """The table's cells, header first."""
    out: list[tuple[str, ...]] = [("KIND", "NAMESPACE", "NAME", "COMMIT", "BRANCH", "BUILD",
                                   "DEPLOYED", "BY", "IMAGES", "ROLLOUT", "FLAGS")]
    for row in rows:
        w = row.workload
        flags = ",".join(row.flags)
        if row.note and (row.unrecorded or not flags):
            flags = f"{flags} ({row.note})" if flags else f"({row.note})"
        if row.record is None:
            out.append((w.kind.kind, w.namespace, w.name, "-", "-", "-", "-", "-",
                        f"-/{len(w.images)}", "-", flags))
            continue
        e = row.record.entry
        out.append((w.kind.kind, w.namespace, w.name, (e.provenance.commit_sha or "-")[:12],
                    e.provenance.branch or "-", e.provenance.build_id or "-",
                    e.deploy_timestamp[:19] + "Z", _by(e), _images(e), _rollout(row.record),
                    flags))
    return out


def render_table(out: TextIO, rows: Sequence[Row]) -> None:
    cells = table_rows(rows)
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    for r in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def row_dict(row: Row) -> dict[str, object]:
    """One row as JSON-ready data (`-o json`)."""
    w = row.workload
    record: dict[str, object] | None = None
    if row.record is not None:
        e = row.record.entry
        record = {
            "seq": row.record.seq, "status": row.record.status,
            "operation": e.operation, "deployed": e.deploy_timestamp,
            "user": e.actor.username, "annotated_user": e.actor.annotated,
            "provenance": e.provenance.model_dump(mode="json"),
            "containers": [c.model_dump(mode="json") for c in e.containers],
            "break_glass": e.break_glass.model_dump(mode="json") if e.break_glass else None,
            "waived": list(e.waived),
        }
    return {
        "kind": w.kind.kind, "namespace": w.namespace, "name": w.name, "uid": w.uid,
        "created": w.created, "template_hash": w.template_hash, "flags": list(row.flags),
        "note": row.note, "reason": row.reason,
        "derived_from": row.derived_from.ref if row.derived_from else None,
        "record": record,
    }


# --- reading the cluster --------------------------------------------------------------------


def _collection(kind: WorkloadKind, namespace: str | None) -> str:
    if namespace is not None:
        return kind.path(namespace)
    base = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    return f"{base}/{kind.plural}"


async def list_workloads(api: KubeApi, kind: WorkloadKind, namespace: str | None, *,
                         prefix: str, progress: Callable[[str, int], None] | None = None,
                         ) -> list[Workload]:
    """Every object of `kind` in `namespace` (None: all namespaces), paged with `limit` and
    `continue`."""
    out: list[Workload] = []
    cont = ""
    while True:
        params = {"limit": str(LIST_PAGE)}
        if cont:
            params["continue"] = cont
        body = await api.request("GET", _collection(kind, namespace), params=params, timeout=60)
        out.extend(workload_from(kind, item, prefix=prefix) for item in body.get("items") or []
                   if isinstance(item, Mapping))
        if progress is not None:
            progress(kind.plural, len(out))
        cont = (body.get("metadata") or {}).get("continue") or ""
        if not cont:
            return out


@dataclass
class Scan:
    """What one `scan` read and concluded."""

    rows: list[Row]
    report: VerifyReport
    found_ledger: bool
    """False when the chain has no segments (nothing was ever recorded there)."""

    @property
    def unrecorded(self) -> int:
        return sum(1 for r in self.rows if r.unrecorded)

    def unrecorded_by_reason(self) -> dict[str, int]:
        """Unrecorded rows per likely reason, every reason present (zero when none)."""
        counts: dict[str, int] = dict.fromkeys(UNRECORDED_REASONS, 0)
        for r in self.rows:
            if r.reason is not None:
                counts[r.reason] += 1
        return counts


async def scan(api: KubeApi, config: Config, *, namespace: str | None,
               ledger_namespace: str | None = None, chain: str | None = None,
               all_kinds: bool = False, exclude_exempt: bool = False,
               progress: Callable[[str], None] | None = None,
               follower: LedgerFollower | None = None) -> Scan:
    """Read the ledger once and every gated kind's list, concurrently; build the rows.

    The ledger is verified and indexed in a thread as soon as it is read, while the list calls
    are still being answered: the API server's work overlaps ours, and in the controller the
    event loop stays free for admissions. `exclude_exempt` leaves out workloads in the
    configuration's exempt namespaces (never judged, so never recorded).
    """
    ledger_ns = ledger_namespace or config.ledger.namespace
    chain_name = chain or config.ledger.chain
    prefix = config.annotations.prefix

    def segments(count: int) -> None:
        if progress is not None:
            progress(f"ledger: read {count} segment(s)…")

    def listed(plural: str, count: int) -> None:
        if progress is not None:
            progress(f"status: listed {count} {plural}…")

    def index_of(lanes: dict[str, ChainData]) -> tuple[VerifyReport, LedgerIndex]:
        report = verify_ledger(lanes, chain=chain_name,
                               max_entry_bytes=config.ledger.max_entry_bytes)
        return report, LedgerIndex.from_report(report)

    async def read_ledger() -> tuple[dict[str, ChainData], VerifyReport, LedgerIndex]:
        lanes = await load_ledger(api, ledger_ns, chain_name, progress=segments,
                                  key_namespace=config.ledger.checkpoint_key_namespace)
        return (lanes, *await asyncio.to_thread(index_of, lanes))

    async def follow() -> tuple[None, VerifyReport, LedgerIndex]:
        assert follower is not None
        report = await follower.refresh()
        followed = follower.index
        index = LedgerIndex(by_name=dict(followed.by_name), pruned=followed.pruned,
                            start=parse_timestamp(followed.start) if followed.start else None)
        return None, report, index

    # A long-lived process follows the ledger (memory bounded by the workloads); a command
    # reads it whole, once.
    ledger_read = asyncio.ensure_future(follow() if follower is not None else read_ledger())
    try:
        lists = await asyncio.gather(
            *(list_workloads(api, kind, namespace, prefix=prefix, progress=listed)
              for kind in KINDS))
    except BaseException:
        ledger_read.cancel()
        raise
    lanes, report, index = await ledger_read
    exempt = set(config.exempt_namespaces)
    workloads = [w for batch in lists for w in batch
                 if not (exclude_exempt and w.namespace in exempt)]
    rows = build_rows(workloads, index, exempt=config.exempt_namespaces, all_kinds=all_kinds)
    found = follower.index.segments > 0 if follower is not None else any(
        d.segments for d in (lanes or {}).values())
    return Scan(rows, report, found)


async def publish_unrecorded(api: KubeApi, config: Config,
                             follower: LedgerFollower | None = None) -> Scan:
    """One scan of the whole cluster, published as `provenance_unrecorded_workloads`."""
    result = await scan(api, config, namespace=None, follower=follower)
    metrics.record_unrecorded(result.unrecorded_by_reason(), at=time.time())
    if not result.report.ok:
        log.warning("the ledger does not verify (%s); run `ledger verify`",
                    result.report.problems[0])
    return result


async def publish_forever(api: KubeApi, config: Config, *,
                          interval: float = SCAN_INTERVAL_SECONDS,
                          first_delay: float = FIRST_SCAN_DELAY_SECONDS,
                          verifier: CheckpointVerifier | None = None) -> None:
    """The controller's periodic scan. It is a task of its own, apart from the admission path:
    its reads are list calls on the shared client; the ledger's verification (the bulk of its
    CPU, seconds for 20,000 entries) runs in a thread, so an admission waits for the
    interpreter's switch interval, not for the scan; hashing a page of 500 listed objects on
    the event loop takes tens of milliseconds."""
    await asyncio.sleep(first_delay)
    # Each segment is read and verified once; the index keeps the newest admissions of each
    # workload, so memory follows the cluster's size, not the ledger's length.
    follower = LedgerFollower(api, config.ledger, verifier=verifier)
    while True:
        try:
            result = await publish_unrecorded(api, config, follower)
            log.info("scan: %d workload(s), %d unrecorded", len(result.rows), result.unrecorded)
        except ProvenanceError as exc:
            # The count keeps its last value; the scan timestamp says how old it is.
            log.warning("the unrecorded-workload scan failed: %s", exc)
        except Exception:
            log.exception("the unrecorded-workload scan failed")
        await asyncio.sleep(interval)


# --- the command ----------------------------------------------------------------------------


def add_subcommand(subparsers: Any) -> None:
    """Register `status` on the caller's argparse subparsers."""
    p = subparsers.add_parser(
        "status", help="what is running: every workload with the ledger record of its template",
        description="Every workload of every gated kind with the ledger record of its current\n"
        "template (commit, branch, build, when and by whom, image verification, rollout),\n"
        "and the ones with no admitted record flagged.\n\n"
        "exit codes: 0 ok, 1 error, 2 usage, 3 forbidden, 4 unreachable,\n"
        f"  {EXIT_UNRECORDED} unrecorded workloads (--fail-on-unrecorded), 10.. the ledger does "
        "not verify")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", default="default",
                       help="the workloads' namespace (default: %(default)s)")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="every namespace")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.add_argument("--fail-on-unrecorded", action="store_true",
                   help=f"exit {EXIT_UNRECORDED} when a listed workload has no admitted record "
                   "(for CI and cron)")
    p.add_argument("--all-kinds", action="store_true",
                   help="also list derived objects (ReplicaSets, Jobs and Pods made by "
                   "controllers from an admitted template)")
    p.add_argument("--exclude-exempt", action="store_true",
                   help="leave out the configuration's exempt namespaces (kube-system by "
                   "default), which are never judged and so never recorded")
    p.add_argument("--config", help="the controller's configuration file (exempt namespaces, "
                   "annotation prefix, ledger location; default: $PROVENANCE_CONFIG, else "
                   "built-in defaults)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, "
                   "~/.kube/config, then in-cluster)")
    p.add_argument("--ledger-namespace", help="the ledger namespace (default: the "
                   "configuration's, provenance-ledger)")
    p.add_argument("--chain", help="the chain name (default: the configuration's, audit)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """The `status` command: returns its exit code."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_main(args, config))


async def _main(args: argparse.Namespace, config: Config) -> int:
    try:
        api = KubeApi.from_kubeconfig(args.kubeconfig, timeout=60)
    except Exception as exc:
        print(f"error: cannot load Kubernetes credentials: {exc}", file=sys.stderr)
        return EXIT_ERROR
    started = time.monotonic()
    last = [0.0]

    def progress(message: str) -> None:
        # At most a few lines a second: a big cluster is many pages.
        if not args.quiet and time.monotonic() - last[0] >= 0.25:
            last[0] = time.monotonic()
            print(message, file=sys.stderr, flush=True)

    namespace = None if args.all_namespaces else args.namespace
    try:
        result = await scan(api, config, namespace=namespace,
                            ledger_namespace=args.ledger_namespace, chain=args.chain,
                            all_kinds=args.all_kinds, exclude_exempt=args.exclude_exempt,
                            progress=progress)
    except KubeApiError as exc:
        return _api_error(exc, namespace)
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        await api.close()
    return report(args, result, seconds=time.monotonic() - started)


def report(args: argparse.Namespace, result: Scan, *, seconds: float,
           out: TextIO | None = None) -> int:
    """Print the scan and return the exit code."""
    out = out or sys.stdout
    if args.output == "json":
        json.dump({"items": [row_dict(r) for r in result.rows],
                   "unrecorded": result.unrecorded,
                   "ledger": {"ok": result.report.ok, "size": result.report.size,
                              "first_seq": result.report.first_seq,
                              "problems": [str(p) for p in result.report.problems]}},
                  out, indent=2)
        out.write("\n")
    else:
        render_table(out, result.rows)
    if not args.quiet:
        print(f"{len(result.rows)} workload(s), {result.unrecorded} unrecorded; ledger "
              f"{result.report.size} entries; {seconds:.2f}s", file=sys.stderr)
    if not result.found_ledger:
        print("warning: no ledger chain found: nothing here was recorded", file=sys.stderr)
    if not result.report.ok:
        # Records from a chain that does not verify could be planted: shown, never a pass.
        print(f"warning: the ledger does not verify ({result.report.problems[0]}); the records "
              "above may have been altered. Run `ledger verify`.", file=sys.stderr)
        return TAMPER_EXIT_CODES[result.report.problems[0].kind]
    if args.fail_on_unrecorded and result.unrecorded:
        return EXIT_UNRECORDED
    return EXIT_OK


def _api_error(exc: KubeApiError, namespace: str | None) -> int:
    if exc.status in (401, 403):
        where = "cluster-wide (-A)" if namespace is None else f"in namespace {namespace!r}"
        print(f"error: forbidden: your credentials may not list workloads {where} or read the "
              f"ledger (RBAC: list on every gated kind, get/list configmaps in the ledger "
              f"namespace): {exc.message}", file=sys.stderr)
        return EXIT_FORBIDDEN
    if exc.status == 0:
        print(f"error: the API server is unreachable: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_ERROR


