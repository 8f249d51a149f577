"""``esg-leads explain``: one lead's story from a run's outputs."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq
from rich.console import Console

from flows.cli import main
from flows.config import load_settings
from flows.explain import explain
from replay.generator import generate
from replay.runner import replay
from replay.simulate import WorldSpec


def test_explain_tells_the_story_of_a_lead(tmp_path: Path) -> None:
    world, run = tmp_path / "world", tmp_path / "run"
    generate(WorldSpec(investors=300, properties=60, days=8, seed=2), world)
    replay(world, run, load_settings(world / "config.toml"))
    investor = pq.read_table(run / "leads.parquet").column("investor_id")[0].as_py()
    buffer = io.StringIO()
    assert explain(run, investor, recording=world, console=Console(file=buffer, width=160)) == 0
    text = buffer.getvalue()
    for part in ("Input events", "Scores", "Latest features", "Agent decisions", "compliance",
                 "State history", "action=", investor):
        assert part in text, part
    assert "@example.org" not in text
    # A run's outputs without that lead: exit 1, not a usage error.
    assert explain(run, "inv-nobody", console=Console(file=io.StringIO())) == 1


def test_explain_unknown_lead_and_missing_outputs(tmp_path: Path, capsys) -> None:
    assert main(["explain", "inv-x", "--out", str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    # A directory without a run's outputs is a mistake, not a run without that lead
    # (issue 20): one line, exit 2.
    assert main(["explain", "inv-x", "--out", str(tmp_path / "empty")]) == 2
    assert "holds no run outputs" in capsys.readouterr().err
