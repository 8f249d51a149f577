"""``esg-leads replay``: outputs, reconciliation, determinism."""

from __future__ import annotations

import errno
import json
from datetime import date, datetime


import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from esg_leads.connectors.key_vault import KeyVault


from esg_leads.cli.main import main
from esg_leads.connectors.parquet_sink import OutputError, read_records
from esg_leads.flows.config import load_settings
from esg_leads.operators.erasure import open_dead_letter
from esg_leads.replay.generator import generate
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import WorldSpec
from esg_leads.schemas.codec import validate_record
from esg_leads.schemas.settings import Settings

SPEC = WorldSpec(tenants=2, investors=600, properties=120, days=12, seed=4, malformed_rate=0.02,
                 profile_answers=False)
PROCESSING_TIME_FIELDS = {"processed_at"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The world, and its replay with its own settings: the generator's last round (it
    replays the world to settle its reviewers' decisions, the last time as written)."""
    out = tmp_path_factory.mktemp("world")
    replayed = tmp_path_factory.mktemp("replayed")
    generate(SPEC, out, replayed=replayed)
    return out, replayed


@pytest.fixture(scope="module")
def world(generated: tuple[Path, Path]) -> Path:
    return generated[0]


@pytest.fixture(scope="module")
def replayed(generated: tuple[Path, Path]) -> tuple[Path, dict]:
    """One replay with the world's own settings: its output directory and summary. The
    tests that only read such a replay share it (they never write into it); a test that
    compares replays still runs its own second one against it."""
    out = generated[1]
    return out, json.loads((out / "summary.json").read_text())


def records(path: Path) -> list[dict]:
    """Output records without their processing-time fields."""
    out = []
    for record in read_records(path):
        for field in PROCESSING_TIME_FIELDS:
            record.pop(field, None)
        out.append(record)
    return out


def test_outputs_validate_and_reconcile(replayed: tuple[Path, dict],
                                        replayed_again: tuple[Path, dict]) -> None:
    out, summary = replayed
    assert summary["reconciled"]
    for topic, row in summary["topics"].items():
        assert row["in"] == row["used"] + row["dead_lettered"], topic
    again, returned = replayed_again  # replay()'s own return value, and what it wrote
    on_disk = json.loads((again / "summary.json").read_text())
    assert on_disk["outputs"] == returned["outputs"] == summary["outputs"]
    assert summary["outputs"]["leads"] > 500
    assert summary["dlq_by_reason"].keys() >= {"decode_error", "schema_error", "duplicate",
                                               "unknown_tenant", "late"}
    assert summary["events_per_second"] > 0 and summary["wall_seconds"] > 0
    for kind, topic in (("leads", "leads.scored"), ("dlq", "leads.dlq"), ("alerts", "ops.alerts")):
        rows = read_records(out / f"{kind}.parquet")
        assert len(rows) == summary["outputs"][kind]
        for row in rows[:300]:
            validate_record(topic, row)


def opened(run: Path, tenants: set[str]) -> list[dict]:
    """Dead letters of a run with sealed values opened (each run seals under its own keys)."""
    with KeyVault(run / "dlq-keys.sqlite") as keys:
        return [{**r, "value_b64": open_dead_letter(r, keys, tenants)}
                for r in records(run / "dlq.parquet")]


@pytest.fixture(scope="module")
def replayed_again(world: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A second replay with the same settings, handed a stop event that is never set (as
    ``esg-leads replay`` always is): compared with the first, and read for its summary."""
    out = tmp_path_factory.mktemp("replayed-again")
    return out, replay(world, out, load_settings(world / "config.toml"), stop=threading.Event())


def test_two_replays_give_identical_outputs(world: Path, replayed: tuple[Path, dict],
                                            replayed_again: tuple[Path, dict]) -> None:
    settings = load_settings(world / "config.toml")
    (first, _), (second, _) = replayed, replayed_again
    for kind in ("leads", "alerts"):
        a, b = records(first / f"{kind}.parquet"), records(second / f"{kind}.parquet")
        assert a == b, kind
    tenants = set(settings.tenants)
    a, b = opened(first, tenants), opened(second, tenants)
    assert a == b and sum(r["sealed"] for r in a) > 10


def test_a_different_model_setting_changes_the_scores(world: Path, replayed: tuple[Path, dict],
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    other = load_settings(world / "config.toml", overrides={"scoring": {"learning_rate": 0.05}})
    base, _ = replayed  # the world's own learning rate
    assert load_settings(world / "config.toml").scoring.learning_rate != 0.05
    replay(world, tmp_path / "b", other)
    a = {r["idempotency_key"]: r["probability"] for r in records(base / "leads.parquet")}
    b = {r["idempotency_key"]: r["probability"] for r in records(tmp_path / "b" / "leads.parquet")}
    common = a.keys() & b.keys()
    assert len(common) > 100
    assert sum(a[k] != b[k] for k in common) > len(common) / 2
    # The shadow run, as `esg-leads diff` shows it (in this process: its exit status is
    # main's return value; the installed command's process: tests/cli/test_errors.py).
    capsys.readouterr()
    assert main(["diff", str(base), str(tmp_path / "b")]) == 1
    shown = capsys.readouterr().out
    assert "different" in shown and "probability" in shown


def test_no_personal_contact_data_in_any_output(replayed: tuple[Path, dict]) -> None:
    out, _ = replayed
    for kind in ("leads", "alerts"):
        blob = (out / f"{kind}.parquet").read_bytes()
        text = pq.read_table(out / f"{kind}.parquet").to_pylist().__repr__()
        assert "@example.org" not in text and b"@example.org" not in blob


def test_replaying_twice_into_one_output_hands_off_each_qualification_once(
        world: Path, tmp_path: Path) -> None:
    # A lenient qualification policy, so that this small world has handoffs.
    settings = load_settings(world / "config.toml", overrides={"lifecycle": {
        "qualification_threshold": 0.25, "review_band": 0.01, "max_interval_width": 0.95}})
    first = replay(world, tmp_path, settings)
    handoffs = pq.read_table(tmp_path / "handoff.parquet").to_pylist()
    # The summary counts every handoff made; the file keeps those of investors not erased
    # later in the recording (an erasure tombstones crm.handoff: the join drops them).
    erased = {r["investor_id"] for r in pq.read_table(tmp_path / "audit").to_pylist()
              if r["decision"] == "erased"}
    assert erased and not erased & {h["investor_id"] for h in handoffs}
    assert first["handoffs"] - len(erased) * 3 <= len(handoffs) <= first["handoffs"]
    assert len(handoffs) > 0
    second = replay(world, tmp_path, settings)  # same recording, same output directory
    again = pq.read_table(tmp_path / "handoff.parquet").to_pylist()
    assert second["handoffs"] == first["handoffs"]
    keys = [h["idempotency_key"] for h in again]
    assert len(keys) == len(set(keys)) == len(handoffs)
    per_qualification = {(h["investor_id"], h["qualification_id"]) for h in again}
    assert len(per_qualification) == len(again)
    for kind in ("leads", "review"):
        rows = pq.read_table(tmp_path / f"{kind}.parquet", columns=["idempotency_key"])
        column = rows.column("idempotency_key").to_pylist()
        assert len(column) == len(set(column)), kind


def test_lifecycle_outputs_and_audit_partitions(replayed: tuple[Path, dict]) -> None:
    out, summary = replayed
    # Cases of investors erased later are deleted from the output (tombstones).
    assert summary["review_cases"] >= summary["outputs"]["review"] > 0
    partitions = sorted(p.relative_to(out / "audit").parts[:2]
                        for p in (out / "audit").rglob("*.parquet"))
    assert partitions and all(t.startswith("tenant=") and d.startswith("date=")
                              for t, d in partitions)
    audit = pq.read_table(out / "audit")
    assert set(audit.column("agent").to_pylist()) >= {"scoring", "compliance", "outreach",
                                                      "review-routing", "state-machine"}
    text = repr(audit.to_pylist())
    assert "@example.org" not in text and "+44 20" not in text
    for row in read_records(out / "review.parquet")[:100]:
        validate_record("leads.review", row)
    for row in read_records(out / "handoff.parquet"):
        validate_record("crm.handoff", row)
    leads = read_records(out / "leads.parquet")
    assert all(lead["compliance"] and lead["outreach_plan"] for lead in leads)
    assert {lead["state"] for lead in leads} >= {"planned", "in_review"}


def test_a_replay_ignores_wall_clock_window_closes(world: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``windows.idle_close_after`` would make a replay's outcome depend on its speed."""
    import esg_leads.replay.runner as runner

    seen = []
    build = runner.build_flow
    monkeypatch.setattr(runner, "build_flow", lambda settings, *a, **kw: seen.append(settings) or build(settings, *a, **kw))
    settings = load_settings(world / "config.toml", overrides={
        "windows": {"idle_close_after": 60}, "kafka": {"batch_size": 500}})
    assert settings.windows.idle_close_after is not None
    stop = threading.Event()  # the flow is built before the first batch: one is enough
    replay(world, tmp_path, settings, progress=lambda done, total: stop.set(), stop=stop)
    assert seen[0].windows.idle_close_after is None
    assert seen[0].windows.length == settings.windows.length  # nothing else changed


def test_retention_keeps_the_last_days_of_the_recording(world: Path, tmp_path: Path) -> None:
    """``retention.audit_days`` / ``dlq_days`` count back from the recording's newest
    message (not the wall clock), so the same recording always keeps the same rows."""
    settings = load_settings(world / "config.toml",
                             overrides={"retention": {"audit_days": 3, "dlq_days": 2}})
    summary = replay(world, tmp_path, settings)
    newest = max(r["timestamp"] for r in pq.read_table(
        next(world.glob("segment-*.parquet")), columns=["timestamp"]).to_pylist())
    days = sorted({p.name.removeprefix("date=") for p in (tmp_path / "audit").glob("*/date=*")})
    assert days and all((newest.date() - date.fromisoformat(d)).days <= 3 for d in days)
    assert (newest.date() - date.fromisoformat(days[0])).days == 3  # SPEC spans 12 days
    letters = records(tmp_path / "dlq.parquet")
    stamps = [datetime.fromisoformat(r["timestamp"]).date() for r in letters if r["timestamp"]]
    assert stamps and all((newest.date() - s).days <= 2 for s in stamps)
    assert summary["expired"]["dead_letters"] > 0 and summary["expired"]["audit_partitions"] > 0
    assert summary["outputs"]["dlq"] == len(letters)


# ------------------------------------------------------- faults (issue 14, "Faults")


def small_batches(world: Path) -> Settings:
    """Many batches on a small world, so that a stop lands between two of them."""
    return load_settings(world / "config.toml", overrides={"kafka": {"batch_size": 500}})


def test_an_unwritable_output_directory_fails_before_any_work(world: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match=r"cannot write .*/file/out: Not a directory"):
        replay(world, tmp_path / "file" / "out", small_batches(world))


def test_a_full_disk_mid_replay_stops_the_input_and_is_one_error(
        world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """Before: the OSError inside a bytewax sink was a Rust panic with a backtrace."""
    import esg_leads.connectors.parquet_sink as parquet_sink

    init, write_table = parquet_sink._ParquetPartition.__init__, pq.ParquetWriter.write_table
    leads_writes = []

    def one_row_group_per_batch(self, path, kind, row_group, *args, **kwargs) -> None:  # noqa: ANN001
        init(self, path, kind, 1, *args, **kwargs)

    def full_disk_on_the_third_leads_write(self, table, *args, **kwargs) -> None:  # noqa: ANN001
        if "leads-" in str(self.where):
            leads_writes.append(table.num_rows)
            if len(leads_writes) > 2:
                raise OSError(errno.ENOSPC, "Error writing bytes to file")  # as pyarrow does
        write_table(self, table, *args, **kwargs)

    monkeypatch.setattr(parquet_sink._ParquetPartition, "__init__", one_row_group_per_batch)
    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk_on_the_third_leads_write)
    seen: list[tuple[int, int]] = []
    with pytest.raises(OutputError, match=r"leads-000\.parquet: No space left on device"):
        replay(world, tmp_path, small_batches(world), progress=lambda d, t: seen.append((d, t)))
    err = capfd.readouterr().err
    assert "panicked" not in err and "Traceback" not in err
    emitted, total = seen[-1]
    assert emitted < total  # the input stopped: nothing more could be written
    assert not (tmp_path / "summary.json").exists()


def test_a_stopped_replay_writes_a_partial_reconciled_summary(world: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        stop.set()  # after the first batch, as a signal handler would

    summary = replay(world, tmp_path, small_batches(world), progress=progress, stop=stop)
    assert summary["interrupted"] and seen == [500]
    assert summary["messages"] == 500 < summary["recording_messages"]
    assert sum(t["in"] for t in summary["topics"].values()) == 500
    assert summary["reconciled"]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["interrupted"] is True and on_disk["messages"] == 500
    for kind in ("leads", "review", "handoff", "dlq", "alerts"):
        assert pq.read_table(tmp_path / f"{kind}.parquet").num_rows == summary["outputs"][kind]
    assert summary["outputs"]["leads"] > 0


def test_an_uninterrupted_replay_says_so(replayed: tuple[Path, dict],
                                         replayed_again: tuple[Path, dict]) -> None:
    _, summary = replayed_again  # handed a stop event, never set
    assert summary["interrupted"] is False and "recording_messages" not in summary
    assert summary["messages"] == replayed[1]["messages"]  # all of it


def test_every_planned_contact_keeps_the_regions_quiet_hours_and_caps(
        replayed: tuple[Path, dict]) -> None:
    """End to end: each step of each published plan has an instant, outside the quiet
    hours of its region in every zone of the investor's country (the generated profiles
    state no zone), and no plan exceeds a cap on its own."""
    from zoneinfo import ZoneInfo

    from esg_leads.operators.compliance import load_packs
    from esg_leads.operators.contact_rules import MEDIUM
    out, _ = replayed
    packs = load_packs()
    checked = 0
    for record in records(out / "leads.parquet"):
        plan = record["outreach_plan"]
        assert all(step["at"] is not None for step in plan["steps"])
        pack = {p.pack: p for p in packs.values()}.get(record["compliance"]["pack"])
        if pack is None or not plan["steps"]:
            continue
        zones = [ZoneInfo(name) for name in plan["time_zones"]]
        assert zones and set(plan["time_zones"]) <= {
            zone for names in pack.contact.time_zones.values() for zone in names}
        for step in plan["steps"]:
            at = datetime.fromisoformat(step["at"]) if isinstance(step["at"], str) else step["at"]
            for rule in pack.contact.quiet_hours:
                if step["channel"] in rule.channels:
                    for zone in zones:
                        local = at.astimezone(zone).time()
                        quiet = (rule.start <= local < rule.end if rule.start < rule.end
                                 else local >= rule.start or local < rule.end)
                        assert not quiet, (record["investor_id"], step, zone)
            checked += 1
        for cap in pack.contact.caps:
            times = sorted(datetime.fromisoformat(s["at"]).timestamp() if isinstance(s["at"], str)
                           else s["at"].timestamp() for s in plan["steps"]
                           if MEDIUM.get(s["channel"], s["channel"]) == cap.channel)
            for t in times:
                assert sum(t - cap.per_days * 86_400 < u <= t for u in times) <= cap.max
    assert checked > 200


def test_duckdb_queries_the_typed_outputs_directly(replayed: tuple[Path, dict]) -> None:
    """Issue 20 part 6: the record is a struct of the topic's fields, timestamps as
    timestamps, so SQL reaches into it without parsing JSON."""
    duckdb = pytest.importorskip("duckdb", reason="duckdb is in the test extra")
    out, summary = replayed
    sql = duckdb.connect()
    leads, dlq = out / "leads.parquet", out / "dlq.parquet"

    kinds = sql.execute("SELECT typeof(record.event_time), typeof(record.score), "
                        "typeof(record.features) FROM read_parquet(?) LIMIT 1", [str(leads)])
    assert kinds.fetchone() == ("TIMESTAMP WITH TIME ZONE", "BIGINT", "MAP(VARCHAR, DOUBLE)")
    by_reason = dict(sql.execute("SELECT record.reason, count(*) FROM read_parquet(?) GROUP BY 1",
                                 [str(dlq)]).fetchall())
    assert by_reason == summary["dlq_by_reason"]

    expected = read_records(leads)
    rows = sql.execute(
        "SELECT record.idempotency_key, record.interval.high - record.interval.low, "
        "record.explanation.source_weights.engagement, len(record.lineage), "
        "epoch_us(record.event_time) FROM read_parquet(?)", [str(leads)]).fetchall()
    assert len(rows) == len(expected) == summary["outputs"]["leads"]
    for (key, width, engagement, lineage, micros), record in zip(rows, expected):
        assert key == record["idempotency_key"]
        assert width == pytest.approx(record["interval"]["high"] - record["interval"]["low"])
        assert engagement == record["explanation"]["source_weights"]["engagement"]
        assert lineage == len(record["lineage"])
        assert micros == round(datetime.fromisoformat(record["event_time"]).timestamp() * 1e6)
    hot = sql.execute("SELECT count(*) FROM read_parquet(?) WHERE record.tier = 'hot' "
                      "AND record.event_time >= TIMESTAMPTZ '2000-01-01 00:00:00+00'",
                      [str(leads)]).fetchone()[0]
    assert hot == sum(r["tier"] == "hot" for r in expected)
