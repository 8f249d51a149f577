"""crm-sync end to end: dev broker, ``esg-leads crm-sync`` and ``esg-leads fake-crm``
processes over loopback HTTP, under the fake CRM's scheduled chaos."""

from __future__ import annotations

import math
import signal
from collections import Counter
from pathlib import Path

import pytest

from esg_leads.connectors.dev_broker import DevBroker
from esg_leads.connectors.key_vault import KeyVault
from esg_leads.operators.erasure import open_dead_letter
from esg_leads.schemas.topics import ALL_TOPICS
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
    """``versions`` handoffs of each investor, interleaved (the newest last), keyed
    ``<tenant>/<investor_id>`` as the flow keys them."""
    return [(lead(f"inv-{i}"), handoff(f"inv-{i}", n)) for n in range(versions)
            for i in range(investors)]


def lead(investor: str, tenant: str = "acme-capital") -> str:
    """The message key of a handoff, and the lead's name in the fake CRM's log."""
    return f"{tenant}/{investor}"


def _sync_until_end(tmp_path: Path, broker: str, url: str, **crm: object) -> str:
    config = write_config(tmp_path / "crm.toml", broker, url, **crm)
    log = tmp_path / "sync.log"
    process = start_sync(config, "--until-end", log=log)
    try:
        assert process.wait(90) == 0, log.read_text()
    finally:  # a hung or failed sync must not outlive its test
        if process.poll() is None:
            process.kill()
            process.wait(10)
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
        items += [(lead("inv-5"), None), (lead("inv-8"), None), (lead("ghost"), None)]  # erasures
        publish(broker, items)
        output = _sync_until_end(tmp_path, broker, url, token="t0ken")
        state = crm_log(url)
    finally:
        stop(crm)
    _check_applied_once_in_order(state, items)
    assert sorted(state["leads"]) == sorted(lead(f"inv-{i}") for i in (0, 1, 2, 4, 6, 9))
    assert all(r["user_agent"].startswith("esg-leads/") for r in state["requests"])
    assert {r["method"] for r in state["requests"] if r["lead"] == lead("ghost")} == {"DELETE"}
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


def _puts_done(state: dict) -> list[dict]:
    return sorted(state["requests"], key=lambda r: r["n"])


def test_429_storm_no_request_before_retry_after(broker: str, tmp_path: Path) -> None:
    crm, url = start_fake_crm(
        "--chaos", "429@req2-4:retry_after=0.3;429@req6:retry_after=1,date;429@req9",
        log=tmp_path / "crm.log")
    try:
        items = _world(8, 1)
        publish(broker, items)
        # One request on the wire at a time: a 429 then stops every later request.
        _sync_until_end(tmp_path, broker, url, max_in_flight=1)
        state = crm_log(url)
    finally:
        stop(crm)
    requests = _puts_done(state)
    throttled = [r for r in requests if r["status"] == 429]
    assert len(throttled) == 5
    for r in throttled:
        later = [x for x in requests if x["n"] > r["n"]]
        assert later, "a throttled record was never sent again"
        if r["retry_after"] is not None:  # all but req9, which backs off instead
            # Ordering on the server's clock: the next arrival is after the stated time.
            assert later[0]["t"] >= r["t_done"] + r["retry_after"]
    _check_applied_once_in_order(state, items)
    assert len(state["leads"]) == 8


def test_5xx_bursts_drops_and_slow_answers_past_the_timeout(broker: str, tmp_path: Path) -> None:
    crm, url = start_fake_crm(
        "--chaos", "500@req3-6;drop@req8;slow@req10:delay=1.6;502@every7;504@req12",
        log=tmp_path / "crm.log")
    try:
        items = _world(12, 2)
        publish(broker, items)
        _sync_until_end(tmp_path, broker, url, timeout=0.8)
        state = crm_log(url)
    finally:
        stop(crm)
    # We gave up on the slow request and sent its key again; whichever the CRM saw
    # last found the key known and changed nothing (checked below: applied once).
    slow = next(r for r in state["requests"] if r["n"] == 10)
    assert any(r["key"] == slow["key"] for r in state["requests"] if r["n"] > 10)
    _check_applied_once_in_order(state, items)
    assert len(state["leads"]) == 12
    assert consume_all(broker, "leads.dlq", timeout=5) == []


def test_outage_opens_the_breaker_without_a_request_storm(broker: str, tmp_path: Path) -> None:
    outage, cooldown = (0.2, 1.7), 0.5
    crm, url = start_fake_crm("--chaos", f"503@t{outage[0]}-{outage[1]}",
                              log=tmp_path / "crm.log")
    try:
        items = _world(30, 1)
        publish(broker, items)
        # Without the breaker, 20 requests/s would send ~30 into the outage.
        _sync_until_end(tmp_path, broker, url, rate_limit_per_second=20, failures=3,
                        cooldown=cooldown, max_in_flight=2)
        state = crm_log(url)
    finally:
        stop(crm)
    first = min(r["t"] for r in state["requests"])
    during = [r for r in state["requests"]
              if first + outage[0] <= r["t"] < first + outage[1]]
    assert during and all(r["status"] == 503 for r in during)
    # failures to open + those already on the wire + one probe per cooldown (+1 edge).
    probes = math.ceil((outage[1] - outage[0]) / cooldown)
    assert len(during) <= 3 + 2 + probes + 1, len(during)
    kinds = [a["kind"] for a in values(consume_all(broker, "ops.alerts"))]
    assert kinds[0] == "crm_breaker_opened" and kinds[-1] == "crm_breaker_closed"
    _check_applied_once_in_order(state, items)
    assert len(state["leads"]) == 30


