"""Progress display: a rich bar with rate and ETA on a terminal, else a plain line every 10 s.

Off a terminal (CI logs, ``nohup``, a container's log), a bar would be control codes
in a file: instead one line every ``interval`` seconds says how far, how fast and how
long is left, so a long ``generate`` or ``replay`` in a log is not silent. Time comes
from ``clock`` (seconds, monotonic), so tests drive it without sleeping:

>>> import io
>>> now = [0.0]
>>> out = io.StringIO()
>>> with Progress("replaying", total=1000, unit="messages", stream=out,
...               clock=lambda: now[0]) as progress:
...     for now[0], done in ((4.0, 100), (10.0, 250), (15.0, 400), (20.5, 500)):
...         progress.update(done)
>>> print(out.getvalue(), end="")
replaying: 250 of 1,000 messages (25%), 25 messages/s, ETA 0:00:30
replaying: 500 of 1,000 messages (50%), 24 messages/s, ETA 0:00:20
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import IO, Any

#: Seconds between two plain progress lines off a terminal.
PLAIN_INTERVAL = 10.0


def _eta(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def plain_line(description: str, done: int, total: int | None, unit: str,
               elapsed: float) -> str:
    """One progress line: done of total, percentage, rate and time left (when known).

    >>> plain_line("generating", 3, 30, "days", 6.0)
    'generating: 3 of 30 days (10%), 0.5 days/s, ETA 0:00:54'
    >>> plain_line("publishing", 1200, None, "messages", 0.0)
    'publishing: 1,200 messages'
    """
    text = f"{description}: {done:,}"
    known = total is not None and total > 1 and total >= done
    if known:
        text += f" of {total:,}"
    text += f" {unit}" if unit else ""
    if known:
        text += f" ({100 * done // total}%)"
    if elapsed > 0 and done > 0:
        rate = done / elapsed
        text += f", {rate:,.0f} {unit}/s" if rate >= 10 else f", {rate:.2g} {unit}/s"
        if known:
            text += f", ETA {_eta((total - done) / rate)}"
    return text


class Progress:
    """Context manager with ``update(done, total)``.

    ``stream`` (default: stderr) decides the display: a terminal gets a rich bar
    (done/total, rate, elapsed, ETA), anything else a :func:`plain_line` at most every
    ``interval`` seconds of ``clock``. Without an explicit ``stream`` the line is a log
    record of ``esg_leads.progress`` (``flows.logs.say``): the same line in text logs,
    a JSON object under ``--log-format json``.
    """

    def __init__(self, description: str, total: int, unit: str = "", *,
                 stream: IO[str] | None = None, clock: Callable[[], float] = time.monotonic,
                 interval: float = PLAIN_INTERVAL) -> None:
        self._description = description
        self._total = total
        self._unit = unit
        self._stream = stream
        self._clock = clock
        self._interval = interval
        self._bar: Any = None
        self._task: Any = None
        self._started = 0.0
        self._last_line = 0.0

    @property
    def stream(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stderr

    def __enter__(self) -> Progress:
        self._started = self._last_line = self._clock()
        if _isatty(self.stream):
            self._bar = _rich_bar(self.stream, self._unit, self._clock)
            self._bar.__enter__()
            self._task = self._bar.add_task(self._description, total=self._total)
        return self

    def update(self, done: int, total: int | None = None) -> None:
        if total:
            self._total = total
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=self._total)
            return
        now = self._clock()
        if now - self._last_line >= self._interval:
            self._last_line = now
            line = plain_line(self._description, done, self._total, self._unit,
                              now - self._started)
            try:
                if self._stream is None:
                    from esg_leads.flows.logs import say

                    say(logging.getLogger("esg_leads.progress"), "", line,
                        done=done, total=self._total)
                else:
                    print(line, file=self._stream, flush=True)
            except (BrokenPipeError, ValueError):  # a closed log pipe: the work goes on
                pass

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _rich_bar(stream: IO[str], unit: str, clock: Callable[[], float]):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        ProgressColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second in the command's own unit (rich's speed column is bytes)."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.0f} {unit}/s",
                        style="progress.data.speed")

    return RichProgress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        unit,
        RateColumn(),
        TimeElapsedColumn(),
        "ETA",
        TimeRemainingColumn(),
        console=Console(file=stream),
        get_time=clock,
        transient=True,
    )
