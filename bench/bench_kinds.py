"""What gating every kind costs: derived reviews at the webhook, and Deployments end to end.

(a) Warm reviews POSTed over keep-alive TLS to the real controller process (default
    configuration: ledger on, signatures off), server pinned to CPU 0 and this client to CPU 1
    (when there are two): a Pod as the replicaset controller creates it (its identity, the
    template's provenance annotations, an owner reference) against, in the same run, the
    authored Deployment it came from (three pinned images). The Deployment is sent as a dry run
    (every check, no ledger append) for a like-for-like baseline, since a derived object is
    not recorded by default; once more stored, with its ledger append, for reference.
    Three loads: 16 clients in a closed loop (throughput; by Little's law latency is then at
    least 16 x the time per review), 1 client (the time of one review), and open-loop Poisson
    arrivals over 16 connections (`--rate`), as the API server sends them. Server CPU time per
    review is printed too: on a shared machine it is the figure other load does not distort.
(b) The local control plane with kube-controller-manager (deployment, replicaset, statefulset,
    daemonset, job, cronjob and replicationcontroller controllers, their default client rate
    limits): `kubectl apply` of N Deployments of R replicas, timed until all N×R Pods exist,
    in a namespace the webhook judges against one no webhook matches (the API server calls
    none there), in alternating rounds of the same run.

Not a test: it prints figures.

    .venv/bin/python bench/bench_kinds.py [--requests 3000] [--rate 200] [--deployments 50]
                                          [--replicas 3] [--rounds 2] [--only reviews|e2e]
                                          [--fsync] [--kcm-qps N] [--log-level INFO]
                                          [--config FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.dev.controller import DevController
from controller.dev.controlplane import LocalControlPlane, find_binary
from controller.kube import KubeApi
from controller.ledger.config import LedgerConfig
from controller.ledger.verify import load_ledger, verify_ledger
from tests.builders import deployment, prov_annotations, review

DIGESTS = ["sha256:" + c * 64 for c in "abc"]
IMAGES = [f"registry.example.com/shop/svc{i}@{d}" for i, d in enumerate(DIGESTS)]
REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
SA_GROUPS = ["system:serviceaccounts", "system:serviceaccounts:kube-system",
             "system:authenticated"]
HOOKED = "bench-hooked"
"""Namespaces whose name starts with this are routed to the webhook; `bench-bare-*` are not."""


def _pin(pid: int, cpus: set[int]) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(pid, cpus)


def _all_cpus() -> set[int]:
    return set(range(os.cpu_count() or 1))


# --- (a) reviews at the webhook -----------------------------------------------------------------

def _authored_deployment() -> dict[str, Any]:
    obj = deployment("bench", containers=IMAGES, template_ann=prov_annotations())
    obj["spec"]["replicas"] = 3
    return obj


def _derived_pod(i: int) -> dict[str, Any]:
    """A replica as the replicaset controller writes it: generated name, the template's labels
    and annotations (stamp writes provenance on the template too), a controller owner."""
    template = _authored_deployment()["spec"]["template"]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"bench-7d4b9c6f5-{i:05x}", "generateName": "bench-7d4b9c6f5-",
            "namespace": "default",
            "labels": {**template["metadata"]["labels"], "pod-template-hash": "7d4b9c6f5"},
            "annotations": dict(template["metadata"]["annotations"]),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": "bench-7d4b9c6f5", "uid": "6a1f0c1e-0000-4000-8000-"
                                 "000000000001", "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {**template["spec"], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                 "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30},
    }


def _bodies(kind: str, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        if kind == "derived pod":
            body = review(_derived_pod(i), username=REPLICASET_CONTROLLER, groups=SA_GROUPS)
        else:
            body = review(_authored_deployment(), dry_run=kind.endswith("dry run"))
        out.append(json.dumps(body).encode())
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _allowed(status: int, payload: bytes) -> bool:
    return status == 200 and b'"allowed":true' in payload.replace(b" ", b"")


async def _load(url: str, ca: Path, bodies: list[bytes], server_pid: int, *,
                clients: int, rate: float | None = None) -> dict[str, float]:
    """Post `bodies` over `clients` keep-alive connections.

    Without `rate`, closed loop: each client sends its next review when the previous answer
    arrives, so latency is bounded below by clients x the server's time per review (Little's
    law). With `rate`, open loop: reviews arrive at random (Poisson) at `rate` per second, as
    the API server sends them, and each latency counts from its arrival, so waiting for a free
    connection or the server is included.
    """
    ctx = ssl.create_default_context(cafile=str(ca))
    connector = aiohttp.TCPConnector(ssl=ctx, limit=clients)
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = list(reversed(bodies))

        async def post(body: bytes, since: float) -> None:
            nonlocal errors
            async with session.post(url, data=body,
                                    headers={"Content-Type": "application/json"}) as resp:
                payload = await resp.read()
            latencies.append(time.perf_counter() - since)
            if not _allowed(resp.status, payload):
                errors += 1

        async def worker() -> None:
            while queue:
                await post(queue.pop(), time.perf_counter())

        # Warm the connections and the server's code paths before measuring; a warm-up answer
        # that is not "allowed" means the scenario is wrong, and its figures would be too.
        warm = [queue.pop() for _ in range(min(200, len(queue) // 2))]
        await asyncio.gather(*(post(b, time.perf_counter()) for b in warm))
        if errors:
            raise SystemExit(f"{errors} warm-up reviews were not allowed at {url}")
        latencies.clear()
        started, cpu = time.perf_counter(), _cpu_seconds(server_pid)
        if rate is None:
            await asyncio.gather(*(worker() for _ in range(clients)))
        else:
            rng = random.Random(7)
            arrival = started
            sent = []
            while queue:
                arrival += rng.expovariate(rate)
                delay = arrival - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent.append(asyncio.create_task(post(queue.pop(), arrival)))
            await asyncio.gather(*sent)
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(server_pid) - cpu
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "errors": float(errors),
        # What a review costs the server, whatever else the machine runs: on a shared machine
        # the latencies include waiting for the core, this does not.
        "cpu_us": cpu / len(latencies) * 1e6,
    }


REVIEW_KINDS = ("derived pod", "deployment dry run")


def bench_reviews(ctl: DevController, requests: int,
                  rate: float) -> dict[tuple[str, str], dict[str, float]]:
    """(scenario, review kind) → figures; the two kinds alternate within each scenario."""
    assert ctl._proc is not None
    pid = ctl._proc.pid
    _pin(pid, {0})
    _pin(0, {1})
    ca = ctl.workdir / f"{ctl.name}-certs" / "ca.crt"
    results: dict[tuple[str, str], dict[str, float]] = {}
    try:
        for scenario, clients, arrivals in (("16 clients", 16, None), ("1 client", 1, None),
                                            (f"{rate:.0f}/s, 16 conn", 16, rate)):
            n = requests if clients > 1 else requests // 3
            for kind in REVIEW_KINDS:
                results[scenario, kind] = asyncio.run(_load(
                    ctl.url, ca, _bodies(kind, n + 200), pid, clients=clients, rate=arrivals))
        results["16 clients", "deployment stored"] = asyncio.run(_load(
            ctl.url, ca, _bodies("deployment stored", requests // 3 + 200), pid, clients=16))
    finally:
        _pin(pid, _all_cpus())
        _pin(0, _all_cpus())
    return results


# --- (b) end to end on the control plane -------------------------------------------------------

def _kubectl(cp: LocalControlPlane, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([str(find_binary("kubectl")), "--kubeconfig", str(cp.kubeconfig),
                             *args], input=stdin, capture_output=True, text=True, timeout=300,
                            check=False)
    if result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


async def _pod_count(api: KubeApi, namespace: str) -> int:
    # limit=1 keeps each poll to one small response; remainingItemCount is the rest.
    body = await api.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                             params={"limit": "1"})
    return len(body["items"]) + int(body["metadata"].get("remainingItemCount") or 0)


async def _clean(api: KubeApi, namespace: str) -> None:
    # No garbage collector runs here: delete what each controller made, owners first, so that
    # nothing recreates what was just deleted.
    for path in (f"/apis/apps/v1/namespaces/{namespace}/deployments",
                 f"/apis/apps/v1/namespaces/{namespace}/replicasets",
                 f"/api/v1/namespaces/{namespace}/pods"):
        await api.request("DELETE", path)
    for _ in range(300):
        if not await _pod_count(api, namespace):
            return
        await asyncio.sleep(0.2)
    raise SystemExit(f"{namespace}: Pods still there a minute after deleting them")


def _counters(ctl: DevController) -> dict[str, float]:
    """Reviews allowed and denied, from the controller's /metrics."""
    url = f"http://127.0.0.1:{ctl.health_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out = {"allowed": 0.0, "denied": 0.0}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("provenance_admissions_total{"):
            for verdict in ("allowed", "denied"):
                if f'verdict="{verdict}"' in name:
                    out[verdict] += float(value)
    return out


async def _ledger_size(api: KubeApi) -> int:
    """Entries in the controller's ledger (default namespace and chain), once it verifies."""
    config = LedgerConfig()
    report = verify_ledger(await load_ledger(
        api, config.namespace, config.chain, key_namespace=config.checkpoint_key_namespace),
        chain=config.chain, max_entry_bytes=config.max_entry_bytes)
    if not report.ok:
        raise SystemExit(f"the ledger does not verify: {report.problems[:3]}")
    return report.size


async def _round(cp: LocalControlPlane, api: KubeApi, namespace: str, deployments: int,
                 replicas: int, timeout: float = 300.0) -> float:
    """Seconds from `kubectl apply` of the Deployments until every Pod exists."""
    _kubectl(cp, "create", "namespace", namespace)
    items = []
    for i in range(deployments):
        obj = deployment(f"app-{i:03d}", namespace, containers=IMAGES,
                         template_ann=prov_annotations())
        obj["spec"]["replicas"] = replicas
        items.append(obj)
    manifest = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items})
    want = deployments * replicas
    started = time.perf_counter()
    applying = asyncio.create_task(asyncio.to_thread(
        _kubectl, cp, "apply", "-f", "-", stdin=manifest))
    while True:
        count = await _pod_count(api, namespace)
        if count >= want:
            elapsed = time.perf_counter() - started
            break
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"{namespace}: {count} of {want} Pods after {timeout:.0f}s")
        await asyncio.sleep(0.05)
    await applying
    await _clean(api, namespace)
    return elapsed


