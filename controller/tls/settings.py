"""How the operator's command line and the chart's environment become self-managed TLS settings.

The chart passes the names (`--tls-secret`, `--webhook-config`, `--service`, `--namespace`) as
flags and the timing as environment variables (PROVENANCE_TLS_*), so a controller that does not
know a timing variable yet still starts.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from controller.kube import KubeApi
from controller.tls.errors import TlsError
from controller.tls.issuer import DEFAULT_VALIDITY, KEY_CA
from controller.tls.manager import (
    CertificateStatus,
    ensure_certificates,
    get_secret,
    keep_certificates_fresh,
)

ENV_RENEW_BEFORE_HOURS = "PROVENANCE_TLS_RENEW_BEFORE_HOURS"
ENV_VALIDITY_HOURS = "PROVENANCE_TLS_VALIDITY_HOURS"
ENV_CHECK_INTERVAL_SECONDS = "PROVENANCE_TLS_CHECK_INTERVAL_SECONDS"


@dataclass(frozen=True, slots=True)
class SelfManagedTls:
    """Everything `ensure_certificates` needs, gathered once at start-up."""

    namespace: str
    """Namespace of the webhook Service and of the Secret."""
    secret: str
    """The Secret holding tls.crt, tls.key and ca.crt."""
    service: str
    """The webhook Service; decides the certificate's DNS names."""
    webhook_config: str
    """The ValidatingWebhookConfiguration whose caBundle is kept current."""
    cert_dir: Path
    """Where tls.crt, tls.key and ca.crt are written (the directory of --tls-cert)."""
    renew_before: dt.timedelta = dt.timedelta(days=30)
    """Rotate when the certificate expires within this period."""
    validity: dt.timedelta = DEFAULT_VALIDITY
    """Lifetime of newly issued certificates."""
    check_interval: float = 3600.0
    """Seconds between checks in each replica."""

    @classmethod
    def from_environ(
        cls,
        *,
        namespace: str,
        secret: str,
        service: str,
        webhook_config: str,
        cert_dir: Path,
        environ: Mapping[str, str] | None = None,
    ) -> SelfManagedTls:
        """Names from the command line, timing from PROVENANCE_TLS_* (defaults when unset)."""
        env = os.environ if environ is None else environ

        def number(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise TlsError(f"{name}={raw!r} is not a number") from None
            if value <= 0:
                raise TlsError(f"{name} must be positive, not {raw}")
            return value

        settings = cls(
            namespace=namespace, secret=secret, service=service, webhook_config=webhook_config,
            cert_dir=cert_dir,
            renew_before=dt.timedelta(hours=number(ENV_RENEW_BEFORE_HOURS, 720)),
            validity=dt.timedelta(hours=number(ENV_VALIDITY_HOURS, 8760)),
            check_interval=number(ENV_CHECK_INTERVAL_SECONDS, 3600),
        )
        if settings.validity <= settings.renew_before:
            raise TlsError(f"{ENV_VALIDITY_HOURS} must exceed {ENV_RENEW_BEFORE_HOURS}")
        return settings

    async def ensure(self, api: KubeApi) -> CertificateStatus:
        """One check: issue or rotate if needed, publish the CA bundle, write the files."""
        return await ensure_certificates(
            api, namespace=self.namespace, secret=self.secret, service=self.service,
            webhook_config=self.webhook_config, cert_dir=self.cert_dir,
            renew_before=self.renew_before, validity=self.validity)

    async def ca_bundle(self, api: KubeApi) -> str | None:
        """The caBundle the webhook configuration should carry now, as stored in the Secret.

        The Secret is written before the configuration is patched, so during a rotation this is
        already the new bundle: the gate guard (`controller.gate`) takes it as the expected one
        and never restores an old CA over a rotation.
        """
        secret = await get_secret(api, self.namespace, self.secret)
        value = ((secret or {}).get("data") or {}).get(KEY_CA)
        return value if isinstance(value, str) and value else None

    async def keep_fresh(self, api: KubeApi) -> None:
        """Check every `check_interval` seconds, forever (run it as a task after `ensure`)."""
        await keep_certificates_fresh(
            api, interval=self.check_interval, namespace=self.namespace, secret=self.secret,
            service=self.service, webhook_config=self.webhook_config, cert_dir=self.cert_dir,
            renew_before=self.renew_before, validity=self.validity)
