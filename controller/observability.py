"""The health server (/livez, /readyz, /metrics, /version) and structured JSON logs.

The health server listens on its own port, apart from the webhook: the kubelet probes and
Prometheus scrape plain HTTP there, while the webhook port only speaks TLS to the API server.

Every log line is one JSON object. The admission uid travels in a contextvar, which asyncio copies
into each task, so every line written while handling a review carries that review's uid without
passing it through every call.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web

from controller import metrics
from controller.version import BuildInfo, build_info

admission_uid: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "admission_uid", default=None)
"""The uid of the AdmissionReview being handled; set by the webhook for each request."""


@contextlib.contextmanager
def admission_context(uid: str) -> Iterator[None]:
    """Within this block, log lines carry `uid` as `admission_uid`."""
    token = admission_uid.set(uid)
    try:
        yield
    finally:
        admission_uid.reset(token)


# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}
_OMITTED_EXTRAS = frozenset({"settings", "k8s_skip"})
"""`extra=` keys that are never logged. The operator framework attaches its whole settings
object (about 2 KB as text) and a flag for its own event poster to every per-object record;
neither says anything about the event, and on every watch event they drowned the line.
The object reference (`k8s_ref`) is kept: it names the object."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, admission_uid, and any `extra=`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        uid = admission_uid.get()
        if uid is not None:
            entry["admission_uid"] = uid
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in _OMITTED_EXTRAS \
                    and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # default=str: an unexpected value type in `extra=` must not lose the whole log line.
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure_logging(level: int | str = logging.INFO) -> None:
    """Send every logger's output to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


HEALTH_PATHS = ("/livez", "/readyz", "/metrics", "/version")


def build_health_app(
    *,
    ready: Callable[[], bool],
    info: BuildInfo | None = None,
) -> web.Application:
    """The health application.

    - `/livez`: 200 while the event loop answers at all (a hung loop fails the probe).
    - `/readyz`: 200 once `ready()` is true (configuration loaded, certificates in place, webhook
      server listening), 503 before; the Service only routes to ready pods.
    - `/metrics`: Prometheus text exposition of `controller.metrics.REGISTRY`.
    - `/version`: the controller's own provenance (`controller.version`).
    """
    provenance = (info or build_info()).as_dict()

    async def livez(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        try:
            is_ready = ready()
        except Exception:  # a crashing readiness check means "not ready", not a 500 loop
            logging.getLogger(__name__).exception("readiness check failed")
            is_ready = False
        if is_ready:
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not ready\n")

    async def metrics_(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        # Set verbatim: aiohttp's content_type= would drop the version and charset parameters.
        response.headers["Content-Type"] = metrics.CONTENT_TYPE
        return response

    async def version(_: web.Request) -> web.Response:
        return web.json_response(provenance)

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_)
    app.router.add_get("/version", version)
    return app
