"""Recognise redelivered events by ``event_id``, in bounded memory.

Kafka producers retry and consumers resume from snapshots, so the same event can
arrive twice. An id is remembered for ``horizon`` of *event time* after the newest
event seen; that bounds memory by the event rate, not by the stream's length.

>>> from datetime import datetime, timedelta, timezone
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> seen = EventIdDedup(horizon=timedelta(days=1))
>>> seen.first_time("e1", t), seen.first_time("e1", t), seen.first_time("e2", t)
(True, False, True)
>>> _ = seen.first_time("e3", t + timedelta(days=2))  # e1 and e2 are now forgotten
>>> len(seen)
1
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

from esg_leads.schemas.common import epoch_seconds


class EventIdDedup:
    """A set of recently seen event ids that forgets ids older than ``horizon``."""

    __slots__ = ("_horizon_s", "_ids", "_order", "_newest")

    def __init__(self, horizon: timedelta) -> None:
        self._horizon_s = horizon.total_seconds()
        self._ids: set[str] = set()
        self._order: deque[tuple[float, str]] = deque()
        self._newest = float("-inf")

    def first_time(self, event_id: str, event_time: datetime) -> bool:
        """Record ``event_id``; ``True`` unless it was already seen within the horizon."""
        if event_id in self._ids:
            return False
        ts = epoch_seconds(event_time)
        self._ids.add(event_id)
        self._order.append((ts, event_id))
        if ts > self._newest:
            self._newest = ts
            cutoff = ts - self._horizon_s
            order = self._order
            # Ids arrive roughly in time order; expire from the front while stale.
            while order and order[0][0] < cutoff:
                self._ids.discard(order.popleft()[1])
        return True

    def __len__(self) -> int:
        return len(self._ids)

    def __getstate__(self) -> tuple:
        return (self._horizon_s, list(self._order), self._newest)

    def __setstate__(self, state: tuple) -> None:
        self._horizon_s, order, self._newest = state
        self._order = deque(order)
        self._ids = {event_id for _, event_id in order}
