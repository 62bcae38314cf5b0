"""The registry client's one error tree: every failure names the registry it came from.

The verifier turns any `RegistryError` into a `RegistryError` violation (or, when the
configuration says so, into an admitted-with-warning outcome); nothing else leaks out of
`controller.registry`, so aiohttp's exceptions never reach the admission pipeline.
"""

from __future__ import annotations

from controller.errors import ProvenanceError


class RegistryError(ProvenanceError):
    """A registry could not give us what we asked for, or gave us something we refuse."""

    def __init__(self, registry: str, message: str) -> None:
        super().__init__(f"registry {registry}: {message}")
        self.registry = registry
        """The registry host (and port) the failure concerns."""
        self.detail = message
        """What went wrong, without the registry prefix."""


class RegistryUnavailable(RegistryError):
    """The registry could not be reached, timed out, or answered with a 5xx."""


class RegistryLimitExceeded(RegistryError):
    """A response broke a hard limit (size, count, redirects): the registry is hostile."""


class RegistryProtocolError(RegistryError):
    """The registry answered, but with something that is not what the distribution spec says."""


class RegistryAuthError(RegistryError):
    """Authentication failed or was refused (401/403 after the challenge was answered)."""


class DigestMismatchError(RegistryError):
    """Bytes received did not hash to the digest that was asked for."""


class NotFoundError(RegistryError):
    """The manifest, tag or blob does not exist (404)."""
