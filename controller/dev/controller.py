"""Run the real controller process against a local control plane, wired by a webhook config.

Used by `make dev` and by the end-to-end tests: the API server calls the controller over TLS
exactly as in a cluster, with the configuration the chart would create.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from controller.certs import write_webhook_certs
from controller.dev.controlplane import LocalControlPlane, find_binary, free_port
from controller.workloads import webhook_rules


def webhook_configuration(
    *,
    name: str,
    url: str,
    ca_bundle: bytes,
    exempt_namespaces: list[str],
    only_namespaces: list[str] | None = None,
    timeout_seconds: int = 5,
    failure_policy: str = "Fail",
) -> dict[str, Any]:
    """A v1 ValidatingWebhookConfiguration for every gated kind, as the chart renders it.

    Namespaces are selected by `kubernetes.io/metadata.name`, which the API server sets and no
    namespace owner can change, so no label can opt a namespace out.
    """
    expressions: list[dict[str, Any]] = [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": exempt_namespaces}]
    if only_namespaces is not None:
        expressions.append({"key": "kubernetes.io/metadata.name", "operator": "In",
                            "values": only_namespaces})
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": f"{name}.provenance.dev",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_bundle).decode()},
            "rules": webhook_rules(),
            "matchPolicy": "Equivalent",
            "sideEffects": "NoneOnDryRun",
            "failurePolicy": failure_policy,
            "timeoutSeconds": timeout_seconds,
            "namespaceSelector": {"matchExpressions": expressions},
        }],
    }


@dataclass
class DevController:
    """One controller process plus the webhook configuration that routes to it."""

    control_plane: LocalControlPlane
    workdir: Path
    config_file: Path | None = None
    name: str = "provenance-controller"
    exempt_namespaces: list[str] = field(default_factory=lambda: ["kube-system"])
    only_namespaces: list[str] | None = None
    extra_args: list[str] = field(default_factory=list)
    timeout_seconds: int = 5
    """The webhook configuration's timeoutSeconds, also passed to the controller."""
    system_namespace: str = "provenance-system"
    """Where the controller keeps its checkpoint key, as the chart's release namespace."""
    require_client_cert: bool = False
    """Pass `--client-ca` so that only the API server (its webhook client certificate) may
    send reviews."""
    guard_gate: bool = False
    """Pass `--gate-expected` with the configuration this registers, so the controller guards
    it (records and restores a deletion or drift), as the chart's default does."""
    controller_kubeconfig: Path | None = None
    """Credentials the controller itself uses (default: the control plane's admin); the tests
    pass the chart's service-account token to prove its RBAC suffices."""
    port: int = 0
    health_port: int = 0
    _proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/validate"

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        certs = self.workdir / f"{self.name}-certs"
        ca, cert, key = write_webhook_certs(certs, hosts=["127.0.0.1", "localhost"])
        self.port = self.port or free_port()
        self.health_port = self.health_port or free_port()
        argv = [
            sys.executable, "-m", "controller.cli_operator",
            "--kubeconfig", str(self.controller_kubeconfig or self.control_plane.kubeconfig),
            "--webhook-host", "127.0.0.1", "--webhook-port", str(self.port),
            "--tls-cert", str(cert), "--tls-key", str(key),
            "--health-port", str(self.health_port),
            "--timeout-seconds", str(self.timeout_seconds),
            *self.extra_args,
        ]
        if self.config_file is not None:
            argv += ["--config", str(self.config_file)]
        if self.require_client_cert:
            argv += ["--client-ca", str(self.control_plane.webhook_client_ca)]
        configuration = webhook_configuration(
            name=self.name, url=self.url, ca_bundle=ca.read_bytes(),
            exempt_namespaces=self.exempt_namespaces, only_namespaces=self.only_namespaces,
            timeout_seconds=self.timeout_seconds)
        if self.guard_gate:
            expected = self.workdir / f"{self.name}-gate-expected.json"
            expected.write_text(json.dumps(configuration, indent=2))
            argv += ["--gate-expected", str(expected)]
        # The chart installs into its release namespace; the ledger's key Secret lives there.
        subprocess.run(
            [str(find_binary("kubectl")), "--kubeconfig", str(self.control_plane.kubeconfig),
             "create", "namespace", self.system_namespace], capture_output=True, timeout=60,
            check=False)
        if self.guard_gate:
            # As with the chart: the configuration exists before its guard first looks, so the
            # guard does not see (and record) it missing at start-up.
            self._apply(configuration)
        self._log = self.log_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env,
                                      start_new_session=True)
        self._wait_ready(timeout)
        if not self.guard_gate:
            self._apply(configuration)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the webhook and, when required, presents the API
        server's client certificate."""
        ca = self.workdir / f"{self.name}-certs" / "ca.crt"
        ctx = ssl.create_default_context(cafile=str(ca))
        if self.require_client_cert:
            cert, key = self.control_plane.webhook_client_cert
            ctx.load_cert_chain(cert, key)
        return ctx

    def _wait_ready(self, timeout: float) -> None:
        ctx = self.ssl_context()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"controller exited with {self._proc.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.health_port}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        # The health server answers before kopf binds the webhook port.
                        req = urllib.request.Request(  # noqa: S310
                            self.url, data=b"{}", method="POST")
                        try:
                            urllib.request.urlopen(req, context=ctx, timeout=1)  # noqa: S310
                        except urllib.error.HTTPError:
                            return  # it answered (400 for an empty review): TLS works
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"controller not ready after {timeout}s:\n"
                           f"{self.log_path.read_text(errors='replace')[-3000:]}")

    def _apply(self, obj: dict[str, Any]) -> None:
        subprocess.run(
            [str(find_binary("kubectl")), "--kubeconfig", str(self.control_plane.kubeconfig),
             "apply", "-f", "-"], input=json.dumps(obj).encode(), check=True,
            capture_output=True, timeout=60)

    def _unregister(self) -> None:
        subprocess.run(
            [str(find_binary("kubectl")), "--kubeconfig", str(self.control_plane.kubeconfig),
             "delete", "validatingwebhookconfiguration", self.name, "--ignore-not-found"],
            capture_output=True, timeout=60, check=False)

    def stop(self) -> None:
        if not self.guard_gate:
            self._unregister()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self.guard_gate:
            # Only once the process is gone: its guard would restore the configuration.
            self._unregister()
        if self._log is not None:
            self._log.close()
