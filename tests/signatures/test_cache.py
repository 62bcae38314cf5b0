"""The verdict cache: TTL, bound, short-lived denials, single-flight."""

from __future__ import annotations

import asyncio

import pytest

from controller import metrics
from controller.signatures.cache import VerdictCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, max_entries: int = 3) -> VerdictCache[str]:
    return VerdictCache(max_entries=max_entries, ttl=60, denial_ttl=5,
                        is_denial=lambda v: v.startswith("deny"), clock=clock)


def test_ttl_and_short_denials() -> None:
    clock = Clock()
    cache = make(clock)
    cache.put("ok", "allow")
    cache.put("bad", "deny")
    clock.now += 4
    assert cache.get("ok") == "allow" and cache.get("bad") == "deny"
    clock.now += 2
    assert cache.get("ok") == "allow" and cache.get("bad") is None
    clock.now += 60
    assert cache.get("ok") is None
    assert len(cache) == 0


def test_bounded_lru() -> None:
    cache = make(Clock(), max_entries=2)
    cache.put("a", "allow-a")
    cache.put("b", "allow-b")
    assert cache.get("a") == "allow-a"  # a is now the most recently used
    cache.put("c", "allow-c")
    assert cache.get("b") is None and cache.get("a") == "allow-a" and cache.get("c") == "allow-c"
    assert len(cache) == 2


def test_zero_ttl_caches_nothing() -> None:
    cache: VerdictCache[str] = VerdictCache(max_entries=2, ttl=0, denial_ttl=0,
                                            is_denial=lambda v: False)
    cache.put("a", "x")
    assert cache.get("a") is None


async def test_single_flight() -> None:
    cache = make(Clock())
    calls = 0
    gate = asyncio.Event()

    async def compute() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "allow"

    waiters = [asyncio.create_task(cache.get_or_compute("k", compute)) for _ in range(50)]
    await asyncio.sleep(0.01)
    gate.set()
    assert await asyncio.gather(*waiters) == ["allow"] * 50
    assert calls == 1 and cache.misses == 1 and cache.joins == 49
    assert await cache.get_or_compute("k", compute) == "allow"
    assert calls == 1 and cache.hits == 1


async def test_cancelled_first_caller_does_not_cancel_the_shared_work() -> None:
    cache = make(Clock())
    gate = asyncio.Event()

    async def compute() -> str:
        await gate.wait()
        return "allow"

    first = asyncio.create_task(cache.get_or_compute("k", compute))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get_or_compute("k", compute))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == "allow"
    assert cache.get("k") == "allow"


def test_every_clear_is_a_new_generation() -> None:
    # Memoised answers compare generations: each clear must differ from every earlier one.
    cache = make(Clock())
    seen = [cache.generation]
    for _ in range(3):
        cache.put("k", "allow")
        cache.clear()
        assert cache.get("k") is None and len(cache) == 0
        assert cache.generation not in seen
        seen.append(cache.generation)


def test_an_entry_is_stale_from_the_instant_it_expires() -> None:
    clock = Clock()
    cache = make(clock)
    cache.put("k", "allow")
    # The verifier bounds memoised answers by this instant, so it must be exact.
    assert cache.expires("k") == 1060.0
    assert cache.expires("absent") == 0.0
    clock.now = 1059.5
    assert cache.get("k") == "allow"
    clock.now = 1060.0
    assert cache.get("k") is None and len(cache) == 0


def test_a_verdict_that_may_not_be_kept_drops_the_one_it_replaces() -> None:
    cache: VerdictCache[str] = VerdictCache(max_entries=2, ttl=60, denial_ttl=0,
                                            is_denial=lambda v: v.startswith("deny"),
                                            clock=Clock())
    cache.put("k", "allow")
    cache.put("other", "allow")
    # The image lost its signature: the old passing verdict must not outlive the denial.
    cache.put("k", "deny")
    assert cache.get("k") is None and cache.get("other") == "allow"


async def test_hits_and_misses_are_counted_and_exported() -> None:
    cache = make(Clock())
    hits = metrics.REGISTRY.get_sample_value("provenance_verification_cache_hits_total") or 0
    misses = metrics.REGISTRY.get_sample_value("provenance_verification_cache_misses_total") or 0

    async def compute() -> str:
        return "allow"

    assert cache.lookup("k") is None
    assert await cache.get_or_compute("k", compute) == "allow"
    assert cache.lookup("k") == "allow"
    assert await cache.get_or_compute("k", compute) == "allow"
    assert (cache.hits, cache.misses) == (2, 1)
    assert metrics.REGISTRY.get_sample_value("provenance_verification_cache_hits_total") == (
        hits + 2)
    assert metrics.REGISTRY.get_sample_value("provenance_verification_cache_misses_total") == (
        misses + 1)
