"""Ledger append benchmark through a real kube-apiserver (and etcd) on loopback.

    .venv/bin/python bench/bench_ledger.py [--seconds 10] [--concurrency 1 16 64]
                                           [--rate 500] [--replicas 1] [--segment-kib 256]
                                           [--no-fsync] [--kubeconfig FILE] [--ha]

For each concurrency level, that many simulated admissions append in a closed loop to a fresh
chain (its own namespace, seal checkpoints signed): each appender starts its next admission when
the previous one returns, the harshest reading of "N concurrent". `--rate R` adds open-loop runs:
Poisson arrivals at R admissions/s, which is how a webhook sees load (the peak number in flight
is printed). Printed: appends/s, p50/p99 of the latency `Ledger.append` adds to an admission,
API writes, entries per write (group commit), conflicts, segments, and the ledger's size per
10,000 entries. `--replicas N` spreads the appenders over N writers (controller replicas), each
on its own writer lane. `--ha` runs the replicas goal instead: 200 admissions/s over 1 replica,
3 replicas on lanes, and 3 replicas sharing one chain. Without --kubeconfig a LocalControlPlane
is started (etcd with fsync unless --no-fsync).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from controller.config import Config
from controller.dev.controlplane import LocalControlPlane
from controller.kube import KubeApi, KubeApiError
from controller.ledger.config import LedgerConfig
from controller.ledger.entries import build_admission_entry
from controller.ledger.keys import load_signer
from controller.ledger.lanes import lane_chain
from controller.ledger.models import AdmissionEntry
from controller.ledger.store import Ledger
from controller.ledger.verify import load_ledger
from controller.review import parse_review

DIGEST = "sha256:" + "ab" * 32


def entry(uid: str) -> AdmissionEntry:
    """A realistic entry: provenance annotations, two containers pinned by digest."""
    annotations = {
        "provenance.dev/git-sha": "0123456789abcdef0123456789abcdef01234567",
        "provenance.dev/branch": "main",
        "provenance.dev/build-id": "build-1234",
        "provenance.dev/build-timestamp": "2026-11-25T10:00:00Z",
        "provenance.dev/pipeline-url": "https://ci.example.com/team/app/pipelines/1234",
        "provenance.dev/deployed-by": "system:serviceaccount:ci:deployer",
        "provenance.dev/environment": "production",
    }
    obj = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "prod", "annotations": annotations},
        "spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": f"registry.example.com/team/app@{DIGEST}"},
            {"name": "proxy", "image": f"registry.example.com/team/proxy@{DIGEST}"},
        ]}}},
    }
    review = {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid, "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "namespace": "prod", "name": "app", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:ci:deployer",
                         "uid": "5f0c1a2e-0000-0000-0000-000000000000",
                         "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": obj,
        },
    }
    return build_admission_entry(parse_review(review), Config())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_level(kubeconfig: str, concurrency: int, seconds: float,
                    replicas: int, segment_kib: int, rate: float | None = None,
                    shared: bool = False) -> dict[str, float]:
    suffix = uuid.uuid4().hex[:6]
    config = LedgerConfig(namespace=f"bench-{concurrency}-{suffix}",
                          checkpoint_key_namespace=f"bench-keys-{suffix}",
                          segment_max_bytes=segment_kib * 1024,
                          max_entry_bytes=min(64, segment_kib // 2) * 1024)
    apis = [KubeApi.from_kubeconfig(kubeconfig) for _ in range(replicas)]
    try:
        await apis[0].request("POST", "/api/v1/namespaces", body={
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": config.checkpoint_key_namespace}})
    except KubeApiError as exc:
        if exc.status != 409:
            raise
    signer = await load_signer(apis[0], config, create=True)
    # Each replica its own writer lane, as the controller runs (`shared`: all on one chain,
    # the design lanes replaced, for comparison).
    writers = [Ledger(api, config, signer=signer, periodic_checkpoints=False,
                      chain=config.chain if shared else lane_chain(config.chain, i))
               for i, api in enumerate(apis)]
    for writer in writers:
        await writer.start()
    prebuilt = [entry(str(uuid.uuid4())) for _ in range(256)]
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def appender(index: int) -> None:
        writer = writers[index % replicas]
        n = 0
        while time.monotonic() < stop:
            template = prebuilt[n % len(prebuilt)]
            item = template.model_copy(update={"admission_uid": f"{index}-{n}-{suffix}"})
            started = time.perf_counter()
            await writer.append(item, deadline=time.monotonic() + 10)
            latencies.append(time.perf_counter() - started)
            n += 1

    in_flight = peak = 0

    async def arrival(n: int) -> None:
        # One admission of an open-loop run: arrivals do not wait for earlier ones.
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        item = prebuilt[n % len(prebuilt)].model_copy(
            update={"admission_uid": f"open-{n}-{suffix}"})
        started = time.perf_counter()
        await writers[n % replicas].append(item, deadline=time.monotonic() + 10)
        latencies.append(time.perf_counter() - started)
        in_flight -= 1

    began = time.monotonic()
    if rate is None:
        await asyncio.gather(*(appender(i) for i in range(concurrency)))
    else:
        # Poisson arrivals at `rate` per second, as admissions arrive at a webhook.
        rng = random.Random(1)
        tasks, n, due = [], 0, began
        while due < stop:
            due += rng.expovariate(rate)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(arrival(n)))
            n += 1
        await asyncio.gather(*tasks)
    elapsed = time.monotonic() - began
    for writer in writers:
        await writer.close()
    lanes = await load_ledger(apis[0], config.namespace, config.chain)
    segments = [seg for data in lanes.values() for seg in data.segments]
    stored = sum(s.size for s in segments)
    count = sum(len(s.entries()) for s in segments)
    for api in apis:
        await api.close()
    writes = sum(w.stats.writes for w in writers)
    return {
        "concurrency": concurrency if rate is None else peak, "appends": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
        "writes": writes, "batch": len(latencies) / max(writes, 1),
        "conflicts": sum(w.stats.conflicts for w in writers),
        "segments": len(segments),
        "mib_per_10k": stored / max(count, 1) * 10_000 / 2**20,
    }


async def bench(args: argparse.Namespace, kubeconfig: str) -> None:
    if args.ha:
        await ha(args, kubeconfig)
        return
    print(f"ledger append benchmark: {args.seconds:.0f}s per level, {args.replicas} writer(s), "
          f"{args.segment_kib} KiB segments, etcd fsync {'off' if args.no_fsync else 'on'}",
          flush=True)
    print(HEADER)
    runs: list[tuple[str, int, float | None]] = [
        (f"{level}", level, None) for level in args.concurrency]
    runs += [(f"{rate:.0f}/s", 0, rate) for rate in args.rate]
    for label, level, rate in runs:
        r = await run_level(kubeconfig, level, args.seconds, args.replicas, args.segment_kib,
                            rate)
        if rate is not None:
            label += f" (peak {r['concurrency']:.0f})"
        print(row(label, r), flush=True)


HEADER = (f"{'run':>22} {'appends':>8} {'appends/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'writes':>7} {'batch':>6} {'conflicts':>9} {'segs':>5} {'MiB/10k':>8}")


def row(label: str, r: dict[str, float]) -> str:
    return (f"{label:>22} {r['appends']:>8.0f} {r['per_second']:>10.0f} {r['p50_ms']:>8.1f} "
            f"{r['p99_ms']:>8.1f} {r['writes']:>7.0f} {r['batch']:>6.1f} "
            f"{r['conflicts']:>9.0f} {r['segments']:>5.0f} {r['mib_per_10k']:>8.2f}")


async def ha(args: argparse.Namespace, kubeconfig: str) -> None:
    """The replicas goal: 200 admissions/s spread over 3 replicas, p99 <= 50 ms, against a
    single-replica baseline and the shared-chain design, one run."""
    rate = args.ha_rate
    print(f"ledger HA benchmark: {rate:.0f} admissions/s (Poisson) for {args.seconds:.0f}s per "
          f"row, real kube-apiserver, etcd fsync {'off' if args.no_fsync else 'on'}", flush=True)
    print(HEADER)
    results = {}
    for label, replicas, shared in (("1 replica", 1, False), ("3 replicas, lanes", 3, False),
                                    ("3 replicas, one chain", 3, True)):
        r = await run_level(kubeconfig, 0, args.seconds, replicas, args.segment_kib, rate,
                            shared=shared)
        results[label] = r
        print(row(label, r), flush=True)
    lanes = results["3 replicas, lanes"]
    print(f"goal: p99 <= 50 ms at {rate:.0f}/s over 3 replicas: {lanes['p99_ms']:.1f} ms "
          f"({'met' if lanes['p99_ms'] <= 50 else 'missed'}); single replica "
          f"{results['1 replica']['p99_ms']:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--segment-kib", type=int, default=128)
    parser.add_argument("--rate", type=float, nargs="*", default=[500.0],
                        help="also run open-loop at these arrival rates per second")
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--ha", action="store_true",
                        help="the replicas goal: 1 replica, 3 on lanes, 3 on one chain")
    parser.add_argument("--ha-rate", type=float, default=200.0)
    parser.add_argument("--kubeconfig", help="use this cluster instead of starting one")
    args = parser.parse_args()
    if args.kubeconfig:
        asyncio.run(bench(args, args.kubeconfig))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp, \
            LocalControlPlane(Path(tmp), etcd_fsync=not args.no_fsync) as cp:
        asyncio.run(bench(args, str(cp.kubeconfig)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
