"""The kopf edge: the only module that imports kopf.

It wires three things: the validating handlers (one per gated kind, `controller.workloads.KINDS`),
a TLS webhook server, and the operator's start-up. Everything it calls is plain Python in
controller.admission and below.

The server is our own, plugged in through kopf's documented server protocol (an async iterator
of client configs that calls `fn(review, webhook=, headers=, sslpeer=)`): we need a body bound
above aiohttp's 1 MiB default, a 400 for a malformed review instead of kopf's 500, and client
certificate checks. kopf may run handlers in another task, or queue them, so nothing reaches the
handler but what kopf passes it; the handler rebuilds the typed request from those documented
keyword arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import kopf

from controller import metrics
from controller.admission import Admission
from controller.config import Config
from controller.errors import ProvenanceError, ReviewError
from controller.gate import GateGuard, GateSettings
from controller.ledger import Reconciler
from controller.ledger.unadmitted import UnadmittedDetector
from controller.observability import admission_context, build_health_app
from controller.review import ClientConnection, WorkloadRequest, parse_envelope, parse_review
from controller.runtime import Runtime
from controller.status import SCAN_INTERVAL_SECONDS
from controller.tls import SelfManagedTls
from controller.workloads import JUDGED_SUBRESOURCES, KINDS, plain

logger = logging.getLogger("provenance.webhook")

HANDLER_ID = "validate"
"""The handler id; the server routes `POST /<id>` to it, so the webhook URL path is `/validate`."""
MAX_REVIEW_BYTES = 6 * 1024 * 1024
"""An AdmissionReview carries the object and the old object, each at most ~1.5 MiB in etcd."""
UID_HEADER = "X-Provenance-Review-Uid"
"""The one review field kopf does not pass to handlers: the request uid, which the ledger keeps
as the admission's idempotency key. The server sets it from the parsed review (replacing any
header of that name the client sent), so it says no more than the review body does."""


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
    scan_interval: float = SCAN_INTERVAL_SECONDS
    """How often `provenance_unrecorded_workloads` is recomputed (0: never)."""
    gate: GateSettings | None = None
    """When set, the controller guards its own webhook configuration (`controller.gate`)."""


class ReviewServer:
    """A TLS webhook server for kopf (`settings.admission.server`), by kopf's server protocol.

    Bodies are read with our own bound (`MAX_REVIEW_BYTES`); a body that is not a usable
    AdmissionReview of a gated kind gets 400 and the server keeps serving: a bad webhook request
    is not a verdict. The certificate files are re-read when they change (cert-manager and
    self-managed TLS rotate them in place).
    """

    def __init__(self, options: ServerOptions) -> None:
        if options.cert_file is None or options.key_file is None:
            raise ProvenanceError("the webhook needs --tls-cert and --tls-key (or "
                                  "--tls-self-managed): the API server only calls HTTPS")
        self._options = options
        self._cert_file = options.cert_file
        self._key_file = options.key_file

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self._cert_file, self._key_file)
        if self._options.client_ca is not None:
            ctx.load_verify_locations(cafile=str(self._options.client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def _stamp(self) -> tuple[float, float]:
        return self._cert_file.stat().st_mtime, self._key_file.stat().st_mtime

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        ctx = self._context()
        stamp = self._stamp()

        async def serve(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
            return await self._serve(fn, request)

        app = aiohttp.web.Application(client_max_size=MAX_REVIEW_BYTES)
        # Only the handler's own path: kopf answers "allowed" when no handler matches a webhook
        # id, so a review sent to any other path must never reach it.
        app.router.add_post(f"/{HANDLER_ID}", serve)
        runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, self._options.host, self._options.port,
                                   ssl_context=ctx, reuse_address=True)
        await site.start()
        try:
            # The webhook configuration is the chart's (settings.admission.managed is None);
            # kopf only needs to be told that the server is up.
            yield kopf.WebhookClientConfig(
                url=f"https://{self._options.host}:{self._options.port}/")
            while True:
                await asyncio.sleep(self._options.cert_check_interval)
                with contextlib.suppress(OSError):
                    if (current := self._stamp()) != stamp:
                        # New handshakes use the new pair; open connections keep theirs.
                        ctx.load_cert_chain(self._cert_file, self._key_file)
                        stamp = current
                        logger.info("reloaded the webhook serving certificate")
        finally:
            await runner.cleanup()

    async def _serve(self, fn: kopf.WebhookFn,
                     request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        started = time.perf_counter()
        try:
            body = await request.read()
        except aiohttp.web.HTTPRequestEntityTooLarge:
            metrics.record_review_error(seconds=time.perf_counter() - started)
            raise
        try:
            data = json.loads(body)
            # The envelope only: a malformed object inside a well-formed review is the
            # handler's to deny (a verdict), which fails closed whatever the failurePolicy.
            uid, _kind = parse_envelope(data)
        except (ValueError, ReviewError) as exc:
            logger.warning("rejected a malformed AdmissionReview: %s", exc)
            metrics.record_review_error(seconds=time.perf_counter() - started)
            return aiohttp.web.json_response({"error": str(exc)}, status=400)
        headers = {k: v for k, v in request.headers.items() if k.lower() != UID_HEADER.lower()}
        headers[UID_HEADER] = uid
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        with admission_context(uid):
            response = await fn(data, webhook=HANDLER_ID, headers=headers, sslpeer=peer)
        return aiohttp.web.json_response(response)


def request_from_handler(
    *,
    resource: kopf.Resource,
    subresource: str | None,
    userinfo: Mapping[str, Any],
    dryrun: bool,
    new: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None,
    headers: Mapping[str, str],
) -> WorkloadRequest:
    """The typed request, rebuilt from the keyword arguments kopf documents for a webhook
    handler (`resource`, `subresource`, `userinfo`, `dryrun`, `old`, `new`, `headers`).

    Only CREATE and UPDATE are registered, and an UPDATE always carries the old object; kopf
    documents no `operation` argument, so that is how the two are told apart. `ReviewServer`
    checked the envelope; the objects are parsed here, once, by `parse_review`.
    """
    meta = (new or old or {}).get("metadata") or {}
    operation = "CREATE" if old is None else "UPDATE"
    return parse_review({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": headers.get(UID_HEADER, ""),
            "kind": {"group": resource.group, "version": resource.version, "kind": ""},
            "resource": {"group": resource.group, "version": resource.version,
                         "resource": resource.plural},
            "subResource": subresource, "operation": operation,
            "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
            "userInfo": plain(userinfo), "dryRun": dryrun,
            "object": plain(new) if new is not None else None,
            "oldObject": plain(old) if old is not None else None,
        }})



def register(registry: kopf.OperatorRegistry, admission: Admission) -> None:
    """Register the validating handler for every gated kind (and judged subresource)."""

    async def validate(*, warnings: list[str], resource: kopf.Resource,
                       subresource: str | None, userinfo: Mapping[str, Any], dryrun: bool,
                       headers: Mapping[str, str], **kwargs: Any) -> None:
        try:
            request = request_from_handler(
                resource=resource, subresource=subresource, userinfo=userinfo, dryrun=dryrun,
                new=kwargs.get("new"), old=kwargs.get("old"), headers=headers)
            # kopf hands the server's `sslpeer` through to the handler as documented.
            request = dataclasses.replace(
                request, client=ClientConnection.from_peercert(kwargs.get("sslpeer")))
        except ReviewError as exc:
            # A well-formed review whose object is not: deny, saying why.
            logger.warning("denied a request whose object could not be read: %s", exc)
            raise kopf.AdmissionError(f"provenance-controller could not read this "
                                      f"{resource.kind or resource.plural}: {exc}",
                                      code=400) from exc
        started = time.perf_counter()
        decision = (await admission.review(request)).decision
        metrics.record_admission(decision, seconds=time.perf_counter() - started)
        warnings.extend(decision.warnings())
        logger.info(
            "admission %s %s %s/%s: %s", request.operation, request.subject, request.namespace,
            request.name or "(generated name)", "allowed" if decision.allowed else "denied",
            extra={"admission_uid": request.uid,
                   "reasons": [str(v.reason) for v in decision.violations],
                   "exempt": decision.exempt_reason, "dry_run": request.dry_run})
        if not decision.allowed:
            raise kopf.AdmissionError(decision.message(request.subject), code=403)

    for kind in KINDS:
        for subresource in (None, *JUDGED_SUBRESOURCES.get(kind.plural, ())):
            kopf.on.validate(
                kind.group, kind.version, kind.plural, id=HANDLER_ID,
                operations=["CREATE", "UPDATE"], subresource=subresource, side_effects=True,
                registry=registry)(validate)


class _DenialsAreNotErrors(logging.Filter):
    """kopf logs every AdmissionError at ERROR ("Webhook 'validate' failed permanently"). A
    denial is the controller working, and `validate` logs it with its reasons at INFO; keeping
    kopf's copy would page people for every workload without provenance."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(f"Webhook {HANDLER_ID!r} failed permanently")


