"""Logs (issue 20, part 3): ``--log-format json`` is one object per line with time, level,
logger, run id, tenant and message; no secret or contact address in any; ``run`` says
where it starts (resumed from a snapshot, and at which positions) and beats."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from esg_leads.flows import logs
from esg_leads.schemas.secrets import Scrubber
from tests import zygote
from tests.kafka_helpers import ESG_LEADS, refused_address

KEYS = ["time", "level", "logger", "run_id", "tenant", "message"]
SECRET = "s3cr3t-value-for-logs-0042"


@pytest.fixture()
def json_log() -> io.StringIO:
    out = io.StringIO()
    logs.configure("json", stream=out, run_id="run-7")
    logs.add_scrubber(Scrubber({SECRET}))
    yield out
    logs.reset()


def records(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_json_record_has_the_fields_in_order_and_a_utc_time(json_log: io.StringIO) -> None:
    logging.getLogger("esg_leads.run").warning("lag %d", 42, extra={"tenant": "acme-capital"})
    logging.getLogger("some.library").error("plain")
    first, second = records(json_log)
    assert list(first)[:6] == KEYS
    assert first["message"] == "lag 42" and first["tenant"] == "acme-capital"
    assert first["run_id"] == "run-7" and first["level"] == "WARNING"
    assert second["tenant"] is None and second["logger"] == "some.library"
    assert datetime.fromisoformat(first["time"]).utcoffset().total_seconds() == 0


def test_no_secret_or_address_in_a_message_or_a_traceback(json_log: io.StringIO) -> None:
    log = logging.getLogger("esg_leads.test")
    log.warning("connecting with %s as bob@example.org", SECRET)
    try:
        raise RuntimeError(f"refused: password={SECRET} for carol@example.net")
    except RuntimeError:
        log.exception("failed")
    text = json_log.getvalue()
    assert SECRET not in text and "@example." not in text
    message, failure = records(json_log)
    assert message["message"] == "connecting with *** as ***@***"
    assert "RuntimeError: refused: password=*** for ***@***" in failure["exc_info"]


def test_a_text_record_of_a_library_and_a_commands_own_line(tmp_path: Path) -> None:
    out = io.StringIO()
    logs.configure("text", stream=out)
    try:
        logging.getLogger("esg_leads.kafka").warning("broker down")
        logging.getLogger("esg_leads.kafka").info("not shown: libraries log WARNING and up")
        logs.say(logging.getLogger("esg_leads.run"), "esg-leads run: ", "heartbeat: 1 events/s",
                 events_per_s=1.0)
    finally:
        logs.reset()
    library, own = out.getvalue().splitlines()
    assert library.endswith(" esg_leads.kafka: broker down")
    assert own == "esg-leads run: heartbeat: 1 events/s"


def test_a_commands_own_line_as_json_carries_its_fields(json_log: io.StringIO) -> None:
    logs.say(logging.getLogger("esg_leads.run"), "esg-leads run: ", "heartbeat: 5 events/s",
             events_per_s=5.0, leads=3, lag=None)
    [record] = records(json_log)
    assert record["message"] == "heartbeat: 5 events/s" and record["level"] == "INFO"
    assert (record["events_per_s"], record["leads"], record["lag"]) == (5.0, 3, None)
    assert "console_prefix" not in record


def test_configuring_twice_leaves_one_handler() -> None:
    before = len(logging.getLogger().handlers)
    logs.configure("text", stream=io.StringIO())
    logs.configure("json", stream=io.StringIO())
    assert len(logging.getLogger().handlers) == before + 1
    logs.reset()
    assert len(logging.getLogger().handlers) == before


# ----------------------------------------------------------------- esg-leads run


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESG_LEADS_")}
    return {**env, **extra}


def test_run_with_json_logs_writes_only_json_and_no_secret(tmp_path: Path) -> None:
    """``esg-leads run`` against a broker that is not there, every line of its stderr."""
    log = tmp_path / "run.log"
    env = clean_env(ESG_LEADS_KAFKA__SECRETS__SASL_PASSWORD=SECRET,
                    ESG_LEADS_CONTACT_HASH_SALT=SECRET + "-salt")
    # An attempt waits 5 s for an answer, or the client's shorter socket timeout.
    config = tmp_path / "config.toml"
    config.write_text('[kafka.client]\n"socket.timeout.ms" = 500\n')
    with refused_address() as nowhere:
        run = zygote.popen([ESG_LEADS, "run", "--log-format", "json", "--bootstrap",
                                nowhere, "--config", str(config)], cwd=tmp_path,
                               stdout=subprocess.DEVNULL,
                               stderr=log.open("w"), env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while "not ready" not in log.read_text() and run.poll() is None:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
            run.wait(30)
    text = log.read_text()
    assert SECRET not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # all JSON
    assert all(list(r)[:6] == KEYS for r in lines)
    assert len({r["run_id"] for r in lines}) == 1
    assert lines[0]["message"].startswith("brokers=127.0.0.1:")
    assert any(r["level"] == "WARNING" and "not ready" in r["message"] for r in lines)


def test_run_says_where_it_starts_resumes_and_beats(tmp_path: Path) -> None:
    from esg_leads.connectors.dev_broker import DevBroker
    from esg_leads.connectors.publish import publish_recording
    from esg_leads.replay.generator import generate
    from esg_leads.replay.simulate import WorldSpec
    from esg_leads.schemas.topics import ALL_TOPICS

    world = tmp_path / "world"
    generate(WorldSpec(tenants=2, investors=60, properties=10, days=2, seed=4, profile_answers=False), world)
    recovery = tmp_path / "recovery"
    env = clean_env(ESG_LEADS_LOGGING__HEARTBEAT="0.05", ESG_LEADS_CONTACT_HASH_SALT="x" * 12)
    with DevBroker(topics=list(ALL_TOPICS), partitions=2) as broker:
        publish_recording(world, broker.bootstrap)
        runs = []
        for _ in range(2):  # the first from scratch, the second from its snapshot
            runs.append(zygote.run(
                [ESG_LEADS, "run", "--log-format", "json", "--until-end", "--bootstrap",
                 broker.bootstrap, "--config", str(world / "config.toml"), "--recovery-dir",
                 str(recovery)], cwd=tmp_path, capture_output=True, text=True, env=env,
                timeout=240))
    for done in runs:
        assert done.returncode == 0, done.stderr
    first, second = ([json.loads(line) for line in done.stderr.splitlines()] for done in runs)
    [start] = [r for r in first if "resumed" in r]
    assert start["resumed"] is False
    assert start["message"] == (f"no snapshot in {recovery} yet: starting at the beginning "
                                "of every input partition")
    beats = [r for r in first if r["message"].startswith("heartbeat: ")]
    assert beats and all({"events_per_s", "leads", "lag", "dlq"} <= set(r) for r in beats)
    assert beats[-1]["events"] > 0  # the input was read while it beat
    [resume] = [r for r in second if "resumed" in r]
    assert resume["resumed"] is True
    assert resume["message"].startswith(f"resumed from the snapshot in {recovery}: ")
    positions = dict(p.rsplit("@", 1) for p in resume["message"].split(": ", 1)[1].split(", "))
    assert int(positions["investor.engagements:0"]) > 0  # past what the first run read
