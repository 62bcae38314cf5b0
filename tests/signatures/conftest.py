"""Shared fixtures for the signature tests: the real registry, keys, and a verifier factory."""

from __future__ import annotations

from tests.fixtures.registry import cosign_registry, registry  # noqa: F401
from tests.signatures.helpers import verifier_factory  # noqa: F401