def configure(settings: kopf.OperatorSettings, options: ServerOptions) -> None:
    """kopf settings: our own server; the webhook configuration is owned by the chart."""
    settings.admission.server = ReviewServer(options)
    settings.admission.managed = None
    logging.getLogger("kopf.objects").addFilter(_DenialsAreNotErrors())
    settings.posting.enabled = False
    settings.peering.standalone = True
    # Every gated kind is a built-in resource: no need to watch CRDs (and no RBAC for them).
    settings.scanning.disabled = True


def register_reconciler(registry: kopf.OperatorRegistry, reconciler: Reconciler,
                        unadmitted: UnadmittedDetector | None = None) -> None:
    """Watch every gated kind so that admitted entries get their outcome (persisted, rolled
    out or completed), and workloads without an admission entry are found."""

    async def observe(body: kopf.Body, **_: Any) -> None:
        try:
            if unadmitted is not None:
                unadmitted.observe(body)
            await reconciler.observe(body)
        except ProvenanceError as exc:
            # The next event or sweep retries; an outcome entry is late, never lost.
            logger.warning("reconciling %s %s/%s failed: %s", body.get("kind"),
                           body.metadata.namespace, body.metadata.name, exc)

    for kind in KINDS:
        kopf.on.event(kind.group, kind.version, kind.plural, registry=registry)(observe)


