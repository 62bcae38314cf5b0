"""The one error of the self-managed TLS concern."""

from __future__ import annotations

from controller.errors import ProvenanceError


class TlsError(ProvenanceError):
    """Certificates could not be issued, stored, or published to the webhook configuration."""
