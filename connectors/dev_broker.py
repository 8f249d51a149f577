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

import ctypes
import ctypes.util
import glob
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Final

import confluent_kafka
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

__all__ = [
    "MOCK_DEFAULT_PARTITIONS",
    "DevBroker",
    "TcpForwarder",
    "native_mock_available",
    "run_forever",
    "wait_until_ready",
]

#: Partition count the mock gives auto-created topics (hard-coded in librdkafka).
MOCK_DEFAULT_PARTITIONS: Final = 4

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

_RESP_ERR_TOPIC_ALREADY_EXISTS: Final = 36


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


# --------------------------------------------------------------------------- backends


def _candidate_libraries() -> list[str]:
    """Paths of the librdkafka that confluent-kafka bundles, then a system one."""
    pkg_dir = os.path.dirname(os.path.abspath(confluent_kafka.__file__))
    site_dir = os.path.dirname(pkg_dir)
    patterns = [
        os.path.join(site_dir, "confluent_kafka.libs", "librdkafka*"),  # manylinux
        os.path.join(pkg_dir, ".dylibs", "librdkafka*"),  # macOS (delocate)
        os.path.join(pkg_dir, "librdkafka*"),  # Windows / other layouts
    ]
    found: list[str] = []
    for pattern in patterns:
        found.extend(sorted(glob.glob(pattern)))
    system = ctypes.util.find_library("rdkafka")
    if system:
        found.append(system)
    return found


_VOIDP = ctypes.c_void_p
_LIB: Any = None
_LIB_ERROR: str | None = None
_LIB_LOCK = threading.Lock()


def _load_native() -> Any:
    """Load librdkafka with the mock API declared; raises OSError if unavailable."""
    global _LIB, _LIB_ERROR
    with _LIB_LOCK:
        if _LIB is not None:
            return _LIB
        if _LIB_ERROR is not None:
            raise OSError(_LIB_ERROR)
        errors = []
        for path in _candidate_libraries():
            try:
                lib = ctypes.CDLL(path)
                _declare(lib)
            except (OSError, AttributeError) as exc:
                errors.append(f"{path}: {exc}")
                continue
            _LIB = lib
            return lib
        _LIB_ERROR = "librdkafka mock API not found: " + ("; ".join(errors) or "no library")
        raise OSError(_LIB_ERROR)


def _declare(lib: Any) -> None:
    """Declare the C signatures used here (AttributeError if a symbol is missing)."""
    cp, sz, i32 = ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int32
    lib.rd_kafka_conf_new.restype = _VOIDP
    lib.rd_kafka_conf_new.argtypes = []
    lib.rd_kafka_conf_set.restype = ctypes.c_int
    lib.rd_kafka_conf_set.argtypes = [_VOIDP, cp, cp, cp, sz]
    lib.rd_kafka_conf_destroy.restype = None
    lib.rd_kafka_conf_destroy.argtypes = [_VOIDP]
    lib.rd_kafka_new.restype = _VOIDP
    lib.rd_kafka_new.argtypes = [ctypes.c_int, _VOIDP, cp, sz]
    lib.rd_kafka_destroy.restype = None
    lib.rd_kafka_destroy.argtypes = [_VOIDP]
    lib.rd_kafka_handle_mock_cluster.restype = _VOIDP
    lib.rd_kafka_handle_mock_cluster.argtypes = [_VOIDP]
    lib.rd_kafka_mock_cluster_bootstraps.restype = cp
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [_VOIDP]
    lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
    lib.rd_kafka_mock_topic_create.argtypes = [_VOIDP, cp, ctypes.c_int, ctypes.c_int]
    lib.rd_kafka_mock_push_request_errors_array.restype = None
    lib.rd_kafka_mock_push_request_errors_array.argtypes = [
        _VOIDP,
        ctypes.c_int16,
        sz,
        ctypes.POINTER(ctypes.c_int),
    ]
    lib.rd_kafka_err2str.restype = cp
    lib.rd_kafka_err2str.argtypes = [ctypes.c_int]
    # Optional (librdkafka >= 2.x); looked up lazily.
    try:
        fn = lib.rd_kafka_mock_group_initial_rebalance_delay_ms
        fn.restype = None
        fn.argtypes = [_VOIDP, i32]
    except AttributeError:
        pass


def native_mock_available() -> bool:
    """Whether the native (ctypes) backend can be used in this environment."""
    try:
        _load_native()
    except OSError:
        return False
    return True


