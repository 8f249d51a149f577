"""A CRM stand-in for development and tests: ``esg-leads fake-crm --port P [--chaos SPEC]``.

A real HTTP/1.1 server (the standard library's threading server: it can drop a
connection or stall a response on purpose, which an ASGI framework hides) that
behaves like an upsert-by-external-id CRM API:

* ``PUT /tenants/{tenant}/leads/{id}`` stores the JSON object as the tenant's lead (201
  new, 200 updated); ``DELETE`` of that path removes it (204, or 404 when there is
  none); ``GET`` returns it. Each tenant has its own leads: the lead's name in the
  admin log is ``{tenant}/{id}`` (a tenant id holds no ``/``).
* ``Idempotency-Key``: a key seen before gets the first answer again (with
  ``Idempotent-Replayed: true``) and changes nothing, as Stripe's and HubSpot's do.
* ``--token T``: requests without ``Authorization: Bearer T`` get 401.
* ``--reject REGEX``: a ``PUT`` of an investor id (the id alone) matching it gets 422
  (bad data).
* ``GET /_admin/log``: every request so far (number, arrival and answer times on this
  server's monotonic clock, method, id, key, status, ``Retry-After``), the leads, and
  per lead the idempotency keys applied in order. Admin requests are not counted.

Chaos grammar (``--chaos``)
---------------------------
``SPEC := RULE (";" RULE)*``, the first rule that matches a request decides::

    RULE   := ACTION "@" WHEN [":" PARAM ("," PARAM)*]
    ACTION := a status code (429, 500, 503, ...) | "slow" | "drop"
    WHEN   := "req" N ["-" M]     requests N..M (1-based, inclusive)
            | "every" K           every K-th request
            | "t" A "-" B         A <= seconds since the first request < B
            | "p" F               with probability F (``--seed``)
    PARAM  := "retry_after=" S    send Retry-After: S (seconds; fractions allowed)
            | "date"              send Retry-After as an HTTP-date (whole seconds, rounded up)
            | "delay=" S          ("slow") answer normally after S seconds

``drop`` closes the connection without an answer. Examples: ``429@req1-5:retry_after=1``
(a 429 storm), ``500@every10`` (10 % 5xx), ``503@t2-62`` (a 60 s outage starting 2 s in),
``slow@p0.05:delay=15``, ``drop@req7``.

>>> [r.action for r in parse_chaos("429@req1-3:retry_after=0.5;drop@every7")]
['429', 'drop']
>>> parse_chaos("teapot@req1")
Traceback (most recent call last):
...
ValueError: chaos rule 'teapot@req1': action must be a status code, 'slow' or 'drop'
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import orjson

MAX_BODY = 1024 * 1024
_RULE = re.compile(r"^(?P<action>\d{3}|slow|drop)@(?P<when>req\d+(?:-\d+)?|every\d+|"
                   r"t\d+(?:\.\d+)?-\d+(?:\.\d+)?|p(?:0?\.\d+|1|0))(?::(?P<params>.+))?$")


@dataclass(frozen=True, slots=True)
class Rule:
    action: str
    when: str
    retry_after: float | None = None
    as_date: bool = False
    delay: float = 0.0

    def matches(self, n: int, since_first: float, rng: random.Random) -> bool:
        kind, rest = re.match(r"(req|every|t|p)(.*)", self.when).groups()  # type: ignore[union-attr]
        if kind == "req":
            low, _, high = rest.partition("-")
            return int(low) <= n <= int(high or low)
        if kind == "every":
            return n % int(rest) == 0
        if kind == "t":
            low, high = (float(x) for x in rest.split("-"))
            return low <= since_first < high
        return rng.random() < float(rest)


def parse_chaos(spec: str) -> list[Rule]:
    """Rules from a chaos spec (grammar in the module docstring); ``ValueError`` if bad."""
    rules = []
    for text in filter(None, (part.strip() for part in spec.split(";"))):
        match = _RULE.match(text)
        if match is None:
            action = text.split("@", 1)[0]
            if not re.fullmatch(r"\d{3}|slow|drop", action):
                raise ValueError(f"chaos rule {text!r}: action must be a status code, "
                                 "'slow' or 'drop'")
            raise ValueError(f"chaos rule {text!r}: WHEN must be reqN[-M], everyK, tA-B or pF")
        params: dict = {}
        for item in filter(None, (match["params"] or "").split(",")):
            name, _, value = item.partition("=")
            try:
                if name == "retry_after":
                    params["retry_after"] = float(value)
                elif name == "delay":
                    params["delay"] = float(value)
                elif name == "date" and not value:
                    params["as_date"] = True
                else:
                    raise ValueError
            except ValueError:
                raise ValueError(f"chaos rule {text!r}: bad parameter {item!r}") from None
        if match["when"].startswith("every") and int(match["when"][5:]) < 1:
            raise ValueError(f"chaos rule {text!r}: every needs K >= 1")
        rules.append(Rule(match["action"], match["when"], **params))
    return rules


class FakeCrm:
    """The CRM's state and its chaos; :meth:`serve` puts it on a loopback port."""

    def __init__(self, chaos: str = "", token: str | None = None, reject: str | None = None,
                 seed: int = 0) -> None:
        self.rules = parse_chaos(chaos)
        self.token = token
        self.reject = re.compile(reject) if reject else None
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.leads: dict[str, dict] = {}
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.applied: dict[str, list[str]] = {}
        self.log: list[dict] = []
        self.first: float | None = None
        self.server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ handling

    def chaos_for(self, n: int, now: float) -> Rule | None:
        since = now - (self.first if self.first is not None else now)
        for rule in self.rules:
            if rule.matches(n, since, self.rng):
                return rule
        return None

    def apply(self, method: str, lead: str, key: str | None, body: bytes | None,
              authorization: str | None) -> tuple[int, bytes, dict]:
        """The answer to one request (the caller holds the lock)."""
        if self.token is not None and authorization != f"Bearer {self.token}":
            return 401, b'{"error":"unauthorized"}', {}
        if key is not None and key in self.answers:
            status, payload = self.answers[key]
            return status, payload, {"Idempotent-Replayed": "true"}
        if method == "PUT":
            try:
                value = orjson.loads(body or b"")
            except orjson.JSONDecodeError:
                return 400, b'{"error":"body is not JSON"}', {}
            if not isinstance(value, dict):
                return 400, b'{"error":"body is not an object"}', {}
            if self.reject is not None and self.reject.search(lead.split("/", 1)[1]):
                status, payload = 422, orjson.dumps({"error": "validation failed",
                                                     "field": "contact_ref"})
            else:
                status = 200 if lead in self.leads else 201
                self.leads[lead] = value
                payload = orjson.dumps({"id": lead})
                self.applied.setdefault(lead, []).append(key or "")
        else:
            if lead not in self.leads:
                status, payload = 404, b'{"error":"no such lead"}'
            else:
                del self.leads[lead]
                status, payload = 204, b""
                self.applied.setdefault(lead, []).append(key or "")
        if key is not None:
            self.answers[key] = (status, payload)
        return status, payload, {}

    def snapshot(self) -> dict:
        with self.lock:
            return {"requests": list(self.log), "leads": dict(self.leads),
                    "applied": {k: list(v) for k, v in self.applied.items()}}

    # ------------------------------------------------------------------ serving

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> int:
        """Start serving in a background thread; returns the bound port."""
        crm = self

        class Handler(_Handler):
            state = crm

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="fake-crm", daemon=True).start()
        return self.server.server_address[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: FakeCrm

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass  # the admin log is the record; stderr stays quiet

    def _answer(self, status: int, payload: bytes, headers: dict) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        crm = self.state
        if self.path == "/_admin/log":
            self._answer(200, orjson.dumps(crm.snapshot()), {})
            return
        lead = self._lead()
        with crm.lock:
            value = crm.leads.get(lead) if lead is not None else None
        if value is None:
            self._answer(404, b'{"error":"no such lead"}', {})
        else:
            self._answer(200, orjson.dumps(value), {})

    def do_PUT(self) -> None:  # noqa: N802
        self._change("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._change("DELETE")

    def _lead(self) -> str | None:
        """``{tenant}/{id}`` of the path's lead; ``None`` for any other path (the old
        ``/leads/{id}``, which names no tenant, included: 404)."""
        match = re.fullmatch(r"/tenants/([^/?#]+)/leads/([^/?#]+)", self.path)
        if match is None:
            return None
        tenant = unquote(match.group(1))
        return f"{tenant}/{unquote(match.group(2))}" if "/" not in tenant else None

    def _change(self, method: str) -> None:
        crm, arrived = self.state, time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._answer(413, b'{"error":"too large"}', {})
            return
        body = self.rfile.read(length) if length else None
        lead, key = self._lead(), self.headers.get("Idempotency-Key")
        with crm.lock:
            if crm.first is None:
                crm.first = arrived
            n = len(crm.log) + 1
            entry = {"n": n, "t": arrived, "method": method, "lead": lead, "key": key,
                     "user_agent": self.headers.get("User-Agent"), "status": None,
                     "retry_after": None, "applied": False}
            crm.log.append(entry)
            rule = crm.chaos_for(n, arrived)
        if rule is not None and rule.action == "drop":
            entry["t_done"] = time.monotonic()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if rule is not None and rule.action == "slow":
            time.sleep(rule.delay)  # the chaos itself: a CRM that answers late
            rule = None
        headers: dict = {}
        if rule is not None:
            status, payload = int(rule.action), orjson.dumps({"error": "chaos"})
            if rule.retry_after is not None and rule.as_date:
                # An HTTP-date has whole seconds: the instant it names, from now.
                now = time.time()
                when = math.floor(now + math.ceil(rule.retry_after) + 1)
                entry["retry_after"] = when - now
                headers["Retry-After"] = email.utils.formatdate(when, usegmt=True)
            elif rule.retry_after is not None:
                entry["retry_after"] = rule.retry_after
                headers["Retry-After"] = f"{rule.retry_after:g}"
        elif lead is None:
            status, payload = 404, b'{"error":"no such route"}'
        else:
            with crm.lock:
                before = len(crm.applied.get(lead, ()))
                status, payload, headers = crm.apply(method, lead, key, body,
                                                     self.headers.get("Authorization"))
                entry["applied"] = len(crm.applied.get(lead, ())) > before
        entry["status"] = status
        entry["t_done"] = time.monotonic()
        self._answer(status, payload, headers)


def main(port: int, chaos: str = "", token: str | None = None, reject: str | None = None,
         seed: int = 0) -> int:
    """``esg-leads fake-crm``: serve until interrupted; the first line names the URL."""
    crm = FakeCrm(chaos, token, reject, seed)
    bound = crm.serve(port)
    print(f"fake CRM on http://127.0.0.1:{bound} (admin log: /_admin/log)", flush=True)
    stop = threading.Event()
    import signal

    from esg_leads.connectors.signals import on_signals

    # Set on a relay thread: set in the handler while this thread woke from stop.wait(),
    # it deadlocked (connectors/signals.py).
    try:
        with on_signals((signal.SIGTERM,), lambda _: stop.set()):
            stop.wait()
    except KeyboardInterrupt:
        pass
    crm.stop()
    print(f"fake CRM: {len(crm.leads)} leads stored, {len(crm.log)} requests", file=sys.stderr)
    return 0
