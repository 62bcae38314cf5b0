"""Writer lanes: one chain per controller replica, each claimed through a Lease.

Replicas that append to one chain contend for every position in it: each write races the
others, and the losers re-read and retry. So each replica writes its own chain, a *lane*: lane 0
is the configured chain itself (`audit`, so a single replica keeps the names it always had),
lane N is `<chain>-lane<N>`. A lane is claimed through a `coordination.k8s.io/v1` Lease
`<chain>-lane-<N>` in the ledger namespace and renewed every third of its duration. A replica
that dies stops renewing; once the Lease has expired, a starting replica claims the lane and
continues the chain from its tail, verified like any tail. Two writers can never fork a lane even
if both believe they hold it (a partitioned holder whose Lease expired): every segment is created
by name, so only one of them creates each position, and the other finds a segment it did not
write and re-reads. A holder that cannot renew for a whole Lease duration stops writing (its
admissions are denied) until it holds a lane again.

Readers (`verify`, `history`, `rollback-target`, `export`, `prune`, `status`) read every lane of
the ledger namespace as one ledger (`controller.ledger.verify.load_ledger`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from controller import metrics
from controller.kube import KubeApi, KubeApiError
from controller.ledger.config import LedgerConfig
from controller.ledger.errors import LedgerUnavailable

log = logging.getLogger(__name__)

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def lane_chain(chain: str, index: int) -> str:
    """The chain name of lane `index` of the configured `chain`."""
    return chain if index == 0 else f"{chain}-lane{index}"


def lane_index(chain: str, lane: str) -> int | None:
    """The index of `lane` among the lanes of `chain`, or None if it is none of them."""
    if lane == chain:
        return 0
    match = re.fullmatch(re.escape(chain) + r"-lane([1-9][0-9]{0,2})", lane)
    return int(match.group(1)) if match else None


def lease_name(chain: str, index: int) -> str:
    return f"{chain}-lane-{index}"


def _micro(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class LaneClaim:
    """Holds one writer lane of the ledger for this process (see the module docstring)."""

    def __init__(self, api: KubeApi, config: LedgerConfig, *, identity: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.api = api
        self.config = config
        self.identity = identity
        self.clock = clock
        self.index: int | None = None
        self._renewed_at = 0.0
        self._path = LEASES.format(namespace=config.namespace)

    @property
    def chain(self) -> str:
        if self.index is None:
            raise LedgerUnavailable("this replica holds no ledger lane")
        return lane_chain(self.config.chain, self.index)

    async def acquire(self) -> int:
        """Claim the first lane that is free or whose holder's Lease expired."""
        for index in range(self.config.lanes):
            if await self._try(index):
                self.index = index
                self._renewed_at = time.monotonic()
                metrics.set_ledger_lanes_held(1)
                log.info("holding ledger lane %d (%s)", index, lane_chain(self.config.chain,
                                                                          index))
                return index
        raise LedgerUnavailable(f"all {self.config.lanes} ledger lanes are held by live "
                                "replicas; raise ledger.lanes above the replica count")

    async def _try(self, index: int) -> bool:
        name = lease_name(self.config.chain, index)
        now = self.clock()
        spec = {"holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.config.lane_lease_seconds),
                "acquireTime": _micro(now), "renewTime": _micro(now)}
        try:
            lease = await self.api.request("GET", f"{self._path}/{name}")
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "labels": {
                        "provenance.dev/ledger-chain": self.config.chain,
                        "provenance.dev/ledger-role": "lane"}},
                    "spec": {**spec, "leaseTransitions": 0}}
            try:
                await self.api.request("POST", self._path, body=body)
            except KubeApiError as create_exc:
                if create_exc.status == 409:
                    return False
                raise
            return True
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity")
        renewed = _parse(current.get("renewTime")) or _parse(current.get("acquireTime"))
        duration = current.get("leaseDurationSeconds") or self.config.lane_lease_seconds
        expired = renewed is None or renewed + timedelta(seconds=float(duration)) < now
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(current.get("leaseTransitions") or 0) + (holder != self.identity)
        lease["spec"] = {**current, **spec, "leaseTransitions": transitions}
        try:
            await self.api.request("PUT", f"{self._path}/{name}", body=lease)
        except KubeApiError as exc:
            if exc.status == 409:
                return False  # another replica claimed it first
            raise
        return True

    async def renew(self) -> bool:
        """Renew the held Lease; False when another holder has it now (the lane is lost)."""
        if self.index is None:
            return False
        name = lease_name(self.config.chain, self.index)
        lease: dict[str, Any] = await self.api.request("GET", f"{self._path}/{name}")
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return False
        spec["renewTime"] = _micro(self.clock())
        lease["spec"] = spec
        try:
            await self.api.request("PUT", f"{self._path}/{name}", body=lease)
        except KubeApiError as exc:
            if exc.status == 409:
                return await self.renew()  # someone touched it: look again
            raise
        self._renewed_at = time.monotonic()
        return True

    async def release(self) -> None:
        """Give the lane up at shutdown, so a new replica need not wait for the Lease."""
        if self.index is None:
            return
        name = lease_name(self.config.chain, self.index)
        with contextlib.suppress(KubeApiError):
            lease = await self.api.request("GET", f"{self._path}/{name}")
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["renewTime"] = _micro(datetime(1970, 1, 1, tzinfo=UTC))
                lease["spec"]["holderIdentity"] = ""
                await self.api.request("PUT", f"{self._path}/{name}", body=lease)
        self.index = None
        metrics.set_ledger_lanes_held(0)

    async def keep(self, on_lost: Callable[[str], None],
                   on_held: Callable[[str], None]) -> None:
        """Renew forever. When the lane is lost (or cannot be renewed for a Lease duration),
        tell `on_lost` (the writer stops) and claim a lane again, then tell `on_held`."""
        interval = self.config.lane_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                held = await self.renew()
            except KubeApiError as exc:
                log.warning("cannot renew the ledger lane lease: %s", exc)
                held = time.monotonic() - self._renewed_at < self.config.lane_lease_seconds
                if held:
                    continue
            if held:
                continue
            lost = self.chain if self.index is not None else "(none)"
            self.index = None
            metrics.set_ledger_lanes_held(0)
            on_lost(f"the ledger lane {lost} is no longer held by this replica")
            while self.index is None:
                try:
                    await self.acquire()
                except (KubeApiError, LedgerUnavailable) as exc:
                    log.warning("cannot claim a ledger lane: %s", exc)
                    await asyncio.sleep(interval)
            on_held(self.chain)
