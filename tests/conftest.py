"""Fixture modules shared across the test tree; each lives in tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.cluster",
    "tests.fixtures.controller",
    "tests.fixtures.registry",
]
