"""``esg-leads crm-sync``: deliver ``crm.handoff`` to the CRM, and nothing twice that was acked.

Wiring only: the main thread reads Kafka into a :class:`~operators.crm_delivery.DeliveryQueue`
(per message key, ``<tenant>/<investor_id>``: per lead in order, coalesced), hands up to ``crm.max_in_flight`` entries to worker
threads, and commits, after each answer, the offset before which every record is resolved
(delivered, or dead-lettered and the dead letter acknowledged by the broker: dead letters
are produced without waiting, and the producer flushed once before each commit). Workers ask
:class:`Governor` (token bucket, ``Retry-After`` gate, breaker) when they may send, send
with :class:`~connectors.crm_client.CrmClient`, and ask ``operators.crm_delivery`` what the
answer means and how long to wait.

Delivery guarantee: every handoff is delivered at least once, in order per investor,
and the CRM applies it once because every request carries the handoff's idempotency key.
SIGTERM: reading stops, requests on the wire finish, waits are cut short (those records
stay unacknowledged), the offsets are committed, exit 0. After a kill -9, the records
after the last committed offset are sent again and the CRM recognises their keys.
"""

from __future__ import annotations

import base64
import logging
import queue
import random
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import ValidationError

from esg_leads.connectors.crm_client import CrmClient, Reply
from esg_leads.connectors.signals import on_signals
from esg_leads.operators.crm_delivery import (
    Breaker,
    BreakerState,
    DeliveryQueue,
    Entry,
    Outcome,
    TokenBucket,
    Verdict,
    classify,
    crm_body,
    parse_retry_after,
    retry_wait,
)
from esg_leads.operators.erasure import seal_dead_letter
from esg_leads.operators.validation import MAX_KEY_BYTES, bounded, dead_letter
from esg_leads.schemas.codec import describe_validation_error, encode
from esg_leads.schemas.keys import KEY_FORMAT, output_key, parse_output_key
from esg_leads.schemas.outputs import SCHEMA_VERSION, AlertKind, CrmHandoff, DlqReason
from esg_leads.schemas.records import RawMessage
from esg_leads.schemas.settings import Settings

log = logging.getLogger("esg_leads.crm_sync")
GROUP = "esg-leads-crm-sync"
ABANDONED = "abandoned"
_BREAKER_VALUE = {BreakerState.CLOSED: 0, BreakerState.OPEN: 1, BreakerState.HALF_OPEN: 2}


