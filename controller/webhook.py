"""The kopf edge: the only module that imports kopf.

It wires three things: the validating handler, a TLS webhook server that parses every
AdmissionReview into a typed request before kopf sees it (a malformed one gets HTTP 400), and the
operator's start-up. Everything it calls is plain Python in controller.admission and below.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import json
import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import kopf

from controller import metrics
from controller.admission import Admission
from controller.config import Config
from controller.errors import ProvenanceError, ReviewError
from controller.ledger import Reconciler
from controller.observability import admission_context, build_health_app
from controller.review import DeploymentRequest, parse_review
from controller.runtime import Runtime
from controller.tls import SelfManagedTls

logger = logging.getLogger("provenance.webhook")

HANDLER_ID = "validate"
"""The handler id; kopf routes `POST /<id>` to it, so the webhook URL path is `/validate`."""
MAX_REVIEW_BYTES = 6 * 1024 * 1024
"""An AdmissionReview carries the object and the old object, each at most ~1.5 MiB in etcd."""

_current: contextvars.ContextVar[DeploymentRequest] = contextvars.ContextVar("review")


@dataclass(frozen=True)
class ServerOptions:
    """How the webhook and health servers listen."""

    host: str = "0.0.0.0"  # noqa: S104 - in a pod the Service reaches us on the pod IP
    port: int = 9443
    cert_file: Path | None = None
    key_file: Path | None = None
    health_port: int = 8080
    cert_check_interval: float = 30.0
    """How often the served certificate files are checked for rotation."""
    self_managed_tls: SelfManagedTls | None = None
    """When set, the controller issues and rotates its own certificate (no cert-manager)."""
    client_ca: Path | None = None
    """When set, only TLS clients with a certificate from this CA may send reviews: the API
    server, configured with a webhook client certificate (AdmissionConfiguration). Without it,
    anyone who can reach the port can post a made-up review, which the ledger would record."""
    timeout_seconds: float = 10.0
    """The webhook configuration's timeoutSeconds; the review must answer well inside it."""
    sweep_interval: float = 30.0
    """How often admissions not yet seen persisted are looked at by the reconciler."""


class ReviewingWebhookServer(kopf.WebhookServer):
    """kopf's TLS server, with the AdmissionReview parsed and bounded before kopf's machinery.

    kopf answers a body that is JSON but not an AdmissionReview with a 500; we answer 400 and keep
    serving, as the contract says: a bad webhook request is not a verdict.
    """

    @staticmethod
    async def _serve(fn: Any, request: aiohttp.web.Request) -> aiohttp.web.Response:
        if request.content_length is not None and request.content_length > MAX_REVIEW_BYTES:
            raise aiohttp.web.HTTPRequestEntityTooLarge(
                max_size=MAX_REVIEW_BYTES, actual_size=request.content_length)
        started = time.perf_counter()
        # kopf builds its aiohttp app with the default 1 MiB client_max_size, which an UPDATE of
        # a large Deployment (object and oldObject) exceeds; read the stream with our own bound.
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(1024 * 1024):
            size += len(chunk)
            if size > MAX_REVIEW_BYTES:
                metrics.record_review_error(seconds=time.perf_counter() - started)
                raise aiohttp.web.HTTPRequestEntityTooLarge(
                    max_size=MAX_REVIEW_BYTES, actual_size=size)
            chunks.append(chunk)
        body = b"".join(chunks)
        try:
            data = json.loads(body)
            typed = parse_review(data)
        except (ValueError, ReviewError) as exc:
            logger.warning("rejected a malformed AdmissionReview: %s", exc)
            metrics.record_review_error(seconds=time.perf_counter() - started)
            return aiohttp.web.json_response({"error": str(exc)}, status=400)
        token = _current.set(typed)
        try:
            with admission_context(typed.uid):
                response = await fn(data, webhook=request.match_info.get("id"), headers={},
                                    sslpeer={})
        finally:
            _current.reset(token)
        return aiohttp.web.json_response(response)


