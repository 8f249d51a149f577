"""``esg-leads report``: one offline HTML page about a run, checked in headless Chromium."""

from __future__ import annotations

import io
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from esg_leads.connectors.parquet_sink import read_records, to_table
from esg_leads.cli.main import main
from esg_leads.flows.config import load_settings
from esg_leads.flows.report import charts, explain_command, render, write_report
from esg_leads.flows.report_data import latest_leads, load
from esg_leads.replay.generator import generate
from esg_leads.replay.runner import replay
from esg_leads.replay.simulate import WorldSpec
from tests.browser_helpers import visit

SPEC = WorldSpec(tenants=3, investors=400, properties=60, days=20, seed=3, drift_at=12,
                 reviewers=False, profile_answers=False)
EVERY_CHART = {"dlq", "score_tier", "score_tenant", "reliability", "rolling", "alerts", "review",
               "handoffs"}
#: Per chart: its name, how many shapes its SVG draws and its rendered size.
CHARTS_JS = """[...document.querySelectorAll('figure.chart')].map(f => {
  const svg = f.querySelector('svg'); const box = svg ? svg.getBoundingClientRect() : null;
  return [f.dataset.chart, svg ? svg.querySelectorAll('path, use, rect, line').length : 0,
          box ? box.width : 0, box ? box.height : 0]; })"""


def alert(i: int, kind: str, subject: str, when: datetime) -> dict:
    return {"schema_version": 1, "idempotency_key": f"alert:test:{i}", "tenant": "acme-capital",
            "kind": kind, "detector": "adwin", "subject": subject, "event_time": when,
            "processed_at": when, "details": {"error_rate": 0.31, "feed": "esg.property-signals"}}


def add_alerts(run: Path, alerts: list[dict]) -> None:
    path = run / "alerts.parquet"
    pq.write_table(to_table("alerts", read_records(path) + alerts), path)


@pytest.fixture(scope="module")
def world_and_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("report")
    world, run = base / "world", base / "run"
    generate(SPEC, world)
    replay(world, run, load_settings(world / "config.toml"))
    # This small world raises no alert of its own; two as the flow writes them, so that
    # the page has its alert timeline too.
    start = SPEC.start + timedelta(days=12)
    add_alerts(run, [alert(1, "drift_detected", "acme-capital/global", start),
                     alert(2, "feed_stale", "esg.property-signals", start + timedelta(days=2))])
    return world, run


@pytest.fixture(scope="module")
def page(world_and_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the run with its recording, as written for an operator: the tests
    that only read it share one (each chart is a matplotlib figure: seconds apiece)."""
    world, run = world_and_run
    return write_report(run, tmp_path_factory.mktemp("page") / "report.html", recording=world)


def test_the_report_loads_in_chromium_without_errors_and_draws_every_chart(
        page: Path, tmp_path: Path) -> None:
    seen = visit(page, tmp_path / "profile", CHARTS_JS)
    assert seen.errors == []
    assert {name for name, *_ in seen.result} == EVERY_CHART
    for name, shapes, width, height in seen.result:
        assert shapes > 10 and width > 200 and height > 100, name
    from PIL import Image

    image = Image.open(io.BytesIO(seen.screenshot)).convert("RGB")
    assert image.height > 2000  # the whole page, not a viewport of it
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # drawn, not blank


def test_the_page_is_self_contained_and_says_what_it_reads(
        world_and_run: tuple[Path, Path], page: Path) -> None:
    world, run = world_and_run
    html = page.read_text()
    assert "<script" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "default-src 'none'" in html  # and the browser would refuse any load anyway
    data = load(run, world)
    assert data.calibration is not None and data.calibration.labels > 50
    assert 0 <= data.calibration.ece <= 1
    probabilities = [lead["probability"] for lead in data.top_leads]
    assert len(data.top_leads) == 10 and probabilities == sorted(probabilities, reverse=True)
    assert len({lead["investor_id"] for lead in data.top_leads}) == 10
    top = data.top_leads[0]
    assert (f"esg-leads explain --out {run} --recording {world} "
            f"{top['tenant']}/{top['investor_id']}") in html
    for topic, row in data.summary["topics"].items():
        assert f"<td>{topic}</td>" in html and row["reconciled"]


def test_two_tenants_same_investor_id_are_two_top_leads_each_with_its_command(
        tmp_path: Path) -> None:
    """Each tenant's ``inv-1`` is a lead of its own in the top leads, and its ``explain``
    command names the tenant: ranked by investor id alone, one tenant's lead hid the
    other's, and the command was ambiguous."""
    from types import SimpleNamespace

    from tests.two_tenants import A, B, outputs

    before, _ = outputs()
    path = tmp_path / "leads.parquet"
    pq.write_table(to_table("leads", [e.record for e in before if e.kind == "leads"]), path)
    top = latest_leads(path, 10)
    assert sorted((r["tenant"], r["investor_id"]) for r in top) == [(A, "inv-1"), (B, "inv-1")]
    data = SimpleNamespace(run=tmp_path, recording=None)
    assert {explain_command(data, r).split()[-1] for r in top} == {f"{A}/inv-1", f"{B}/inv-1"}


def test_without_labels_the_page_says_how_to_get_them(world_and_run: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    _, run = world_and_run
    data = load(run)
    assert data.calibration is None and "reliability" not in charts(data)
    html = write_report(run, tmp_path / "r.html").read_text()
    assert "pass <code>--recording</code>" in html


def test_text_from_the_outputs_is_escaped(world_and_run: tuple[Path, Path],
                                          tmp_path: Path) -> None:
    _, original = world_and_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    hostile = '<script>console.error("xss")</script><img src=x onerror="console.error(1)">'
    add_alerts(run, [alert(3, "feed_stale", hostile, SPEC.start + timedelta(days=3))])
    page = write_report(run, tmp_path / "r.html")
    assert "&lt;script&gt;" in page.read_text()
    seen = visit(page, tmp_path / "profile", "document.querySelectorAll('script, img').length")
    assert seen.errors == [] and seen.result == 0


def test_the_browser_check_sees_console_errors_and_network_loads(tmp_path: Path) -> None:
    """The check above can fail: a page that logs an error and loads from the network."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><p>x</p><script>console.error("broken chart")</script>'
                    '<img src="http://report.invalid/x.png">')
    seen = visit(page, tmp_path / "profile", "document.querySelectorAll('p').length")
    assert seen.result == 1
    assert "broken chart" in seen.errors and any("ERR_" in e for e in seen.errors)


def test_report_of_a_directory_that_is_no_run_is_one_line(world_and_run: tuple[Path, Path],
                                                         capsys: pytest.CaptureFixture) -> None:
    world, run = world_and_run
    assert main(["report", str(world)]) == 2  # a recording, not a run
    assert main(["report", str(run), "--recording", str(run / "nope")]) == 2
    assert main(["report", str(run), "--out", str(run / "missing" / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 3
    assert "not a run's output directory" in err and "no recording at" in err
    assert "cannot write the report" in err
    assert not list(run.rglob("*.partial"))


def test_the_same_run_gives_the_same_page(world_and_run: tuple[Path, Path]) -> None:
    world, run = world_and_run
    when = datetime(2026, 6, 1, tzinfo=timezone.utc)
    assert render(load(run, world), when) == render(load(run, world), when)


def test_a_summary_from_before_the_autonomy_section_still_renders(
        world_and_run: tuple[Path, Path]) -> None:
    _, run = world_and_run
    data = load(run)
    del data.summary["autonomy"]
    assert "no autonomy section" in render(data)