async def _sweep_forever(reconciler: Reconciler, interval: float,
                         unadmitted: UnadmittedDetector | None = None) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await reconciler.sweep(dt.datetime.now(dt.UTC))
            if unadmitted is not None:
                await unadmitted.sweep()
        except ProvenanceError as exc:
            logger.warning("ledger sweep failed: %s", exc)


async def run_operator(config: Config, options: ServerOptions, *,
                       kubeconfig: str | None) -> None:
    """Run kopf with our handler and server until cancelled or signalled."""
    # Answer well inside the API server's timeout, so the user hears our reason, not its own.
    budget = max(1.0, options.timeout_seconds * 0.8 - 0.5)
    runtime = await Runtime.build(config, kubeconfig=kubeconfig, budget_seconds=budget,
                                  scan_interval=options.scan_interval)
    background: list[asyncio.Task[None]] = []
    if options.self_managed_tls is not None:
        # The files must exist before kopf's server loads them; later rotations are picked up
        # by its file watcher.
        status = await options.self_managed_tls.ensure(runtime.api)
        logger.info("webhook certificate %s (%s), valid until %s", status.action,
                    status.reason, status.not_after)
        background.append(asyncio.create_task(options.self_managed_tls.keep_fresh(runtime.api)))
    if options.gate is not None:
        ledger = runtime.ledger
        tls, api = options.self_managed_tls, runtime.api

        async def ca_bundle() -> str | None:
            return await tls.ca_bundle(api) if tls is not None else None

        guard = GateGuard(api, options.gate, record=ledger.append if ledger is not None else None,
                          ca_source=ca_bundle if tls is not None else None)
        background.append(asyncio.create_task(guard.run()))
    registry = kopf.OperatorRegistry()
    register(registry, runtime.admission)
    if runtime.reconciler is not None:
        register_reconciler(registry, runtime.reconciler, runtime.unadmitted)
        background.append(asyncio.create_task(
            _sweep_forever(runtime.reconciler, options.sweep_interval, runtime.unadmitted)))
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