class _NativeMock:
    """A mock cluster owned by an ``rd_kafka_t`` created through ctypes."""

    kind = "native"

    def __init__(self, brokers: int) -> None:
        lib = _load_native()
        self._lib = lib
        errstr = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        for name, value in (
            ("test.mock.num.brokers", str(brokers)),
            ("log_level", "4"),  # hide the "Mock cluster enabled" notice
            ("client.id", "esg-leads-dev-broker"),
        ):
            if lib.rd_kafka_conf_set(conf, name.encode(), value.encode(), errstr, 512) != 0:
                lib.rd_kafka_conf_destroy(conf)
                raise RuntimeError(f"librdkafka rejected {name}={value}: {errstr.value.decode()}")
        rk = lib.rd_kafka_new(0, conf, errstr, 512)  # 0 = RD_KAFKA_PRODUCER; owns conf
        if not rk:
            lib.rd_kafka_conf_destroy(conf)
            raise RuntimeError(f"could not create the mock cluster: {errstr.value.decode()}")
        self._rk = rk
        self._finalizer = weakref.finalize(self, lib.rd_kafka_destroy, rk)
        self._mc = lib.rd_kafka_handle_mock_cluster(rk)
        if not self._mc:
            self.close()
            raise RuntimeError("librdkafka created no mock cluster")
        raw = lib.rd_kafka_mock_cluster_bootstraps(self._mc).decode()
        self.addresses = [a for a in raw.split(",") if a]

    def create_topic(self, name: str, partitions: int, replication_factor: int) -> bool:
        """Create a topic; False if it already existed."""
        err = self._lib.rd_kafka_mock_topic_create(
            self._mc, name.encode(), partitions, replication_factor
        )
        if err == _RESP_ERR_TOPIC_ALREADY_EXISTS:
            return False
        if err:
            raise RuntimeError(
                f"mock topic_create({name!r}) failed: {self._lib.rd_kafka_err2str(err).decode()}"
            )
        return True

    def set_group_rebalance_delay(self, delay_ms: int) -> bool:
        fn = getattr(self._lib, "rd_kafka_mock_group_initial_rebalance_delay_ms", None)
        if fn is None:
            return False
        fn(self._mc, int(delay_ms))
        return True

    def push_request_errors(self, api_key: int, errors: list[int]) -> None:
        arr = (ctypes.c_int * len(errors))(*errors)
        self._lib.rd_kafka_mock_push_request_errors_array(self._mc, api_key, len(errors), arr)

    def close(self) -> None:
        self._finalizer()  # rd_kafka_destroy, at most once


class _ClientMock:
    """A mock cluster owned by a confluent-kafka ``Producer`` (no ctypes)."""

    kind = "client"

    def __init__(self, brokers: int) -> None:
        self._producer: Any = confluent_kafka.Producer(
            {"test.mock.num.brokers": brokers, "log_level": 4, "client.id": "esg-leads-dev-broker"}
        )
        md = self._producer.list_topics(timeout=10)
        self.addresses = [f"{b.host}:{b.port}" for _, b in sorted(md.brokers.items())]

    def create_topic(self, name: str, partitions: int, replication_factor: int) -> bool:
        del replication_factor
        if partitions != MOCK_DEFAULT_PARTITIONS:
            warnings.warn(
                f"the 'client' mock backend can only auto-create topics, with "
                f"{MOCK_DEFAULT_PARTITIONS} partitions; {name!r} will not have {partitions}",
                RuntimeWarning,
                stacklevel=3,
            )
        # A producer's metadata request auto-creates the topic on the mock.
        md = self._producer.list_topics(topic=name, timeout=10)
        meta = md.topics.get(name)
        if meta is None or meta.error is not None:
            raise RuntimeError(f"mock did not auto-create {name!r}: {meta and meta.error}")
        return True

    def set_group_rebalance_delay(self, delay_ms: int) -> bool:
        del delay_ms
        return False

    def push_request_errors(self, api_key: int, errors: list[int]) -> None:
        raise NotImplementedError("error injection needs the native mock backend")

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(0)
            del producer  # the last reference: destroys the handle and the cluster


# --------------------------------------------------------------------------- forwarder


class _Side:
    """One socket of a forwarded connection and the bytes waiting to be written to it."""

    __slots__ = ("sock", "peer", "outbuf", "read_eof", "shut_wr", "events")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.peer: _Side = self
        self.outbuf = b""
        self.read_eof = False
        self.shut_wr = False
        self.events = 0


