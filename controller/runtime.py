"""Assemble the long-lived parts the operator runs with, and take them down again.

Plain Python (no kopf): the webhook edge calls `Runtime.build` at start-up and `close` at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from dataclasses import dataclass

from controller import metrics
from controller.admission import Admission, Stage
from controller.config import Config
from controller.events import post_event
from controller.kube import KubeApi
from controller.ledger import (
    BreakGlass,
    Ledger,
    LedgerError,
    Reconciler,
    load_signer,
)
from controller.ledger.lanes import LaneClaim
from controller.ledger.reader import LedgerReader
from controller.ledger.store import ensure_ledger_namespace
from controller.ledger.unadmitted import UnadmittedDetector
from controller.registry import KubeSecretSource
from controller.review import WorkloadRequest
from controller.signatures import ImageVerifier
from controller.stages import BreakGlassStage, LedgerStage, RollbackStage, SignatureStage
from controller.status import SCAN_INTERVAL_SECONDS, publish_forever

logger = logging.getLogger("provenance.runtime")


@dataclass
class Runtime:
    """Everything one controller process shares across requests."""

    config: Config
    api: KubeApi
    admission: Admission
    verifier: ImageVerifier | None = None
    ledger: Ledger | None = None
    reconciler: Reconciler | None = None
    unadmitted: UnadmittedDetector | None = None
    scanner: asyncio.Task[None] | None = None
    """The periodic scan behind `provenance_unrecorded_workloads` (with the ledger on)."""
    lane: LaneClaim | None = None
    """The writer lane this replica holds, and the task that keeps renewing it."""
    lane_keeper: asyncio.Task[None] | None = None

    @classmethod
    async def build(cls, config: Config, *, kubeconfig: str | None,
                    budget_seconds: float = 8.0,
                    scan_interval: float = SCAN_INTERVAL_SECONDS) -> Runtime:
        """Connect to the API server and build the pipeline the configuration asks for.

        With the ledger on, a background task counts unrecorded workloads every
        `scan_interval` seconds (`controller.status.publish_forever`); 0 turns it off."""
        api = KubeApi.from_kubeconfig(kubeconfig)
        stages: list[Stage] = []
        verifier = None
        if config.signatures.enabled:
            verifier = ImageVerifier(config.signatures, secrets=KubeSecretSource(api))
            # Keep a third of the budget (at most 2 s) for the ledger append that follows.
            reserve = min(2.0, budget_seconds / 3) if config.ledger.enabled else 0.0
            stages.append(SignatureStage(verifier, config, reserve_seconds=reserve))
        background: set[asyncio.Task[None]] = set()

        def on_break_glass(request: WorkloadRequest, record: BreakGlass) -> None:
            environment = (config.environment_for_namespace(request.namespace)
                           or request.annotations.get(config.annotations.key("environment")))
            metrics.record_break_glass(environment)
            task = asyncio.create_task(post_event(
                api, namespace=request.namespace, reason="BreakGlass",
                involved={"apiVersion": request.kind.api_version, "kind": request.kind.kind,
                          "name": request.name, "namespace": request.namespace,
                          "uid": request.object.metadata.uid},
                message=f"{record.username} broke glass, waiving {', '.join(record.waived)}: "
                        f"{record.reason}"))
            background.add(task)  # held until done, so the Event is not lost to the GC
            task.add_done_callback(background.discard)

        stages.append(BreakGlassStage(config, on_break_glass=on_break_glass))
        ledger = reconciler = unadmitted = lane = lane_keeper = None
        if config.ledger.enabled:
            # The key signs every write; it lives outside the ledger namespace, so whoever can
            # write ledger ConfigMaps still cannot forge a record the controller would extend.
            # Without it nothing can be recorded, so nothing is admitted: fail closed, loudly.
            try:
                signer = await load_signer(api, config.ledger, create=True)
            except LedgerError as exc:
                raise LedgerError(f"the ledger key is unavailable, so no admission can be "
                                  f"recorded: {exc}") from exc

            def on_corrupt(reason: str) -> None:
                task = asyncio.create_task(post_event(
                    api, namespace="default", reason="LedgerCorrupt",
                    involved={"apiVersion": "v1", "kind": "Namespace",
                              "name": config.ledger.namespace},
                    message=f"the ledger tail was refused, admissions are denied: {reason}"))
                background.add(task)
                task.add_done_callback(background.discard)

            # Each replica writes its own chain (a lane), so replicas never contend.
            lane = LaneClaim(api, config.ledger,
                             identity=f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
            await ensure_ledger_namespace(api, config.ledger)
            await lane.acquire()
            ledger = Ledger(api, config.ledger, signer=signer, on_corrupt=on_corrupt,
                            chain=lane.chain)
            await ledger.start()
            lane_keeper = asyncio.create_task(lane.keep(ledger.fence, ledger.switch),
                                              name="ledger-lane")
            reconciler = Reconciler(ledger, annotation_prefix=config.annotations.prefix)
            if config.rollback.enabled:
                # First: whether a restored template is a rollback decides the actor checks'
                # verdict; its images are then verified like any other deploy's.
                reader = LedgerReader(api, config.ledger,
                                      verifier=signer.verifier,
                                      ttl=config.rollback.ledger_cache_seconds)
                stages.insert(0, RollbackStage(reader, config))
            unadmitted = UnadmittedDetector(reconciler,
                                            exempt_namespaces=config.exempt_namespaces,
                                            annotation_prefix=config.annotations.prefix)
            # Before the watch starts: every workload listed at start is judged against the
            # whole chain, not only the recent segments.
            await unadmitted.load()
            stages.append(LedgerStage(ledger, config))  # last: record only what is admitted
        admission = Admission(config, stages=tuple(stages), budget_seconds=budget_seconds)
        scanner = None
        if ledger is not None and scan_interval > 0:
            scanner = asyncio.create_task(publish_forever(
                api, config, interval=scan_interval, verifier=ledger.signer.verifier))
        return cls(config=config, api=api, admission=admission, verifier=verifier,
                   ledger=ledger, reconciler=reconciler, unadmitted=unadmitted,
                   scanner=scanner, lane=lane, lane_keeper=lane_keeper)

    async def close(self) -> None:
        """Stop the scan, flush the ledger and close connections."""
        if self.scanner is not None:
            self.scanner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.scanner
        if self.reconciler is not None:
            await self.reconciler.close()
        if self.lane_keeper is not None:
            self.lane_keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.lane_keeper
        if self.ledger is not None:
            await self.ledger.close()
        if self.lane is not None:
            # After the last write: a successor may take the lane at once.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.lane.release(), timeout=2)
        if self.verifier is not None:
            await self.verifier.close()
        await self.api.close()