def check_routing(cp: LocalControlPlane) -> None:
    """The comparison means something only if the webhook judges the one kind of namespace and
    not the other: a tag-only Deployment is denied in the first and stored in the second."""
    for ns, judged in ((f"{HOOKED}-probe", True), ("bench-bare-probe", False)):
        _kubectl(cp, "create", "namespace", ns)
        obj = deployment("tagged", ns, containers=["nginx:latest"])
        obj["spec"]["replicas"] = 0  # no garbage collector runs to delete its Pods later
        tagged = yaml.safe_dump(obj)
        probe = subprocess.run(
            [str(find_binary("kubectl")), "--kubeconfig", str(cp.kubeconfig), "apply", "-f", "-"],
            input=tagged, capture_output=True, text=True, timeout=60, check=False)
        denied = probe.returncode != 0 and "provenance-controller denied" in probe.stderr
        if denied is not judged:
            raise SystemExit(f"namespace {ns} is {'not ' if judged else ''}judged by the "
                             f"webhook: {probe.stdout}{probe.stderr}")
        _kubectl(cp, "delete", "deployment", "tagged", "-n", ns, "--ignore-not-found")


async def bench_e2e(cp: LocalControlPlane, ctl: DevController, rounds: int, deployments: int,
                    replicas: int) -> dict[str, list[float]]:
    api = KubeApi.from_kubeconfig(str(cp.kubeconfig))
    times: dict[str, list[float]] = {"webhook": [], "no webhook": []}
    try:
        # kube-controller-manager's caches and this client's connections warm up first.
        await _round(cp, api, "bench-bare-warmup", 5, replicas)
        await _round(cp, api, f"{HOOKED}-warmup", 5, replicas)
        for r in range(rounds):
            order = ("no webhook", "webhook") if r % 2 == 0 else ("webhook", "no webhook")
            for mode in order:
                ns = f"{HOOKED}-{r}" if mode == "webhook" else f"bench-bare-{r}"
                before, size = _counters(ctl), await _ledger_size(api)
                times[mode].append(await _round(cp, api, ns, deployments, replicas))
                after, grown = _counters(ctl), await _ledger_size(api) - size
                seen = {k: after[k] - before[k] for k in after}
                # Ledger entries include the reconciler's outcome entries (persisted, ...).
                print(f"  round {r} {mode:<10} {times[mode][-1]:6.2f} s  (reviews allowed "
                      f"{seen['allowed']:.0f}, denied {seen['denied']:.0f}; ledger entries "
                      f"+{grown})", flush=True)
    finally:
        await api.close()
    return times


