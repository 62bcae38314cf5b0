"""Shared fixtures for the signature tests: the real registry, keys, and a verifier factory."""

from __future__ import annotations

from tests.signatures.helpers import verifier_factory  # noqa: F401
