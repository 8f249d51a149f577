"""A Kafka-protocol broker for development and tests: librdkafka's mock cluster.

confluent-kafka ships librdkafka, and librdkafka contains a *mock cluster*: in-process
brokers that speak the real Kafka protocol on ``127.0.0.1`` ephemeral ports.  Any
Kafka client -- our confluent-kafka producers and consumers, bytewax's Kafka
connectors, ``kcat``, another process -- can use them as ``bootstrap.servers`` for as
long as the client that created the cluster lives.  :class:`DevBroker` owns that
client, pre-creates topics, and can expose the cluster on a fixed, documented port.

Backends
--------
``"native"`` (the default whenever it is available, which it is with the
confluent-kafka wheels)
    The cluster is created through librdkafka's public, *experimental* mock C API
    (``rdkafka_mock.h``), called with :mod:`ctypes` on the very librdkafka library
    that the confluent-kafka wheel bundles: an ``rd_kafka_t`` handle configured with
    ``test.mock.num.brokers`` owns the cluster, ``rd_kafka_mock_topic_create`` creates
    topics with exactly the requested partition count, and
    ``rd_kafka_mock_group_initial_rebalance_delay_ms`` removes the 3 s initial
    consumer-group rebalance delay (see *group_rebalance_delay_ms*).
``"client"`` (fallback)
    A plain ``confluent_kafka.Producer({"test.mock.num.brokers": N})`` owns the
    cluster.  Topics can then only be auto-created, so they always get the mock's
    default partition count (:data:`MOCK_DEFAULT_PARTITIONS`); asking for another
    count warns.  The group rebalance delay stays at the mock's 3 s.

Partitions
----------
librdkafka has **no configuration property** for the mock's partition count: the only
mock properties are ``test.mock.num.brokers`` and ``test.mock.broker.rtt``, and
``rd_kafka_mock_cluster_new()`` hard-codes ``defaults.partition_cnt = 4`` and
``defaults.replication_factor = min(3, brokers)`` (librdkafka ``src/rdkafka_mock.c``).
So:

* topics passed to :class:`DevBroker` (or :meth:`DevBroker.create_topic`) get exactly
  *partitions* partitions with the native backend (replication factor
  ``min(3, brokers)``, leaders spread over the brokers);
* any other topic is auto-created by the mock, with **4** partitions, the first time
  a producer or an admin client asks for its metadata.  Consumers do not auto-create
  (``allow.auto.create.topics`` is false for them): subscribing to a topic that does
  not exist yet reports ``UNKNOWN_TOPIC_OR_PART`` -- pre-create the topics you read.

Limits of the mock (it is *not* Kafka)
--------------------------------------
* **Memory only**: every topic, message and committed offset lives in the creating
  process and is lost on :meth:`DevBroker.stop` (or when that process exits).
* **Single process lifetime**: the brokers exist only while the :class:`DevBroker`
  that created them is running; clients in other processes lose them when it stops.
* **No CreateTopics**: the admin ``create_topics`` call is not supported (librdkafka's
  ``rdkafka_mock.h``: "The Topic Admin API (CreateTopics) is not supported by the
  mock broker"; in practice the call times out).  Use *topics* /
  :meth:`DevBroker.create_topic`, or let topics be auto-created.
* **Bounded logs**: each partition keeps at most about 5 MB / 100 000 message sets
  (``mpart->max_size`` / ``max_cnt``); older message sets are dropped silently, like
  a very aggressive retention.  Plenty for tests and demos, not for bulk replays.
* Plaintext only (no TLS, no SASL), no ACLs, no quotas, no compaction, no
  configuration describe/alter; the brokers bind to loopback only.
* Idempotent and transactional producers *are* supported (``rdkafka_mock.h`` lists
  "Idempotent Producer" and "Transactional Producer"), as are the low-level consumer
  and consumer groups with offset commits.
* The native mock API is experimental in librdkafka and "NOT covered by the
  librdkafka API or ABI stability guarantees"; a confluent-kafka upgrade could
  change it, in which case ``backend="auto"`` falls back to ``"client"``.

**Development and tests only -- never production.**  Production uses a real Kafka
cluster.

Fixed port
----------
The mock picks its own ephemeral ports.  With ``port=P``, :class:`DevBroker` also runs
a small loopback TCP forwarder on ``127.0.0.1:P`` that pipes bytes to the first mock
broker, so ``127.0.0.1:P`` is a stable bootstrap address (for a CLI, a README, a
docker-less demo).  The brokers still *advertise* their real ephemeral addresses:
clients bootstrap through ``P``, learn the broker addresses from the metadata, then
talk to those directly -- fine on loopback, which is the only place the mock listens.

Examples
--------
>>> with DevBroker(brokers=1, topics=["demo"], partitions=2) as broker:
...     addresses = wait_until_ready(broker.bootstrap, timeout=10)
...     (len(addresses), broker.topic_partitions("demo"))
(1, 2)
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Final

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from esg_leads.connectors.mock_cluster import (
    MOCK_DEFAULT_PARTITIONS,
    _ClientMock,
    _NativeMock,
    native_mock_available,
)
from esg_leads.connectors.signals import on_signals
from esg_leads.connectors.tcp_forwarder import TcpForwarder

__all__ = [
    "MOCK_DEFAULT_PARTITIONS",
    "DevBroker",
    "native_mock_available",
    "run_forever",
    "wait_until_ready",
]

# Loopback-friendly client settings for the metadata probes.
_PROBE_CONFIG: Final[dict[str, Any]] = {
    "socket.connection.setup.timeout.ms": 1000,
    "reconnect.backoff.ms": 20,
    "reconnect.backoff.max.ms": 250,
    "topic.metadata.refresh.interval.ms": 1000,
    # Connection-refused while a broker comes up is expected here; the caller
    # gets a TimeoutError with the last error if it never answers.
    "log_level": 2,
}


# --------------------------------------------------------------------------- readiness


def wait_until_ready(
    bootstrap: str, timeout: float = 10.0, *, config: dict[str, Any] | None = None
) -> list[str]:
    """Retry a metadata request until the cluster at *bootstrap* answers.

    Returns the brokers' advertised ``host:port`` addresses, ordered by broker id.
    Raises :class:`TimeoutError` (carrying the last client error) after *timeout*
    seconds.  *config* is merged into the probe client's configuration (e.g. SASL/SSL
    settings for a real cluster).
    """
    deadline = time.monotonic() + timeout
    client = AdminClient({**_PROBE_CONFIG, **(config or {}), "bootstrap.servers": bootstrap})
    last: BaseException | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"no Kafka broker answered at {bootstrap} within {timeout:g}s"
                + (f" (last error: {last})" if last else "")
            )
        try:
            md = client.list_topics(timeout=max(0.05, min(1.0, remaining)))
        except KafkaException as exc:
            last = exc
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            continue
        if md.brokers:
            return [f"{b.host}:{b.port}" for _, b in sorted(md.brokers.items())]


# --------------------------------------------------------------------------- broker


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class DevBroker:
    """An in-process, memory-only Kafka-protocol cluster for development and tests.

    Parameters
    ----------
    brokers
        Number of mock brokers (ids ``1..brokers``), each on its own loopback port.
    port
        If given, also serve a fixed bootstrap address ``127.0.0.1:port`` through a
        loopback forwarder to broker 1 (``0`` picks a free port).
    topics
        Topics to create on :meth:`start`, so consumers can subscribe or assign at once.
    partitions
        Partition count of those topics (native backend; the ``"client"`` backend can
        only give :data:`MOCK_DEFAULT_PARTITIONS`, and warns).
    group_rebalance_delay_ms
        The mock's initial consumer-group rebalance delay (about 3 s by default --
        measured: a fresh group's first assignment took 3.1 s -- like Kafka's
        ``group.initial.rebalance.delay.ms``).  ``0`` (the default here)
        lets a fresh group's first consumer get its assignment at once; ``None`` keeps
        the mock's default.  Ignored by the ``"client"`` backend.
    backend
        ``"auto"`` (native if available, else client), ``"native"`` or ``"client"``;
        see the module documentation.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.  Everything is lost
    on stop.  See the module docstring for the mock's limits.
    """

    def __init__(
        self,
        brokers: int = 1,
        port: int | None = None,
        topics: Iterable[str] = (),
        partitions: int = 3,
        *,
        group_rebalance_delay_ms: int | None = 0,
        backend: str = "auto",
    ) -> None:
        if brokers < 1:
            raise ValueError(f"brokers must be >= 1, got {brokers}")
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        if port is not None and not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        if backend not in ("auto", "native", "client"):
            raise ValueError(f"backend must be 'auto', 'native' or 'client', got {backend!r}")
        self._brokers = brokers
        self._port = port
        self._topics = list(dict.fromkeys(topics))
        self._partitions = partitions
        self._group_delay = group_rebalance_delay_ms
        self._backend_choice = backend
        self._mock: _NativeMock | _ClientMock | None = None
        self._forwarder: TcpForwarder | None = None
        self._probe: AdminClient | None = None
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> str:
        """Start the brokers (and the forwarder); return the bootstrap address."""
        with self._lock:
            if self._mock is not None:
                raise RuntimeError("DevBroker already started")
            try:
                self._mock = self._new_mock()
                if self._group_delay is not None:
                    self._mock.set_group_rebalance_delay(self._group_delay)
                for name in self._topics:
                    self._mock.create_topic(name, self._partitions, self.replication_factor)
                if self._port is not None:
                    self._forwarder = TcpForwarder(
                        _split_address(self._mock.addresses[0]), port=self._port
                    )
                    self._forwarder.start()
                wait_until_ready(self._bootstrap(), timeout)
            except BaseException:
                self._stop_locked()
                raise
            return self._bootstrap()

    def stop(self) -> None:
        """Stop the forwarder and destroy the cluster (all data is lost); idempotent."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        self._probe = None
        forwarder, self._forwarder = self._forwarder, None
        mock, self._mock = self._mock, None
        try:
            if forwarder is not None:
                forwarder.stop()
        finally:
            if mock is not None:
                mock.close()

    def _new_mock(self) -> _NativeMock | _ClientMock:
        if self._backend_choice == "client":
            return _ClientMock(self._brokers)
        if self._backend_choice == "native":
            return _NativeMock(self._brokers)
        try:
            return _NativeMock(self._brokers)
        except OSError:
            return _ClientMock(self._brokers)

    def __enter__(self) -> DevBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- properties -----------------------------------------------------------------

    def _running(self) -> _NativeMock | _ClientMock:
        if self._mock is None:
            raise RuntimeError("DevBroker is not running; call start() first")
        return self._mock

    def _bootstrap(self) -> str:
        mock = self._running()
        if self._forwarder is not None:
            return f"127.0.0.1:{self._forwarder.port}"
        return ",".join(mock.addresses)

    @property
    def running(self) -> bool:
        return self._mock is not None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:port`` with a fixed port, else every broker's address, comma-joined."""
        return self._bootstrap()

    @property
    def broker_addresses(self) -> list[str]:
        """The brokers' advertised ``host:port`` addresses, by broker id (1, 2, ...)."""
        return list(self._running().addresses)

    @property
    def port(self) -> int | None:
        """The forwarder's port while running with one (the actual one for ``port=0``)."""
        return self._forwarder.port if self._forwarder is not None else self._port

    @property
    def backend(self) -> str:
        """``"native"`` or ``"client"`` (the backend actually running)."""
        return self._running().kind

    @property
    def replication_factor(self) -> int:
        """Replication factor of the topics created here (the mock's ``min(3, brokers)``)."""
        return min(3, self._brokers)

    # -- topics and faults ----------------------------------------------------------

    def create_topic(self, name: str, partitions: int | None = None) -> int:
        """Create *name* (default: the constructor's *partitions*); return its partition count.

        An existing topic is left as it is.  With the ``"client"`` backend the topic is
        auto-created with :data:`MOCK_DEFAULT_PARTITIONS` partitions (and a warning if
        another count was asked for).
        """
        mock = self._running()
        mock.create_topic(name, partitions or self._partitions, self.replication_factor)
        count = self.topic_partitions(name)
        if count is None:  # pragma: no cover - the mock creates synchronously
            raise RuntimeError(f"topic {name!r} not visible after creation")
        return count

    def topic_partitions(self, name: str, timeout: float = 5.0) -> int | None:
        """Partition count of *name* from the cluster metadata, ``None`` if it does not exist.

        Lists all topics, so asking never auto-creates one.
        """
        self._running()
        if self._probe is None:
            self._probe = AdminClient(
                {**_PROBE_CONFIG, "bootstrap.servers": ",".join(self.broker_addresses)}
            )
        meta = self._probe.list_topics(timeout=timeout).topics.get(name)
        if meta is None or meta.error is not None:
            return None
        return len(meta.partitions)

    def inject_request_errors(self, api_key: int, errors: Iterable[int]) -> None:
        """Make the next requests of Kafka protocol *api_key* fail with *errors*, in order.

        For failure testing, e.g. ``inject_request_errors(0, [29])`` fails the next
        Produce request with ``TOPIC_AUTHORIZATION_FAILED``.  Native backend only.
        """
        codes = [int(e) for e in errors]
        if codes:
            self._running().push_request_errors(api_key, codes)

    def __repr__(self) -> str:
        state = f"bootstrap={self._bootstrap()!r}" if self.running else "stopped"
        return f"<DevBroker brokers={self._brokers} {state}>"