def test_kill_9_and_restart_resends_only_what_was_not_acknowledged(broker: str,
                                                                    tmp_path: Path) -> None:
    crm, url = start_fake_crm("--chaos", "slow@p1:delay=0.02", log=tmp_path / "crm.log")
    try:
        items = _world(60, 1)
        publish(broker, items)
        # The restarted sync joins the group once the killed member's session expires:
        # 2 s, not 6 s (heartbeats come from librdkafka's own thread every 0.5 s).
        config = write_config(tmp_path / "crm.toml", broker, url, rate_limit_per_second=20,
                              session_timeout_ms=2000)
        first = start_sync(config, log=tmp_path / "sync.log")
        done_at_kill = wait_for(lambda: committed(broker) >= 10 and committed(broker), 60,
                                "first commits")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        before = len(crm_log(url)["requests"])
        assert before < len(items), "the kill came too late to test anything"
        second = start_sync(config, "--until-end", log=tmp_path / "sync.log")
        assert second.wait(90) == 0
        state = crm_log(url)
    finally:
        stop(crm)
    resent = state["requests"][before:]
    assert len(resent) <= len(items) - done_at_kill
    _check_applied_once_in_order(state, items)
    assert Counter(len(v) for v in state["applied"].values()) == {1: 60}
    assert committed(broker) == len(items)


def test_one_tenants_erasure_deletes_its_crm_lead_not_another_tenants_of_the_same_id(
        broker: str, tmp_path: Path) -> None:
    """Stop 29's review: crm-sync put and deleted ``/leads/<investor_id>``, so tenant A's
    erasure of ``inv-1`` deleted tenant B's CRM copy of its own ``inv-1``. The lifecycle
    operators' handoffs of both tenants and A's erasure go through the Kafka sinks to
    crm-sync; the CRM keeps B's lead at ``/tenants/beta/leads/inv-1``. Keys naming no
    tenant (a tombstone of the old bare-id contract, forged ones) and a key naming
    another lead than its body are dead letters with their key bytes: nothing deleted."""
    import base64

    from esg_leads.connectors.kafka_sink import KafkaTopicSink
    from tests.two_tenants import outputs

    before, erasure = outputs()
    config = {"bootstrap.servers": broker}
    handoffs = KafkaTopicSink(config, "crm.handoff", "handoff").build_part("h", "handoff", None)
    tombstones = KafkaTopicSink(config, "", "tombstones").build_part("t", "tombstones", None)
    handoffs.write_batch([e.record for e in before if e.kind == "handoff"])
    handoffs.snapshot()
    tombstones.write_batch([{"topic": e.topic, "key": e.key} for e in erasure
                            if e.kind == "tombstone" and e.topic == "crm.handoff"])
    tombstones.snapshot()
    handoffs.close()
    tombstones.close()
    [beta] = [e.record for e in before if e.kind == "handoff" and e.record["tenant"] == "beta"]
    bad = [("inv-1", None), ("beta", None), ("../beta/inv-1", None),  # no valid tenant part
           ("inv-1", handoff("inv-1", 5, tenant="beta")),  # a handoff with an old key
           ("beta/inv-1", handoff("inv-1", 6, tenant="acme"))]  # another tenant's key
    publish(broker, bad)
    crm, url = start_fake_crm(log=tmp_path / "crm.log")
    try:
        _sync_until_end(tmp_path, broker, url)
        state = crm_log(url)
    finally:
        stop(crm)
    assert set(state["leads"]) == {"beta/inv-1"}
    assert state["leads"]["beta/inv-1"]["idempotency_key"] == beta["idempotency_key"]
    assert [r["method"] for r in state["requests"] if r["lead"] == "acme/inv-1"][-1] == "DELETE"
    letters = values(consume_all(broker, "leads.dlq"))
    assert sorted(base64.b64decode(v["key_b64"]).decode() for v in letters) == sorted(
        key for key, _ in bad)
    assert {v["reason"] for v in letters} == {"key_mismatch"}
    assert sum("nothing deleted" in v["detail"] for v in letters) == 3
    assert committed(broker) == len(bad) + 3  # two handoffs and a tombstone: all resolved


# ------------------------------------------- in process: a fake producer and consumer


class _Message:
    def __init__(self, offset: int, key: bytes | None, value: bytes | None) -> None:
        self._offset, self._key, self._value = offset, key, value

    def topic(self) -> str:
        return "crm.handoff"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_772_355_600_000)

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list:
        return []