class _FastControllerManager(LocalControlPlane):
    """kube-controller-manager with client rate limits of `qps` (its default is 20 requests/s,
    burst 30, per controller), so that the end-to-end time is not set by its rate limiter,
    which would hide the webhook's latency."""

    qps: int = 0

    def _spawn(self, name: str, argv: list[str]) -> None:
        if name == "kube-controller-manager" and self.qps:
            argv = [*argv, "--kube-api-qps", str(self.qps), "--kube-api-burst",
                    str(2 * self.qps)]
        super()._spawn(name, argv)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=200.0,
                        help="open-loop arrivals per second for the review scenario")
    parser.add_argument("--deployments", type=int, default=50)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", choices=("reviews", "e2e"))
    parser.add_argument("--fsync", action="store_true", help="etcd with fsync (make dev's)")
    parser.add_argument("--config", type=Path,
                        help="the controller's configuration file (default: the defaults)")
    parser.add_argument("--log-level", default="WARNING",
                        help="the controller's (its own default, INFO, logs every admission "
                             "and every reconciled event)")
    parser.add_argument("--kcm-qps", type=int, default=0,
                        help="kube-controller-manager's client rate limit (default: its own, 20)")
    args = parser.parse_args()
    reviews: dict[tuple[str, str], dict[str, float]] = {}
    e2e: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-kinds-") as tmp:
        work = Path(tmp)
        cp = _FastControllerManager(work / "cp", with_controller_manager=True,
                                    etcd_fsync=args.fsync)
        cp.qps = args.kcm_qps
        cp.start()
        rounds = [f"{HOOKED}-{r}" for r in ("probe", "warmup", *range(args.rounds))]
        # The default configuration (ledger on), routed only the hooked namespaces: the bare
        # ones are matched by no webhook at all, so the API server calls none for them.
        ctl = DevController(cp, work / "ctl", name="bench-kinds", only_namespaces=rounds,
                            config_file=args.config,
                            extra_args=["--log-level", args.log_level])
        try:
            ctl.start()
            if args.only != "e2e":
                reviews = bench_reviews(ctl, args.requests, args.rate)
            if args.only != "reviews":
                print(f"end to end: {args.deployments} Deployments x {args.replicas} replicas",
                      flush=True)
                check_routing(cp)
                e2e = asyncio.run(bench_e2e(cp, ctl, args.rounds, args.deployments,
                                           args.replicas))
        finally:
            ctl.stop()
            cp.stop()

    if reviews:
        print(f"\n(a) warm reviews at the webhook, server on 1 core, {args.requests} reviews "
              "per run (1 client: a third of that)")
        print(f"{'load':<16} {'review':<20} {'reviews/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'CPU us/review':>14} {'errors':>6}")
        for (scenario, kind), r in reviews.items():
            print(f"{scenario:<16} {kind:<20} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} "
                  f"{r['p99_ms']:>8.2f} {r['cpu_us']:>14.0f} {r['errors']:>6.0f}")
        for scenario in dict.fromkeys(s for s, _ in reviews):
            pod, base = reviews.get((scenario, REVIEW_KINDS[0])), reviews.get(
                (scenario, REVIEW_KINDS[1]))
            if pod and base:
                print(f"{scenario}: derived Pod p99 {pod['p99_ms']:.2f} ms vs authored "
                      f"Deployment (dry run) {base['p99_ms']:.2f} ms; server CPU per review "
                      f"{pod['cpu_us'] / base['cpu_us'] * 100:.0f}%")
        print("goal: a warm derived-Pod review p99 <= 2 ms with 16 clients")
        load = os.getloadavg()[0]
        if load > 1.5:
            print(f"note: load average {load:.1f} on {os.cpu_count()} cores while measuring; "
                  "latencies include waiting for a core (CPU us/review does not)")
    if e2e:
        hooked, bare = statistics.median(e2e["webhook"]), statistics.median(e2e["no webhook"])
        pods = args.deployments * args.replicas
        print(f"\n(b) {args.deployments} Deployments x {args.replicas} replicas until {pods} "
              f"Pods exist, median of {args.rounds} rounds (etcd fsync "
              f"{'on' if args.fsync else 'off'}; kube-controller-manager at "
              f"{args.kcm_qps or 20} requests/s per controller)")
        for label, mode, median in (("with the webhook:   ", "webhook", hooked),
                                    ("without any webhook:", "no webhook", bare)):
            runs = ", ".join(f"{t:.2f}" for t in e2e[mode])
            print(f"  {label} {median:6.2f} s  (rounds: {runs})")
        print(f"  ratio {hooked / bare:.2f}x (goal: <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
