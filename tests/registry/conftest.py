"""Fixtures for the registry client tests: the real registry with the cosign layout."""

from __future__ import annotations

from tests.fixtures.registry import cosign_registry, registry  # noqa: F401