class _Broker:
    """A producer and a consumer writing one log of what crm-sync asked, in order; the
    producer's delivery reports come on poll/flush, as librdkafka's do."""

    def __init__(self, fail: bool = False) -> None:
        self.log: list[tuple] = []
        self.letters: list[tuple[bytes | None, dict]] = []
        self._reports: list = []
        self.fail = fail

    def produce(self, topic: str, key=None, value=None, on_delivery=None, **_) -> None:  # noqa: ANN001, ANN003
        import orjson

        self.log.append(("produce", topic))
        self.letters.append((key, orjson.loads(value)))
        self._reports.append(on_delivery)

    def poll(self, _timeout: float = 0) -> int:
        return 0  # reports only on flush: the worst case for the commit's order

    def flush(self, _timeout: float = 0) -> int:
        from confluent_kafka import KafkaError

        self.log.append(("flush",))
        for report in self._reports:
            report(KafkaError(KafkaError._MSG_TIMED_OUT) if self.fail else None, None)
        self._reports.clear()
        return 0

    def commit(self, offsets, asynchronous: bool = True) -> None:  # noqa: ANN001
        self.log.append(("commit", [(o.partition, o.offset) for o in offsets]))


def _sync(broker: _Broker, keys: KeyVault):
    from esg_leads.connectors.crm_client import CrmClient
    from esg_leads.flows.crm_sync import CrmSync
    from esg_leads.schemas.settings import Settings

    settings = Settings()  # tenants acme-capital, borealis-re, cityline-im
    client = CrmClient("http://127.0.0.1:9", None, 1.0, 1)  # never asked here
    return CrmSync(settings, broker, broker, client, keys)


def test_dead_letters_are_flushed_once_before_the_commit_never_one_by_one() -> None:
    """Review of stop 30: each bare tombstone's dead letter was flushed on its own (1,000
    took a second; at 100k the real handoffs waited minutes). Now produced as read, and
    the commit that covers them comes only after one flush acknowledged them all."""
    broker = _Broker()
    with KeyVault(":memory:") as keys:
        sync = _sync(broker, keys)
        for offset in range(300):
            sync._read(_Message(offset, f"inv-{offset}".encode(), None))
        sync._commit()
    assert broker.log == [("produce", "leads.dlq")] * 300 + [("flush",), ("commit", [(0, 300)])]
    assert {letter["reason"] for _, letter in broker.letters} == {"key_mismatch"}
    assert sync.counts["invalid"] == 300


def test_a_dead_letter_the_broker_did_not_acknowledge_stops_before_the_commit() -> None:
    broker = _Broker(fail=True)
    with KeyVault(":memory:") as keys:
        sync = _sync(broker, keys)
        sync._read(_Message(0, b"inv-1", None))
        with pytest.raises(RuntimeError, match="dead letters not acknowledged"):
            sync._commit()
    assert not [entry for entry in broker.log if entry[0] == "commit"]


def test_a_lead_of_an_unconfigured_tenant_is_not_created_but_its_erasure_is_applied() -> None:
    """Review of stop 30: ``ghost-tenant/inv-2`` was PUT to the CRM. A tenant removed from
    the config may still hold leads there, so its erasures still go through."""
    import base64

    import orjson

    value = orjson.dumps(handoff("inv-2", 1, tenant="ghost-tenant"))
    broker = _Broker()
    with KeyVault(":memory:") as keys:
        sync = _sync(broker, keys)
        sync._read(_Message(0, b"ghost-tenant/inv-2", value))
        sync._read(_Message(1, b"ghost-tenant/inv-1", None))
        sync._read(_Message(2, b"acme-capital/inv-3", orjson.dumps(handoff("inv-3", 1))))
        [(key, letter)] = broker.letters
        opened = open_dead_letter(letter, keys, set(sync.settings.tenants))
        queued = [entry.key for entry in sync.queue.take(10)]
    assert letter["reason"] == "unknown_tenant" and key == b"ghost-tenant/inv-2"
    assert base64.b64decode(letter["key_b64"]) == key and opened == value
    assert "'ghost-tenant' is not configured" in letter["detail"]
    assert queued == ["ghost-tenant/inv-1", "acme-capital/inv-3"]


def test_the_dead_letter_of_a_huge_key_has_a_bounded_key_and_says_it_was_cut() -> None:
    """Review of stop 30: the dead letter of a 5 MB key kept the 5 MB key as its own
    message key; a real broker refuses it (MSG_SIZE_TOO_LARGE), which stopped crm-sync."""
    import base64

    from esg_leads.operators.validation import MAX_KEY_BYTES

    key = b"\xff" + b"a" * 5_000_000
    broker = _Broker()
    with KeyVault(":memory:") as keys:
        sync = _sync(broker, keys)
        sync._read(_Message(0, key, None))
    [(letter_key, letter)] = broker.letters
    assert letter_key == key[:MAX_KEY_BYTES] == base64.b64decode(letter["key_b64"])
    assert "key of 5,000,001 bytes: its first 1,024 kept" in letter["detail"]
    assert letter["reason"] == "key_mismatch" and len(letter["detail"]) <= 1024
