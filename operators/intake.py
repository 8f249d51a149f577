"""One tenant's intake of ESG signals and engagements: the catalog, then the windows.

The property catalog (the ESG signal agent) and the investor windows are both
keyed by tenant, and every engagement goes from the first to the second, so the
flow runs them in one keyed step. As two steps, each live batch paid for a second
key, exchange, un-key and two branches (~40 µs per batch in bytewax, measured with
batches of six events) for no gain. They stay separate objects with separate
state; this class only passes items from one to the other.

>>> from esg_leads.schemas.settings import Settings
>>> intake = TenantIntake(Settings())
>>> intake.process([], now=None), intake.flush(now=None)
([], [])
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime

from esg_leads.operators.investor_window import InvestorWindows
from esg_leads.operators.property_catalog import PropertyCatalog
from esg_leads.schemas.records import EnrichedEngagement, Ingested
from esg_leads.schemas.settings import Settings


_CATALOG_TOPICS = frozenset(("esg.property-signals", "investor.engagements", "investor.erasure"))
_ERASURE = "investor.erasure"


class TenantIntake:
    """Every valid event of one tenant in; windows, passed-through events and dead
    letters out.

    Output items are :class:`~schemas.records.InvestorWindow` (closed windows),
    :class:`~schemas.records.SilenceDue` (silence re-scores due on the tenant's clock),
    :class:`~schemas.records.Ingested` (unsubscribes, profiles, outcomes, erasures and
    review decisions, for the investor stage) and dead-letter dicts. ``stage_times``
    reports the two agents' time separately.
    """

    def __init__(self, settings: Settings, catalog: PropertyCatalog | None = None) -> None:
        self._settings = settings
        self.catalog = catalog if catalog is not None else PropertyCatalog(settings)
        #: Created with the first engagement, which names the tenant.
        self.windows: InvestorWindows | None = None
        self.counts: Counter[tuple[str, str]] = Counter()
        self.stage_times: list[tuple[str, int, float]] = []

    @classmethod
    def restore(cls, state: object, settings: Settings) -> TenantIntake:
        """The operator for a resumed snapshot; a bare catalog is one saved before the
        windows joined this step (its open windows are not in it)."""
        if isinstance(state, PropertyCatalog):
            return cls(settings, catalog=state)
        if not isinstance(state, TenantIntake):
            raise TypeError(f"cannot resume the intake step from a {type(state).__name__}")
        # Open windows keep the length and phases they were opened with; windows opened
        # from now on, and the live-only idle closing, follow the current settings (a
        # snapshot's own settings may predate fields the code now reads).
        state._settings = settings
        if state.catalog is not None and hasattr(state.catalog, "configure_feeds"):
            state.catalog.configure_feeds(settings)
        if state.windows is not None:
            state.windows.set_idle_close_after(settings.windows.idle_close_after)
            state.windows.set_rescore_after(settings.features.rescore_after)
        return state

    def process(self, items: list[Ingested], now: datetime | None) -> list:
        """Catalog events update the catalog (engagements then go to the windows); every
        other event, and each erasure after the catalog has forgotten the investor,
        passes through for the investor stage. The flow calls this once per input
        message, so what comes out follows the input order."""
        started = time.perf_counter()
        out: list = []
        engagements: list[EnrichedEngagement] = []
        catalog_items = [i for i in items if i.topic in _CATALOG_TOPICS]
        passing = [i for i in items if i.topic not in _CATALOG_TOPICS or i.topic == _ERASURE]
        for item in self.catalog.process(catalog_items, now) if catalog_items else ():
            if type(item) is not EnrichedEngagement:
                out.append(item)  # a dead letter, an alert, a feed status for the shards
            elif item.ingested.event.action == "unsubscribe":  # type: ignore[attr-defined]
                out.append(item.ingested)  # the investor stage acts on it
            else:
                engagements.append(item)
        if self.catalog.__dict__.get("_feeds") is not None:
            for item in passing:
                if item.topic != _ERASURE:  # the catalog has seen the erasure
                    self.catalog.watch(item, now, out)
        catalog_done = time.perf_counter()
        if engagements:
            out.extend(self._windows(engagements[0]).process(engagements, now))
        if self.windows is not None:
            for item in passing:
                if item.topic == _ERASURE:  # its silence re-scores go with it
                    self.windows.forget(item.event.investor_id)  # type: ignore[attr-defined]
        out.extend(passing)
        self.stage_times.append(("catalog", len(items), catalog_done - started))
        self.stage_times.append(("investor_windows", len(engagements),
                                 time.perf_counter() - catalog_done))
        self._collect_counts()
        return out

    def flush(self, now: datetime | None) -> list:
        """The input has ended: close every open window."""
        out = self.windows.flush(now) if self.windows is not None else []
        self._collect_counts()
        return out

    def notify_at(self) -> datetime | None:
        """When an idle tenant's windows are next due to close, or a re-score to fall due
        (``windows.idle_close_after``)."""
        return self.windows.idle_deadline() if self.windows is not None else None

    def on_notify(self, now: datetime) -> list:
        out = self.windows.advance_idle(now) if self.windows is not None else []
        self._collect_counts()
        return out

    def _windows(self, first: EnrichedEngagement) -> InvestorWindows:
        if self.windows is None:
            self.windows = InvestorWindows(first.ingested.tenant, self._settings)
        return self.windows

    def _collect_counts(self) -> None:
        for part in (self.catalog, self.windows):
            if part is not None and part.counts:
                self.counts.update(part.counts)
                part.counts.clear()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["stage_times"] = []  # timings are drained, never snapshotted
        # Settings come back from :meth:`restore`; pickled, they would put every
        # tenant's review signing key (and the contact salt) into the snapshot files.
        state.pop("_settings")
        return state
