"""A real etcd and kube-apiserver (and optionally kube-controller-manager) on loopback.

Binaries come from `$KUBEBUILDER_ASSETS` (the envtest convention) or the repository's `bin/`,
which `make tools` fills by building them from Go modules. Everything the API server needs is
generated here: a serving certificate, a client CA with an admin client certificate
(`system:masters`), and the service-account signing key pair.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from controller.certs import KeyPair, make_ca, make_serving_cert

REPO_ROOT = Path(__file__).resolve().parents[2]


CONTROLLERS = "deployment,replicaset,statefulset,daemonset,job,cronjob,replicationcontroller"
"""kube-controller-manager's controllers that create objects from a pod template."""


class ControlPlaneError(RuntimeError):
    """The local control plane could not be started; the message says which binary and why."""


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> Path:
    """`name` from $KUBEBUILDER_ASSETS, else bin/, else PATH; explain how to get it if absent."""
    candidates = []
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        candidates.append(Path(assets) / name)
    candidates.append(REPO_ROOT / "bin" / name)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    on_path = shutil.which(name)
    if on_path and name not in ("kubectl",):
        return Path(on_path)
    raise ControlPlaneError(
        f"{name} not found in $KUBEBUILDER_ASSETS or {REPO_ROOT / 'bin'}: run `make tools` "
        "(builds it from Go modules) or point KUBEBUILDER_ASSETS at setup-envtest's output")