class TcpForwarder:
    """A loopback TCP port forwarder: ``host:port`` -> *target*, one thread, selectors.

    Every accepted connection gets its own connection to *target*; bytes are piped
    both ways with back-pressure (a side is only read while the other side's write
    buffer is empty, so each direction buffers at most 64 KiB), half-closes are
    propagated, and a reset on either side resets the pair.  :meth:`stop` closes the
    listener and aborts the remaining connections (``SO_LINGER`` 0, so the port is
    immediately free again).  ``port=0`` picks an ephemeral port (see :attr:`port`).
    """

    _CHUNK: Final = 65536

    def __init__(
        self,
        target: tuple[str, int],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 2.0,
    ) -> None:
        self._target = target
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._sel: selectors.BaseSelector | None = None
        self._pairs: set[tuple[_Side, _Side]] = set()
        self.accepted = 0

    @property
    def port(self) -> int:
        """The listening port (the actual one when constructed with ``port=0``)."""
        return self._port

    @property
    def active_connections(self) -> int:
        """Forwarded connections currently open."""
        return len(self._pairs)

    def start(self) -> int:
        if self._thread is not None:
            raise RuntimeError("forwarder already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._port))
            listener.listen(512)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(listener, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(
            target=self._run, name=f"dev-broker-forwarder-{self._port}", daemon=True
        )
        self._thread.start()
        return self._port

    def stop(self, timeout: float = 5.0) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass
        thread.join(timeout)
        if thread.is_alive():  # pragma: no cover - defensive
            raise RuntimeError("forwarder thread did not stop")
        self._thread = None

    # -- event loop (forwarder thread only) --------------------------------------

    def _run(self) -> None:
        sel = self._sel
        assert sel is not None
        try:
            while not self._stopping.is_set():
                for key, mask in sel.select(timeout=1.0):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        try:
                            self._wake_r.recv(64)  # type: ignore[union-attr]
                        except OSError:
                            pass
                    else:
                        self._service(key.data, mask)
        finally:
            self._shutdown()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. EMFILE; the listener stays registered
            self.accepted += 1
            try:
                upstream = socket.create_connection(self._target, timeout=self._connect_timeout)
            except OSError:
                _abort(client)
                continue
            for s in (client, upstream):
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            a, b = _Side(client), _Side(upstream)
            a.peer, b.peer = b, a
            self._pairs.add((a, b))
            self._update(a)
            self._update(b)

    def _service(self, side: _Side, mask: int) -> None:
        try:
            if mask & selectors.EVENT_WRITE and side.outbuf:
                self._flush(side)
            if mask & selectors.EVENT_READ and not side.read_eof and not side.peer.outbuf:
                data = side.sock.recv(self._CHUNK)
                if data:
                    side.peer.outbuf = data
                    self._flush(side.peer)
                else:
                    side.read_eof = True
                    if not side.peer.outbuf:
                        self._shut_wr(side.peer)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close_pair(side, abort=True)
            return
        if side.read_eof and side.peer.read_eof and not side.outbuf and not side.peer.outbuf:
            self._close_pair(side, abort=False)
            return
        self._update(side)
        self._update(side.peer)

    def _flush(self, side: _Side) -> None:
        try:
            sent = side.sock.send(side.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        side.outbuf = side.outbuf[sent:]
        if not side.outbuf and side.peer.read_eof:
            self._shut_wr(side)

    @staticmethod
    def _shut_wr(side: _Side) -> None:
        if not side.shut_wr:
            side.shut_wr = True
            try:
                side.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _update(self, side: _Side) -> None:
        sel = self._sel
        assert sel is not None
        events = 0
        if not side.read_eof and not side.peer.outbuf:
            events |= selectors.EVENT_READ
        if side.outbuf:
            events |= selectors.EVENT_WRITE
        if events == side.events:
            return
        if side.events == 0:
            sel.register(side.sock, events, side)
        elif events == 0:
            sel.unregister(side.sock)
        else:
            sel.modify(side.sock, events, side)
        side.events = events

    def _close_pair(self, side: _Side, *, abort: bool) -> None:
        pair = (side, side.peer) if (side, side.peer) in self._pairs else (side.peer, side)
        self._pairs.discard(pair)
        for s in pair:
            if s.events and self._sel is not None:
                try:
                    self._sel.unregister(s.sock)
                except (KeyError, ValueError):
                    pass
                s.events = 0
            if abort:
                _abort(s.sock)
            else:
                s.sock.close()

    def _shutdown(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for a, _ in list(self._pairs):
            self._close_pair(a, abort=True)
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._wake_r = self._wake_w = None


def _abort(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): no TIME_WAIT left on our port."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


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
    previous: dict[int, Any] = {}
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop_event.set())
    try:
        with DevBroker(brokers=brokers, port=port, topics=topics, partitions=partitions) as broker:
            sys.stdout.write(
                f"bootstrap={broker.bootstrap} brokers={','.join(broker.broker_addresses)} "
                "(mock cluster, memory only)\n"
            )
            sys.stdout.flush()
            try:
                while not stop_event.wait(0.2):
                    pass
            except KeyboardInterrupt:
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

