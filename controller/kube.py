"""A small async Kubernetes API client on aiohttp.

kopf's own client is private API, and the `kubernetes` package is synchronous; the admission path
(ledger appends, pull secrets, caBundle patches) must not block the event loop. So the `kubernetes`
package is used only for what it does well, loading credentials from a kubeconfig or the in-cluster
service account, and requests go over one shared aiohttp session with connection reuse.
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from controller.errors import ProvenanceError

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where the kubelet mounts the in-cluster service-account token and CA."""


class KubeApiError(ProvenanceError):
    """The API server answered with an error status, or could not be reached."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        """HTTP status; 0 when the server could not be reached."""
        self.reason = reason
        """The Status object's reason (`Conflict`, `AlreadyExists`, `Forbidden`, ...)."""
        self.message = message


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where the API server is and how to authenticate to it."""

    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    token_file: str | None = None
    """Re-read periodically: projected service-account tokens rotate."""
    verify: bool = True


def load_credentials(kubeconfig: str | None = None) -> Credentials:
    """Credentials from `kubeconfig` (or $KUBECONFIG / ~/.kube/config), else in-cluster."""
    from kubernetes import config as kconfig
    from kubernetes.client import Configuration

    cfg = Configuration()
    if kubeconfig is None and (SA_DIR / "token").exists():
        kconfig.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        return Credentials(
            server=cfg.host, ca_file=cfg.ssl_ca_cert, token_file=str(SA_DIR / "token"))
    kconfig.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, client_configuration=cfg)
    keys = cfg.api_key or {}
    # The kubernetes loader stores a kubeconfig token under "BearerToken" (older: "authorization").
    auth = keys.get("authorization") or keys.get("BearerToken")
    token = auth.removeprefix("Bearer ").strip() if isinstance(auth, str) else None
    return Credentials(
        server=cfg.host,
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        token=token,
        verify=bool(cfg.verify_ssl),
    )


class KubeApi:
    """JSON requests to the API server over one keep-alive session."""

    def __init__(self, credentials: Credentials, *, timeout: float = 10.0) -> None:
        self._creds = credentials
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = credentials.token
        self._token_read_at = 0.0

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, **kwargs: Any) -> KubeApi:
        return cls(load_credentials(kubeconfig), **kwargs)

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self._creds.server.startswith("https"):
            return False
        ctx = ssl.create_default_context(cafile=self._creds.ca_file)
        if not self._creds.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self._creds.cert_file and self._creds.key_file:
            ctx.load_cert_chain(self._creds.cert_file, self._creds.key_file)
        return ctx

    def _session_(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl(), limit=64)
            self._session = aiohttp.ClientSession(
                base_url=self._creds.server.rstrip("/") + "/", connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._timeout))
        return self._session

    def _bearer(self) -> str | None:
        if self._creds.token_file and time.monotonic() - self._token_read_at > 60:
            self._token = Path(self._creds.token_file).read_text().strip()
            self._token_read_at = time.monotonic()
        return self._token

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON body or raise `KubeApiError`."""
        headers = {"Accept": "application/json"}
        token = self._bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body, separators=(",", ":"))
        client_timeout = aiohttp.ClientTimeout(total=timeout) if timeout is not None else None
        try:
            async with self._session_().request(
                method, path.lstrip("/"), data=data, params=params, headers=headers,
                timeout=client_timeout,
            ) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    reason, message = resp.reason or "", text[:500]
                    try:
                        status = json.loads(text)
                        reason = status.get("reason") or reason
                        message = status.get("message") or message
                    except ValueError:
                        pass
                    raise KubeApiError(resp.status, str(reason), str(message))
                return json.loads(text) if text else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeApiError(0, "Unreachable", f"{method} {path}: {exc!r}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
