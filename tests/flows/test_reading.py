"""Each worker reads its own tenants' messages (flows/reading.py): every message is read
by exactly one worker, and a served tenant's event by its tenant's worker, whatever
the bytes say — the row filter decides most rows on their bytes, which must never be
wrong about the tenant the parser reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.connectors.recording import RecordedMessage, RecordingReader
from esg_leads.flows.config import load_settings
from esg_leads.flows.reading import FALLBACK, TenantRows, part_lane, reader_lane, reader_rows
from esg_leads.replay.generator import generate
from esg_leads.replay.simulate import WorldSpec
from esg_leads.schemas.codec import DecodeFailure, decode_event

HOME = {"acme": 1, "borealis": 2, "cityline": 0}
TOPIC = "investor.erasure"


def readers_of(topic: str, value: bytes | None, home: dict[str, int] = HOME,
               workers: int = 3) -> list[int]:
    """The readers that hand the message on."""
    message = RecordedMessage(topic, 0, 0, 0, None, value, ())
    out = []
    for rows in reader_rows(home, workers):
        [code] = rows.classify([value])
        if code or (code is None and rows.decide(message)):
            out.append(rows.reader)
    return out


def parsed_tenant(topic: str, value: bytes | None) -> str | None:
    try:
        return decode_event(topic, value).tenant
    except DecodeFailure:
        return None


# Spellings of the tenant key and value a producer (or an attacker) may write.
tenants = st.sampled_from(["acme", "borealis", "cityline", "zeta", "acme-east", "ACME", ""])
keys = st.sampled_from(['"tenant"', '"tena\\u006et"', '"\\u0074enant"', '"x\\"tenant"',
                        '"tenant "', '"Tenant"'])


@st.composite
def tenant_field(draw: st.DrawFn) -> str:
    tenant = draw(tenants)
    spelled = draw(st.sampled_from([json.dumps(tenant), json.dumps(tenant, ensure_ascii=True),
                                    '"' + "".join(f"\\u{ord(c):04x}" for c in tenant) + '"',
                                    json.dumps(tenant)[:-1], "1", "null", '["acme"]']))
    return draw(keys) + draw(st.sampled_from([":", " : ", ":\n"])) + spelled


@st.composite
def values(draw: st.DrawFn) -> bytes:
    """An erasure request's fields around zero or more tenant fields, some nested."""
    fields = ['"schema_version":1', '"event_id":"e1"', '"investor_id":"inv-1"',
              '"event_time":"2026-01-05T00:00:00Z"', '"source":"crm"']
    for _ in range(draw(st.integers(0, 3))):
        field = draw(tenant_field())
        if draw(st.booleans()):
            field = '"meta":{' + field + "}"
        fields.insert(draw(st.integers(0, len(fields))), field)
    if draw(st.booleans()):
        fields.insert(draw(st.integers(0, len(fields))),
                      '"note":' + json.dumps(draw(st.sampled_from(
                          ['"tenant":"acme"', 'say "hi"', "tenant", '\\"tenant\\":\\"acme\\"']))))
    text = "{" + ",".join(fields) + "}"
    cut = draw(st.sampled_from([None, None, None, len(text) - 1, 3]))
    return (text if cut is None else text[:cut]).encode()


@given(values(), st.sampled_from([TOPIC, "esg.property-signals", "no.such-topic"]))
def test_every_message_is_read_by_one_worker_and_an_event_by_its_tenants(
        value: bytes, topic: str) -> None:
    readers = readers_of(topic, value)
    assert len(readers) == 1, (value, readers)
    tenant = parsed_tenant(topic, value)
    if tenant in HOME:
        assert readers == [HOME[tenant]], (value, tenant, readers)


