"""librdkafka's mock cluster, created through one of two backends (see :mod:`.dev_broker`).

``_NativeMock`` calls librdkafka's experimental mock C API (``rdkafka_mock.h``) with
:mod:`ctypes` on the library the confluent-kafka wheel bundles: exact partition counts
and no 3 s group rebalance delay. ``_ClientMock`` is the fallback when that API cannot
be loaded: a plain producer with ``test.mock.num.brokers`` owns the cluster, and topics
get the mock's default partition count. :class:`~.dev_broker.DevBroker` picks one; this
module is the part that talks to librdkafka.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import os
import socket
import threading
import warnings
import weakref
from typing import Any, Final

import confluent_kafka

#: Partition count the mock gives auto-created topics (hard-coded in librdkafka).
MOCK_DEFAULT_PARTITIONS: Final = 4

_RESP_ERR_TOPIC_ALREADY_EXISTS: Final = 36

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


@contextlib.contextmanager
def _knocking(address: str):
    """Connect to the mock broker at ``address`` every 10 ms while the block runs.

    A request such as ``rd_kafka_mock_topic_create`` is handed to the mock's own thread
    and waited for; that thread sleeps in poll() for up to a second between its timers,
    and the hand-over does not always wake it: 6 of 30 dev brokers here waited a whole
    second (once two) to create their topics. A connection to its listening socket is
    an event its poll() sees: with these knocks, 0 of 30 waited. The mock accepts
    and drops each connection, as it does any client's.
    """
    host, _, port = address.rpartition(":")
    done = threading.Event()

    def knock() -> None:
        while not done.wait(0.01):
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
            except OSError:  # the knock only has to reach poll(), not succeed
                pass

    knocker = threading.Thread(target=knock, name="mock-knock", daemon=True)
    knocker.start()
    try:
        yield
    finally:
        done.set()
        knocker.join()


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
        with _knocking(self.addresses[0]):  # ctypes lets go of the GIL during the call
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
