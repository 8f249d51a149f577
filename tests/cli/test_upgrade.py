"""``esg-leads tombstone-old-keys``: its refusals and failures are one line, never a
traceback (the conventions of tests/cli/test_errors.py)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from esg_leads.connectors import key_upgrade
from esg_leads.connectors.dev_broker import DevBroker
from esg_leads.schemas.keys import KEYED_BY_INVESTOR
from tests.cli.test_errors import assert_one_line, run_main
from tests.kafka_helpers import consume_all


@pytest.fixture(autouse=True)
def _salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESG_LEADS_CONTACT_HASH_SALT", "test-salt-not-the-default")


def test_apply_before_the_new_flow_ran_is_refused_in_one_line_and_force_overrides(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Only the old flow's bare keys on the topics: the old flow may still run, and
    tombstoning now would erase every live lead (and, through the old crm-sync, every
    tenant's CRM copy). ``--force`` goes ahead with a warning, topic by topic."""
    with DevBroker(brokers=1, topics=sorted(KEYED_BY_INVESTOR), partitions=2) as broker:
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        producer.produce("leads.scored", key=b"inv-1", value=b"{}")
        assert producer.flush(10) == 0
        argv = ["tombstone-old-keys", "--bootstrap", broker.bootstrap, "--apply"]
        assert_one_line(*run_main(argv, capsys), 1, "the old flow may still run")
        untouched = len(consume_all(broker.bootstrap, "leads.scored"))
        code, err = run_main([*argv, "--force"], capsys)
        tombstoned = len(consume_all(broker.bootstrap, "leads.scored"))
    assert untouched == 1 and code == 0 and tombstoned == 2
    assert err.startswith("warning: no topic holds a record of the new flow") and \
        "tombstoning anyway (--force)" in err


def test_force_warns_and_prints_each_topic(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from esg_leads.cli.main import main

    def fake(config, topics, *, on_topic, on_warning, force, **_):  # noqa: ANN001, ANN003, ANN202
        assert force
        on_warning("leads.scored holds no record of the new flow; tombstoning anyway (--force)")
        for topic in topics:
            on_topic(topic, {"old": 2, "current": 0, "other": 0})
        return {}

    monkeypatch.setattr(key_upgrade, "tombstone_old_keys", fake)
    assert main(["tombstone-old-keys", "--apply", "--force"]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("warning: leads.scored holds no record") and "Traceback" not in err
    assert out.splitlines() == [f"{t}: tombstoned 2 old keys; 0 keyed <tenant>/<investor_id>; "
                                f"0 other keys left alone" for t in sorted(KEYED_BY_INVESTOR)]


@pytest.mark.parametrize(("error", "phrase"), [
    (KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to get watermark offsets")),
     "kafka: Failed to get watermark offsets"),
    (BufferError("Local: Queue full"), "Queue full"),
    (key_upgrade.UpgradeRefused("leads.review holds no record of the new flow"), "new flow"),
])
def test_broker_failures_are_one_line(capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch, error: Exception,
                                      phrase: str) -> None:
    """Review of stop 30: a ``get_watermark_offsets`` timeout (``KafkaException``) and a
    full producer queue (``BufferError``) ended the command in a traceback (exit 70)."""

    def failing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise error

    monkeypatch.setattr(key_upgrade, "tombstone_old_keys", failing)
    assert_one_line(*run_main(["tombstone-old-keys", "--apply"], capsys), 1, phrase)
