"""Helpers for tests that run the flow against a Kafka-protocol broker on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from tests import zygote

ESG_LEADS = str(Path(sys.executable).parent / "esg-leads")


def require_tool(name: str) -> str:
    """Path of a third-party tool; skip without it, unless CI requires the tools."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("REQUIRE_TEST_TOOLS") == "1":
            pytest.fail(f"{name} is required here (REQUIRE_TEST_TOOLS=1) but not installed")
        pytest.skip(f"{name} is not installed")
    return path


@contextmanager
def refused_address() -> Iterator[str]:
    """``127.0.0.1:PORT`` where every connection is refused for as long as the block lasts.

    The port stays bound and never listens. A port that was merely free a moment ago (bind,
    read the number, close) can be taken meanwhile by another test worker or any process on
    the machine, and a client may even connect to itself through it; a bound port cannot.
    A server a test talks to binds port 0 itself and reports the port it got instead.
    """
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{closed.getsockname()[1]}"


def consume_all(bootstrap: str, topic: str, timeout: float = 20.0) -> list:
    """Every message of ``topic`` from the beginning to its current end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{time.monotonic_ns()}",
                         "enable.partition.eof": True, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = list(metadata.topics[topic].partitions)
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
        pending = {p for p in partitions if ends[p] > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages, deadline = [], time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                continue
            messages.append(message)
            if message.offset() + 1 >= ends[message.partition()]:
                pending.discard(message.partition())
        return messages
    finally:
        consumer.close()


def values(messages: list) -> list[dict]:
    return [orjson.loads(m.value()) for m in messages if m.value() is not None]


def produce(bootstrap: str, topic: str, key: bytes | None, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=key, value=value)
    assert producer.flush(10) == 0


def start_run(*args: str, log: Path) -> zygote.Child:
    """``esg-leads run`` in the background, working in the log's folder (audit files)."""
    return zygote.popen([ESG_LEADS, "run", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=log.parent)


def stop(process: zygote.Child, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
