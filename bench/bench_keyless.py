"""Keyless (and key) Sigstore bundle verification: conformance score and time per bundle.

Prints:
- the sigstore-conformance bundle-verify score (N of 140: every case by path and by digest)
  and every miss;
- in-process time per bundle for representative cases, cold (trust root parsed and verifier
  built for the call, as for the first bundle after start-up or a root change) and warm (the
  verifier reused; nothing else is cached, every call verifies the whole bundle);
- the same bundles through `kubectl-provenance verify-bundle` as a subprocess, beside
  `cosign verify-blob` as a subprocess, in the same run, when cosign is there (bin/cosign, or
  $COSIGN). Both are given the same trust root file, so neither touches the network.

Not a test: it prints figures.

    .venv/bin/python bench/bench_keyless.py [--iterations 200] [--cli-runs 10]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.signatures import bundle as bundle_module
from controller.signatures.bundle import verify_bundle
from controller.signatures.keyless import KeylessSigner
from controller.signatures.keys import PublicKey, load_public_key
from controller.signatures.trust import (
    TrustRoot,
    load_trust_root_file,
    public_good,
)
from tests.signatures.test_bundle import verdicts

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "data" / "sigstore-conformance" / "bundle-verify"
EMBEDDED_ROOT = ROOT / "controller" / "signatures" / "data" / "public-good.trusted_root.json"
IDENTITY = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
            ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
ISSUER = "https://token.actions.githubusercontent.com"
TIMED = [
    ("happy-path-v0.3", "keyless, Rekor v1 hashedrekord, SET"),
    ("happy-path-intoto-in-dsse-v3", "keyless, Rekor v1 dsse (SLSA v1 statement)"),
    ("rekor2-happy-path", "keyless, Rekor v2 hashedrekord, RFC 3161 timestamp"),
    ("intoto-with-custom-trust-root", "keyless, legacy intoto 0.0.2, SET + timestamp"),
    ("managed-key-happy-path", "key, Rekor v1 hashedrekord, SET + timestamp"),
]


def _case_files(name: str) -> tuple[Path, Path, Path | None, Path | None]:
    d = CASES / name
    artifact = d / "artifact" if (d / "artifact").exists() else CASES / "a.txt"
    key = d / "key.pub" if (d / "key.pub").exists() else None
    root = d / "trusted_root.json" if (d / "trusted_root.json").exists() else None
    return d / "bundle.sigstore.json", artifact, key, root


def _text(d: Path, name: str, default: str) -> str:
    f = d / name
    return f.read_text().strip() if f.exists() else default


def _signer(name: str) -> PublicKey | KeylessSigner:
    d = CASES / name
    if (d / "key.pub").exists():
        return load_public_key((d / "key.pub").read_bytes(), name="key")
    return KeylessSigner(name="cli", issuer=_text(d, "issuer", ISSUER),
                         subject=_text(d, "identity", IDENTITY))


def _root(root_file: Path | None) -> TrustRoot:
    return load_trust_root_file(root_file, name="case") if root_file else public_good()


def score() -> None:
    """The conformance verdicts as the test computes them: the CLI in-process, by path and by
    digest."""
    results = verdicts()
    right = sum(expected == got for _, expected, got, _ in results)
    print(f"sigstore-conformance bundle-verify: {right} of {len(results)} verdicts right")
    for label, expected, got, message in results:
        if expected != got:
            print(f"  miss: {label} (expected {'pass' if expected else 'fail'}): {message}")


def _percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"p50 {statistics.median(ms):6.2f} ms  p99 {p99:6.2f} ms"


def in_process(iterations: int) -> None:
    print(f"\nin-process verify_bundle, {iterations} runs each:")
    for name, what in TIMED:
        bundle_file, artifact, _, root_file = _case_files(name)
        data = bundle_file.read_bytes()
        digest = f"sha256:{hashlib.sha256(artifact.read_bytes()).hexdigest()}"
        signer = _signer(name)
        policy = signer if isinstance(signer, PublicKey) else signer.policy()
        cold: list[float] = []
        for _ in range(max(1, iterations // 4)):
            bundle_module._VERIFIERS.clear()
            public_good.cache_clear()
            start = time.perf_counter()
            verify_bundle(data, digest=digest, signer=policy, trust_root=_root(root_file))
            cold.append(time.perf_counter() - start)
        root = _root(root_file)
        verify_bundle(data, digest=digest, signer=policy, trust_root=root)
        warm: list[float] = []
        for _ in range(iterations):
            start = time.perf_counter()
            verify_bundle(data, digest=digest, signer=policy, trust_root=root)
            warm.append(time.perf_counter() - start)
        print(f"  {name:32s} cold {_percentiles(cold)} | warm {_percentiles(warm)}   ({what})")


def _cosign() -> Path | None:
    for candidate in (os.environ.get("COSIGN"), str(ROOT / "bin" / "cosign")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def _run(argv: list[str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    return time.perf_counter() - start, done.returncode, done.stderr.strip()[-200:]


def subprocesses(runs: int) -> None:
    ours = shutil.which("kubectl-provenance", path=str(Path(sys.executable).parent))
    cosign = _cosign()
    print(f"\nsubprocess per bundle, {runs} runs each (process start included):")
    if cosign is None:
        print("  cosign: not found (bin/cosign or $COSIGN); baseline skipped")
    if ours:
        # What a Python CLI pays before verifying anything; the webhook pays it once, at start.
        startup = [_run([ours, "--version"])[0] for _ in range(runs)]
        print(f"  {'(start-up only)':32s} {'kubectl-provenance':20s} {_percentiles(startup)}  "
              "--version, no sigstore import")
    for name, _ in TIMED:
        bundle_file, artifact, key, root_file = _case_files(name)
        root_arg = str(root_file or EMBEDDED_ROOT)
        d = CASES / name
        signer_args = (["--key", str(key)] if key else
                       ["--certificate-identity", _text(d, "identity", IDENTITY),
                        "--certificate-oidc-issuer", _text(d, "issuer", ISSUER)])
        rows = []
        if ours:
            argv = [ours, "verify-bundle", "--bundle", str(bundle_file), *signer_args,
                    "--trusted-root", root_arg, str(artifact)]
            rows.append(("kubectl-provenance", argv))
        if cosign:
            argv = [str(cosign), "verify-blob", "--bundle", str(bundle_file), *signer_args,
                    "--trusted-root", root_arg, str(artifact)]
            rows.append(("cosign verify-blob", argv))
        for label, argv in rows:
            samples, codes, last_err = [], set(), ""
            for _ in range(runs):
                took, code, err = _run(argv)
                samples.append(took)
                codes.add(code)
                last_err = err
            verdict = "verified" if codes == {0} else f"exit {sorted(codes)}: {last_err}"
            print(f"  {name:32s} {label:20s} {_percentiles(samples)}  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--cli-runs", type=int, default=10)
    args = parser.parse_args()
    score()
    in_process(args.iterations)
    subprocesses(args.cli_runs)


if __name__ == "__main__":
    main()
