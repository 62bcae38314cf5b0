"""Benchmark: signature and provenance verification of a 3-image Deployment.

Runs a real docker-registry on loopback loaded with tests/data/cosign, then measures, in one run:
- warm: `ImageVerifier.verify` with every verdict cached (the steady state of a busy cluster);
- cold: every verdict uncached (the cache is cleared before each Deployment; the connection pool
  is kept, as in a long-lived controller), against the local registry;
- baseline: shelling out to `cosign verify` once per image, the way subprocess-based verifiers do
  (they have no verdict cache, so the same figure serves both ratios).
Images: v1 and v2 (Sigstore bundles found through the referrers tag), v3 (legacy `.sig`). A
second cold figure adds SLSA provenance (v1 bundle, v3 `.att`) with the commit and build-id
checks, which `cosign verify` does not do.

Usage: .venv/bin/python bench/bench_signatures.py [--cold N] [--warm N] [--baseline N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COSIGN = ROOT / "bin" / "cosign"
DIGESTS = {
    "v1": "sha256:b5b1e7f55d49730ba3119608964ba401309f389835dac7ab40657beafbb5ad07",
    "v2": "sha256:c16b6fdd5113f7c6f9e3074b1fb2721282cc4658a2b656f283c14e9c4399c78c",
    "v3": "sha256:0de0ba3d48ca88d2dc8bfc1fd8a79c554cf8bb7d66355a6a8e4e0fbfa756d5b6",
}
COMMIT = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def describe(name: str, samples: list[float]) -> str:
    return (f"{name:<9} n={len(samples):<5} p50={percentile(samples, 50) * 1000:9.3f} ms  "
            f"p99={percentile(samples, 99) * 1000:9.3f} ms  "
            f"mean={statistics.fmean(samples) * 1000:9.3f} ms")


def cosign_verify(image: str, key: Path) -> None:
    result = subprocess.run(
        [str(COSIGN), "verify", "--key", str(key), "--insecure-ignore-tlog",
         "--allow-http-registry", "--allow-insecure-registry", image],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TUF_ROOT": "/nonexistent", "SIGSTORE_NO_CACHE": "true"})
    if result.returncode != 0:
        raise SystemExit(f"cosign verify {image} failed: {result.stderr[-800:]}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=200)
    parser.add_argument("--warm", type=int, default=5000)
    parser.add_argument("--baseline", type=int, default=10)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from controller.review import WorkloadRequest
    from controller.signatures.config import SignatureConfig
    from controller.signatures.verifier import ImageVerifier
    from tests.fixtures.registry import COSIGN_DATA, start_registry, stop_registry
    from tests.signatures.helpers import deployment

    with tempfile.TemporaryDirectory() as tmp:
        server = start_registry(Path(tmp))
        try:
            server.load_layout("demo/app")
            images = [f"{server.host}/demo/app@{d}" for d in DIGESTS.values()]
            key = {"name": "release", "path": str(COSIGN_DATA / "cosign.pub")}
            registry = {"insecure_registries": [server.host]}
            # Signatures only: what `cosign verify` checks, so the ratios compare like for like.
            verifier = ImageVerifier(SignatureConfig.model_validate(
                {"enabled": True, "keys": [key], "registry": registry}))
            # And with provenance: v1 (bundle) and v3 (legacy .att), commit and build id checked.
            att_verifier = ImageVerifier(SignatureConfig.model_validate({
                "enabled": True, "keys": [key], "registry": registry,
                "default_require": "attestation",
                "rules": [{"prefix": "*", "require": "attestation", "check_build_id": True}]}))
            request = deployment(*images)
            att_request = deployment(images[0], images[2])

            async def once(v: ImageVerifier, req: WorkloadRequest) -> float:
                started = time.perf_counter()
                outcome = await v.verify(
                    req, git_sha=COMMIT, build_id="12345", pipeline_url=None,
                    environment=None, deadline=time.monotonic() + 5)
                took = time.perf_counter() - started
                if outcome.violations:
                    raise SystemExit(f"unexpected violations: {outcome.violations}")
                return took

            await once(verifier, request)  # connection pool up, code paths warm
            await once(att_verifier, att_request)
            cold: list[float] = []
            cold_att: list[float] = []
            for _ in range(args.cold):
                verifier.cache.clear()
                att_verifier.cache.clear()
                cold.append(await once(verifier, request))
                cold_att.append(await once(att_verifier, att_request))
            warm = [await once(verifier, request) for _ in range(args.warm)]
            await verifier.close()
            await att_verifier.close()

            baseline: list[float] = []
            if COSIGN.exists():
                for _ in range(args.baseline):
                    started = time.perf_counter()
                    for image in images:
                        cosign_verify(image, COSIGN_DATA / "cosign.pub")
                    baseline.append(time.perf_counter() - started)
        finally:
            stop_registry(server)

    print("3-image Deployment: v1, v2 (Sigstore bundles), v3 (legacy .sig)")
    print(describe("warm", warm))
    print(describe("cold", cold))
    print(describe("cold+att", cold_att) + "  (v1 bundle + v3 .att: signature, SLSA, commit)")
    if baseline:
        print(describe("baseline", baseline) + "  (cosign verify x3, sequential)")
        b50 = percentile(baseline, 50)
        print(f"ratio cold: baseline p50 / cold p50 = {b50 / percentile(cold, 50):8.1f}x  "
              f"(goal >= 20x); p99 {percentile(baseline, 99) / percentile(cold, 99):.1f}x")
        print(f"ratio warm: baseline p50 / warm p50 = {b50 / percentile(warm, 50):8.1f}x  "
              f"(goal >= 200x); p99 {percentile(baseline, 99) / percentile(warm, 99):.1f}x")
    else:
        print("baseline: skipped, bin/cosign missing (bash hack/tools.sh cosign)")
    print(f"cold p99 goal <= 50 ms: {'met' if percentile(cold, 99) <= 0.050 else 'NOT met'}")


if __name__ == "__main__":
    asyncio.run(main())