def _client_cert(ca: KeyPair, *, user: str, groups: list[str]) -> KeyPair:
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, user)]
        + [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups])
    import datetime as dt
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class LocalControlPlane:
    """Start with `start()`, stop with `stop()`; or use it as a context manager."""

    workdir: Path
    """Where certificates, the etcd data and the logs go."""
    with_controller_manager: bool = False
    """Also run kube-controller-manager's workload controllers (`CONTROLLERS`): derived
    ReplicaSets, Pods and Jobs, rollout history, `rollout undo`."""
    etcd_fsync: bool = True
    """False trades durability for speed in throw-away test clusters."""
    api_port: int = 0
    etcd_port: int = 0
    _procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def __enter__(self) -> LocalControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self._procs.append((name, proc, log))

    def _tail(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def start(self, timeout: float = 90.0) -> None:
        """Generate credentials, start the processes, wait until the API server is ready."""
        etcd, apiserver = find_binary("etcd"), find_binary("kube-apiserver")
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        self.api_port = self.api_port or free_port()
        self.etcd_port = self.etcd_port or free_port()

        serving_ca = make_ca(common_name="local-apiserver-ca")
        serving = make_serving_cert(serving_ca, hosts=["127.0.0.1", "localhost"])
        client_ca = make_ca(common_name="local-client-ca")
        admin = _client_cert(client_ca, user="admin", groups=["system:masters"])
        # A separate CA for the certificate the API server presents to webhooks, so that a
        # webhook trusting it trusts the API server and nothing else.
        webhook_client_ca = make_ca(common_name="local-webhook-client-ca")
        webhook_client = _client_cert(webhook_client_ca, user="kube-apiserver", groups=[])
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        files = {
            "serving-ca.crt": serving_ca.cert_pem, "serving.crt": serving.cert_pem,
            "serving.key": serving.key_pem, "client-ca.crt": client_ca.cert_pem,
            "client-ca.key": client_ca.key_pem,
            "admin.crt": admin.cert_pem, "admin.key": admin.key_pem,
            "webhook-client-ca.crt": webhook_client_ca.cert_pem,
            "webhook-client.crt": webhook_client.cert_pem,
            "webhook-client.key": webhook_client.key_pem,
            "sa.key": sa_key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()),
            "sa.pub": sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        }
        for fname, data in files.items():
            (pki / fname).write_bytes(data)
            (pki / fname).chmod(0o600)

        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        etcd_argv = [
            str(etcd), "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{free_port()}",
            "--log-level", "warn",
        ]
        if not self.etcd_fsync:
            etcd_argv.append("--unsafe-no-fsync")
        self._spawn("etcd", etcd_argv)
        self._spawn("kube-apiserver", [
            str(apiserver),
            "--etcd-servers", etcd_url,
            "--bind-address", "127.0.0.1",
            "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.api_port),
            "--tls-cert-file", str(pki / "serving.crt"),
            "--tls-private-key-file", str(pki / "serving.key"),
            "--client-ca-file", str(pki / "client-ca.crt"),
            "--service-account-key-file", str(pki / "sa.pub"),
            "--service-account-signing-key-file", str(pki / "sa.key"),
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range", "10.0.0.0/24",
            "--authorization-mode", "RBAC",
            "--allow-privileged=true",
            # No kubelet or node exists; the ServiceAccount admission plugin would wait for
            # token controllers that are not running.
            "--disable-admission-plugins", "ServiceAccount",
            "--cert-dir", str(self.workdir / "apiserver-certs"),
            "--admission-control-config-file", str(self._admission_config(pki)),
            "--v", "1",
        ])
        self._write_kubeconfig(serving_ca, admin)
        self._wait_ready(pki, timeout)
        if self.with_controller_manager:
            self._spawn("kube-controller-manager", [
                str(find_binary("kube-controller-manager")),
                "--kubeconfig", str(self.kubeconfig),
                # Every controller that derives workloads from a template, each under its own
                # service account (TokenRequest), as kubeadm and managed clusters run them: the
                # derived ReplicaSets, Pods and Jobs reach the webhook from those identities.
                "--controllers", CONTROLLERS,
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--bind-address", "127.0.0.1",
                "--secure-port", "0",
                "--v", "1",
            ])

    @property
    def webhook_client_ca(self) -> Path:
        """The CA of the client certificate the API server presents to every webhook."""
        return self.workdir / "pki" / "webhook-client-ca.crt"

    @property
    def webhook_client_cert(self) -> tuple[Path, Path]:
        """The API server's webhook client certificate and key (tests use it to pose as it)."""
        pki = self.workdir / "pki"
        return pki / "webhook-client.crt", pki / "webhook-client.key"

    def _admission_config(self, pki: Path) -> Path:
        # The AdmissionConfiguration way of giving the API server a webhook client
        # certificate: user "*" in its kubeconfig applies to every webhook it calls.
        kubeconfig = pki / "webhook-client.kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\nusers:\n- name: '*'\n  user:\n"
            f"    client-certificate: {pki / 'webhook-client.crt'}\n"
            f"    client-key: {pki / 'webhook-client.key'}\n")
        config = pki / "admission.yaml"
        config.write_text(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n"
            "- name: ValidatingAdmissionWebhook\n  configuration:\n"
            "    apiVersion: apiserver.config.k8s.io/v1\n"
            "    kind: WebhookAdmissionConfiguration\n"
            f"    kubeConfigFile: {kubeconfig}\n")
        return config

    def _write_kubeconfig(self, serving_ca: KeyPair, admin: KeyPair) -> None:
        text = f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {self.server}
    certificate-authority-data: {_b64(serving_ca.cert_pem)}
users:
- name: admin
  user:
    client-certificate-data: {_b64(admin.cert_pem)}
    client-key-data: {_b64(admin.key_pem)}
contexts:
- name: local
  context: {{cluster: local, user: admin}}
current-context: local
"""
        self.kubeconfig.write_text(text)
        self.kubeconfig.chmod(0o600)

    def _wait_ready(self, pki: Path, timeout: float) -> None:
        ctx = ssl.create_default_context(cafile=str(pki / "serving-ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc, _ in self._procs:
                if proc.poll() is not None:
                    self.stop()
                    raise ControlPlaneError(
                        f"{name} exited with {proc.returncode}:\n{self._tail(name)}")
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=ctx,  # noqa: S310
                                            timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.3)
        self.stop()
        raise ControlPlaneError(f"kube-apiserver not ready after {timeout}s ({last}):\n"
                                f"{self._tail('kube-apiserver')}")

    def stop(self) -> None:
        """Stop every process this object started (newest first) and close the logs."""
        for _name, proc, log in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()
        self._procs.clear()
