"""Admission throughput and latency: the kopf webhook vs a bare aiohttp handler, same run.

POSTs AdmissionReviews for a compliant 3-container Deployment over keep-alive TLS, at 1 and 16
concurrent clients. The server processes are pinned to CPU 0 and this client to CPU 1 (when the
machine has two), so "one core" means what it says. Not a test: it prints figures.

    .venv/bin/python bench/bench_admission.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.certs import write_webhook_certs
from controller.dev.controller import DevController
from controller.dev.controlplane import LocalControlPlane, free_port
from tests.builders import deployment, review
from tests.fixtures.registry import COSIGN_DATA, start_registry, stop_registry

DIGESTS = ["sha256:" + c * 64 for c in "abc"]
IMAGES = [f"registry.example.com/shop/svc{i}@{d}" for i, d in enumerate(DIGESTS)]


def _pin(pid: int, cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(pid, {cpu})


async def _load(url: str, ca: Path, bodies: list[bytes], concurrency: int) -> dict[str, float]:
    ctx = ssl.create_default_context(cafile=str(ca))
    connector = aiohttp.TCPConnector(ssl=ctx, limit=concurrency)
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = list(reversed(bodies))

        async def worker() -> None:
            nonlocal errors
            while queue:
                body = queue.pop()
                start = time.perf_counter()
                async with session.post(url, data=body,
                                        headers={"Content-Type": "application/json"}) as resp:
                    payload = await resp.read()
                latencies.append(time.perf_counter() - start)
                if resp.status != 200 or b'"allowed":true' not in payload.replace(b" ", b""):
                    errors += 1

        # Warm up the connections and the server's code paths before measuring.
        warm = [queue.pop() for _ in range(min(100, len(queue)))]
        for body in warm:
            async with session.post(url, data=body) as resp:
                await resp.read()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "errors": float(errors),
    }


def _bodies(n: int, images: list[str] = IMAGES) -> list[bytes]:
    obj = deployment("bench", containers=images)
    obj["spec"]["template"]["spec"]["containers"][2]["name"] = "sidecar"
    return [json.dumps(review(obj)).encode() for _ in range(n)]


def _warm_signatures(cp: LocalControlPlane, work: Path,
                     requests: int) -> dict[int, dict[str, float]]:
    """The same webhook verifying three signed images (v1, v2, v3) with a warm verdict cache."""
    (work / "registry").mkdir()
    registry = start_registry(work / "registry")
    try:
        tags = registry.load_layout("demo/app")
        images = [f"{registry.host}/demo/app@{tags[t]}" for t in ("v1", "v2", "v3")]
        config = work / "sigs.yaml"
        config.write_text(json.dumps({"ledger": {"enabled": False}, "signatures": {
            "enabled": True,
            "keys": [{"name": "release", "path": str(COSIGN_DATA / "cosign.pub")}],
            "registry": {"insecure_registries": [registry.host]},
        }}))
        ctl = DevController(cp, work / "ctl-sigs", config_file=config, name="bench-sigs",
                            extra_args=["--log-level", "WARNING"])
        try:
            ctl.start()
            assert ctl._proc is not None
            _pin(ctl._proc.pid, 0)
            ca = ctl.workdir / f"{ctl.name}-certs" / "ca.crt"
            bodies = _bodies(requests + 100, images)
            return {c: asyncio.run(_load(ctl.url, ca, bodies, c)) for c in (1, 16)}
        finally:
            ctl.stop()
    finally:
        stop_registry(registry)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--no-signatures", action="store_true",
                        help="skip the warm-signature scenario (needs docker-registry)")
    args = parser.parse_args()
    _pin(0, 1)
    bodies = _bodies(args.requests + 100)
    results: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cp = LocalControlPlane(work / "cp", etcd_fsync=False)
        cp.start()
        # The checks alone: the ledger (bench_ledger.py measures it) is off here.
        checks_only = work / "checks.yaml"
        checks_only.write_text(json.dumps({"ledger": {"enabled": False}}))
        ctl = DevController(cp, work / "ctl", config_file=checks_only,
                            extra_args=["--log-level", "WARNING"])
        bare: subprocess.Popen[bytes] | None = None
        try:
            ctl.start()
            assert ctl._proc is not None
            _pin(ctl._proc.pid, 0)
            ca = ctl.workdir / f"{ctl.name}-certs" / "ca.crt"
            results["kopf webhook"] = {
                c: asyncio.run(_load(ctl.url, ca, bodies, c)) for c in (1, 16)}

            bare_ca, cert, key = write_webhook_certs(work / "bare", hosts=["127.0.0.1"])
            port = free_port()
            bare = subprocess.Popen([sys.executable, str(Path(__file__).with_name(
                "bare_server.py")), str(port), str(cert), str(key)])
            _pin(bare.pid, 0)
            time.sleep(2)
            url = f"https://127.0.0.1:{port}/validate"
            results["bare aiohttp"] = {
                c: asyncio.run(_load(url, bare_ca, bodies, c)) for c in (1, 16)}
            bare.terminate()
            bare.wait()
            bare = None
            if not args.no_signatures:
                results["kopf + sigs"] = _warm_signatures(cp, work, args.requests)
        finally:
            if bare is not None:
                bare.terminate()
                bare.wait()
            ctl.stop()
            cp.stop()

    print(f"\nadmission benchmark: 3-container Deployment, {args.requests} reviews per run, "
          "server on 1 core")
    print(f"{'server':<14} {'clients':>7} {'reviews/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>6}")
    for server, by_c in results.items():
        for c, r in by_c.items():
            print(f"{server:<14} {c:>7} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} "
                  f"{r['p99_ms']:>8.2f} {r['errors']:>6.0f}")
    kopf16, bare16 = results["kopf webhook"][16], results["bare aiohttp"][16]
    print(f"kopf overhead at 16 clients: {bare16['rps'] / kopf16['rps']:.1f}x throughput, "
          f"p99 {kopf16['p99_ms']:.2f} ms vs {bare16['p99_ms']:.2f} ms")
    print("goal: >= 2000 reviews/s and p99 <= 5 ms at 16 clients")
    if "kopf + sigs" in results:
        sig16 = results["kopf + sigs"][16]
        print(f"warm signatures vs no signatures at 16 clients: throughput "
              f"{sig16['rps'] / kopf16['rps'] * 100:.0f}%, p99 {sig16['p99_ms']:.2f} ms vs "
              f"{kopf16['p99_ms']:.2f} ms (goal: within 10%)")


if __name__ == "__main__":
    main()
