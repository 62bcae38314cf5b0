"""`make dev`: a local control plane, the controller wired to it, and two sample Deployments.

Stays in the foreground until Ctrl-C, then stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from controller.dev.controller import DevController
from controller.dev.controlplane import REPO_ROOT, ControlPlaneError, LocalControlPlane, find_binary


def _step(message: str) -> None:
    print(f"==> {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m controller.dev")
    parser.add_argument("--config", default=os.environ.get("CONFIG") or None,
                        help="controller configuration file (CONFIG=path make dev)")
    parser.add_argument("--workdir", default=str(REPO_ROOT / ".dev"))
    parser.add_argument("--no-wait", action="store_true",
                        help="stop after the samples instead of waiting for Ctrl-C")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)

    _step("starting etcd, kube-apiserver and kube-controller-manager")
    cp = LocalControlPlane(workdir, with_controller_manager=True)
    try:
        cp.start()
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # --client-ca, as the README says: only the API server's webhook client certificate may
    # send reviews, so a review POSTed straight to the port cannot forge a user. The gate
    # guards its own configuration, as the chart's default does.
    controller = DevController(cp, workdir, require_client_cert=True, guard_gate=True,
                               config_file=Path(args.config) if args.config else None)
    try:
        _step(f"kube-apiserver ready at {cp.server}; kubeconfig: {cp.kubeconfig}")
        _step("starting provenance-controller and registering its webhook")
        controller.start()
        _step(f"webhook at {controller.url} (log: {controller.log_path})")
        kubectl = [str(find_binary("kubectl")), "--kubeconfig", str(cp.kubeconfig)]
        for sample, expect in (("tagged.yaml", "rejected"), ("compliant.yaml", "admitted"),
                               ("tagged-pod.yaml", "rejected")):
            path = REPO_ROOT / "examples" / sample
            _step(f"kubectl apply -f examples/{sample}   (expected: {expect})")
            result = subprocess.run([*kubectl, "apply", "-f", str(path)],
                                    capture_output=True, text=True, timeout=60)
            print(result.stdout + result.stderr, flush=True)
        print(f"\nTry it yourself:\n  export KUBECONFIG={cp.kubeconfig}\n"
              f"  {kubectl[0]} apply -f examples/compliant.yaml\n", flush=True)
        if not args.no_wait:
            _step("running; press Ctrl-C to stop everything")
            signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print()
    finally:
        _step("stopping the controller and the control plane")
        controller.stop()
        cp.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
