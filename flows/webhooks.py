"""``esg-leads webhooks``: CRM outcomes and review decisions arriving over HTTP.

A Starlette app on uvicorn. ``POST /webhooks/crm-outcomes`` and
``POST /webhooks/review-decisions`` take one event each (the JSON of the topic's input
schema, ``esg-leads schema crm.outcomes``), signed as ``operators/webhook_auth.py``
describes. In order, a request is refused with:

* 429 + ``Retry-After`` over ``webhooks.rate_limit_per_second`` (before any work);
* 413 over ``webhooks.max_body_bytes``, counted while reading (never buffered whole);
* 401 without a valid signature of a known tenant, with a stale timestamp, or for a
  body whose ``tenant`` is not the signer's;
* 422 with the validation error when the body is not a valid event of the topic;
* 503 + ``Retry-After`` when the broker does not acknowledge within
  ``webhooks.produce_timeout``;

and otherwise answered 202 once the idempotent producer's write is acknowledged. A review
decision also carries its reviewer's own signature, which the flow verifies
(``operators/review_auth.py``): the webhook's signature authenticates the sender, not
the reviewer. ``GET /healthz`` and ``GET /metrics``.
"""

from __future__ import annotations

import asyncio
import math
import socket
import sys
import threading
import time

from confluent_kafka import Producer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from esg_leads.operators.crm_delivery import TokenBucket
from esg_leads.operators.webhook_auth import verify
from esg_leads.schemas.codec import DecodeFailure, decode_event
from esg_leads.schemas.settings import Settings

ROUTES = {"/webhooks/crm-outcomes": "crm.outcomes",
          "/webhooks/review-decisions": "lead.review-decisions"}
BROKER_RETRY_AFTER = 5


class Publisher:
    """An idempotent producer whose acknowledgements resolve asyncio futures."""

    def __init__(self, config: dict, timeout: float) -> None:
        self.producer = Producer({**config, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 0, "message.timeout.ms": int(timeout * 1000)})
        self.timeout = timeout
        self._running = True
        self._thread = threading.Thread(target=self._poll, name="webhook-acks", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while self._running:
            self.producer.poll(0.1)

    async def publish(self, topic: str, key: bytes, value: bytes, headers: list) -> str | None:
        """``None`` once acknowledged, else the broker's error."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def acked(error, _message) -> None:  # noqa: ANN001 - librdkafka callback
            loop.call_soon_threadsafe(
                lambda: done.done() or done.set_result(None if error is None else str(error)))

        try:
            self.producer.produce(topic, key=key, value=value, headers=headers, on_delivery=acked)
        except BufferError:
            return "producer queue full"
        try:
            return await asyncio.wait_for(done, self.timeout + 1)
        except TimeoutError:
            return "no acknowledgement"

    def close(self) -> None:
        self.producer.flush(self.timeout)
        self._running = False


def create_app(settings: Settings, publisher: Publisher, *, clock=time.time,
               registry: CollectorRegistry | None = None) -> Starlette:
    hooks = settings.webhooks
    registry = registry or CollectorRegistry()
    requests = Counter("esg_leads_webhook_requests", "Webhook requests, by route and status",
                       ["route", "status"], registry=registry)
    bucket = TokenBucket(rate=hooks.rate_limit_per_second,
                         burst=max(1.0, hooks.rate_limit_per_second), now=time.monotonic())
    lock = threading.Lock()

    def answer(route: str, status: int, body: dict, headers: dict | None = None) -> Response:
        requests.labels(route, str(status)).inc()
        return JSONResponse(body, status, headers=headers)

    async def receive(request: Request) -> Response:
        route = request.url.path
        with lock:
            now = time.monotonic()
            wait = bucket.reserve(now)
            if wait > 0:
                bucket.tokens += 1  # refused: give the token back
        if wait > 0:
            return answer(route, 429, {"error": "rate limit"},
                          {"Retry-After": str(max(1, math.ceil(wait)))})
        limit = hooks.max_body_bytes
        if int(request.headers.get("content-length") or 0) > limit:
            return answer(route, 413, {"error": f"body over {limit} bytes"})
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return answer(route, 413, {"error": f"body over {limit} bytes"})
        tenant_id = request.headers.get("x-tenant", "")
        tenant = settings.tenants.get(tenant_id)
        if tenant is None or tenant.webhook_secret is None:
            return answer(route, 401, {"error": "unknown tenant or no webhook secret"})
        why = verify(tenant.webhook_secret.get_secret_value().encode(),
                     request.headers.get("x-signature"), request.headers.get("x-timestamp"),
                     bytes(body), now=clock(), tolerance=hooks.tolerance.total_seconds())
        if why != "ok":
            return answer(route, 401, {"error": why})
        topic = ROUTES[route]
        try:
            event = decode_event(topic, bytes(body))
        except DecodeFailure as failure:
            return answer(route, 422, {"error": failure.reason.value, "detail": failure.detail})
        if str(event.tenant) != tenant_id:
            return answer(route, 401, {"error": "the body's tenant is not the signer's"})
        error = await publisher.publish(
            settings.kafka.topic(topic), str(event.investor_id).encode(), bytes(body),
            [("content-type", b"application/json"), ("source", b"webhook")])
        if error is not None:
            return answer(route, 503, {"error": "broker unavailable"},
                          {"Retry-After": str(BROKER_RETRY_AFTER)})
        return answer(route, 202, {"accepted": event.event_id})

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[*(Route(path, receive, methods=["POST"]) for path in ROUTES),
                             Route("/healthz", healthz), Route("/metrics", metrics)])


def serve(settings: Settings, port: int) -> int:
    """Serve until SIGTERM/SIGINT; the first line on stdout names the address."""
    import uvicorn

    host = settings.webhooks.host
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # listening before we name the port: early clients wait in the backlog
    publisher = Publisher(settings.kafka.client_config(),
                          settings.webhooks.produce_timeout.total_seconds())
    app = create_app(settings, publisher)
    print(f"webhooks on http://{host}:{sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it to the handler that was
    # there before; a handler of ours makes that a clean exit 0 instead of death by signal.
    import signal

    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        publisher.close()
    print("webhooks: stopped", file=sys.stderr)
    return 0
