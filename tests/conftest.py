"""Fixture modules shared across the test tree; each lives in tests/fixtures/.

Markers say what a test needs, and are derived from what it uses rather than from where it
sits: a test whose fixtures start the control plane is `e2e`, one that starts a registry
process (docker-registry, bin/referrers-registry) is `registry`, one that starts the local
Sigstore services (tests/fixtures/sigstore.py) is `sigstore`. A test marked `e2e` by hand
that needs no control plane is a collection error, so `pytest -m "not e2e"` (make unit) runs
every test that can run without a cluster.
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.cluster",
    "tests.fixtures.controller",
    "tests.fixtures.registry",
    "tests.fixtures.sigstore",
]

NEEDS = {"e2e": ("control_plane",), "registry": ("registry", "referrers_registry"),
         "sigstore": ("local_sigstore",)}
"""Marker → the session fixtures whose use is that need."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong: list[str] = []
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in NEEDS.items():
            marked = item.get_closest_marker(marker) is not None
            needed = bool(used.intersection(fixtures))
            if needed and not marked:
                item.add_marker(getattr(pytest.mark, marker))
            elif marked and not needed:
                wrong.append(f"{item.nodeid} is marked {marker} but uses none of {fixtures}")
    if wrong:
        raise pytest.UsageError("markers that say a need the test does not have:\n  "
                                + "\n  ".join(wrong))
