"""Decisions are a function of the input alone (issue 15).

The same recording replayed at different batch sizes and worker counts must decide
the same: leads, review cases, handoffs, alerts and dead letters equal as sets of
idempotency key and payload (without processing-time fields). Removing one tenant's
events must leave another tenant's decisions as they were, unless the tenant opted in
to the cross-tenant global model (isolation is the default).
"""

from __future__ import annotations

import shutil
import zlib
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from esg_leads.connectors.recording import RecordingReader, RecordingWriter
from esg_leads.flows.config import load_settings
from esg_leads.replay.diff import KINDS, compare, load_run
from esg_leads.replay.generator import generate
from esg_leads.flows.plain import execute
from esg_leads.replay import runner
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import WorldSpec
from esg_leads.schemas.records import RawMessage
from esg_leads.schemas.settings import Settings

from tests import zygote

SPEC = WorldSpec(tenants=2, investors=240, properties=50, days=5, seed=11, malformed_rate=0.02,
                 profile_answers=False)
#: Fewer shards than the default: every tick reaches every shard, and batch size 1
#: means a tick per message.
SHARDS = {"windows": {"shards_per_tenant": 3},
          # A 5-day world: review uncertain leads at once and widely, so that cases exist.
          "lifecycle": {"uncertain_review_after": 0, "review_band": 0.3}}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(SPEC, out)
    return out


def settings_of(world: Path, *, batch: int, **overrides) -> Settings:
    return load_settings(world / "config.toml", environ={}, overrides={
        **SHARDS, "kafka": {"batch_size": batch}, **overrides})


def run(world: Path, out: Path, *, batch: int, workers: int = 1,
        recording: Path | None = None, **overrides) -> dict:
    replay(recording or world, out, settings_of(world, batch=batch, **overrides),
           workers=workers)
    return load_run(out)


def assert_same_decisions(a: dict, b: dict) -> None:
    report = compare(a, b)
    assert report["equal"], {kind: {k: v for k, v in report[kind].items() if v}
                             for kind in KINDS if isinstance(report.get(kind), dict)}