def register(registry: kopf.OperatorRegistry, admission: Admission) -> None:
    """Register the validating handler on `registry`."""

    @kopf.on.validate(
        "apps", "v1", "deployments", id=HANDLER_ID, operations=["CREATE", "UPDATE"],
        side_effects=True, registry=registry)
    async def validate(warnings: list[str], **_: Any) -> None:
        request = _current.get()
        started = time.perf_counter()
        decision = (await admission.review(request)).decision
        metrics.record_admission(decision, seconds=time.perf_counter() - started)
        warnings.extend(decision.warnings())
        logger.info(
            "admission %s %s/%s: %s", request.operation, request.namespace, request.name,
            "allowed" if decision.allowed else "denied",
            extra={"admission_uid": request.uid,
                   "reasons": [str(v.reason) for v in decision.violations],
                   "exempt": decision.exempt_reason, "dry_run": request.dry_run})
        if not decision.allowed:
            raise kopf.AdmissionError(decision.message(), code=403)


class _DenialsAreNotErrors(logging.Filter):
    """kopf logs every AdmissionError at ERROR ("Webhook 'validate' failed permanently"). A
    denial is the controller working, and `validate` logs it with its reasons at INFO; keeping
    kopf's copy would page people for every Deployment without provenance."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(f"Webhook {HANDLER_ID!r} failed permanently")


def configure(settings: kopf.OperatorSettings, options: ServerOptions) -> None:
    """kopf settings: our own server; the webhook configuration is owned by the chart."""
    settings.admission.server = ReviewingWebhookServer(
        addr=options.host, port=options.port, certfile=options.cert_file,
        pkeyfile=options.key_file, file_check_interval=options.cert_check_interval,
        verify_mode=ssl.CERT_REQUIRED if options.client_ca else None,
        verify_cafile=options.client_ca)
    settings.admission.managed = None
    logging.getLogger("kopf.objects").addFilter(_DenialsAreNotErrors())
    settings.posting.enabled = False
    settings.peering.standalone = True
    # Deployments are a built-in resource: no need to watch CRDs (and no RBAC for them).
    settings.scanning.disabled = True


def register_reconciler(registry: kopf.OperatorRegistry, reconciler: Reconciler) -> None:
    """Watch Deployments so that admitted entries get their outcome (persisted, rolled out)."""

    @kopf.on.event("apps", "v1", "deployments", registry=registry)
    async def observe(body: kopf.Body, **_: Any) -> None:
        try:
            await reconciler.observe(body)
        except ProvenanceError as exc:
            # The next event or sweep retries; an outcome entry is late, never lost.
            logger.warning("reconciling %s/%s failed: %s", body.metadata.namespace,
                           body.metadata.name, exc)


async def _sweep_forever(reconciler: Reconciler, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await reconciler.sweep(dt.datetime.now(dt.UTC))
        except ProvenanceError as exc:
            logger.warning("ledger sweep failed: %s", exc)


async def run_operator(config: Config, options: ServerOptions, *,
                       kubeconfig: str | None) -> None:
    """Run kopf with our handler and server until cancelled or signalled."""
    # Answer well inside the API server's timeout, so the user hears our reason, not its own.
    budget = max(1.0, options.timeout_seconds * 0.8 - 0.5)
    runtime = await Runtime.build(config, kubeconfig=kubeconfig, budget_seconds=budget)
    background: list[asyncio.Task[None]] = []
    if options.self_managed_tls is not None:
        # The files must exist before kopf's server loads them; later rotations are picked up
        # by its file watcher.
        status = await options.self_managed_tls.ensure(runtime.api)
        logger.info("webhook certificate %s (%s), valid until %s", status.action,
                    status.reason, status.not_after)
        background.append(asyncio.create_task(options.self_managed_tls.keep_fresh(runtime.api)))
    registry = kopf.OperatorRegistry()
    register(registry, runtime.admission)
    if runtime.reconciler is not None:
        register_reconciler(registry, runtime.reconciler)
        background.append(asyncio.create_task(
            _sweep_forever(runtime.reconciler, options.sweep_interval)))
    ready = asyncio.Event()

    # A registry of our own has none of kopf's default login handlers; credentials come from the
    # kubernetes client's loader ($KUBECONFIG, else the in-cluster service account).
    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, options)
        ready.set()

    runner = aiohttp.web.AppRunner(build_health_app(ready=ready.is_set), handle_signals=False)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, options.host, options.health_port)
    await site.start()
    try:
        await kopf.operator(registry=registry, clusterwide=True, standalone=True)
    finally:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runner.cleanup()
        await runtime.close()
