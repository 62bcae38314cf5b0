"""Self-managed webhook TLS: a CA and serving certificate kept in a Secret, rotated before expiry.

The alternative to cert-manager. `ensure_certificates` is called at start-up and then periodically
(`keep_certificates_fresh`) by every replica; the Secret is the single source of truth and its
`resourceVersion` settles races between replicas.
"""

from controller.tls.errors import TlsError
from controller.tls.issuer import Material, issue, rotation_reason, service_hosts
from controller.tls.manager import CertificateStatus, ensure_certificates, keep_certificates_fresh
from controller.tls.settings import SelfManagedTls

__all__ = [
    "CertificateStatus",
    "Material",
    "SelfManagedTls",
    "TlsError",
    "ensure_certificates",
    "issue",
    "keep_certificates_fresh",
    "rotation_reason",
    "service_hosts",
]
