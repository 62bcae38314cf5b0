"""What the ledger adds to a real create, and to etcd: ledger on, ledger off, no webhook, one run.

    .venv/bin/python bench/bench_ledger_cost.py [--creates 300]

Starts a LocalControlPlane (etcd with fsync, as in production) and makes sequential real
creates of a 3-image Deployment (digest-pinned, provenance-annotated) through kube-apiserver:
first with no webhook at all, then through the controller with the ledger off, then with it on.
Each row uses its own namespace; the webhook configuration selects only that namespace.
Printed per row: the create's p50/p99 as the client sees it, and etcd's own
`etcd_disk_wal_write_bytes_total` growth per create. The last lines compare the ledger's added
WAL bytes per admission with the entry's own size (goal: at most 4x) and its added latency with
the goals (p50 +4 ms, p99 +12 ms). Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.dev.controller import DevController
from controller.dev.controlplane import LocalControlPlane
from controller.kube import KubeApi, KubeApiError
from controller.ledger.config import LedgerConfig
from controller.ledger.models import AdmissionEntry
from controller.ledger.verify import load_chain, verify_segments
from tests.builders import deployment

IMAGES = [f"registry.example.com/shop/svc{i}@sha256:{c * 64}" for i, c in enumerate("abc")]


def wal_bytes(cp: LocalControlPlane) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{cp.etcd_port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("etcd_disk_wal_write_bytes_total"):
                return float(line.split()[-1])
    raise RuntimeError("etcd exposes no etcd_disk_wal_write_bytes_total")


async def creates(cp: LocalControlPlane, namespace: str, count: int) -> dict[str, float]:
    api = KubeApi.from_kubeconfig(str(cp.kubeconfig))
    try:
        try:
            await api.request("POST", "/api/v1/namespaces", body={
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        except KubeApiError as exc:
            if exc.status != 409:
                raise
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        for i in range(10):  # warm the connection and the webhook's caches
            await api.request("POST", path, body=deployment(f"warm-{i}", namespace,
                                                            containers=IMAGES))
        await asyncio.sleep(1)
        before = wal_bytes(cp)
        latencies, errors = [], 0
        for i in range(count):
            body = deployment(f"app-{i}", namespace, containers=IMAGES)
            started = time.perf_counter()
            try:
                await api.request("POST", path, body=body)
            except KubeApiError as exc:
                errors += 1
                if errors == 1:
                    print(f"  first error: {exc}", file=sys.stderr)
            latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(2)  # let the ledger's signed head and the reconciler settle
        after = wal_bytes(cp)
    finally:
        await api.close()
    latencies.sort()
    return {"p50": statistics.median(latencies),
            "p99": latencies[int(len(latencies) * 0.99) - 1],
            "wal": (after - before) / count, "errors": errors}


async def entry_size(cp: LocalControlPlane, config: LedgerConfig) -> float:
    api = KubeApi.from_kubeconfig(str(cp.kubeconfig))
    try:
        data = await load_chain(api, config.namespace, config.chain,
                                key_namespace=config.checkpoint_key_namespace)
    finally:
        await api.close()
    report = verify_segments(data, chain=config.chain)
    if not report.ok:
        raise RuntimeError(f"the ledger does not verify: {report.problems[0]}")
    admitted = {r.seq for r in report.records if isinstance(r.record.entry, AdmissionEntry)}
    return statistics.mean(len(raw.encode()) for seg in data.segments
                           for seq, _key, raw in seg.entries() if seq in admitted)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--creates", type=int, default=300)
    args = parser.parse_args()
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cp = LocalControlPlane(work / "cp")
        cp.start()
        try:
            rows["no webhook"] = asyncio.run(creates(cp, "bench-none", args.creates))
            for label, ledger in (("ledger off", False), ("ledger on", True)):
                ns = f"bench-{uuid.uuid4().hex[:6]}"
                config = work / f"{ns}.json"
                config.write_text(json.dumps({"ledger": {"enabled": ledger}}))
                ctl = DevController(cp, work / ns, config_file=config, name=ns,
                                    only_namespaces=[ns], require_client_cert=True,
                                    extra_args=["--log-level", "WARNING"])
                ctl.start()
                try:
                    rows[label] = asyncio.run(creates(cp, ns, args.creates))
                finally:
                    ctl.stop()
            size = asyncio.run(entry_size(cp, LedgerConfig()))
        finally:
            cp.stop()
    print(f"\nledger cost: {args.creates} sequential real creates per row, 3-image Deployment, "
          "etcd with fsync")
    print(f"{'row':<12} {'p50 ms':>8} {'p99 ms':>8} {'etcd WAL B/create':>18} {'errors':>7}")
    for label, r in rows.items():
        print(f"{label:<12} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['wal']:>18.0f} "
              f"{r['errors']:>7.0f}")
    on, off = rows["ledger on"], rows["ledger off"]
    added = on["wal"] - off["wal"]
    print(f"admission entry: {size:.0f} B; the ledger adds {added:.0f} B of etcd WAL per "
          f"admission = {added / size:.1f}x the entry (goal <= 4x)")
    print(f"ledger on vs off: p50 +{on['p50'] - off['p50']:.2f} ms (goal <= 4), "
          f"p99 +{on['p99'] - off['p99']:.2f} ms (goal <= 12)")


if __name__ == "__main__":
    main()
