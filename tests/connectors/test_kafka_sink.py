"""The Kafka output sink against a Kafka-protocol broker on loopback."""

from __future__ import annotations

import logging

import orjson
import pytest

from esg_leads.connectors.dev_broker import DevBroker
from esg_leads.connectors.kafka_sink import KafkaTopicSink
from tests.kafka_helpers import consume_all


def record(n: int, filler: int = 0) -> dict:
    return {"tenant": "acme", "investor_id": f"inv-{n}", "idempotency_key": f"k-{n}",
            "note": "x" * filler}


def test_a_record_over_the_message_limit_is_logged_and_skipped_not_a_crash_loop(
        caplog: pytest.LogCaptureFixture) -> None:
    """Issue 14, finding 3: one oversized record failed the epoch, and every restart
    met it again. The sink now drops it with an error line, and delivers the rest."""
    with DevBroker(brokers=1, topics=["leads.scored"], partitions=1) as broker:
        sink = KafkaTopicSink({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 4096},
                              "leads.scored", "leads")
        part = sink.build_part("leads_out", "leads", None)
        with caplog.at_level(logging.ERROR, logger="esg_leads.connectors.kafka_sink"):
            part.write_batch([record(1), record(2, filler=10_000), record(3)])
            part.snapshot()
        part.close()
        delivered = [orjson.loads(m.value())["investor_id"]
                     for m in consume_all(broker.bootstrap, "leads.scored")]
    assert delivered == ["inv-1", "inv-3"] and part.dropped == 1
    [line] = [r.getMessage() for r in caplog.records]
    assert "k-2" in line and "xxxx" not in line
