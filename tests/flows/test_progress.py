"""Progress: a line every 10 s off a terminal, a bar with rate and ETA on one (issue 20,
part 5). Time is a fake clock: nothing here sleeps."""

from __future__ import annotations

import io
import re
import sys

import pytest

from hypothesis import given
from hypothesis import strategies as st

from esg_leads.flows.progress import PLAIN_INTERVAL, Progress, plain_line


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_one_line_every_ten_seconds_with_rate_and_eta() -> None:
    clock, out = FakeClock(), io.StringIO()
    with Progress("replaying", total=1, unit="messages", stream=out, clock=clock) as progress:
        for second in range(1, 36):  # 100 messages a second for 35 s, of 5,000
            clock.now += 1
            progress.update(100 * second, 5000)
    lines = out.getvalue().splitlines()
    assert lines == [
        "replaying: 1,000 of 5,000 messages (20%), 100 messages/s, ETA 0:00:40",
        "replaying: 2,000 of 5,000 messages (40%), 100 messages/s, ETA 0:00:30",
        "replaying: 3,000 of 5,000 messages (60%), 100 messages/s, ETA 0:00:20",
    ]


def test_a_quick_job_off_a_terminal_prints_nothing() -> None:
    clock, out = FakeClock(), io.StringIO()
    with Progress("generating", total=3, unit="days", stream=out, clock=clock) as progress:
        for day in (1, 2, 3):
            clock.now += PLAIN_INTERVAL / 4
            progress.update(day)
    assert out.getvalue() == ""


def test_on_a_terminal_a_bar_with_rate_and_eta() -> None:
    clock, out = FakeClock(), Terminal()
    with Progress("publishing", total=1000, unit="messages", stream=out,
                  clock=clock) as progress:
        for done in range(100, 600, 100):
            clock.now += 1
            progress.update(done)
        progress._bar.refresh()
        shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # colours off
    assert "publishing" in shown and "500/1000" in shown
    assert "100 messages/s" in shown  # the rate, in the command's unit
    assert re.search(r"ETA\s+0:00:0[45]", shown), shown  # 500 left at 100/s


@given(done=st.integers(0, 10**9), total=st.one_of(st.none(), st.integers(0, 10**9)),
       elapsed=st.floats(0, 10**6, allow_nan=False))
def test_a_plain_line_never_fails_and_never_claims_more_than_100_percent(
        done: int, total: int | None, elapsed: float) -> None:
    line = plain_line("x", done, total, "items", elapsed)
    assert "\n" not in line and line.startswith(f"x: {done:,}")
    percent = re.search(r"\((\d+)%\)", line)
    assert percent is None or int(percent.group(1)) <= 100


def test_off_a_terminal_without_a_stream_the_line_is_a_log_record(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from esg_leads.flows import logs

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal, even under -s
    clock, out = FakeClock(), io.StringIO()
    logs.configure("json", stream=out, run_id="r")
    try:
        with Progress("recording", total=1, unit="messages", clock=clock) as progress:
            clock.now += PLAIN_INTERVAL
            progress.update(50)
    finally:
        logs.reset()
    [record] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert record["logger"] == "esg_leads.progress" and record["done"] == 50
    assert record["message"] == "recording: 50 messages, 5 messages/s"
