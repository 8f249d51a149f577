"""Tests of connectors.dev_broker: the mock cluster, the fixed port, kcat, CLI.

Everything runs on loopback.  kcat tests are skipped when kcat is missing, unless
REQUIRE_TEST_TOOLS=1, which turns a missing kcat into a failure.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient

from esg_leads.connectors.dev_broker import (
    MOCK_DEFAULT_PARTITIONS,
    DevBroker,
    native_mock_available,
    wait_until_ready,
)
from esg_leads.connectors.mock_cluster import _NativeMock
from tests.kafka_helpers import consume_all, refused_address

REPO_ROOT = Path(__file__).resolve().parents[2]

# Loopback-tuned client settings: fail fast, reconnect fast.
CLIENT: dict[str, Any] = {
    "socket.timeout.ms": 5000,
    "socket.connection.setup.timeout.ms": 2000,
    "reconnect.backoff.ms": 20,
    "reconnect.backoff.max.ms": 200,
}
CONSUMER: dict[str, Any] = {
    **CLIENT,
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "fetch.wait.max.ms": 10,
}


def require_tool(name: str) -> str:
    """Path of *name*; skip if missing, or fail when REQUIRE_TEST_TOOLS=1."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if os.environ.get("REQUIRE_TEST_TOOLS") == "1":
            pytest.fail(f"{message} (REQUIRE_TEST_TOOLS=1 requires it)")
        pytest.skip(message)
    return path


