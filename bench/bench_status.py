"""`kubectl-provenance status -A` on a big cluster: 5,000 workloads and 20,000 ledger entries.

The local control plane (etcd, kube-apiserver; no controller-manager, so no derived objects and
nothing else competing for the 2 cores) gets N workloads of four authored kinds (Deployments,
StatefulSets, DaemonSets, CronJobs) over 50 namespaces, created with no webhook registered,
and a ledger of M admission entries written through `controller.ledger.Ledger.append` in
batches: one entry for the current template of 90% of the workloads (the other 10% are
unrecorded, as if made while the gate was off), the rest history (earlier templates of the same
workloads). Then, timed:

- `status -A -o json --quiet` end to end, as a user runs it (a fresh Python process: imports,
  credentials, the list calls and the ledger read, verification, matching, output);
- the same scan in process (`controller.status.scan`), and its parts: the list calls alone
  (the baseline: what any tool listing these workloads pays), the ledger read alone, and
  verification + matching.

Not a test: it prints figures. The goal is ≤ 5 s for `status -A`.

    .venv/bin/python bench/bench_status.py [--workloads 5000] [--entries 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.config import Config
from controller.dev.controlplane import LocalControlPlane
from controller.kube import KubeApi, KubeApiError
from controller.ledger.entries import build_admission_entry
from controller.ledger.keys import load_signer
from controller.ledger.models import AdmissionEntry
from controller.ledger.store import Ledger
from controller.ledger.verify import load_chain, verify_segments
from controller.review import parse_review
from controller.status import LedgerIndex, build_rows, list_workloads, scan
from controller.workloads import KINDS, kind_named
from tests.builders import prov_annotations, review, workload

NAMESPACES = 50
MIX = (("Deployment", 0.8), ("StatefulSet", 0.1), ("DaemonSet", 0.06), ("CronJob", 0.04))


def _digest(i: int, version: int) -> str:
    return "sha256:" + f"{i:08x}{version:04x}".ljust(64, "a")


def _manifest(kind: str, i: int, version: int) -> dict[str, Any]:
    images = [f"registry.example.com/team{i % 40}/svc{i}@{_digest(i, version)}",
              f"registry.example.com/shared/proxy@{_digest(0, version)}"]
    return workload(kind, f"w{i:05d}", f"bench-{i % NAMESPACES:02d}", containers=images,
                    ann=prov_annotations(git_sha=f"{i:08x}{version:032x}",
                                         build_id=f"build-{i}-{version}"))


def _plan(count: int) -> list[tuple[str, int]]:
    plan: list[tuple[str, int]] = []
    for kind, share in MIX:
        plan += [(kind, 0)] * int(count * share)
    plan += [("Deployment", 0)] * (count - len(plan))
    return [(kind, i) for i, (kind, _v) in enumerate(plan)]


async def _create_workloads(api: KubeApi, plan: list[tuple[str, int]]
                            ) -> dict[int, dict[str, Any]]:
    """Create the workloads; return them as stored (defaulted by the API server, as the
    webhook would have seen them)."""
    for n in range(NAMESPACES):
        try:
            await api.request("POST", "/api/v1/namespaces", body={
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench-{n:02d}"}})
        except KubeApiError as exc:
            if exc.status != 409:
                raise
    gate = asyncio.Semaphore(32)
    stored: dict[int, dict[str, Any]] = {}

    async def create(kind: str, i: int) -> None:
        row = kind_named(kind)
        assert row is not None
        obj = _manifest(kind, i, version=3)  # the current template is the fourth one
        async with gate:
            stored[i] = await api.request("POST", row.path(obj["metadata"]["namespace"]),
                                          body=obj)

    await asyncio.gather(*(create(kind, i) for kind, i in plan))
    return stored


def _entry(obj: dict[str, Any]) -> AdmissionEntry:
    request = parse_review(review(obj, username="system:serviceaccount:ci:deployer"))
    return build_admission_entry(request, Config())


async def _write_ledger(api: KubeApi, plan: list[tuple[str, int]],
                        stored: dict[int, dict[str, Any]], entries: int) -> int:
    config = Config().ledger
    try:
        await api.request("POST", "/api/v1/namespaces", body={
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": config.checkpoint_key_namespace}})
    except KubeApiError as exc:
        if exc.status != 409:
            raise
    signer = await load_signer(api, config, create=True)
    ledger = Ledger(api, config, signer=signer, periodic_checkpoints=False)
    await ledger.start()
    recorded = [p for p in plan if p[1] % 10 != 9]  # every tenth workload stays unrecorded
    # History first (earlier templates of the same workloads, oldest first), then the current
    # templates, as a ledger grows.
    history: list[tuple[str, int, int]] = []
    version = 0
    while len(history) < entries - len(recorded):
        history += [(k, i, version) for k, i in plan[: entries - len(recorded) - len(history)]]
        version = (version + 1) % 3
    todo = history + [(k, i, 3) for k, i in recorded]
    batch = 512
    for start in range(0, len(todo), batch):
        chunk = [_entry(stored[i] if v == 3 else _manifest(k, i, v)).model_copy(
                     update={"admission_uid": str(uuid.uuid4())})
                 for k, i, v in todo[start:start + batch]]
        await asyncio.gather(*(ledger.append(e, deadline=time.monotonic() + 60) for e in chunk))
    await ledger.close()
    return len(todo)


def _time_cli(kubeconfig: Path, output: str) -> tuple[float, float, str]:
    """Wall time and CPU time (user + system) of one `status -A` process, and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "controller.cli", "status", "-A", "-o", output, "--quiet",
         "--kubeconfig", str(kubeconfig)], capture_output=True, text=True, check=False,
        timeout=300)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise SystemExit(f"status failed ({result.returncode}): {result.stderr[-2000:]}")
    return elapsed, cpu, result.stdout


