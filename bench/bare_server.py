"""A bare aiohttp TLS server running the same parse + policy code as the webhook, without kopf.

Started by bench_admission.py as the same-run baseline that shows kopf's overhead.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import sys

from aiohttp import web

from controller.config import Config
from controller.errors import ReviewError
from controller.policy.engine import evaluate
from controller.review import parse_review

CONFIG = Config()


async def handle(request: web.Request) -> web.Response:
    try:
        body = json.loads(await request.read())
        typed = parse_review(body)
    except (ValueError, ReviewError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    decision = evaluate(typed, CONFIG, now=dt.datetime.now(dt.UTC))
    response: dict[str, object] = {"uid": typed.uid, "allowed": decision.allowed}
    if not decision.allowed:
        response["status"] = {"code": 403, "message": decision.message()}
    return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                              "response": response})


def main() -> None:
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    app = web.Application()
    app.add_routes([web.post("/validate", handle)])
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=ctx, print=None)


if __name__ == "__main__":
    main()