@pytest.fixture
def kcat() -> str:
    return require_tool("kcat")


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    errors: list[KafkaError] = []
    producer = Producer(
        {**CLIENT, "bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    for key, value in records:
        producer.produce(
            topic, value=value, key=key, on_delivery=lambda e, _m: e and errors.append(e)
        )
    assert producer.flush(10) == 0
    assert errors == []



def admin(bootstrap: str) -> AdminClient:
    return AdminClient({**CLIENT, "bootstrap.servers": bootstrap})


# --------------------------------------------------------------------------- broker


def test_native_backend_is_available_with_the_wheel() -> None:
    # The documented default: the confluent-kafka wheel bundles librdkafka with the
    # mock API, so topics get exactly the requested partition count.
    assert native_mock_available()


@pytest.mark.parametrize("brokers", [1, 3])
def test_round_trip_metadata_and_topics(brokers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The mock's 3 s initial consumer-group rebalance delay is set to 0 at start: seen in
    # what the broker asks of the mock (and that the mock has the call), not in seconds.
    delays: list[tuple[int, bool]] = []
    setter = _NativeMock.set_group_rebalance_delay

    def recorded(mock: _NativeMock, delay_ms: int) -> bool:
        delays.append((delay_ms, applied := setter(mock, delay_ms)))
        return applied

    monkeypatch.setattr(_NativeMock, "set_group_rebalance_delay", recorded)
    with DevBroker(brokers=brokers, topics=["orders", "audit"], partitions=3) as broker:
        assert delays == [(0, True)]
        assert broker.backend == "native"
        addresses = broker.broker_addresses
        assert len(addresses) == brokers
        assert all(a.startswith("127.0.0.1:") for a in addresses)
        assert broker.bootstrap == ",".join(addresses)
        assert broker.port is None

        md = admin(broker.bootstrap).list_topics(timeout=5)
        assert sorted(md.brokers) == list(range(1, brokers + 1))
        assert [f"{b.host}:{b.port}" for _, b in sorted(md.brokers.items())] == addresses
        for name in ("orders", "audit"):
            parts = md.topics[name].partitions
            assert sorted(parts) == [0, 1, 2]
            for p in parts.values():
                assert p.leader in md.brokers
                assert len(p.replicas) == min(3, brokers) == broker.replication_factor
        assert broker.topic_partitions("orders") == 3

        records = [(f"investor-{i % 7}".encode(), f"event-{i}".encode()) for i in range(30)]
        produce(broker.bootstrap, "orders", records)

        # A consumer group (subscribe) gets its assignment and every record.
        consumer = Consumer(
            {
                **CONSUMER,
                "bootstrap.servers": broker.bootstrap,
                "group.id": "round-trip",
                "auto.offset.reset": "earliest",
            }
        )
        got = []
        deadline = time.monotonic() + 60  # a missing record fails here, not at the harness
        try:
            consumer.subscribe(["orders"])
            while len(got) < len(records) and time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is not None and not msg.error():
                    got.append((msg.key(), msg.value()))
        finally:
            consumer.close()
        assert sorted(got) == sorted(records)

        # The same messages through assign() on every partition.
        assert sorted((m.key(), m.value()) for m in consume_all(broker.bootstrap, "orders")) == (
            sorted(records)
        )
    assert not broker.running


def test_partitions_requested_vs_auto_created() -> None:
    with DevBroker(brokers=2, topics=["wide"], partitions=7) as broker:
        assert broker.topic_partitions("wide") == 7
        assert broker.create_topic("narrow", 1) == 1
        assert broker.create_topic("narrow", 5) == 1  # an existing topic is left alone
        assert broker.create_topic("default-count") == 7  # the constructor's partitions
        # Asking for metadata of all topics never auto-creates one ...
        assert broker.topic_partitions("fresh") is None
        # ... but producing does, with the mock's fixed default.
        produce(broker.bootstrap, "fresh", [(b"k", b"v")])
        assert broker.topic_partitions("fresh") == MOCK_DEFAULT_PARTITIONS == 4


def test_client_backend_gives_the_mock_default() -> None:
    with pytest.warns(RuntimeWarning, match="4 partitions"):
        broker = DevBroker(brokers=1, topics=["c"], partitions=3, backend="client")
        broker.start()
    try:
        assert broker.backend == "client"
        assert broker.topic_partitions("c") == MOCK_DEFAULT_PARTITIONS
        produce(broker.bootstrap, "c", [(b"k", b"v")])
        assert [(m.key(), m.value()) for m in consume_all(broker.bootstrap, "c")] == [
            (b"k", b"v")
        ]
        with pytest.raises(NotImplementedError):
            broker.inject_request_errors(0, [29])
    finally:
        broker.stop()


def test_lifecycle_errors_and_data_is_lost_on_stop() -> None:
    broker = DevBroker(topics=["t"])
    with pytest.raises(RuntimeError, match="not running"):
        _ = broker.bootstrap
    bootstrap = broker.start()
    with pytest.raises(RuntimeError, match="already started"):
        broker.start()
    addresses = broker.broker_addresses
    broker.stop()
    broker.stop()  # idempotent
    for address in addresses:  # the mock's listeners are gone
        host, port = address.rsplit(":", 1)
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=1).close()
    # A restart is a brand-new, empty cluster.
    assert broker.start() != bootstrap
    try:
        assert broker.topic_partitions("t") == 3
        assert consume_all(broker.bootstrap, "t") == []
    finally:
        broker.stop()
    with pytest.raises(ValueError):
        DevBroker(brokers=0)
    with pytest.raises(ValueError):
        DevBroker(backend="zookeeper")


def test_wait_until_ready() -> None:
    with DevBroker(brokers=3) as broker:
        assert wait_until_ready(broker.bootstrap, timeout=5) == broker.broker_addresses
    with refused_address() as nowhere:
        with pytest.raises(TimeoutError, match=f"no Kafka broker answered at {nowhere} within 1s"):
            wait_until_ready(nowhere, timeout=1.0)


def test_wait_until_ready_gives_up_at_its_timeout_on_its_own_clock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The time budget, counted on a fake clock that each metadata request advances by
    the time it was allowed to block (as an unanswered one does): the last request never
    outlasts the deadline by more than the 50 ms floor, and the error names the address
    and the last client error."""
    import esg_leads.connectors.dev_broker as dev_broker
    from confluent_kafka import KafkaException

    now = [1000.0]
    asked: list[float] = []

    class Unanswered:
        def __init__(self, config: dict[str, Any]) -> None:
            assert config["bootstrap.servers"] == "127.0.0.1:1"

        def list_topics(self, timeout: float) -> None:
            asked.append(timeout)
            now[0] += timeout
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "connection refused"))

    def sleep(seconds: float) -> None:
        assert seconds >= 0
        now[0] += seconds

    monkeypatch.setattr(dev_broker, "AdminClient", Unanswered)
    monkeypatch.setattr(dev_broker, "time", type("Clock", (), {
        "monotonic": staticmethod(lambda: now[0]), "sleep": staticmethod(sleep)}))
    with pytest.raises(TimeoutError, match=r"at 127\.0\.0\.1:1 within 2.5s "
                                           r"\(last error: .*connection refused"):
        wait_until_ready("127.0.0.1:1", timeout=2.5)
    assert asked[0] == 1.0  # one request waits at most a second...
    assert len(asked) >= 3  # ...so the budget is spent in several
    assert 1002.5 <= now[0] <= 1002.5 + 0.05


# --------------------------------------------------------------------------- forwarder


def test_fixed_port_with_clients_and_kcat(kcat: str) -> None:
    # Port 0: the forwarder binds a free port itself (a port picked beforehand could be
    # taken by another test worker meanwhile); from then on it is this broker's fixed port.
    broker = DevBroker(brokers=3, port=0, topics=["inbound", "outbound"], partitions=3)
    bootstrap = broker.start()
    try:
        port = broker.port
        assert port and bootstrap == broker.bootstrap == f"127.0.0.1:{port}"
        addresses = broker.broker_addresses
        assert f"127.0.0.1:{port}" not in addresses  # brokers advertise their own ports

        # confluent-kafka bootstraps through the fixed port.
        md = admin(bootstrap).list_topics(timeout=5)
        assert [f"{b.host}:{b.port}" for _, b in sorted(md.brokers.items())] == addresses

        # kcat -L lists the three brokers and the topics.
        listing = subprocess.run(
            [kcat, "-b", bootstrap, "-L", "-m", "5"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        assert "3 brokers:" in listing
        for broker_id, address in enumerate(addresses, start=1):
            assert f"broker {broker_id} at {address}" in listing
        assert 'topic "inbound" with 3 partitions' in listing

        # kcat -P, then our consumer reads.
        lines = [f"key-{i}:value-{i}" for i in range(12)]
        subprocess.run(
            [kcat, "-b", bootstrap, "-P", "-t", "inbound", "-K", ":"],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        got = consume_all(bootstrap, "inbound")
        assert sorted(f"{m.key().decode()}:{m.value().decode()}" for m in got) == sorted(lines)

        # Our producer, then kcat -C reads to the end.
        records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(9)]
        produce(bootstrap, "outbound", records)
        out = subprocess.run(
            [kcat, "-b", bootstrap, "-C", "-e", "-q", "-t", "outbound", "-f", "%k=%s\n"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        assert sorted(out.splitlines()) == sorted(f"{k.decode()}={v.decode()}" for k, v in records)
    finally:
        broker.stop()

    # stop() frees the port: nothing listens, it can be bound, a new broker can use it.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
    with DevBroker(port=port) as again:
        assert again.bootstrap == f"127.0.0.1:{port}"
        assert wait_until_ready(again.bootstrap, timeout=5) == again.broker_addresses


def test_port_zero_and_port_in_use() -> None:
    with DevBroker(port=0) as broker:
        port = broker.port
        assert port and broker.bootstrap == f"127.0.0.1:{port}"
        with pytest.raises(OSError):
            DevBroker(port=port).start()  # the failed start cleaned up after itself
        assert wait_until_ready(broker.bootstrap, timeout=5)


# --------------------------------------------------------------------------- CLI


def _read_line(stream: Any, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"no line within {timeout}s")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_forever_in_a_subprocess(signum: int) -> None:
    code = "from connectors.dev_broker import run_forever; run_forever(1, 0, ['t'], 5)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _read_line(proc.stdout, timeout=20).rstrip("\n")
        # Port 0: the line names the port the forwarder got.
        assert re.fullmatch(r"bootstrap=127\.0\.0\.1:\d+ brokers=127\.0\.0\.1:\d+"
                            r" \(mock cluster, memory only\)", line), line
        bootstrap = line.split()[0].removeprefix("bootstrap=")
        port = int(bootstrap.rsplit(":", 1)[1])

        md = admin(bootstrap).list_topics(timeout=5)
        assert len(md.topics["t"].partitions) == 5
        produce(bootstrap, "t", [(b"cli", b"works")])
        assert [(m.key(), m.value()) for m in consume_all(bootstrap, "t")] == [
            (b"cli", b"works")
        ]

        # Exit status 0 on the signal: run_forever has no end of its own (it would be
        # killed by the timeout, or die of an unhandled SIGTERM with -15).
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 0
        assert proc.stdout is not None and proc.stdout.read() == ""  # one line only
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_require_tool_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setenv("REQUIRE_TEST_TOOLS", "1")
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_TEST_TOOLS"):
        require_tool("kcat")
    monkeypatch.delenv("REQUIRE_TEST_TOOLS")
    with pytest.raises(pytest.skip.Exception):
        require_tool("kcat")


def test_a_mock_request_is_knocked_through_and_the_knocking_stops_with_it() -> None:
    """The mock's thread may sleep through a topic creation for a second; connections to
    its broker wake it (mock_cluster._knocking). The knocks reach the address while the
    request is out, and no knocking thread outlives it."""
    from esg_leads.connectors import mock_cluster

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        host, port = listener.getsockname()
        before = threading.active_count()
        with mock_cluster._knocking(f"{host}:{port}"):
            listener.settimeout(30)
            knock, _ = listener.accept()  # the first knock arrives while the block runs
            knock.close()
        assert threading.active_count() == before
        assert not [t for t in threading.enumerate() if t.name == "mock-knock"]


def test_every_topic_of_a_native_broker_is_created_with_the_knocks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from esg_leads.connectors import mock_cluster

    knocked: list[str] = []
    knocking = mock_cluster._knocking

    def counted(address: str):
        knocked.append(address)
        return knocking(address)

    monkeypatch.setattr(mock_cluster, "_knocking", counted)
    with DevBroker(brokers=1, topics=["a", "b", "c"], partitions=2, backend="native") as broker:
        assert knocked == [broker.broker_addresses[0]] * 3
        assert broker.topic_partitions("b") == 2
