"""Verified reads of the whole chain for the admission path, shared for a short time.

A rollback is admitted on the strength of an earlier entry, so that entry must come from a chain
that verifies: a planted record must never authorise a rollback. Reading and verifying the chain
costs a list of every segment; rollbacks come in bursts during an incident, so one verified read
serves every look-up for `ttl` seconds, and concurrent look-ups share one read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from controller.kube import KubeApi
from controller.ledger.chain import CheckpointVerifier
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import LedgerCorrupt
from controller.ledger.query import AdmissionView, admissions
from controller.ledger.verify import load_ledger, verify_ledger


class LedgerReader:
    """`await views()`: every admission with its outcomes, from a chain that verifies."""

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def __init__(self, api: KubeApi, config: LedgerConfig, *,
                 verifier: CheckpointVerifier | None, ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._config = config
        self._verifier = verifier
        """The controller's own checkpoint key: checkpoints are checked against it, not
        against whatever public key the ledger namespace holds."""
        self._ttl = ttl
        self._clock = clock
        self._cached: tuple[float, list[AdmissionView]] | None = None
        self._lock = asyncio.Lock()

    async def views(self, *, newer_than: float | None = None) -> list[AdmissionView]:
        """The admissions, oldest first; `LedgerCorrupt` when the chain does not verify.

        A read within the last `ttl` seconds is reused, unless it is not newer than
        `newer_than` (a clock value): a caller that did not find what it looked for in a
        shared read asks for one made after it started looking.
        """
        async with self._lock:
            if self._cached is not None and self._clock() - self._cached[0] < self._ttl and (
                    newer_than is None or self._cached[0] > newer_than):
                return self._cached[1]
            began = self._clock()  # the read sees everything written before it began
            lanes = await load_ledger(self._api, self._config.namespace, self._config.chain,
                                      key_namespace=self._config.checkpoint_key_namespace)
            report = verify_ledger(lanes, chain=self._config.chain, verifier=self._verifier,
                                   max_entry_bytes=self._config.max_entry_bytes)
            if not report.ok:
                self._cached = None
                raise LedgerCorrupt(f"the ledger does not verify: {report.problems[0]}")
            views = admissions(report.records)
            self._cached = (began, views)
            return views
