"""Feed health: one ``feed_stale`` alert when a signal source goes quiet, one
``feed_recovered`` when it speaks again.

A source is watched once it has sent a signal, against ``sources.<name>.max_staleness``
(or ``sources."*"`` for any source not named; no entry: not watched). Time is the
tenant's event time as the catalog sees it (the latest event time of any of its inputs),
so a replay raises the same alerts as the live run, whatever the batching. A source is
stale from ``last signal + max_staleness``: that instant is the alert's event time, and
the last signal's time is in its idempotency key, so one outage is one alert however
often the check runs.

The watch also keeps the recent outages themselves (:meth:`FeedWatch.status`): scoring
reads them to degrade what a stale source stated (:mod:`operators.degradation`), at
each lead's own event time.

>>> from datetime import datetime, timedelta, timezone
>>> watch = FeedWatch({"epc-register": timedelta(days=2)})
>>> now = datetime(2026, 3, 1, tzinfo=timezone.utc)
>>> day = 86_400.0
>>> watch.signal("acme", "epc-register", 0.0, now), watch.advance("acme", 1.5 * day, now)
([], [])
>>> [a["kind"] for a in watch.advance("acme", 3 * day, now)]
['feed_stale']
>>> watch.advance("acme", 4 * day, now)  # still the same outage: no second alert
[]
>>> [(a["kind"], a["details"]["quiet_s"]) for a in watch.signal("acme", "epc-register", 5 * day, now)]
[('feed_recovered', 432000.0)]
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from esg_leads.schemas.outputs import SCHEMA_VERSION, AlertKind
from esg_leads.schemas.records import FeedStatus, SourceFeed

DETECTOR = "feed-health/1"
#: Outages kept per source: enough for the leads scored around a recovery (a window
#: closes after its lateness), bounded for a source that flaps.
MAX_GAPS = 4


class FeedWatch:
    """Last signal time per source and which sources are stale, for one tenant."""

    def __init__(self, max_staleness: dict[str, timedelta]) -> None:
        #: source name (or ``"*"``) -> seconds of silence after which it is stale
        self._limits = {name: limit.total_seconds() for name, limit in max_staleness.items()}
        self._last: dict[str, float] = {}
        self._stale: set[str] = set()
        #: source -> its recent outages, (last signal before, first signal after)
        self._gaps: dict[str, list[tuple[float, float]]] = {}

    def configure(self, max_staleness: dict[str, timedelta]) -> None:
        """New limits (a resumed run's current settings); what was seen is kept."""
        self._limits = {name: limit.total_seconds() for name, limit in max_staleness.items()}

    def _limit(self, source: str) -> float | None:
        return self._limits.get(source, self._limits.get("*"))

    def signal(self, tenant: str, source: str, when: float, now: datetime) -> list[dict]:
        """A signal from ``source`` at event time ``when`` (epoch s)."""
        out = self.advance(tenant, when, now)
        last = self._last.get(source)
        if source in self._stale and last is not None and when > last:
            self._stale.discard(source)
            # A snapshot from before outages were kept has no ``_gaps``.
            gaps = self.__dict__.setdefault("_gaps", {}).setdefault(source, [])
            gaps.append((last, when))
            del gaps[:-MAX_GAPS]
            out.append(self._alert(tenant, AlertKind.FEED_RECOVERED, source, when, now,
                                   f"{int(when)}", {"quiet_s": round(when - last, 3)}))
        if last is None or when > last:
            self._last[source] = when
        return out

    def advance(self, tenant: str, clock: float, now: datetime) -> list[dict]:
        """The tenant's event time reached ``clock``: alert for sources now stale."""
        out: list[dict] = []
        for source, last in self._last.items():
            limit = self._limit(source)
            if limit is None or source in self._stale or clock - last <= limit:
                continue
            self._stale.add(source)
            out.append(self._alert(tenant, AlertKind.FEED_STALE, source, last + limit, now,
                                   f"{int(last)}", {"last_signal_s": last, "max_staleness_s": limit}))
        return out

    def stale(self) -> frozenset[str]:
        return frozenset(self._stale)

    def status(self, tenant: str, clock: float, shares: dict[str, float]) -> FeedStatus:
        """The watched sources at event time ``clock``, as scoring needs them; ``shares``:
        each source's share of the catalog's current facts (a source not in it: 0).

        >>> watch = FeedWatch({"*": timedelta(hours=1)})
        >>> now = datetime(2026, 3, 1, tzinfo=timezone.utc)
        >>> _ = watch.signal("acme", "epc", 0.0, now), watch.signal("acme", "epc", 9000.0, now)
        >>> watch.status("acme", 9000.0, {"epc": 1.0}).sources
        (SourceFeed(source='epc', max_staleness_s=3600.0, last_signal_s=9000.0, catalog_share=1.0, gaps=((0.0, 9000.0),)),)
        """
        gaps = self.__dict__.get("_gaps", {})
        out = []
        for source in sorted(self._last):
            limit = self._limit(source)
            if limit is not None:
                out.append(SourceFeed(source, limit, self._last[source], shares.get(source, 0.0),
                                      tuple(gaps.get(source, ()))))
        return FeedStatus(tenant, clock, tuple(out))

    def _alert(self, tenant: str, kind: AlertKind, source: str, when: float, now: datetime,
               key: str, details: dict) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "idempotency_key": f"alert:{tenant}:{kind.value}:{source}:{key}",
            "tenant": tenant,
            "kind": kind.value,
            "detector": DETECTOR,
            "subject": source,
            "event_time": datetime.fromtimestamp(when, timezone.utc),
            "processed_at": now,
            "details": details,
        }
