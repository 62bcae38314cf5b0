"""Memory soak: the controller's RSS every 1,000 admissions, however long the ledger grows.

    .venv/bin/python bench/bench_memory_soak.py [--updates 3000] [--creates 3000] [--idle 40]

Starts a LocalControlPlane and the controller (ledger on, its reconciler and unadmitted
detector watching), then makes real API writes through the webhook: `--updates` UPDATEs of one
Deployment (each a new template, so each a new admission and ledger entry), then `--creates`
new Deployments. Prints the controller's RSS (from /proc) before, every 1,000 admissions, and
after `--idle` seconds idle, with the ledger's size. The same-run baseline is the first row:
the process before any admission. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.dev.controller import DevController
from controller.dev.controlplane import LocalControlPlane
from controller.kube import KubeApi, KubeApiError
from controller.ledger.config import LedgerConfig
from controller.ledger.verify import load_ledger
from tests.builders import deployment

IMAGES = [f"registry.example.com/shop/svc{i}@sha256:{c * 64}" for i, c in enumerate("abc")]
NAMESPACE = "soak"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def ledger_entries(api: KubeApi) -> int:
    config = LedgerConfig()
    lanes = await load_ledger(api, config.namespace, config.chain)
    return sum(len(seg.entries()) for data in lanes.values() for seg in data.segments)


async def soak(cp: LocalControlPlane, pid: int, updates: int, creates: int,
               idle: float) -> None:
    api = KubeApi.from_kubeconfig(str(cp.kubeconfig))
    rows: list[tuple[str, float, int]] = []
    try:
        try:
            await api.request("POST", "/api/v1/namespaces", body={
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        except KubeApiError as exc:
            if exc.status != 409:
                raise
        await asyncio.sleep(2)
        rows.append(("before any admission", rss_mib(pid), await ledger_entries(api)))
        print(f"{'after':<28} {'RSS MiB':>8} {'ledger entries':>15}", flush=True)
        print(f"{rows[-1][0]:<28} {rows[-1][1]:>8.1f} {rows[-1][2]:>15}", flush=True)
        path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
        body = deployment("one", NAMESPACE, containers=IMAGES)
        await api.request("POST", path, body=body)
        done, errors = 1, 0
        for i in range(updates + creates):
            try:
                if i < updates:
                    patch = {"spec": {"template": {"metadata": {"annotations": {
                        "soak/revision": str(i)}}}}}
                    await api.request("PATCH", f"{path}/one", body=patch,
                                      content_type="application/merge-patch+json")
                else:
                    await api.request("POST", path, body=deployment(
                        f"app-{i}", NAMESPACE, containers=IMAGES))
            except KubeApiError as exc:
                errors += 1
                if errors == 1:
                    print(f"first error: {exc}", file=sys.stderr)
            done += 1
            if done % 1000 == 0:
                label = f"{done} admissions"
                rows.append((label, rss_mib(pid), await ledger_entries(api)))
                print(f"{label:<28} {rows[-1][1]:>8.1f} {rows[-1][2]:>15}", flush=True)
        started = time.monotonic()
        await asyncio.sleep(idle)
        label = f"{done}, then {time.monotonic() - started:.0f}s idle"
        rows.append((label, rss_mib(pid), await ledger_entries(api)))
        print(f"{label:<28} {rows[-1][1]:>8.1f} {rows[-1][2]:>15}", flush=True)
    finally:
        await api.close()
    grown = rows[-1][1] - rows[0][1]
    print(f"RSS grew {grown:.1f} MiB over {done} admissions "
          f"({grown * 1024 / max(done, 1):.2f} KiB per admission); errors: {errors}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--creates", type=int, default=3000)
    parser.add_argument("--idle", type=float, default=40.0)
    parser.add_argument("--scan-interval", type=float, default=None,
                        help="the controller's --scan-interval (default: its own; 0 turns off "
                        "the periodic scan, which reads the whole ledger)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cp = LocalControlPlane(work / "cp", etcd_fsync=False)
        cp.start()
        try:
            config = work / "soak.json"
            config.write_text(json.dumps({}))
            ctl = DevController(cp, work / "ctl", config_file=config, name="soak",
                                only_namespaces=[NAMESPACE], require_client_cert=True,
                                extra_args=["--log-level", "WARNING", *(
                                    ["--scan-interval", str(args.scan_interval)]
                                    if args.scan_interval is not None else [])])
            ctl.start()
            try:
                assert ctl._proc is not None
                print(f"memory soak: controller pid {ctl._proc.pid}, {args.updates} UPDATEs of "
                      f"one Deployment, then {args.creates} new Deployments", flush=True)
                asyncio.run(soak(cp, ctl._proc.pid, args.updates, args.creates, args.idle))
            finally:
                ctl.stop()
        finally:
            cp.stop()


if __name__ == "__main__":
    main()
