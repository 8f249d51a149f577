"""Compact pickled forms of exchanged items (flows/exchange.py): equal after the
round trip, smaller than before, and never inside a snapshot."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone
import pytest

from esg_leads.connectors.recording import RecordingReader
from esg_leads.flows import exchange
from esg_leads.flows.config import load_settings
from esg_leads.operators.validation import Parser
from esg_leads.replay.generator import generate
from esg_leads.replay.simulate import WorldSpec
from esg_leads.schemas.records import Ingested
from esg_leads.schemas.topics import INPUT_TOPICS

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> list[Ingested]:
    world = tmp_path_factory.mktemp("world")
    generate(WorldSpec(tenants=2, investors=60, properties=12, days=3, seed=5,
                       malformed_rate=0.0, reviewers=False, profile_answers=False), world)
    settings = load_settings(world / "config.toml", environ={})
    parser = Parser(settings.tenants, settings.ingest.max_future_skew)
    parsed = [parser.parse(m, NOW) for batch in RecordingReader(world).iter_batches()
              for m in batch]
    return [i for i in parsed if type(i) is Ingested]


def test_every_input_topics_events_come_back_equal_and_smaller(ingested: list[Ingested]) -> None:
    topics = {i.topic for i in ingested}
    assert topics >= {"esg.property-signals", "investor.engagements", "investor.profiles"}
    assert topics <= set(INPUT_TOPICS)
    for item in ingested:
        compact = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        assert pickle.loads(compact) == item
        assert len(compact) < len(exchange.durable_dumps(item)), item.topic


def test_an_item_the_compact_form_cannot_rebuild_is_pickled_whole(
        ingested: list[Ingested]) -> None:
    without_value = ingested[0]._replace(value=None)
    assert pickle.loads(pickle.dumps(without_value)) == without_value
    other = next(i for i in ingested if i.topic != ingested[0].topic)
    mismatched = ingested[0]._replace(event=other.event)  # event not of its topic's model
    assert pickle.loads(pickle.dumps(mismatched)) == mismatched


def test_a_snapshot_keeps_the_event_itself_not_bytes_to_decode_again(
        ingested: list[Ingested], monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot may be resumed by a later version whose models decode the bytes
    differently: it must hold the decoded event, while an exchanged item is decoded
    again by the receiver."""
    def refuse(*_args: object) -> None:
        raise AssertionError("decoded again")

    item = ingested[0]
    durable, compact = exchange.durable_dumps([item]), pickle.dumps([item])
    monkeypatch.setattr(exchange, "decode_event", refuse)
    assert pickle.loads(durable) == [item]
    with pytest.raises(AssertionError, match="decoded again"):
        pickle.loads(compact)


def test_the_flow_registers_the_compact_form() -> None:
    import copyreg

    from esg_leads.flows import pipeline  # noqa: F401 - the import is what is tested

    assert copyreg.dispatch_table[Ingested] is exchange._reduce_ingested  # noqa: SLF001