# --------------------------------------------------------------------------- CLI helper


def run_forever(brokers: int = 1, port: int | None = None, topics: Iterable[str] = (),
                partitions: int = 3) -> None:
    """Run a :class:`DevBroker` until SIGINT or SIGTERM, then stop it cleanly.

    Prints one line to stdout once the brokers answer::

        bootstrap=127.0.0.1:9092 brokers=127.0.0.1:41234 (mock cluster, memory only)

    and returns normally after a signal (so a ``python -c`` wrapper exits with 0).
    Signal handlers are only installed from the main thread; elsewhere only
    :class:`KeyboardInterrupt` ends the wait.
    """
    stop_event = threading.Event()
    # The event is set on a relay thread (connectors/signals.py): set in the handler
    # itself, while this thread woke from stop_event.wait, it hung 1 SIGINT in 300.
    with on_signals((signal.SIGINT, signal.SIGTERM), lambda _: stop_event.set()), \
            DevBroker(brokers=brokers, port=port, topics=topics, partitions=partitions) as broker:
        sys.stdout.write(
            f"bootstrap={broker.bootstrap} brokers={','.join(broker.broker_addresses)} "
            "(mock cluster, memory only)\n"
        )
        sys.stdout.flush()
        try:
            stop_event.wait()
        except KeyboardInterrupt:
            pass

