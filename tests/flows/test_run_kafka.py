"""``esg-leads run`` end to end: a real subprocess against a Kafka-protocol broker."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import jsonschema
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from esg_leads.connectors.dev_broker import DevBroker
from esg_leads.connectors.key_vault import KeyVault
from esg_leads.connectors.publish import publish_recording
from esg_leads.flows.config import load_settings
from esg_leads.operators.erasure import open_dead_letter
from esg_leads.replay.generator import generate
from esg_leads.replay.simulate import WorldSpec
from esg_leads.schemas.codec import json_schema
from esg_leads.schemas.topics import ALL_TOPICS, INPUT_TOPICS, OUTPUT_TOPICS
from tests import zygote
from tests.kafka_helpers import (
    ESG_LEADS,
    consume_all,
    produce,
    refused_address,
    require_tool,
    start_run,
    stop,
    values,
    wait_for,
)

SPEC = WorldSpec(tenants=2, investors=250, properties=60, days=6, seed=9, malformed_rate=0.03,
                 profile_answers=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(SPEC, out)
    return out


@pytest.fixture
def broker():
    with DevBroker(brokers=1, topics=list(ALL_TOPICS), partitions=3) as running:
        yield running.bootstrap


def test_bounded_run_reconciles_and_publishes_valid_records(world: Path, broker: str,
                                                            tmp_path: Path) -> None:
    published = publish_recording(world, broker)
    summary_path = tmp_path / "summary.json"
    done = zygote.run(
        [ESG_LEADS, "run", "--bootstrap", broker, "--config", str(world / "config.toml"),
         "--until-end", "--summary", str(summary_path)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
        env={**os.environ, "ESG_LEADS_DLQ__KEY_STORE": str(tmp_path / "keys.sqlite")})
    assert done.returncode == 0, done.stderr
    assert "esg-leads run: brokers=" in done.stderr  # the start-up line
    assert "WARNING contact_hash_salt is the development default" in done.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["messages"] == published["messages"]
    assert summary["reconciled"], summary["topics"]
    for topic, row in summary["topics"].items():
        assert row["in"] == row["used"] + row["dead_lettered"], topic

    outputs = {topic: consume_all(broker, topic) for topic in OUTPUT_TOPICS}
    dead = values(outputs["leads.dlq"])
    assert len(dead) == sum(summary["dlq_by_reason"].values()) > 0
    leads = values(outputs["leads.scored"])  # tombstones (erasures) have no value
    assert len(leads) == summary["outputs"]["leads"] > 0
    for topic, messages in outputs.items():
        # One validator per topic: jsonschema.validate() checks the schema itself and
        # builds a validator on every call (40 ms a message; the same verdict).
        schema = json_schema(topic)
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        for message in messages:
            if message.value() is None:
                continue  # an erasure tombstone
            validator.validate(orjson.loads(message.value()))
            headers = dict(message.headers())
            assert headers["schema-version"] == b"1"
            record = orjson.loads(message.value())
            assert headers["idempotency-key"].decode() == record["idempotency_key"]
            if topic in ("leads.scored", "leads.review", "crm.handoff"):
                assert message.key().decode() == f"{record['tenant']}/{record['investor_id']}"
                assert headers["key-version"] == b"2"
    # Compaction keeps a key's last message: an erased investor's is its tombstone on
    # every per-investor topic (each topic's sink sends its own deletions in order).
    erased = {m.key() for m in outputs["leads.scored"] if m.value() is None}
    assert erased
    for topic in ("leads.scored", "leads.review", "crm.handoff"):
        last = {}
        for message in outputs[topic]:
            last[message.key()] = message.value()
        assert all(last[key] is None for key in erased if key in last), topic
    # A malformed input keeps its original bytes and position in the dead letter.
    # (sealed when it is about an investor: opened with the run's key store).
    bad_json = next(d for d in dead if d["reason"] == "decode_error")
    with KeyVault(tmp_path / "keys.sqlite") as keys:
        original = open_dead_letter(bad_json, keys, set(load_settings(world / "config.toml").tenants))
    assert bad_json["topic"] in INPUT_TOPICS and bad_json["offset"] >= 0
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(original)


def test_metrics_dead_letters_while_running_and_graceful_stop(world: Path, broker: str,
                                                              tmp_path: Path) -> None:
    # The lag gauges come from librdkafka's statistics, every 5 s by default: kafka.client
    # sets that interval, so the test sees the lag fall to 0 without waiting out 5 s turns.
    config = tmp_path / "config.toml"
    config.write_text((world / "config.toml").read_text()
                      + '\n[kafka.client]\n"statistics.interval.ms" = 200\n')
    process = start_run("--bootstrap", broker, "--config", str(config),
                        "--metrics-port", "0", log=tmp_path / "run.log")
    try:
        # Port 0: the run binds a free port itself and names it on its start-up line.
        port = int(wait_for(lambda: re.search(r" metrics=http://127\.0\.0\.1:(\d+)/metrics ",
                                              (tmp_path / "run.log").read_text()),
                            60, "the start-up line").group(1))
        publish_recording(world, broker)
        wait_for(lambda: consume_all(broker, "leads.scored", timeout=2), 120, "first leads")
        # A property signal: dead letters about investors are sealed (operators/erasure.py).
        produce(broker, "esg.property-signals", b"p-x", b'{"tenant": "acme-capital", oops')
        dead = wait_for(lambda: [d for d in values(consume_all(broker, "leads.dlq", timeout=2))
                                 if d["reason"] == "decode_error"
                                 and base64.b64decode(d["value_b64"]).endswith(b"oops")],
                        60, "the malformed message in leads.dlq")
        assert dead[0]["key_b64"] == base64.b64encode(b"p-x").decode()
        assert process.poll() is None, "the flow keeps running after a malformed message"

        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        text = metrics.decode()
        for name in ("esg_leads_input_messages_total", "esg_leads_used_messages_total",
                     "esg_leads_dead_letters_total", "esg_leads_stage_batch_seconds_bucket",
                     "esg_leads_scorings_total", "esg_leads_lead_latency_seconds_bucket",
                     "esg_leads_published_leads_total"):
            assert name in text, name
        assert 'reason="decode_error"' in text
        assert "investor_id" not in text and "inv-" not in text  # bounded labels
        promtool = require_tool("promtool")
        checked = subprocess.run([promtool, "check", "metrics"], input=metrics,
                                 capture_output=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr

        # Lag per input partition (high watermark - position): present for every partition,
        # never growing once the input is all produced, and 0 when the flow has caught up.
        scrapes: list[dict[str, float]] = []

        def caught_up() -> bool:
            scrapes.append(lag_by_partition(scrape(port)))
            lag = scrapes[-1]
            return len(lag) == len(INPUT_TOPICS) * 3 and not any(lag.values())
        wait_for(caught_up, 90, "consumer lag 0 on every input partition", interval=0.2)
        for before, after in zip(scrapes, scrapes[1:]):
            for partition, behind in after.items():
                assert behind <= before.get(partition, behind), (partition, before, after)
        # Latency from our own ingest, not from the (months old) recorded Kafka timestamps:
        # every observation lies in a finite bucket, under an hour.
        buckets = latency_buckets(scrape(port), "ingest")
        assert buckets[float("inf")] > 0
        assert buckets[3600.0] == buckets[float("inf")], buckets
    finally:
        code = stop(process)
    log = (tmp_path / "run.log").read_text()
    assert code == 0, log
    assert "SIGTERM: stopping" in log and "Traceback" not in log


def scrape(port: int) -> list:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return list(text_string_to_metric_families(text))


def lag_by_partition(families: list) -> dict[str, float]:
    return {sample.labels["partition"]: sample.value for family in families
            if family.name == "esg_leads_consumer_lag" for sample in family.samples}


def latency_buckets(families: list, since: str) -> dict[float, float]:
    return {float(sample.labels["le"]): sample.value for family in families
            if family.name == "esg_leads_lead_latency_seconds" for sample in family.samples
            if sample.name.endswith("_bucket") and sample.labels["since"] == since}


def test_kcat_produces_and_consumes_our_topics(broker: str, tmp_path: Path) -> None:
    kcat = require_tool("kcat")
    lines = []
    for i in range(3):
        event = {"tenant": "acme-capital", "event_id": f"kc-{i}", "source": "kcat",
                 "event_time": f"2026-03-02T10:{10 + i}:00+00:00", "investor_id": "inv-kcat",
                 "action": "reply", "channel": "email"}
        lines.append(f"inv-kcat\t{json.dumps(event)}")
    lines.append('inv-kcat\t{"tenant": "acme-capital", "truncated')  # malformed
    later = {"tenant": "acme-capital", "event_id": "kc-late", "source": "kcat",
             "event_time": "2026-03-02T13:00:00+00:00", "investor_id": "inv-other",
             "action": "email_open", "channel": "email"}
    lines.append(f"inv-other\t{json.dumps(later)}")
    produced = subprocess.run([kcat, "-b", broker, "-P", "-t", "investor.engagements", "-K", "\t"],
                              input="\n".join(lines) + "\n", text=True, capture_output=True,
                              timeout=60)
    assert produced.returncode == 0, produced.stderr
    done = zygote.run([ESG_LEADS, "run", "--bootstrap", broker, "--until-end"],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    def read(topic: str) -> list[dict]:
        out = subprocess.run([kcat, "-b", broker, "-C", "-t", topic, "-e", "-q", "-f", "%k\t%s\n"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [(line.split("\t", 1)[0], json.loads(line.split("\t", 1)[1]))
                for line in out.stdout.splitlines() if "\t" in line]

    dead = read("leads.dlq")
    assert [(key, d["reason"]) for key, d in dead] == [("inv-kcat", "decode_error")]
    leads = read("leads.scored")
    # Inputs are keyed by the investor id, outputs by tenant and investor id.
    assert ("acme-capital/inv-kcat", "inv-kcat") in {(key, lead["investor_id"])
                                                     for key, lead in leads}
    lead = next(lead for key, lead in leads if key == "acme-capital/inv-kcat")
    assert lead["features"]["replies"] == 3


def test_an_unreachable_broker_logs_one_line_per_back_off_step(tmp_path: Path) -> None:
    """Not librdkafka's ~16 lines a second: only the run's own line per attempt."""
    # An attempt waits 5 s for an answer, or the client's shorter socket timeout.
    config = tmp_path / "config.toml"
    config.write_text('[kafka.client]\n"socket.timeout.ms" = 500\n')
    with refused_address() as nowhere:
        process = start_run("--bootstrap", nowhere, "--config", str(config),
                            log=tmp_path / "run.log")
        try:
            wait_for(lambda: (tmp_path / "run.log").read_text().count("not ready") >= 1, 60,
                     "a failed attempt")
        finally:
            stop(process, signal.SIGKILL)
    lines = (tmp_path / "run.log").read_text().splitlines()
    attempts = [line for line in lines if "not ready" in line]
    assert all("retrying in" in line for line in attempts)
    others = [line for line in lines if line not in attempts]
    assert all(line.startswith("esg-leads run: ") for line in others), others
    # The start-up line, then its warnings (startup_warnings: one line each), nothing else.
    assert len([line for line in others if "WARNING" not in line]) <= 1, others
