"""The `stamp` subcommand, and `add_subcommands`, which registers `stamp` and `check`.

Order of work: collect the provenance (refusing a short SHA or a dirty tree), read and parse every
manifest (refusing invalid YAML, naming file and document), pin digests if asked, stamp, then write
everything, so that a refusal never leaves half the files rewritten.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shlex
import sys
from pathlib import Path

from controller.check import add_check_parser
from controller.config import Config, load_config
from controller.errors import ConfigError
from controller.registry import RegistrySettings
from controller.stamp.ci import FIELDS, BuildInfo, collect
from controller.stamp.errors import StampError
from controller.stamp.manifests import (
    STDIN,
    add_manifest_arguments,
    iter_documents,
    join_streams,
    manifest_paths,
    read_manifests,
    write_in_place,
)
from controller.stamp.pin import docker_credentials, pin_slots
from controller.stamp.stamping import image_slots, stamp_document, workloads
from controller.workloads import kind_named

_Sub = argparse._SubParsersAction  # the type argparse gives no public name


def add_subcommands(subparsers: _Sub[argparse.ArgumentParser]) -> None:
    """Register `stamp` and `check` on the `kubectl-provenance` parser."""
    add_stamp_parser(subparsers)
    add_check_parser(subparsers)


def add_stamp_parser(subparsers: _Sub[argparse.ArgumentParser]) -> None:
    """Register `stamp`."""
    p = subparsers.add_parser(
        "stamp", help="write provenance annotations into workload manifests",
        description="Write the provenance annotations (from the CI environment, git, or flags) "
        "onto every workload the gate judges (Deployment, ReplicaSet, StatefulSet, DaemonSet, "
        "Job, CronJob, ReplicationController, Pod) and onto its pod template. Other kinds pass "
        "through unchanged.")
    add_manifest_arguments(p)
    p.add_argument("-i", "--in-place", action="store_true",
                   help="rewrite the files instead of printing to stdout")
    p.add_argument("--config", help="the controller's configuration file, for the annotation "
                   "prefix and the required annotations (default: $PROVENANCE_CONFIG)")
    values = p.add_argument_group("values (override what is detected)")
    for name in FIELDS:
        flag = name.replace("_", "-")
        values.add_argument(f"--{flag}", dest=name, metavar=flag.upper().replace("-", "_"))
    p.add_argument("--allow-dirty", action="store_true",
                   help="stamp even though the working tree has uncommitted changes")
    p.add_argument("--pin-digests", action="store_true",
                   help="resolve every image tag to its digest through the registry")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST:PORT",
                   help="reach this registry over plain HTTP (local test registries only)")
    p.add_argument("--docker-config", type=Path, default=None,
                   help="docker config.json with registry credentials (default: "
                   "$DOCKER_CONFIG/config.json, else ~/.docker/config.json)")
    p.add_argument("--print-env", action="store_true",
                   help="print the values as `export PROVENANCE_...=...` lines instead of "
                   "manifests (for eval, or a file an image sources at start)")
    p.set_defaults(func=run_stamp)


def _passed_through(data: object) -> str | None:
    # A document that names a gated kind under another API group (a CRD's own `Deployment`) is
    # not stamped, as the gate does not judge it; say so, so nobody believes it was.
    if not isinstance(data, dict) or kind_named(str(data.get("kind"))) is None:
        return None
    meta = data.get("metadata")
    name = meta.get("name", "") if isinstance(meta, dict) else ""
    return (f"{data.get('apiVersion', '')} {data['kind']} {name} passed through unchanged "
            "(not a workload API group the gate judges)")


def _build_info(args: argparse.Namespace, config: Config) -> BuildInfo:
    overrides = {name: getattr(args, name) for name in FIELDS}
    return collect(env=os.environ, cwd=Path.cwd(), now=dt.datetime.now(dt.UTC),
                   overrides=overrides, allow_dirty=args.allow_dirty,
                   required=("git-sha", *config.annotations.required),
                   annotations=config.annotations,
                   stamped=[Path(p) for p in manifest_paths(args) if p != STDIN]
                   if args.in_place else ())


def run_stamp(args: argparse.Namespace) -> int:
    """The `stamp` handler: 0 on success, 2 on any refusal (nothing is written then)."""
    try:
        config = load_config(args.config)
        info = _build_info(args, config)
        if args.print_env:
            # `export` so that `eval "$(kubectl-provenance stamp --print-env)"` reaches child
            # processes (later stamp runs, the predicate script), not only the shell itself.
            sys.stdout.write("".join(f"export {k}={shlex.quote(v)}\n"
                                     for k, v in info.env().items()))
            return 0
        paths = manifest_paths(args)
        if args.in_place and (not paths or STDIN in paths):
            raise StampError("--in-place needs files or directories, not stdin")
        manifests = read_manifests(paths, recursive=args.recursive)
        notes: list[str] = []
        for document in iter_documents(manifests):
            # Every document is checked to be YAML (libyaml, fast); only those holding a
            # workload get the slower round-trip parse that editing needs.
            plain = document.load_plain()
            if workloads(plain):
                document.parse()
            elif (note := _passed_through(plain)) is not None:
                notes.append(f"{document.source}: document {document.index} "
                             f"(line {document.line}): {note}")
        if args.pin_digests:
            slots = [s for d in iter_documents(manifests) for s in image_slots(d)]
            settings = RegistrySettings(insecure_registries=tuple(args.insecure_registry))
            asyncio.run(pin_slots(slots, settings=settings,
                                  credentials=docker_credentials(args.docker_config)))
        # The timestamp of a build already stamped is kept unless one is given explicitly.
        keep = args.build_timestamp is None
        stamped = 0
        for document in iter_documents(manifests):
            result = stamp_document(document, info.annotations(),
                                    annotations=config.annotations, keep_timestamp=keep)
            stamped += result.workloads
    except (StampError, ConfigError) as exc:
        print(f"kubectl-provenance stamp: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"kubectl-provenance stamp: note: {note}", file=sys.stderr)
    if stamped == 0:
        print("kubectl-provenance stamp: warning: no workload (Deployment, StatefulSet, "
              "DaemonSet, ReplicaSet, Job, CronJob, ReplicationController or Pod) found in "
              "the input",
              file=sys.stderr)
    if args.in_place:
        for manifest in manifests:
            if manifest.changed:
                write_in_place(manifest.path, manifest.render())
    else:
        sys.stdout.write(join_streams([m.render() for m in manifests]))
    return 0