class CrmMetrics:
    """Prometheus metrics of crm-sync; every label value comes from a fixed set."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.deliveries = Counter("esg_leads_crm_deliveries", "Handoffs resolved, by outcome "
                                  "(delivered, deleted, rejected)", ["outcome"], registry=r)
        self.retries = Counter("esg_leads_crm_retries", "CRM requests to be asked again, by "
                               "reason (throttled, failed, auth_failed)", ["reason"], registry=r)
        self.breaker = Gauge("esg_leads_crm_breaker_state",
                             "Circuit breaker: 0 closed, 1 open, 2 half-open", registry=r)
        self.rate_waits = Counter("esg_leads_crm_rate_limit_waits",
                                  "Requests that waited for the client-side rate limit", registry=r)
        self.latency = Histogram("esg_leads_crm_handoff_ack_seconds",
                                 "From a handoff's Kafka timestamp to the CRM's acknowledgement",
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900,
                                          3600), registry=r)
        self.waiting = Gauge("esg_leads_crm_records_waiting",
                             "Handoffs read and not yet acknowledged", registry=r)


@dataclass
class Result:
    entry: Entry
    outcome: str  # an Outcome value, or ABANDONED
    reply: Reply | None = None


class Governor:
    """When a worker may send: the gate, the token bucket and the breaker, under one lock."""

    def __init__(self, settings: Settings, clock, stop: threading.Event, alerts: queue.SimpleQueue,
                 metrics: CrmMetrics) -> None:
        crm = settings.crm
        self.clock, self.stop, self.alerts, self.metrics = clock, stop, alerts, metrics
        self.lock = threading.Lock()
        self.bucket = TokenBucket(rate=crm.rate_limit_per_second,
                                  burst=max(1.0, crm.rate_limit_per_second), now=clock())
        self.breaker = Breaker(crm.breaker.failures, crm.breaker.cooldown.total_seconds())
        self.auth_failing = False

    def acquire(self) -> bool:
        """Block until a request may go; ``False`` when stopping.

        A token is reserved once and kept while the gate or the breaker holds us: asking
        the bucket again after each wait would queue behind ourselves forever.
        """
        ready_at: float | None = None
        while not self.stop.is_set():
            with self.lock:
                now = self.clock()
                if ready_at is None:
                    pause = self.bucket.reserve(now)
                    ready_at = now + pause
                    if pause > 0:
                        self.metrics.rate_waits.inc()
                pause = max(ready_at - now, self.bucket.gate - now)
                if pause <= 0:
                    if self.breaker.allow(now):
                        self.metrics.breaker.set(_BREAKER_VALUE[self.breaker.state])
                        return True
                    # Open (wait for the cooldown) or the probe is out (its answer decides).
                    pause = max(0.02, self.breaker.retry_at(now) - now)
            self.stop.wait(min(pause, 1.0))
        return False

    def record(self, verdict: Verdict, probe_released: bool = False) -> None:
        with self.lock:
            now = self.clock()
            change = self.breaker.record(not verdict.breaker_failure, now)
            self.metrics.breaker.set(_BREAKER_VALUE[self.breaker.state])
            if change:
                self.alerts.put((AlertKind.CRM_BREAKER_OPENED if change == "opened"
                                 else AlertKind.CRM_BREAKER_CLOSED, {}))
            if verdict.outcome is Outcome.AUTH_FAILED:
                if not self.auth_failing:
                    self.alerts.put((AlertKind.CRM_AUTH_FAILED, {}))
                self.auth_failing = True
            elif verdict.outcome in (Outcome.DELIVERED, Outcome.REJECTED):
                self.auth_failing = False

    def hold(self, seconds: float) -> None:
        with self.lock:
            self.bucket.hold_until(self.clock() + seconds)

    def abandon(self) -> None:
        with self.lock:
            self.breaker.release_probe()


class Deliverer:
    """One entry to the CRM, asking again until it is resolved or we stop."""

    def __init__(self, settings: Settings, client: CrmClient, governor: Governor,
                 rng: random.Random, metrics: CrmMetrics, wall=time.time) -> None:
        self.crm, self.client, self.governor = settings.crm, client, governor
        self.rng, self.rng_lock, self.metrics, self.wall = rng, threading.Lock(), metrics, wall

    def __call__(self, entry: Entry) -> Result:
        value, key = entry.payload[0], entry.payload[1]
        attempt = 0
        while True:
            if not self.governor.acquire():
                return Result(entry, ABANDONED)
            # The queue's key is the message key, checked by CrmSync._read: it parses.
            tenant, investor_id = parse_output_key(entry.key)
            if value is None:
                reply = self.client.delete(tenant, investor_id, key)
            else:
                reply = self.client.put(tenant, investor_id, value, key)
            verdict = classify(reply.method, reply.status,
                               parse_retry_after(reply.retry_after, self.wall()))
            self.governor.record(verdict)
            if verdict.outcome in (Outcome.DELIVERED, Outcome.REJECTED):
                return Result(entry, verdict.outcome.value, reply)
            with self.rng_lock:
                pause = retry_wait(verdict, attempt, base=self.crm.backoff.base.total_seconds(),
                                   cap=self.crm.backoff.max.total_seconds(),
                                   auth_retry=self.crm.backoff.auth_retry.total_seconds(),
                                   rng=self.rng)
            self.metrics.retries.labels(verdict.outcome.value).inc()
            if verdict.outcome in (Outcome.THROTTLED, Outcome.AUTH_FAILED):
                self.governor.hold(pause)  # the CRM's limit (or our token) is everyone's
            log.info("%s %s: %s; again in %.2fs", reply.method, entry.key,
                     reply.status or reply.error, pause)
            if self.governor.stop.wait(pause):
                return Result(entry, ABANDONED)
            attempt += 1


class CrmSync:
    """The main loop: Kafka in, workers out, commits behind acknowledgements."""

    def __init__(self, settings: Settings, consumer: Consumer, producer: Producer,
                 client: CrmClient, keys, *, metrics: CrmMetrics | None = None,
                 rng: random.Random | None = None, clock=time.monotonic, wall=time.time) -> None:
        self.settings, self.consumer, self.producer, self.keys = settings, consumer, producer, keys
        self.topic = settings.kafka.topic("crm.handoff")
        self.metrics = metrics or CrmMetrics()
        self.stop = threading.Event()
        self.alerts: queue.SimpleQueue = queue.SimpleQueue()
        self.governor = Governor(settings, clock, self.stop, self.alerts, self.metrics)
        self.deliver = Deliverer(settings, client, self.governor, rng or random.Random(0),
                                 self.metrics, wall)
        self.queue = DeliveryQueue()
        self.wall = wall
        self.counts = {"read": 0, "delivered": 0, "deleted": 0, "rejected": 0, "invalid": 0}
        self._committed: dict[int, int] = {}
        # Dead letters produced and not yet acknowledged, and the failures among them:
        # no offset is committed past a dead letter before the broker acknowledged it.
        self._letters_out = 0
        self._letter_errors: list = []
        self._meta: dict[tuple[int, int], int | None] = {}  # (partition, offset) -> timestamp ms

    # ---------------------------------------------------------------- records in

    def _read(self, message) -> None:  # noqa: ANN001 - a confluent_kafka.Message
        partition, offset = message.partition(), message.offset()
        key = (message.key() or b"").decode("utf-8", "replace")
        value = message.value()
        ts_type, ts = message.timestamp()
        self.counts["read"] += 1
        # The key names the lead, tenant and investor (schemas/keys.py); a key that names
        # no tenant (the old bare investor id, a forged one) must neither be delivered nor
        # delete anything: whose lead it is cannot be told.
        tenant: str | None = None
        try:
            tenant, _ = parse_output_key(message.key() or b"")
        except ValueError as error:
            if value is None:
                self._invalid(message, DlqReason.KEY_MISMATCH,
                              f"tombstone not applied, nothing deleted: {error}")
                return
            refused: str | None = f"not delivered: {error}"
        else:
            refused = None
        if value is None:
            payload = (None, f"erase:{self.topic}:{partition}:{offset}")
        else:
            try:
                handoff = CrmHandoff.model_validate_json(value)
            except ValidationError as error:
                self._invalid(message, DlqReason.SCHEMA_ERROR, describe_validation_error(error))
                return
            if refused is not None or output_key(handoff.tenant, handoff.investor_id) != key:
                self._invalid(message, DlqReason.KEY_MISMATCH, refused or
                              f"message key is not the handoff's {KEY_FORMAT}", event=handoff)
                return
            if tenant not in self.settings.tenants:
                # A lead of no tenant we serve is not ours to create. Its erasure (above,
                # a tombstone) is still applied: a tenant removed from the config can
                # still be erased.
                self._invalid(message, DlqReason.UNKNOWN_TENANT,
                              f"not delivered: tenant {tenant!r} is not configured", event=handoff)
                return
            body = orjson.dumps(crm_body(orjson.loads(value), self.settings.crm.field_map))
            payload = (body, handoff.idempotency_key, handoff)
        self._meta[(partition, offset)] = ts if ts_type else None
        self.queue.add(key, partition, offset, payload)

    def _dead_letter(self, message, reason: DlqReason, detail: str, event=None, *,  # noqa: ANN001
                     wait: bool = False) -> bool:
        """Produces the dead letter of ``message``. Without ``wait`` it is acknowledged
        later (:meth:`_letters_acknowledged`, before the next commit): one flush per
        letter cost a broker round trip each (1,000 bare tombstones took a second, and
        the handoffs behind them waited). ``wait``: ``False`` if not acknowledged."""
        key = message.key()
        if key is not None and len(key) > MAX_KEY_BYTES:
            # The letter's key is its key_b64 (cut to MAX_KEY_BYTES, as the flow's): a
            # 5 MB key would be refused by the broker and stop crm-sync.
            detail = f"{detail} (key of {len(key):,} bytes: its first {MAX_KEY_BYTES:,} kept)"
        raw = RawMessage(message.topic(), message.partition(), message.offset(),
                         message.timestamp()[1], key, message.value(),
                         tuple(message.headers() or ()))
        letter = dead_letter(raw, reason, detail, datetime.now(timezone.utc), event=event)
        letter = bounded(letter, self.settings.dlq.max_value_bytes)
        letter = seal_dead_letter(letter, self.keys, frozenset(self.settings.tenants))
        errors: list = []

        def delivered(error, _message) -> None:  # noqa: ANN001
            self._letters_out -= 1
            if error is not None:
                errors.append(error)
                if not wait:
                    self._letter_errors.append(error)

        self._letters_out += 1
        while True:
            try:
                self.producer.produce(
                    self.settings.kafka.topic("leads.dlq"),
                    key=base64.b64decode(letter["key_b64"]) if letter["key_b64"] else None,
                    value=encode(letter), on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain
                self.producer.poll(0.1)
            except BaseException:
                self._letters_out -= 1
                raise
        self.producer.poll(0)  # serve the reports so far, never wait
        if wait and (self.producer.flush(10) or errors):
            log.error("dead letter for %s:%d:%d not acknowledged: %s", message.topic(),
                      message.partition(), message.offset(), errors or "timeout")
            return False
        self.counts["invalid" if reason is not DlqReason.CRM_REJECTED else "rejected"] += 1
        return True

    def _letters_acknowledged(self) -> None:
        """Waits for the dead letters produced so far; raises if any was not acknowledged.

        Committing past a lost dead letter would lose the record: stopping leaves it to
        the restart, which reads it again and dead-letters it again (same idempotency key).
        """
        if self._letters_out > 0:
            self.producer.flush(10)
        if self._letter_errors or self._letters_out > 0:
            raise RuntimeError(f"dead letters not acknowledged by the broker "
                               f"({self._letters_out} waiting): {self._letter_errors[:3]}")

    def _invalid(self, message, reason: DlqReason, detail: str, event=None) -> None:  # noqa: ANN001
        self._dead_letter(message, reason, detail, event)
        self.queue.skip(message.partition(), message.offset())

    # ---------------------------------------------------------------- answers

    def _settle(self, result: Result) -> None:
        entry = result.entry
        if result.outcome == ABANDONED:
            self.governor.abandon()
            self.queue.give_back(entry.key)
            return
        if result.outcome == Outcome.REJECTED.value:
            reply = result.reply
            detail = f"CRM answered {reply.status} to {reply.method}: {reply.excerpt}"
            message = _Stored(self.topic, entry, entry.payload)
            if not self._dead_letter(message, DlqReason.CRM_REJECTED, detail,
                                     event=entry.payload[2] if len(entry.payload) > 2 else None,
                                     wait=True):
                self.queue.give_back(entry.key)  # ask the CRM again; it answers the same
                return
            self.metrics.deliveries.labels("rejected").inc()
        else:
            kind = "deleted" if entry.payload[0] is None else "delivered"
            self.counts[kind] += 1
            self.metrics.deliveries.labels(kind).inc()
            ts = self._meta.get((entry.partition, entry.offset))
            if ts is not None:
                self.metrics.latency.observe(max(0.0, self.wall() - ts / 1000))
        for offset in entry.covers:
            self._meta.pop((entry.partition, offset), None)
        self.queue.resolve(entry.key)

    def _commit(self) -> None:
        positions = {p: o for p, o in self.queue.committable().items()
                     if self._committed.get(p) != o}
        if positions:
            self._letters_acknowledged()  # the commit stays behind the dead letters
            self.consumer.commit(offsets=[TopicPartition(self.topic, p, o)
                                          for p, o in positions.items()], asynchronous=False)
            self._committed.update(positions)
        self.metrics.waiting.set(len(self.queue))

    def _alerts(self) -> None:
        while True:
            try:
                kind, details = self.alerts.get_nowait()
            except queue.Empty:
                return
            now = datetime.now(timezone.utc)
            record = {"schema_version": SCHEMA_VERSION, "tenant": None, "kind": kind.value,
                      "idempotency_key": f"alert:crm-sync:{kind.value}:{now.isoformat()}",
                      "detector": "crm-sync", "subject": self.settings.crm.url,
                      "event_time": now, "processed_at": now,
                      "details": {"breaker": self.governor.breaker.state.value, **details}}
            log.warning("alert %s (CRM %s)", kind.value, self.settings.crm.url)
            self.producer.produce(self.settings.kafka.topic("ops.alerts"), key=b"crm-sync",
                                  value=encode(record))
            self.producer.flush(10)

    # ---------------------------------------------------------------- the loop

    def run(self, until_end: bool = False) -> dict:
        crm = self.settings.crm
        eof: set[int] = set()
        partitions = len(self.consumer.list_topics(self.topic, timeout=10)
                         .topics[self.topic].partitions)
        self.consumer.subscribe([self.topic], on_revoke=lambda c, parts: self._commit())
        futures: dict[Future, str] = {}
        with ThreadPoolExecutor(crm.max_in_flight, thread_name_prefix="crm") as pool:
            while not self.stop.is_set():
                if len(self.queue) < crm.max_waiting:
                    for message in self.consumer.consume(500, timeout=0 if futures else 0.2):
                        if message.error():
                            if message.error().code() == KafkaError._PARTITION_EOF:
                                eof.add(message.partition())
                            else:
                                log.warning("kafka: %s", message.error())
                            continue
                        eof.discard(message.partition())
                        self._read(message)
                for entry in self.queue.take(crm.max_in_flight - len(futures)):
                    futures[pool.submit(self.deliver, entry)] = entry.key
                if futures:
                    done, _ = wait(list(futures), timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in done:
                        del futures[future]
                        self._settle(future.result())
                self._alerts()
                self._commit()
                if (until_end and len(eof) >= partitions and not futures
                        and len(self.queue) == 0):
                    break
            self.stop.set()  # cut every wait short; requests on the wire finish
            for future in list(futures):
                self._settle(future.result())
        self._alerts()
        self._commit()
        return dict(self.counts, waiting=len(self.queue))


class _Stored:
    """A handoff message rebuilt from a queue entry, for its dead letter."""

    def __init__(self, topic: str, entry: Entry, payload: tuple) -> None:
        self._topic, self._entry = topic, entry
        handoff = payload[2] if len(payload) > 2 else None
        self._value = handoff.model_dump_json().encode() if handoff is not None else None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._entry.partition

    def offset(self) -> int:
        return self._entry.offset

    def timestamp(self) -> tuple[int, int | None]:
        return (0, None)

    def key(self) -> bytes:
        return self._entry.key.encode()

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list:
        return []


def run(settings: Settings, *, until_end: bool = False, metrics_port: int | None = None) -> int:
    """``esg-leads crm-sync``: returns the exit code."""
    import sys

    from esg_leads.connectors.key_vault import KeyVault
    from esg_leads.flows.run import key_store_path

    metrics = CrmMetrics()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        server, _ = start_http_server(metrics_port, settings.metrics.host,
                                      registry=metrics.registry)
        print(f"metrics on http://{settings.metrics.host}:{server.server_port}/metrics",
              file=sys.stderr, flush=True)
    config = settings.kafka.client_config()
    # librdkafka holds a fetch up to fetch.wait.max.ms (500) for more data: at a few
    # handoffs a second that was the median handoff -> CRM latency (bench/crm_chaos.py:
    # p50 519 ms at 40/s). The user's own setting under kafka.client still wins.
    consumer = Consumer({"fetch.wait.max.ms": 10, **config, "group.id": GROUP,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "enable.partition.eof": True})
    producer = Producer({**config, "enable.idempotence": True, "acks": "all", "linger.ms": 0})
    crm = settings.crm
    client = CrmClient(crm.url, crm.token.get_secret_value() if crm.token else None,
                       crm.timeout.total_seconds(), crm.max_in_flight, crm.error_excerpt_bytes)
    keys = KeyVault(key_store_path(settings))
    sync = CrmSync(settings, consumer, producer, client, keys, metrics=metrics,
                   rng=random.Random(settings.scoring.seed))
    print(f"crm-sync: {settings.kafka.topic('crm.handoff')} -> {crm.url} "
          f"(group {GROUP}, {crm.rate_limit_per_second:g}/s, {crm.max_in_flight} in flight)",
          file=sys.stderr, flush=True)
    try:
        # Set on a relay thread, not in the handler: the main thread paces in
        # sync.stop.wait(), and a handler setting it there could deadlock.
        with on_signals((signal.SIGTERM,), lambda _: sync.stop.set()):
            counts = sync.run(until_end=until_end)
    except KeyboardInterrupt:
        sync.stop.set()
        counts = dict(sync.counts)
    finally:
        consumer.close()
        client.close()
        producer.flush(10)
        keys.close()
    print("crm-sync: " + ", ".join(f"{k} {v}" for k, v in counts.items()), file=sys.stderr,
          flush=True)
    return 0


def demo_delivery(handoff_parquet, settings: Settings) -> dict:
    """``make demo``'s last act: the replay's handoffs through crm-sync to a fake CRM.

    A dev broker and the CRM stand-in run in this process; the handoffs are published to
    ``crm.handoff`` in the order the replay wrote them, and crm-sync runs until the end.
    """
    from pathlib import Path

    from esg_leads.connectors.dev_broker import DevBroker
    from esg_leads.connectors.fake_crm import FakeCrm
    from esg_leads.connectors.key_vault import KeyVault
    from esg_leads.connectors.parquet_sink import read_records
    from esg_leads.schemas.topics import ALL_TOPICS

    path = Path(handoff_parquet)
    records = read_records(path) if path.exists() else []
    crm = FakeCrm(chaos="429@req3:retry_after=0.2;503@every25")
    port = crm.serve(0)
    try:
        with DevBroker(brokers=1, topics=list(ALL_TOPICS), partitions=3) as broker:
            producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
            for row in records:
                producer.produce("crm.handoff",
                                 key=output_key(row["tenant"], row["investor_id"]).encode(),
                                 value=orjson.dumps(row))
            producer.flush(30)
            demo = settings.model_copy(update={
                "kafka": settings.kafka.model_copy(update={"bootstrap_servers": broker.bootstrap}),
                "crm": settings.crm.model_copy(update={"url": f"http://127.0.0.1:{port}",
                                                       "rate_limit_per_second": 200.0})})
            # The demo's broker goes away with the demo: no reconnect noise from late clients.
            config = {**demo.kafka.client_config(), "log_level": 2}
            consumer = Consumer({**config, "group.id": GROUP, "enable.auto.commit": False,
                                 "auto.offset.reset": "earliest", "enable.partition.eof": True})
            client = CrmClient(demo.crm.url, None, 5.0, demo.crm.max_in_flight)
            out = Producer(config)
            with KeyVault(":memory:") as keys:
                sync = CrmSync(demo, consumer, out, client, keys, rng=random.Random(0))
                try:
                    counts = sync.run(until_end=True)
                finally:
                    consumer.close()
                    client.close()
                    out.flush(10)
            # Gone before the broker is: librdkafka would log every reconnect attempt.
            del sync, out, producer, consumer
            import gc

            gc.collect()
        snapshot = crm.snapshot()
    finally:
        crm.stop()
    return {"handoffs": len(records),
            "investors": len({(r["tenant"], r["investor_id"]) for r in records}),
            "in_crm": len(snapshot["leads"]),
            "requests": len(snapshot["requests"]), **counts}