@pytest.fixture(scope="module")
def reference(world: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("reference")
    decided = run(world, out, batch=1000)
    assert decided["leads"] and decided["review"] and decided["dlq"]
    # One record per idempotency key within a run (a key names one decision).
    for kind, (name, _) in KINDS.items():
        keys = pq.read_table(out / name, columns=["idempotency_key"]).column(0).to_pylist()
        assert len(keys) == len(set(keys)), kind
    return decided


@pytest.fixture(scope="module")
def two_workers(world: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run at batch 7 on two workers: compared with the reference, and with a second
    such run (one replay for both tests)."""
    return run(world, tmp_path_factory.mktemp("two-workers"), batch=7, workers=2)


@pytest.mark.parametrize(("batch", "workers"), [(1, 1), (7, 1), (999, 1), (7, 2), (1000, 2)])
def test_batch_size_and_worker_count_never_change_a_decision(
        world: Path, reference: dict, tmp_path: Path, request: pytest.FixtureRequest,
        batch: int, workers: int) -> None:
    decided = (request.getfixturevalue("two_workers") if (batch, workers) == (7, 2)
               else run(world, tmp_path / "out", batch=batch, workers=workers))
    assert_same_decisions(reference, decided)


def test_two_runs_with_two_workers_decide_identically(world: Path, two_workers: dict,
                                                      tmp_path: Path) -> None:
    assert_same_decisions(two_workers, run(world, tmp_path / "b", batch=7, workers=2))


def without_tenant(world: Path, out: Path, dropped: str) -> Path:
    """The recording with every message of tenant ``dropped`` removed."""
    with RecordingWriter(out) as writer:
        for batch in RecordingReader(world).iter_batches():
            writer.write_many([m for m in batch if f'"tenant":"{dropped}"'.encode()
                               not in (m.value or b"").replace(b" ", b"")])
    return out


def tenants_with(world: Path, kept_options: dict, dropped_options: dict) -> tuple[str, str, dict]:
    kept, dropped = sorted(load_settings(world / "config.toml", environ={}).tenants)[:2]
    return kept, dropped, {"tenants": {kept: kept_options, dropped: dropped_options}}


def of_tenant(decided: dict, tenant: str) -> dict:
    return {kind: {k: r for k, r in records.items() if r.get("tenant") == tenant}
            for kind, records in decided.items()}


@pytest.mark.parametrize("dropped_options", [
    {},  # the default: nobody uses the global model
    # The other tenant trains the global model and uses it: the kept tenant has not
    # opted in, so the global model exists but never reaches it.
    {"contribute_to_global": True, "use_global_prior": True},
], ids=["defaults", "other-tenant-opted-in"])
def test_another_tenants_events_never_change_a_tenants_decisions(
        world: Path, reference: dict, tmp_path: Path, dropped_options: dict) -> None:
    """Tenant isolation of decisions (issue 19.7): a tenant that has not opted in to the
    global model decides exactly the same when another tenant's messages are removed."""
    kept, dropped, options = tenants_with(world, {}, dropped_options)
    only_a = without_tenant(world, tmp_path / "only-a", dropped)
    # Options that change no setting: the run of both tenants is the reference's.
    both = (reference if settings_of(world, batch=1000, **options)
            == settings_of(world, batch=1000)
            else run(world, tmp_path / "both", batch=1000, **options))
    alone = run(world, tmp_path / "alone", batch=7, recording=only_a, **options)
    assert of_tenant(both, kept)["leads"]
    assert_same_decisions(of_tenant(both, kept), of_tenant(alone, kept))


@pytest.fixture(scope="module")
def labelled_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A world long enough for CRM outcomes (labels): about 20 per tenant."""
    out = tmp_path_factory.mktemp("labelled")
    generate(WorldSpec(tenants=2, investors=300, properties=50, days=12, seed=11, profile_answers=False), out)
    return out


@pytest.mark.parametrize("kept_options", [{}, {"contribute_to_global": True}],
                         ids=["defaults", "kept-contributes-only"])
def test_an_opted_out_tenant_ignores_a_trained_global_model(
        labelled_world: Path, tmp_path: Path, kept_options: dict) -> None:
    """As above on a world with labels, with the global model published every 2 labels:
    a tenant that does not use the global prior decides the same without the other
    tenant's events (which train and use the global model)."""
    kept, dropped, options = tenants_with(labelled_world, kept_options, {
        "contribute_to_global": True, "use_global_prior": True})
    options["scoring"] = {"global_publish_every": 2}
    only_a = without_tenant(labelled_world, tmp_path / "only-a", dropped)
    both = run(labelled_world, tmp_path / "both", batch=1000, **options)
    alone = run(labelled_world, tmp_path / "alone", batch=7, recording=only_a, **options)
    assert of_tenant(both, kept)["leads"]
    assert_same_decisions(of_tenant(both, kept), of_tenant(alone, kept))


def test_a_tenant_that_opts_in_learns_from_the_others(labelled_world: Path,
                                                      tmp_path: Path) -> None:
    """The other side of the opt-in: a tenant that uses the global prior, while another
    contributes to it, decides differently without the other's events, so the
    isolation tests above would see a leak."""
    world = labelled_world
    kept, dropped, options = tenants_with(world, {"use_global_prior": True},
                                          {"contribute_to_global": True})
    options["scoring"] = {"global_publish_every": 2}
    only_a = without_tenant(world, tmp_path / "only-a", dropped)
    both = of_tenant(run(world, tmp_path / "both", batch=1000, **options), kept)
    alone = of_tenant(run(world, tmp_path / "alone", batch=1000, recording=only_a, **options), kept)
    assert not compare(both, alone)["equal"]
    weights = {r["model"]["global_weight"] for r in both["leads"].values()}
    assert max(weights) > 0 and {r["model"]["global_weight"] for r in alone["leads"].values()} == {0.0}


def live_run(world: Path, tmp_path: Path, *, partitions: int, batch: int) -> dict:
    """``esg-leads run --until-end`` against a dev broker whose input topics have
    ``partitions`` partitions, holding ``world``'s messages; its recorded decisions."""
    from esg_leads.connectors.dev_broker import DevBroker
    from esg_leads.connectors.publish import publish_recording
    from esg_leads.replay.record import record
    from esg_leads.schemas.topics import ALL_TOPICS, OUTPUT_TOPICS
    from tests.kafka_helpers import ESG_LEADS

    config = tmp_path / "live.toml"
    config.write_text((world / "config.toml").read_text()
                      + "\n[windows]\nshards_per_tenant = 3\n"
                      + f"\n[kafka]\nbatch_size = {batch}\ntick_interval_ms = 0\n"
                      + "\n[lifecycle]\nuncertain_review_after = 0\nreview_band = 0.3\n")
    with DevBroker(topics=list(ALL_TOPICS), partitions=partitions) as broker:
        published = publish_recording(world, broker.bootstrap)
        assert not any(published["repartitioned"].values()), published  # as recorded
        live = zygote.run([ESG_LEADS, "run", "--bootstrap", broker.bootstrap, "--config",
                               str(config), "--until-end"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=240)
        assert live.returncode == 0, live.stderr
        record({"bootstrap.servers": broker.bootstrap}, list(OUTPUT_TOPICS), tmp_path / "live")
    return load_run(tmp_path / "live")


def test_a_live_run_one_message_per_batch_decides_as_a_replay(world: Path, reference: dict,
                                                               tmp_path: Path) -> None:
    """``esg-leads run`` against the dev broker, reading one message per batch and
    ticking as often as it can, decides what a replay of the same input at 1000 does."""
    assert_same_decisions(reference, live_run(world, tmp_path, partitions=3, batch=1))


def test_a_live_run_over_six_partitions_decides_as_over_three(world: Path, reference: dict,
                                                              tmp_path: Path) -> None:
    """The same messages spread over 6 partitions per input topic instead of 3 (keyed
    by investor as a producer would; offsets renumbered per partition): the merged
    reader orders them differently only among messages of one millisecond, and the
    live run decides what the 3-partition replay does."""
    six = tmp_path / "six"
    counters: dict[tuple[str, int], int] = {}
    spread: set[int] = set()
    #: (topic, partition, offset) in the 6-partition input -> the same message's in ``world``
    origin: dict[tuple[str, int, int], tuple[str, int, int]] = {}
    with RecordingWriter(six) as writer:
        for batch in RecordingReader(world).iter_batches():
            moved = []
            for m in batch:
                partition = zlib.crc32(m.key or b"") % 6
                offset = counters.get((m.topic, partition), 0)
                counters[(m.topic, partition)] = offset + 1
                spread.add(partition)
                origin[(m.topic, partition, offset)] = (m.topic, m.partition, m.offset)
                moved.append(m._replace(partition=partition, offset=offset))
            writer.write_many(moved)
    shutil.copy(world / "config.toml", six / "config.toml")
    assert spread == set(range(6))
    live_dir = tmp_path / "run"
    live_dir.mkdir()
    live = live_run(six, live_dir, partitions=6, batch=1000)
    assert live["dlq"] and any(r.get("lineage") for r in live["leads"].values())
    assert_same_decisions(reference, as_recorded(live, origin))


def as_recorded(decided: dict, origin: dict) -> dict:
    """``decided`` with every input coordinate (lineage entries, dead letters' topic,
    partition and offset, and the idempotency keys built from them) renamed by
    ``origin``: the decisions themselves must not depend on where a message sat."""
    def rename(value: object) -> object:
        if isinstance(value, list):
            return [rename(v) for v in value]
        if not isinstance(value, dict):
            return value
        out = {k: rename(v) for k, v in value.items()}
        if {"topic", "partition", "offset"} <= out.keys() and out["partition"] is not None:
            out["topic"], out["partition"], out["offset"] = origin[
                (out["topic"], out["partition"], out["offset"])]
        return out

    renamed: dict = {}
    for kind, records in decided.items():
        renamed[kind] = {}
        for key, record in records.items():
            record = rename(record)
            if kind == "dlq":  # dlq:<topic>:<partition>:<offset>:<reason>
                key = record["idempotency_key"] = ":".join((
                    "dlq", record["topic"], str(record["partition"]), str(record["offset"]),
                    key.rsplit(":", 1)[1]))
            renamed[kind][key] = record
    return renamed


def with_erasures_after_duplicates(world: Path, out: Path) -> tuple[Path, list[str], list[str]]:
    """``world`` plus, for five investors, an erasure two days into the world; one
    millisecond before it a copy of the investor's first engagement (a duplicate the
    intake dead-letters: from before the erasure, so sealed, never withheld) and one
    after it a profile that does not parse (a letter of no tenant about the investor,
    which worker 0 reads whoever owns the erasure: from after it, so withheld)."""
    messages = [m for batch in RecordingReader(world).iter_batches() for m in batch]
    first: dict[bytes, RawMessage] = {}
    for m in messages:
        if m.topic == "investor.engagements" and m.key not in first:
            first[m.key] = m
    ends: dict[tuple[str, int], int] = {}
    for m in messages:
        ends[(m.topic, m.partition)] = max(ends.get((m.topic, m.partition), -1), m.offset)
    at = min(m.timestamp_ms for m in messages) + 2 * 86_400_000
    added, before, after = [], [], []
    for n, original in enumerate(sorted(first.values(), key=RawMessage.sort_key)[:5]):
        event = orjson.loads(original.value)
        erasure = {"tenant": event["tenant"], "event_id": f"erase-{n}",
                   "event_time": datetime.fromtimestamp(at / 1000 + n, timezone.utc).isoformat(),
                   "source": "privacy-desk", "investor_id": event["investor_id"]}
        added.append(RawMessage("investor.erasure", 0, n, at + 1000 * n, original.key,
                                orjson.dumps(erasure), original.headers))
        duplicate = original._replace(offset=ends[(original.topic, original.partition)] + 1 + n,
                                      timestamp_ms=at + 1000 * n - 1)
        broken = RawMessage("investor.profiles", 0, ends[("investor.profiles", 0)] + 1 + n,
                            at + 1000 * n + 1, original.key, b'{"tenant":', original.headers)
        added += [duplicate, broken]
        before.append(f"dlq:{duplicate.topic}:{duplicate.partition}:{duplicate.offset}:duplicate")
        after.append(f"dlq:{broken.topic}:{broken.partition}:{broken.offset}:decode_error")
    with RecordingWriter(out) as writer:
        writer.write_many(sorted(messages + added, key=RawMessage.sort_key))
    shutil.copy(world / "config.toml", out / "config.toml")
    return out, before, after


@pytest.mark.parametrize(("batch", "workers"), [(1, 1), (1000, 1), (7, 2), (1000, 2)])
def test_a_letter_is_sealed_or_withheld_by_its_place_before_or_after_the_erasure(
        world: Path, tmp_path: Path, batch: int, workers: int) -> None:
    """Whatever the batch size and however many readers (each worker of a placed replay
    reads its own tenants'; letters of no tenant are worker 0's) got how far ahead."""
    recording, before, after = with_erasures_after_duplicates(world, tmp_path / "rec")
    dlq = run(world, tmp_path / "out", batch=batch, workers=workers, recording=recording)["dlq"]
    assert {key: dlq[key]["sealed"] for key in before} == dict.fromkeys(before, True)
    assert all(dlq[key]["value_b64"] is None and "investor erased" in dlq[key]["detail"]
               for key in after), {key: dlq[key]["detail"] for key in after}


def test_the_same_flow_run_without_bytewaxs_runtime_decides_the_same(
        world: Path, reference: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second, entirely different scheduler (flows/plain.py: each source batch through
    every step in build order, on one thread) must reach the decisions bytewax reaches:
    they depend on the input alone. It is also issue 16's plain loop, so this proves the
    benchmark compares the same work."""
    monkeypatch.setattr(runner, "run_main", execute)
    assert_same_decisions(reference, run(world, tmp_path / "plain", batch=1000))
