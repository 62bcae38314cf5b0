"""Benchmark: keyless verification of a 3-image Deployment through `ImageVerifier`.

A real docker-registry on loopback holds three fresh images, signed keyless by a Sigstore
instance made here (`tests.signatures.sigstore_instance`: a Fulcio-like CA with SCTs, a CT log,
a Rekor v1 log): two cosign 3 bundles found through the referrers tag, one cosign 2 keyless
`.sig`. Measured in one run:
- cold: every verdict uncached (the cache is cleared before each Deployment, the connection pool
  kept, as in a long-lived controller);
- warm: every verdict cached;
- registry requests per image on a cold verification, counted by a loopback proxy (the times
  are taken without it).
A second cold figure uses `require: attestation` on GitHub-style SLSA attestations.

Then the same against the real local Sigstore (tests/fixtures/sigstore.py: Fulcio with a CT log,
Rekor v2, the TSA): three fresh images signed keyless by real cosign, verified cold by
`ImageVerifier`, and, as the same-run baseline, by `cosign verify --certificate-identity …
--certificate-oidc-issuer … --trusted-root …` run as a subprocess per image (cosign verifies the
log entry and timestamp offline against the given root; it still fetches from the registry).

Not a test: it prints figures.

    .venv/bin/python bench/bench_keyless_admission.py [--cold 200] [--warm 5000] [--baseline 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.review import WorkloadRequest  # noqa: E402
from controller.signatures.config import SignatureConfig  # noqa: E402
from controller.signatures.verifier import ImageVerifier  # noqa: E402
from tests.fixtures import sigstore as local  # noqa: E402
from tests.fixtures.registry import (  # noqa: E402
    RegistryServer,
    serve_app,
    start_registry,
    stop_registry,
)
from tests.signatures.helpers import deployment, push_random_image  # noqa: E402
from tests.signatures.sigstore_instance import (  # noqa: E402
    COMMIT,
    GITHUB_ISSUER,
    SLSA_V1,
    SUBJECT,
    LocalSigstore,
    push_legacy_sig,
    push_referrer,
)

REPO = "bench/keyless"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def describe(name: str, samples: list[float]) -> str:
    return (f"{name:<9} n={len(samples):<5} p50={percentile(samples, 50) * 1000:9.3f} ms  "
            f"p99={percentile(samples, 99) * 1000:9.3f} ms  "
            f"mean={statistics.fmean(samples) * 1000:9.3f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cold", type=int, default=200)
    parser.add_argument("--warm", type=int, default=5000)
    parser.add_argument("--baseline", type=int, default=20,
                        help="3-image Deployments verified by cosign verify subprocesses")
    args = parser.parse_args()

    sigstore = LocalSigstore()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_registry(Path(tmp))
        counts: Counter[str] = Counter()
        session = aiohttp.ClientSession()

        async def forward(request: web.Request) -> web.Response:
            counts[request.path] += 1
            async with session.get(f"{server.url}{request.rel_url}", headers={
                    "Accept": request.headers.get("Accept", "*/*")}) as up:
                return web.Response(status=up.status, body=await up.read(), headers={
                    "Content-Type": up.headers.get("Content-Type", "application/octet-stream")})

        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", forward)
        try:
            digests = [push_random_image(server, REPO) for _ in range(3)]
            for digest in digests[:2]:
                push_referrer(server, REPO, digest, sigstore.sign_image(digest))
                push_referrer(server, REPO, digest, sigstore.attest_image(digest),
                              predicate_type=SLSA_V1)
            payload, notes = sigstore.legacy_sig(digests[2], f"{server.host}/{REPO}")
            push_legacy_sig(server, REPO, digests[2], payload, notes)
            push_referrer(server, REPO, digests[2], sigstore.attest_image(digests[2]),
                          predicate_type=SLSA_V1)
            async with serve_app(app) as host:
                def config(require: str) -> SignatureConfig:
                    return SignatureConfig.model_validate({
                        "enabled": True,
                        "keyless": {
                            "trust_roots": [{"name": "test",
                                             "inline": sigstore.trusted_root_json()}],
                            "signers": [{"name": "gha", "issuer": GITHUB_ISSUER,
                                         "subject": SUBJECT, "repository": "org/app",
                                         "trust_root": "test"}]},
                        "rules": [{"prefix": "*", "require": require, "signers": ["gha"]}],
                        "default_require": require,
                        "registry": {"insecure_registries": [host, server.host]}})

                # Timed straight against the registry; counted through the proxy, which would
                # add its own latency to the times.
                request = deployment(*(f"{server.host}/{REPO}@{d}" for d in digests))
                counted = deployment(*(f"{host}/{REPO}@{d}" for d in digests))
                verifier = ImageVerifier(config("signature"))
                att_verifier = ImageVerifier(config("attestation"))

                async def once(v: ImageVerifier, req: WorkloadRequest) -> float:
                    started = time.perf_counter()
                    outcome = await v.verify(req, git_sha=COMMIT, build_id=None,
                                             pipeline_url=None, environment=None,
                                             branch="main", deadline=time.monotonic() + 5)
                    took = time.perf_counter() - started
                    if outcome.violations:
                        raise SystemExit(f"unexpected violations: {outcome.violations}")
                    return took

                first = await once(verifier, request)  # the very first: roots parsed, pools up
                await once(att_verifier, request)
                await once(verifier, counted)
                await once(att_verifier, counted)
                counts.clear()
                verifier.cache.clear()
                await once(verifier, counted)
                sig_requests = sum(counts.values())
                counts.clear()
                att_verifier.cache.clear()
                await once(att_verifier, counted)
                att_requests = sum(counts.values())
                cold: list[float] = []
                cold_att: list[float] = []
                for _ in range(args.cold):
                    verifier.cache.clear()
                    att_verifier.cache.clear()
                    cold.append(await once(verifier, request))
                    cold_att.append(await once(att_verifier, request))
                warm = [await once(verifier, request) for _ in range(args.warm)]
                await verifier.close()
                await att_verifier.close()
            real = await real_services(server, Path(tmp), cold=args.cold,
                                       baseline=args.baseline)
        finally:
            await session.close()
            stop_registry(server)

    print("3-image Deployment, keyless: 2 cosign 3 bundles (referrers tag), 1 cosign 2 .sig")
    print(f"first     {first * 1000:9.3f} ms  (after start-up: trust root parsed, pools opened)")
    print(describe("warm", warm))
    print(describe("cold", cold))
    print(describe("cold+att", cold_att) + "  (require: attestation, GitHub-style SLSA bundles)")
    print(f"registry requests per image, cold: signature {sig_requests / 3:.1f}, "
          f"attestation {att_requests / 3:.1f} (image manifest, .sig tag, referrers API, "
          f"referrers tag, then referrer manifests, then blobs: 3 dependent rounds)")
    print(f"cold p99 goal <= 60 ms: {'met' if percentile(cold, 99) <= 0.060 else 'NOT met'}")
    real_cold, cosign_image, cosign_deployment = real
    print()
    print("3-image Deployment, keyless by real cosign 3.1.1 against local Fulcio + CT log, "
          "Rekor v2, TSA (cosign 3 bundles, referrers tag)")
    print(describe("cold", real_cold) + "  (ImageVerifier, verdict cache cleared)")
    print(describe("cosign/img", cosign_image) + "  (cosign verify subprocess, one image)")
    print(describe("cosign/dep", cosign_deployment)
          + "  (the three cosign verify runs of a Deployment, one after another)")
    print(f"cold p50 vs cosign verify per Deployment: "
          f"{percentile(cosign_deployment, 50) / percentile(real_cold, 50):.0f}x faster")


async def real_services(server: RegistryServer, tmp: Path, *, cold: int,
                        baseline: int) -> tuple[list[float], list[float], list[float]]:
    """Cold `ImageVerifier` and `cosign verify` on three images real cosign signed keyless."""
    root = tmp / "sigstore"
    root.mkdir()
    sigstore = local.start_local_sigstore(root)
    try:
        repo = f"{REPO}-real"
        images = [f"{server.host}/{repo}@{push_random_image(server, repo)}" for _ in range(3)]
        for image in images:
            done = sigstore.cosign("sign", "--yes", "--allow-insecure-registry", image,
                                   token=sigstore.token())
            if done.returncode != 0:
                raise SystemExit(f"cosign sign failed: {done.stderr}")
        verifier = ImageVerifier(SignatureConfig.model_validate({
            "enabled": True,
            "keyless": {
                "trust_roots": [{"name": "local", "path": str(sigstore.trusted_root)}],
                "signers": [{"name": "release", "issuer": sigstore.issuer,
                             "subject": local.SUBJECT, "repository": local.REPOSITORY,
                             "trust_root": "local"}]},
            "rules": [{"prefix": "*", "require": "signature", "signers": ["release"]}],
            "registry": {"insecure_registries": [server.host]}}))
        request = deployment(*images)

        async def once() -> float:
            verifier.cache.clear()
            started = time.perf_counter()
            outcome = await verifier.verify(request, git_sha=local.COMMIT, build_id=None,
                                            pipeline_url=None, environment=None,
                                            branch="main", deadline=time.monotonic() + 5)
            took = time.perf_counter() - started
            if outcome.violations:
                raise SystemExit(f"unexpected violations: {outcome.violations}")
            return took

        await once()  # trust root parsed, pool open
        ours = [await once() for _ in range(cold)]
        await verifier.close()

        def cosign_verify(image: str) -> float:
            started = time.perf_counter()
            done = sigstore.cosign(
                "verify", "--allow-insecure-registry", "--trusted-root",
                str(sigstore.trusted_root), "--certificate-identity", local.SUBJECT,
                "--certificate-oidc-issuer", sigstore.issuer, image)
            took = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"cosign verify failed: {done.stderr}")
            return took

        cosign_verify(images[0])  # the binary in the page cache
        per_image: list[float] = []
        per_deployment: list[float] = []
        for _ in range(baseline):
            runs = [await asyncio.to_thread(cosign_verify, image) for image in images]
            per_image += runs
            per_deployment.append(sum(runs))
        return ours, per_image, per_deployment
    finally:
        local.stop_local_sigstore(sigstore)


if __name__ == "__main__":
    asyncio.run(main())
