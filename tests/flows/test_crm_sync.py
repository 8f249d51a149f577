"""crm-sync end to end: dev broker, ``esg-leads crm-sync`` and ``esg-leads fake-crm``
processes over loopback HTTP, under the fake CRM's scheduled chaos."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from connectors.dev_broker import DevBroker
from connectors.key_vault import KeyVault
from operators.erasure import open_dead_letter
from schemas.topics import ALL_TOPICS
from tests.crm_helpers import (
    committed,
    crm_log,
    handoff,
    publish,
    start_fake_crm,
    start_sync,
    write_config,
)
from tests.kafka_helpers import consume_all, stop, values, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def broker():
    with DevBroker(brokers=1, topics=list(ALL_TOPICS), partitions=3) as running:
        yield running.bootstrap


def _world(investors: int, versions: int) -> list[tuple[str, dict]]:
    """``versions`` handoffs of each investor, interleaved (the newest last)."""
    return [(f"inv-{i}", handoff(f"inv-{i}", n)) for n in range(versions)
            for i in range(investors)]


def _sync_until_end(tmp_path: Path, broker: str, url: str, **crm: object) -> str:
    config = write_config(tmp_path / "crm.toml", broker, url, **crm)
    log = tmp_path / "sync.log"
    process = start_sync(config, "--until-end", log=log)
    assert process.wait(90) == 0, log.read_text()
    return log.read_text()


def _check_applied_once_in_order(state: dict, items: list[tuple[str, dict | None]]) -> None:
    """Each key applied at most once; per investor, applied keys follow the Kafka order and
    the last one is the investor's newest handoff (the latest state wins)."""
    order: dict[str, list[str]] = {}
    for key, record in items:
        if record is not None:
            order.setdefault(key, []).append(record["idempotency_key"])
    for lead, keys in state["applied"].items():
        assert len(keys) == len(set(keys)), f"{lead}: a key applied twice"
        puts = [k for k in keys if not k.startswith("erase:")]
        positions = [order[lead].index(k) for k in puts]
        assert positions == sorted(positions), f"{lead}: an older record after a newer"
    for lead, body in state["leads"].items():
        assert body["idempotency_key"] == order[lead][-1], f"{lead}: not the latest state"


def test_delivers_every_handoff_once_in_order_with_deletes_and_rejects(broker: str,
                                                                       tmp_path: Path) -> None:
    crm, url = start_fake_crm("--reject", "^inv-(3|7)$", "--token", "t0ken",
                              log=tmp_path / "crm.log")
    try:
        items: list = _world(10, 3)
        items += [("inv-5", None), ("inv-8", None), ("ghost", None)]  # erasures
        publish(broker, items)
        output = _sync_until_end(tmp_path, broker, url, token="t0ken")
        state = crm_log(url)
    finally:
        stop(crm)
    _check_applied_once_in_order(state, items)
    assert sorted(state["leads"]) == sorted(f"inv-{i}" for i in (0, 1, 2, 4, 6, 9))
    assert all(r["user_agent"].startswith("esg-leads/") for r in state["requests"])
    assert {r["method"] for r in state["requests"] if r["lead"] == "ghost"} == {"DELETE"}
    letters = values(consume_all(broker, "leads.dlq"))
    assert sorted(v["reason"] for v in letters) == ["crm_rejected"] * 2
    assert all("422" in v["detail"] and v["sealed"] for v in letters)
    with KeyVault(tmp_path / "keys.sqlite") as keys:
        opened = [open_dead_letter(v, keys, {"acme-capital"}) for v in letters]
    assert sorted(o.count(b'"investor_id":"inv-') for o in opened) == [1, 1]
    assert committed(broker) == len(items)
    assert "delivered" in output and "t0ken" not in output


def test_401_alerts_and_dead_letters_nothing(broker: str, tmp_path: Path) -> None:
    crm, url = start_fake_crm("--token", "right", log=tmp_path / "crm.log")
    try:
        publish(broker, _world(3, 1))
        config = write_config(tmp_path / "crm.toml", broker, url, token="wrong")
        process = start_sync(config, log=tmp_path / "sync.log")
        wait_for(lambda: values(consume_all(broker, "ops.alerts", timeout=5)), 60, "an alert")
        # Asked again slowly, never dead-lettered: a config error is not a data error.
        wait_for(lambda: len(crm_log(url)["requests"]) > 3, 60, "a slow retry")
        assert stop(process, signal.SIGTERM) == 0
        state = crm_log(url)
    finally:
        stop(crm)
    alerts = values(consume_all(broker, "ops.alerts"))
    assert [a["kind"] for a in alerts] == ["crm_auth_failed"]
    assert consume_all(broker, "leads.dlq", timeout=5) == []
    assert {r["status"] for r in state["requests"]} == {401}
    assert committed(broker) == 0