async def _time_parts(kubeconfig: Path) -> dict[str, float]:
    config = Config()
    api = KubeApi.from_kubeconfig(str(kubeconfig), timeout=60)
    try:
        t0 = time.perf_counter()
        lists = await asyncio.gather(*(list_workloads(api, k, None, prefix="provenance.dev/")
                                       for k in KINDS))
        t1 = time.perf_counter()
        data = await load_chain(api, config.ledger.namespace, config.ledger.chain,
                                key_namespace=config.ledger.checkpoint_key_namespace)
        t2 = time.perf_counter()
        report = verify_segments(data, chain=config.ledger.chain)
        t3 = time.perf_counter()
        rows = build_rows([w for b in lists for w in b], LedgerIndex.from_report(report),
                          exempt=config.exempt_namespaces)
        t4 = time.perf_counter()
        await scan(api, config, namespace=None)
        t5 = time.perf_counter()
    finally:
        await api.close()
    assert report.ok and rows
    return {"lists": t1 - t0, "ledger read": t2 - t1, "verify": t3 - t2, "match": t4 - t3,
            "scan in process": t5 - t4, "segments": float(len(data.segments))}


async def _sequential(api: KubeApi, config: Config) -> None:
    """The scan without the thread: both reads concurrently, then verification and matching on
    the event loop (what `scan` did first), for comparison in the same run."""
    chain = config.ledger.chain
    data, *lists = await asyncio.gather(
        load_chain(api, config.ledger.namespace, chain,
                   key_namespace=config.ledger.checkpoint_key_namespace),
        *(list_workloads(api, k, None, prefix=config.annotations.prefix) for k in KINDS))
    report = verify_segments(data, chain=chain)  # type: ignore[arg-type]
    build_rows([w for b in lists for w in b], LedgerIndex.from_report(report),  # type: ignore[attr-defined]
               exempt=config.exempt_namespaces)


async def _compare(kubeconfig: Path, rounds: int) -> tuple[list[float], list[float]]:
    """In-process scan times, alternating: verification in a thread overlapping the list calls
    (`scan`), and sequential (`_sequential`)."""
    config = Config()
    api = KubeApi.from_kubeconfig(str(kubeconfig), timeout=60)
    threaded: list[float] = []
    sequential: list[float] = []
    try:
        for _ in range(rounds):
            t0 = time.perf_counter()
            await scan(api, config, namespace=None)
            t1 = time.perf_counter()
            await _sequential(api, config)
            threaded.append(t1 - t0)
            sequential.append(time.perf_counter() - t1)
    finally:
        await api.close()
    return threaded, sequential


async def _prepare(kubeconfig: Path, workloads: int, entries: int) -> int:
    plan = _plan(workloads)
    api = KubeApi.from_kubeconfig(str(kubeconfig), timeout=60)
    try:
        t0 = time.perf_counter()
        stored = await _create_workloads(api, plan)
        t1 = time.perf_counter()
        print(f"created {workloads} workloads in {t1 - t0:.1f}s", flush=True)
        written = await _write_ledger(api, plan, stored, entries)
        print(f"wrote {written} ledger entries in {time.perf_counter() - t1:.1f}s", flush=True)
    finally:
        await api.close()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=5000)
    parser.add_argument("--entries", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="also print where the in-process scan spends its CPU")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalControlPlane(Path(tmp),
                                                                 etcd_fsync=False) as cp:
        asyncio.run(_prepare(cp.kubeconfig, args.workloads, args.entries))
        json_wall, json_cpu, text = _time_cli(cp.kubeconfig, "json")
        data = json.loads(text)
        print(f"status -A: {len(data['items'])} workloads listed, {data['unrecorded']} "
              f"unrecorded, ledger {data['ledger']['size']} entries (verified: "
              f"{data['ledger']['ok']})")
        cli: list[float] = []
        cpus: list[float] = []
        for _ in range(args.runs):
            elapsed, cpu, _text = _time_cli(cp.kubeconfig, "table")
            cli.append(elapsed)
            cpus.append(cpu)
        print(f"status -A end to end (fresh process, table), {args.runs} runs: "
              f"median {statistics.median(cli):.2f}s, min {min(cli):.2f}s, max {max(cli):.2f}s"
              f"  (goal <= 5 s); its own CPU time median {statistics.median(cpus):.2f}s; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"status -A -o json: {json_wall:.2f}s, CPU {json_cpu:.2f}s")
        parts = asyncio.run(_time_parts(cp.kubeconfig))
        threaded, sequential = asyncio.run(_compare(cp.kubeconfig, args.runs))
        if args.profile:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.enable()
            asyncio.run(_time_parts(cp.kubeconfig))
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        print(f"  baseline, the list calls alone (8 kinds, paged by 500): "
              f"{parts['lists']:.2f}s")
        print(f"  ledger read alone ({parts['segments']:.0f} segments): "
              f"{parts['ledger read']:.2f}s; verify {parts['verify']:.2f}s; "
              f"match {parts['match']:.2f}s")
        print(f"  scan in process (lists and ledger read concurrently, then verify and match):"
              f" {parts['scan in process']:.2f}s")
        print(f"  in process, alternating {args.runs} rounds: verification in a thread during "
              f"the lists median {statistics.median(threaded):.2f}s, after them on the event "
              f"loop median {statistics.median(sequential):.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
