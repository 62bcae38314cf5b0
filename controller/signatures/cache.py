"""The verdict cache: bounded, with a TTL, short-lived denials, and single-flight.

Concurrent admissions of the same image share one verification: the first caller starts it as a
task, the others await the same task. The task runs to completion even if the caller that started
it is cancelled (its API server request timed out), so the next caller still gets the result.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from controller import metrics

V = TypeVar("V")


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    expires: float


class VerdictCache(Generic[V]):
    """A bounded LRU mapping key → value, with per-entry expiry and single-flight computation."""

    def __init__(
        self,
        *,
        max_entries: int,
        ttl: float,
        denial_ttl: float,
        is_denial: Callable[[V], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[Hashable, _Entry[V]] = OrderedDict()
        self._inflight: dict[Hashable, asyncio.Task[V]] = {}
        self._max = max_entries
        self._ttl = ttl
        self._denial_ttl = denial_ttl
        self._is_denial = is_denial
        self._clock = clock
        self.hits = 0
        """Answers served from the cache (a counter for metrics and tests)."""
        self.generation = 0
        """Bumped by `clear`, so that anything derived from older verdicts knows it is stale."""
        self.misses = 0
        """Computations started."""
        self.joins = 0
        """Callers that joined a computation already in flight."""

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> V | None:
        """The fresh value for `key`, or None (an expired entry is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.value

    def put(self, key: Hashable, value: V) -> None:
        """Store `value`; denials get the short TTL. Evicts the least recently used."""
        ttl = self._denial_ttl if self._is_denial(value) else self._ttl
        if ttl <= 0:
            self._entries.pop(key, None)
            return
        self._entries[key] = _Entry(value, self._clock() + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def expires(self, key: Hashable) -> float:
        """When the entry for `key` stops being fresh (the clock's units); 0 when absent."""
        entry = self._entries.get(key)
        return entry.expires if entry is not None else 0.0

    def now(self) -> float:
        """The cache's clock."""
        return self._clock()

    def clear(self) -> None:
        """Forget every verdict (for example after the trusted keys changed)."""
        self._entries.clear()
        self.generation += 1

    def lookup(self, key: Hashable) -> V | None:
        """`get`, counted as a hit when found: the synchronous fast path of `get_or_compute`."""
        cached = self.get(key)
        if cached is not None:
            self.hits += 1
            metrics.record_cache(hit=True)
        return cached

    async def get_or_compute(self, key: Hashable, compute: Callable[[], Awaitable[V]]) -> V:
        """The cached value, else the in-flight computation's, else a new computation's."""
        cached = self.lookup(key)
        if cached is not None:
            return cached
        task = self._inflight.get(key)
        if task is None:
            self.misses += 1
            metrics.record_cache(hit=False)
            task = asyncio.ensure_future(self._run(key, compute))
            self._inflight[key] = task
        else:
            self.joins += 1
        # shield: a cancelled waiter must not cancel the shared computation.
        return await asyncio.shield(task)

    async def _run(self, key: Hashable, compute: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await compute()
            self.put(key, value)
            return value
        finally:
            self._inflight.pop(key, None)
