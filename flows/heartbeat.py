"""``esg-leads run``'s heartbeat: every ``logging.heartbeat`` seconds, one line saying how
fast events come in, how many leads and dead letters went out, and how far behind the
input the run is, so a quiet log means a quiet input, not a stuck process.

>>> beats = []
>>> now = [0.0]
>>> totals = {"events": 0, "leads": 0, "dlq": 0, "lag": None}
>>> heart = Heartbeat(lambda: dict(totals), every=30, emit=lambda m, f: beats.append(m),
...                   clock=lambda: now[0])
>>> now[0], totals["events"], totals["leads"], totals["lag"] = 30.0, 6000, 40, 1200
>>> heart.beat()
>>> now[0], totals["events"], totals["dlq"], totals["lag"] = 60.0, 6300, 3, 0
>>> heart.beat()
>>> print("\\n".join(beats))
heartbeat: 200 events/s (6,000 in all), 40 leads (+40), lag 1,200, DLQ 0 (+0)
heartbeat: 10 events/s (6,300 in all), 40 leads (+0), lag 0, DLQ 3 (+3)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

Totals = dict[str, Any]


def heartbeat_fields(before: Totals, now: Totals, seconds: float) -> dict[str, Any]:
    """The heartbeat as data: rates over the last interval, totals so far."""
    rate = (now["events"] - before["events"]) / seconds if seconds > 0 else 0.0
    return {"events_per_s": round(rate, 1), "events": now["events"], "leads": now["leads"],
            "new_leads": now["leads"] - before["leads"], "lag": now["lag"],
            "dlq": now["dlq"], "new_dlq": now["dlq"] - before["dlq"]}


def heartbeat_message(fields: dict[str, Any]) -> str:
    lag = "unknown" if fields["lag"] is None else f"{fields['lag']:,}"
    return (f"heartbeat: {fields['events_per_s']:,.0f} events/s ({fields['events']:,} in all), "
            f"{fields['leads']:,} leads (+{fields['new_leads']:,}), lag {lag}, "
            f"DLQ {fields['dlq']:,} (+{fields['new_dlq']:,})")


class Heartbeat:
    """Calls ``emit(message, fields)`` every ``every`` seconds from a daemon thread
    (:meth:`start`, :meth:`stop`), or once per :meth:`beat` (tests drive ``clock``)."""

    def __init__(self, totals: Callable[[], Totals], every: float,
                 emit: Callable[[str, dict[str, Any]], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        if every <= 0:
            raise ValueError(f"heartbeat interval must be positive, not {every}")
        self._totals, self._every, self._emit, self._clock = totals, every, emit, clock
        self._last = totals()
        self._since = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        now, at = self._totals(), self._clock()
        fields = heartbeat_fields(self._last, now, at - self._since)
        self._last, self._since = now, at
        self._emit(heartbeat_message(fields), fields)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self.beat()

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