@pytest.mark.parametrize("value", [
    # Decided on the bytes: one "tenant", no backslash.
    b'{"schema_version":1,"event_id":"e1","tenant":"acme","investor_id":"i","event_time":'
    b'"2026-01-05T00:00:00Z","source":"crm"}',
    # The parser's tenant is borealis (the last duplicate key, an escaped key, spaces):
    b'{"tenant":"acme","schema_version":1,"event_id":"e1","tenant":"borealis","investor_id":'
    b'"i","event_time":"2026-01-05T00:00:00Z","source":"crm"}',
    b'{"schema_version":1,"event_id":"e1","tena\\u006et":"borealis","tenant":"acme",'
    b'"investor_id":"i","event_time":"2026-01-05T00:00:00Z","source":"crm"}',
    b'{"schema_version":1,"event_id":"e1","tenant":"acme","investor_id":"i",'
    b'"event_time":"2026-01-05T00:00:00Z","source":"crm","tena\\u006et":"borealis"}',
    b'{"schema_version":1,"event_id":"e1","tenant" : "borealis","meta":{"tenant":"acme"},'
    b'"investor_id":"i","event_time":"2026-01-05T00:00:00Z","source":"crm"}',
    None, b"", b"not json", b'{"tenant":"acme"',
    # One plain "tenant":"acme" in bytes the parser refuses or reads differently: a BOM,
    # a second document, trailing bytes, an array, invalid UTF-8 elsewhere, a NUL, 300 KB.
    *(b % (b'"tenant":"acme","schema_version":1,"event_id":"e1","investor_id":"i",'
           b'"event_time":"2026-01-05T00:00:00Z","source":"crm"') for b in (
        b"\xef\xbb\xbf{%s}", b'{%s} {"tenant":"borealis"}', b"{%s}x", b"[{%s}]",
        b'{"note":"\xff",%s}', b"{%s}\x00", b' \n{%s}\n', b'{"pad":"' + b"a" * 300_000 + b'",%s}')),
])
def test_examples_an_attacker_would_try(value: bytes | None) -> None:
    readers = readers_of(TOPIC, value)
    tenant = parsed_tenant(TOPIC, value)
    assert readers == [HOME[tenant]] if tenant in HOME else len(readers) == 1


def test_no_tenant_served_every_message_is_worker_0s() -> None:
    assert readers_of(TOPIC, b'{"tenant":"acme"}', home={}, workers=2) == [FALLBACK]


def test_lanes_name_the_reader() -> None:
    assert part_lane("recording") == reader_lane(None) == "source"
    assert part_lane("recording-0002") == reader_lane(2) == "source:0002"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(WorldSpec(tenants=3, investors=150, properties=30, days=3, seed=5,
                       malformed_rate=0.05, profile_answers=False), out)
    return out


def test_the_workers_readers_split_a_recording_each_in_replay_order(world: Path) -> None:
    """Two readers of a recording with 5 % malformed messages (unknown tenants among
    them): each message read by exactly one, a served tenant's event by its tenant's
    worker, each reader's in replay order; few rows needed decoding to decide."""
    tenants = sorted(load_settings(world / "config.toml", environ={}).tenants)
    home = {t: i % 2 for i, t in enumerate(tenants)}
    everything = list(RecordingReader(world, batch_rows=64))
    parts = [list(RecordingReader(world, batch_rows=64, rows=rows))
             for rows in reader_rows(home, 2)]
    assert all(parts)
    assert sorted((m for p in parts for m in p), key=RecordedMessage.sort_key) == everything
    for n, part in enumerate(parts):
        assert part == sorted(part, key=RecordedMessage.sort_key)
        for m in part:
            tenant = parsed_tenant(m.topic, m.value)
            assert tenant not in home or home[tenant] == n  # a dead letter: either's
    asked = TenantRows(home, 0).classify([m.value for m in everything]).count(None)
    assert 0 < asked < 0.1 * len(everything)


def test_every_reader_sees_every_erasure_and_hands_on_only_its_own(world: Path) -> None:
    """An erasure of (t, id) destroys the key of ("", id) too, whose letters worker 0
    reads: each reader hands the other readers' erasures to ``on_foreign_erasure`` as it
    passes them, in replay order, and never on to its flow; its own it hands on."""
    tenants = sorted(load_settings(world / "config.toml", environ={}).tenants)
    home = {t: i % 2 for i, t in enumerate(tenants)}
    erasures = [RecordedMessage("investor.erasure", 0, n, 1_767_600_000_000 + n, b"inv-9",
                                json.dumps({"tenant": t, "event_id": f"x{n}", "investor_id": "inv-9",
                                            "event_time": "2026-01-05T08:00:00Z",
                                            "source": "privacy-desk"},
                                           separators=(",", ":")).encode(), ())
                for n, t in enumerate(tenants)]
    for rows in reader_rows(home, 2):
        seen: list[RecordedMessage] = []
        foreign = TenantRows(home, rows.reader, on_foreign_erasure=seen.append)
        codes = foreign.classify([m.value for m in erasures], [m.topic for m in erasures])
        assert codes == [None] * len(erasures)  # erasures are always decoded
        handed = [m for m in erasures if foreign.decide(m)]
        assert handed == [m for m in erasures if home[json.loads(m.value)["tenant"]] == rows.reader]
        assert seen == [m for m in erasures if m not in handed]
        # Without the hook, an erasure is a row like any other (decided on its bytes).
        assert rows.classify([erasures[0].value], ["investor.erasure"]) != [None]
