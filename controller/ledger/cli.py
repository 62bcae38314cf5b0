"""`kubectl-provenance ledger verify|history|rollback-target|export|prune`, and `rollback`.

`add_subcommands(subparsers)` registers `ledger` on the caller's argparse subparsers; each command
sets `handler`, a function of the parsed arguments returning the exit code. Exit codes:

    0 ok · 1 error · 2 usage · 3 forbidden (RBAC) · 4 API server unreachable · 5 not found
    10.. one per kind of tampering (`TAMPER_EXIT_CODES`), so scripts can tell them apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from controller.kube import KubeApi, KubeApiError
from controller.ledger.chain import CheckpointVerifier, canonical_json
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import LedgerError, TamperKind
from controller.ledger.models import Checkpoint
from controller.ledger.query import (
    AdmissionView,
    UnadmittedView,
    admissions,
    rollback_source,
    rollback_target,
    unadmitted,
)
from controller.ledger.recovery import recover
from controller.ledger.retention import prune
from controller.ledger.verify import (
    StoredRecord,
    VerifyReport,
    load_ledger,
    parse_checkpoint,
    summarise,
    verify_ledger,
)
from controller.revisions import restore_patch, revisions
from controller.workloads import WorkloadKind, parse_target, target_names, template_hash

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_FORBIDDEN = 3
EXIT_UNREACHABLE = 4
EXIT_NOT_FOUND = 5
TAMPER_EXIT_CODES: dict[TamperKind, int] = {
    TamperKind.EDITED_ENTRY: 10,
    TamperKind.REORDERED_ENTRIES: 11,
    TamperKind.DELETED_ENTRY: 12,
    TamperKind.DELETED_SEGMENT: 13,
    TamperKind.RECREATED_SEGMENT: 14,
    TamperKind.UNSEALED_SEGMENT: 15,
    TamperKind.TRUNCATED: 16,
    TamperKind.CHECKPOINT_MISMATCH: 17,
    TamperKind.BAD_SIGNATURE: 18,
    TamperKind.MALFORMED: 19,
    TamperKind.DUPLICATE_ENTRY: 20,
    TamperKind.UNSIGNED_SEGMENT: 21,
    TamperKind.RELABELLED_SEGMENT: 22,
}
"""One exit code per kind of tampering; never renumber."""

Handler = Callable[[argparse.Namespace], int]


def add_subcommands(subparsers: Any) -> None:
    """Register `ledger` and its commands on an argparse subparsers object."""
    defaults = LedgerConfig()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, "
                        "~/.kube/config, then in-cluster)")
    common.add_argument("--namespace", dest="ledger_namespace", default=defaults.namespace,
                        help="the ledger namespace (default: %(default)s)")
    common.add_argument("--chain", default=defaults.chain, help="chain name (default: %(default)s)")
    common.add_argument("--key-namespace", default=defaults.checkpoint_key_namespace,
                        help="the namespace of the ledger key and of the signed heads kept "
                        "beside it (default: %(default)s)")
    common.add_argument("-o", "--output", dest="output", choices=("table", "json"),
                        default="table", help="output format")
    common.add_argument("--quiet", action="store_true", help="no progress on stderr")

    ledger = subparsers.add_parser("ledger", help="the audit ledger of admitted workloads")
    commands = ledger.add_subparsers(dest="ledger_command", required=True, metavar="COMMAND")

    verify = commands.add_parser("verify", parents=[common],
                                 help="check the chain, seals and checkpoints")
    verify.add_argument("--checkpoint", type=Path, metavar="FILE",
                        help="a saved checkpoint the chain must extend (detects truncation)")
    verify.add_argument("--save-checkpoint", type=Path, metavar="FILE",
                        help="after a clean verification, save the newest checkpoint here")
    verify.add_argument("--public-key", type=Path, metavar="FILE",
                        help="pin the checkpoint public key (PEM) instead of the in-cluster one")
    verify.set_defaults(handler=_sync(_verify))

    for name, func, text in (
        ("history", _history, "admissions of one workload, oldest first"),
        ("rollback-target", _rollback_target,
         "the previous admitted-and-persisted record whose template differs from the current"),
    ):
        cmd = commands.add_parser(name, parents=[common], help=text)
        cmd.add_argument("target", metavar="KIND/NAME",
                         help=f"the workload, kubectl-style: {target_names()}")
        cmd.add_argument("-n", dest="deploy_namespace", default="default",
                         help="the workload's namespace (default: %(default)s)")
        cmd.set_defaults(handler=_sync(func))

    rollback = subparsers.add_parser(
        "rollback", parents=[common],
        help="roll a workload back to a ledger record, through the gate",
        description="Find the rollback target in the ledger (as `ledger rollback-target`, or "
        "--to-seq), find the revision holding its template (a ReplicaSet or a "
        "ControllerRevision), print what it restores, and restore it as `kubectl rollout undo` "
        "would. The gate admits and records it as a rollback.")
    rollback.add_argument("target", metavar="KIND/NAME",
                          help="deploy/NAME, sts/NAME or ds/NAME")
    rollback.add_argument("-n", dest="deploy_namespace", default="default",
                          help="the workload's namespace (default: %(default)s)")
    rollback.add_argument("--to-seq", metavar="N",
                          help="roll back to ledger entry N (as `ledger history` names it: N, "
                          "or LANE:N for a writer lane) instead of the rollback target")
    rollback.add_argument("--dry-run", action="store_true",
                          help="print the plan and change nothing")
    rollback.set_defaults(handler=_sync(_rollback))

    export = commands.add_parser("export", parents=[common],
                                 help="every record as JSON lines, for audit systems")
    export.add_argument("--format", choices=("jsonl",), default="jsonl")
    export.add_argument("--file", type=Path, help="write here instead of stdout")
    export.set_defaults(handler=_sync(_export))

    prune_cmd = commands.add_parser("prune", parents=[common],
                                    help="export, then delete all but the newest sealed segments")
    prune_cmd.add_argument("--keep", type=int, required=True, metavar="N",
                           help="sealed segments to keep (at least 1)")
    prune_cmd.add_argument("--export-file", type=Path, metavar="FILE",
                           help="append the pruned records here as JSON lines first")
    prune_cmd.add_argument("--no-export", action="store_true",
                           help="prune without exporting (the records are lost)")
    prune_cmd.set_defaults(handler=_sync(_prune))

    recover = commands.add_parser(
        "recover", parents=[common],
        help="restart the writers after a cut, on the record, with a reason",
        description="The controller never continues a chain that was cut, or whose tail is not "
        "signed by the ledger key: it denies every admission until an operator runs this. It "
        "verifies the ledger, prints what was lost, and appends a signed `recovered` entry "
        "naming you, your reason, and the head that was expected against the one found. "
        "Needs read access to the ledger key Secret.")
    recover.add_argument("--reason", required=True, help="why (recorded in the ledger)")
    recover.add_argument("--key-secret", default=defaults.checkpoint_key_secret,
                         help="the ledger key Secret (default: %(default)s)")
    recover.add_argument("--dry-run", action="store_true",
                         help="print what would be recorded and change nothing")
    recover.set_defaults(handler=_sync(_recover))


def _sync(func: Callable[[argparse.Namespace, KubeApi], Awaitable[int]]) -> Handler:
    """Run an async command with one client, turning API errors into clear exit codes."""

    def run(args: argparse.Namespace) -> int:
        async def main() -> int:
            try:
                api = KubeApi.from_kubeconfig(args.kubeconfig, timeout=60)
            except Exception as exc:
                print(f"error: cannot load Kubernetes credentials: {exc}", file=sys.stderr)
                return EXIT_ERROR
            try:
                return await func(args, api)
            except KubeApiError as exc:
                return _api_error(exc, args)
            except LedgerError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_ERROR
            finally:
                await api.close()

        return asyncio.run(main())

    return run


def _api_error(exc: KubeApiError, args: argparse.Namespace) -> int:
    if exc.status in (401, 403):
        print(f"error: forbidden: your credentials may not read the ledger in namespace "
              f"{args.ledger_namespace!r} (RBAC: get/list configmaps there is needed): "
              f"{exc.message}", file=sys.stderr)
        return EXIT_FORBIDDEN
    if exc.status == 0:
        print(f"error: the API server is unreachable: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_ERROR


def _progress(args: argparse.Namespace) -> Callable[[int], None] | None:
    if args.quiet:
        return None

    def report(count: int) -> None:
        print(f"ledger: read {count} segment(s)…", file=sys.stderr, flush=True)

    return report


async def _load(args: argparse.Namespace, api: KubeApi,
                verifier: CheckpointVerifier | None = None) -> VerifyReport:
    lanes = await load_ledger(api, args.ledger_namespace, args.chain, progress=_progress(args),
                              key_namespace=args.key_namespace)
    return verify_ledger(lanes, chain=args.chain, verifier=verifier,
                         max_entry_bytes=LedgerConfig().max_entry_bytes)


def _read_saved(path: Path) -> list[Checkpoint]:
    """One saved checkpoint, or a JSON list of them (one per writer lane)."""
    text = path.read_text().strip()
    if text.startswith("["):
        return [parse_checkpoint(json.dumps(item)) for item in json.loads(text)]
    return [parse_checkpoint(text)]


async def _verify(args: argparse.Namespace, api: KubeApi) -> int:
    try:
        verifier = (CheckpointVerifier.from_pem(args.public_key.read_bytes())
                    if args.public_key else None)
        saved = _read_saved(args.checkpoint) if args.checkpoint else []
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    lanes = await load_ledger(api, args.ledger_namespace, args.chain, progress=_progress(args),
                              key_namespace=args.key_namespace)
    if not any(d.segments for d in lanes.values()) and not any(
            lane in (d.anchors or {}) for lane, d in lanes.items()):
        print(f"error: no ledger chain {args.chain!r} in namespace {args.ledger_namespace!r}",
              file=sys.stderr)
        return EXIT_NOT_FOUND
    report = verify_ledger(lanes, chain=args.chain, verifier=verifier, saved=saved,
                           max_entry_bytes=LedgerConfig().max_entry_bytes)
    if args.output == "json":
        print(json.dumps(summarise(report), indent=2))
    elif report.ok:
        lanes_text = f" in {len(lanes)} writer lanes" if len(lanes) > 1 else ""
        print(f"ok: {report.size} entries in {report.segments} segments{lanes_text}, head "
              f"{report.head[:16]}…, {report.checkpoints_verified} checkpoints verified")
    for note in report.notes if args.output == "table" and not args.quiet else []:
        print(f"note: {note}", file=sys.stderr)
    if not report.ok:
        for problem in report.problems:
            print(f"TAMPERED [{problem.kind}] {problem.message}", file=sys.stderr)
        return TAMPER_EXIT_CODES[report.problems[0].kind]
    if args.save_checkpoint:
        # The newest signed head of each lane, just verified: a later verify with
        # --checkpoint FILE proves the chain was neither cut nor rewritten since.
        heads = [d.segments[-1].signed_head for d in lanes.values() if d.segments]
        if not heads or any(h is None for h in heads):
            print("error: the chain has no signed head to save yet", file=sys.stderr)
            return EXIT_NOT_FOUND
        saved_heads = [json.loads(h) for h in heads if h is not None]
        args.save_checkpoint.write_text(
            json.dumps(saved_heads[0] if len(saved_heads) == 1 else saved_heads) + "\n")
        print(f"saved the signed head of {len(saved_heads)} chain(s) (size "
              f"{sum(h['size'] for h in saved_heads)}) to {args.save_checkpoint}",
              file=sys.stderr)
    return EXIT_OK


def _target(args: argparse.Namespace) -> tuple[WorkloadKind, str] | None:
    found = parse_target(args.target)
    if found is None:
        print(f"error: the target must be KIND/NAME, one of {target_names()}", file=sys.stderr)
    return found


async def _history(args: argparse.Namespace, api: KubeApi) -> int:
    if (found := _target(args)) is None:
        return EXIT_USAGE
    kind, name = found
    report = await _load(args, api)
    views: list[AdmissionView | UnadmittedView] = [
        *admissions(report.records, kind=kind.kind, namespace=args.deploy_namespace, name=name),
        # Runs of the workload that no admission covers (the gate was off, or not installed).
        *unadmitted(report.records, kind=kind.kind, namespace=args.deploy_namespace, name=name)]
    views.sort(key=lambda v: (_time(v), v.stored.chain, v.seq))
    if args.output == "json":
        print(json.dumps([v.as_dict() for v in views], indent=2))
    else:
        _print_table(sys.stdout, views)
    _warn_unverified(report)
    if not views:
        print(f"no ledger records for {args.target} in {args.deploy_namespace}", file=sys.stderr)
        return EXIT_NOT_FOUND
    return EXIT_OK


def _time(view: AdmissionView | UnadmittedView) -> str:
    if isinstance(view, UnadmittedView):
        return view.entry.observed_at
    return view.entry.deploy_timestamp


def _print_table(out: TextIO, views: list[AdmissionView | UnadmittedView]) -> None:
    rows = [("SEQ", "TIME", "OP", "USER", "COMMIT", "BUILD", "TEMPLATE", "STATUS")]
    for v in views:
        if isinstance(v, UnadmittedView):
            u = v.entry
            rows.append((v.ref, u.observed_at[:19] + "Z", "-", "-", "-", "-",
                         u.template_hash.removeprefix("sha256:")[:12], "unadmitted"))
            continue
        e = v.entry
        restored = e.rollback and (f"{e.rollback.restored_chain}:{e.rollback.restored_from}"
                                   if e.rollback.restored_chain else str(e.rollback.restored_from))
        op = f"ROLLBACK({restored})" if e.rollback else e.operation
        status = v.status + (",break-glass" if e.break_glass else "")
        rows.append((v.ref, e.deploy_timestamp[:19] + "Z", op, e.actor.username,
                     (e.provenance.commit_sha or "-")[:12], e.provenance.build_id or "-",
                     e.template_hash.removeprefix("sha256:")[:12], status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


def _warn_unverified(report: VerifyReport) -> None:
    if not report.ok:
        print(f"warning: the ledger does not verify ({report.problems[0]}); run `ledger verify`",
              file=sys.stderr)


async def _rollback_target(args: argparse.Namespace, api: KubeApi) -> int:
    if (found := _target(args)) is None:
        return EXIT_USAGE
    kind, name = found
    current: str | None = None
    current_uid: str | None = None
    try:
        body = await api.request("GET", kind.path(args.deploy_namespace, name))
        current = template_hash(kind, body)
        current_uid = str((body.get("metadata") or {}).get("uid") or "") or None
    except KubeApiError as exc:
        if exc.status != 404:
            raise
    views = await _verified_admissions(args, api, kind, name,
                                       refusal="no rollback target is given from it")
    if isinstance(views, int):
        return views
    target = rollback_target(views, current, current_uid)
    if target is None:
        print(f"no earlier persisted record with a different template for {args.target}",
              file=sys.stderr)
        return EXIT_NOT_FOUND
    if args.output == "json":
        print(json.dumps(target.as_dict(), indent=2))
        return EXIT_OK
    print(f"rollback target for {args.target} in {args.deploy_namespace}: entry {target.ref}")
    _describe(target)
    return EXIT_OK


async def _verified_admissions(args: argparse.Namespace, api: KubeApi, kind: WorkloadKind,
                               name: str, *, refusal: str) -> list[AdmissionView] | int:
    """The workload's admissions from a ledger that verifies, or the exit code that refuses:
    a record read from a ledger that does not verify could be a planted one."""
    report = await _load(args, api)
    if not report.ok:
        print(f"error: the ledger does not verify ({report.problems[0]}); {refusal}. Run "
              "`ledger verify`.", file=sys.stderr)
        return TAMPER_EXIT_CODES[report.problems[0].kind]
    return admissions(report.records, kind=kind.kind, namespace=args.deploy_namespace,
                      name=name)


def _describe(target: AdmissionView) -> None:
    e = target.entry
    print(f"  admitted   {e.deploy_timestamp} by {e.actor.username} ({e.operation})")
    print(f"  commit     {e.provenance.commit_sha or '-'}  branch {e.provenance.branch or '-'}")
    print(f"  build      {e.provenance.build_id or '-'}")
    print(f"  template   {e.template_hash}")
    for c in e.containers:
        print(f"  {c.kind:<10} {c.name}: {c.repository or c.image}@{c.digest or '(not pinned)'}")


async def _rollback(args: argparse.Namespace, api: KubeApi) -> int:
    if (found := _target(args)) is None:
        return EXIT_USAGE
    kind, name = found
    if kind.revisions is None:
        print(f"error: a {kind.kind} keeps no revisions to roll back to; re-apply an earlier "
              f"manifest instead (see `ledger history {args.target}`)", file=sys.stderr)
        return EXIT_USAGE
    try:
        body = await api.request("GET", kind.path(args.deploy_namespace, name))
    except KubeApiError as exc:
        if exc.status == 404:
            print(f"error: {args.target} not found in {args.deploy_namespace}", file=sys.stderr)
            return EXIT_NOT_FOUND
        raise
    current = template_hash(kind, body)
    uid = str((body.get("metadata") or {}).get("uid") or "")
    views = await _verified_admissions(args, api, kind, name,
                                       refusal="nothing is rolled back on its word")
    if isinstance(views, int):
        return views
    if args.to_seq is not None:
        target = next((v for v in views if args.to_seq in (v.ref, str(v.seq))), None)
        if target is None or rollback_source(
                [target], kind=kind.kind, namespace=args.deploy_namespace, name=name, uid=uid,
                template_hash=target.entry.template_hash) is None:
            print(f"error: ledger entry {args.to_seq} is not an admitted, persisted, "
                  f"not-failed record of this {kind.kind}", file=sys.stderr)
            return EXIT_NOT_FOUND
    else:
        target = rollback_target(views, current, uid)
        if target is None:
            print(f"no earlier persisted record with a different template for {args.target}",
                  file=sys.stderr)
            return EXIT_NOT_FOUND
    if target.entry.template_hash == current:
        print(f"{args.target} already runs the template of ledger entry {target.ref}")
        return EXIT_OK
    print(f"rolling {args.target} in {args.deploy_namespace} back to ledger entry {target.ref}:")
    _describe(target)
    kept = await revisions(api, kind, args.deploy_namespace, body)
    revision = next((r for r in kept if r.template_hash == target.entry.template_hash), None)
    if revision is None:
        limit = (body.get("spec") or {}).get("revisionHistoryLimit", 10)
        print(f"error: no revision of {args.target} holds that template any more: it was "
              f"garbage-collected (revisionHistoryLimit {limit}; {len(kept)} kept). Re-apply "
              f"the manifests of commit {target.entry.provenance.commit_sha or '-'} with the "
              "images above, stamped as yourself.", file=sys.stderr)
        return EXIT_NOT_FOUND
    number = f" (revision {revision.number})" if revision.number is not None else ""
    if args.dry_run:
        print(f"dry run: would restore {revision.source}{number}; nothing was changed")
        return EXIT_OK
    try:
        await api.request("PATCH", kind.path(args.deploy_namespace, name),
                          body=restore_patch(kind, revision),
                          content_type="application/json-patch+json")
    except KubeApiError as exc:
        if exc.status in (400, 403) and "denied the request" in exc.message:
            print(f"error: the gate refused the rollback:\n{exc.message}", file=sys.stderr)
            return EXIT_ERROR
        raise
    print(f"restored {revision.source}{number}; the ledger records it as a rollback by you")
    return EXIT_OK


def export_lines(records: list[StoredRecord]) -> list[str]:
    """One canonical JSON line per record, with its leaf and head, for audit systems."""
    return [canonical_json({"chain": r.chain, "head": r.head, "leaf": r.leaf,
                            "segment": r.segment,
                            "record": r.record.model_dump(mode="json")}).decode()
            for r in records]


async def _export(args: argparse.Namespace, api: KubeApi) -> int:
    report = await _load(args, api)
    lines = export_lines(report.records)
    if args.file:
        args.file.write_text("".join(line + "\n" for line in lines))
    else:
        for line in lines:
            print(line)
    if not args.quiet:
        print(f"exported {len(lines)} records", file=sys.stderr)
    _warn_unverified(report)
    return EXIT_OK if report.ok else TAMPER_EXIT_CODES[report.problems[0].kind]


async def _prune(args: argparse.Namespace, api: KubeApi) -> int:
    if not args.export_file and not args.no_export:
        print("error: give --export-file FILE (or --no-export to drop the records)",
              file=sys.stderr)
        return EXIT_USAGE
    config = LedgerConfig(namespace=args.ledger_namespace, chain=args.chain)

    def export(records: list[StoredRecord]) -> None:
        if args.export_file:
            with args.export_file.open("a") as out:
                out.writelines(line + "\n" for line in export_lines(records))

    config = config.model_copy(update={"checkpoint_key_namespace": args.key_namespace})
    lanes = await load_ledger(api, args.ledger_namespace, args.chain,
                              key_namespace=args.key_namespace)
    for lane in lanes:
        result = await prune(api, config, keep_segments=args.keep, chain=lane,
                             export=export if args.export_file else None)
        label = f"{lane}: " if len(lanes) > 1 else ""
        if result.cut is None:
            print(f"{label}nothing to prune")
        else:
            print(f"{label}pruned segments {list(result.deleted)} ({result.exported_records} "
                  f"records exported); the chain now starts at segment {result.cut}")
    return EXIT_OK


async def _recover(args: argparse.Namespace, api: KubeApi) -> int:
    if not args.reason.strip():
        print("error: --reason must say why", file=sys.stderr)
        return EXIT_USAGE
    config = LedgerConfig(namespace=args.ledger_namespace, chain=args.chain,
                          checkpoint_key_namespace=args.key_namespace,
                          checkpoint_key_secret=args.key_secret)
    lanes = await load_ledger(api, args.ledger_namespace, args.chain,
                              key_namespace=args.key_namespace)
    recorded = 0
    for lane in lanes:
        result = await recover(api, config, reason=args.reason.strip(), chain=lane,
                               dry_run=args.dry_run)
        label = f"{lane}: " if len(lanes) > 1 else ""
        for problem in result.problems:
            print(f"{label}found: {problem}", file=sys.stderr)
        if result.entry is None:
            continue
        recorded += 1
        e = result.entry
        lost = (f"entries {e.found_size}..{e.expected_size - 1} are lost"
                if e.expected_size is not None and e.expected_size > e.found_size else
                "no entries are lost")
        verb = "would record" if args.dry_run else "recorded"
        print(f"{label}{verb}: recovery by {e.operator} at size {e.found_size} ({lost}); "
              f"reason: {e.reason}")
    if not recorded:
        print("the ledger verifies and reaches its signed heads: nothing to recover")
    return EXIT_OK
