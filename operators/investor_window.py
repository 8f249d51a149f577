"""Investor windows: what each investor did inside one event-time window.

:class:`InvestorWindows` keeps one tenant's open windows and closes them by the
tenant's watermark; each window holds a :class:`WindowAggregate`, which only counts
and sums, so the result does not depend on the order of items within the window.
The same watermark fires the tenant's silence re-scores (``features.rescore_after``).
"""

from __future__ import annotations

import heapq
import math
import zlib
from collections import Counter
from datetime import datetime, timedelta, timezone, tzinfo

from esg_leads.operators.lineage import Ref, compact, omitted_summary, ref_digest
from esg_leads.operators.validation import dead_letter
from esg_leads.schemas.common import EngagementAction
from esg_leads.schemas.outputs import DlqReason
from esg_leads.schemas.records import EnrichedEngagement, InvestorWindow, PropertyFacts, SilenceDue
from esg_leads.schemas.settings import Settings

ACTIONS: tuple[str, ...] = tuple(a.value for a in EngagementAction)
ACTION_INDEX: dict[str, int] = {a: i for i, a in enumerate(ACTIONS)}
#: Windows are aligned to this instant (a Monday, midnight UTC), shifted by each investor's phase.
ALIGN = datetime(2024, 1, 1, tzinfo=timezone.utc)
#: Bounds that keep one investor's window state small whatever the traffic.
MAX_REFS = 32
MAX_PROPERTIES = 16
MAX_VALUES = 32


class WindowAggregate:
    """Counts and sums over one investor's engagements in one window."""

    __slots__ = (
        "n", "actions", "with_facts", "high_epc", "certified", "low_risk", "third_party",
        "expected_high", "expected_certified", "expected_low_risk", "data_age_days", "stale",
        "epc_ranks", "countries", "assets", "log_values", "properties", "first", "last",
        "refs", "dwell", "unknown_property", "catalog_log_value", "ingest_ms",
        "refs_omitted", "refs_digest", "signals", "seek_dwell",
    )

    def __init__(self) -> None:
        self.n = 0
        self.actions = [0] * len(ACTIONS)
        self.with_facts = 0
        self.high_epc = self.certified = self.low_risk = self.third_party = 0
        self.expected_high = self.expected_certified = self.expected_low_risk = 0.0
        self.data_age_days = 0.0
        self.stale = 0
        self.epc_ranks = [0] * 8
        self.countries: dict[str, int] = {}
        self.assets: dict[str, int] = {}
        self.log_values: list[float] = []
        self.properties: dict[str, list] = {}  # property_id -> [count, facts]
        self.first: datetime | None = None
        self.last: datetime | None = None
        #: Lineage: the window's engagements and the property signals whose facts
        #: enriched them, compact (operators/lineage.py: a signal's is its facts' own
        #: tuple, shared by every window it enriched); beyond MAX_REFS only counted and
        #: digested, so a busy window's state stays small but loses no input.
        self.refs: list[Ref] = []
        self.refs_omitted = 0
        self.refs_digest = 0
        self.signals: set[tuple] = set()  # signal refs already in the lineage
        # Time spent on property pages: [seconds, views] on ESG-strong properties, then others.
        self.dwell = [0.0, 0, 0.0, 0]
        #: [sum of log1p(seconds), views] of the property views the investor sought out
        #: (no campaign e-mail led there): how long they stay shows intent.
        self.seek_dwell = [0.0, 0]
        self.unknown_property = 0
        self.catalog_log_value: float | None = None
        #: When (wall clock, ms) the flow took the window's latest event in: lead latency
        #: "since ingest" runs from here to the lead's publication. :meth:`add` alone uses
        #: the message's Kafka timestamp; :meth:`InvestorWindows.process` stamps its ``now``.
        self.ingest_ms = 0

    def __setstate__(self, state: tuple) -> None:
        # Slots pickle as (None, {slot: value}); a snapshot from before lineage was
        # digested lacks the new slots.
        self.refs_omitted, self.refs_digest, self.signals = 0, 0, set()
        self.seek_dwell = [0.0, 0]
        for name, value in state[1].items():
            setattr(self, name, value)
        self.refs = [compact(r) for r in self.refs]  # dicts before compact references

    def _ref(self, r: Ref) -> None:
        if len(self.refs) < MAX_REFS:
            self.refs.append(r)
        else:
            self.refs_omitted += 1
            self.refs_digest += ref_digest(r)

    @property
    def omitted(self) -> dict | None:
        """The window's references beyond ``refs`` (see :mod:`operators.lineage`)."""
        return omitted_summary(self.refs_omitted, self.refs_digest)

    def add(self, item: EnrichedEngagement, stale_days: float) -> None:
        """Fold one engagement in."""
        ingested = item.ingested
        event = ingested.event
        when = event.event_time  # type: ignore[attr-defined]
        self.n += 1
        self.actions[ACTION_INDEX[event.action]] += 1  # type: ignore[attr-defined]
        if ingested.timestamp_ms > self.ingest_ms:
            self.ingest_ms = ingested.timestamp_ms
        if self.first is None or when < self.first:
            self.first = when
        if self.last is None or when > self.last:
            self.last = when
        self._ref((event.event_id, ingested.topic, ingested.partition, ingested.offset))  # type: ignore[attr-defined]
        if item.mix.log_value is not None:
            self.catalog_log_value = item.mix.log_value
        duration = event.duration_s  # type: ignore[attr-defined]
        if (duration is not None and event.action == "property_view"  # type: ignore[attr-defined]
                and event.campaign_id is None):  # type: ignore[attr-defined]
            self.seek_dwell[0] += math.log1p(duration)
            self.seek_dwell[1] += 1
        facts = item.facts
        if facts is None:
            if event.property_id is not None:  # type: ignore[attr-defined]
                self.unknown_property += 1
            return
        self._add_facts(facts, item, when, stale_days)
        if duration is not None and event.action == "property_view":  # type: ignore[attr-defined]
            at = 0 if (facts.high_epc or facts.certified) else 2
            self.dwell[at] += duration
            self.dwell[at + 1] += 1

    def _add_facts(self, facts: PropertyFacts, item: EnrichedEngagement, when: datetime,
                   stale_days: float) -> None:
        self.with_facts += 1
        signal = facts.ref
        if signal is not None and signal not in self.signals:
            self.signals.add(signal)
            # The facts' own tuple: one object per signal version, whoever it enriched.
            self._ref(signal)
        self.high_epc += facts.high_epc
        self.certified += facts.certified
        self.low_risk += facts.low_climate_risk
        self.third_party += facts.third_party
        mix = item.mix
        self.expected_high += mix.high_epc
        self.expected_certified += mix.certified
        self.expected_low_risk += mix.low_climate_risk
        # Not below 0: a signal's data may be dated the day after an engagement that
        # was processed after it (a source east of UTC, or a late engagement).
        age = max(0, when.toordinal() - facts.data_as_of_ordinal)
        self.data_age_days += age
        self.stale += age > stale_days
        if facts.epc_rank is not None:
            self.epc_ranks[facts.epc_rank] += 1
        self.countries[facts.country] = self.countries.get(facts.country, 0) + 1
        self.assets[facts.asset_class] = self.assets.get(facts.asset_class, 0) + 1
        if facts.value_eur and len(self.log_values) < MAX_VALUES:
            self.log_values.append(math.log(facts.value_eur))
        entry = self.properties.get(facts.property_id)
        if entry is not None:
            entry[0] += 1
            if facts.effective >= entry[1].effective:
                entry[1] = facts
        elif len(self.properties) < MAX_PROPERTIES:
            self.properties[facts.property_id] = [1, facts]

    def action(self, name: str) -> int:
        return self.actions[ACTION_INDEX[name]]


class InvestorWindows:
    """Tumbling event-time windows over one tenant's engagements, one aggregate per investor.

    Each investor's windows are shifted by a stable phase (a hash of its id, when
    ``windows.stagger`` is on), so that window closes — and the scoring each starts —
    arrive as a steady trickle instead of one burst per window length. Phases are
    multiples of ``windows.stagger_step``, so investors close in small groups that
    share the per-batch cost of the steps after this one, plus an offset per tenant
    within one step, so that tenants whose clocks agree do not close at the same time. The tenant's
    watermark is the latest event time seen from any of its investors: a window
    ``[start, end)`` closes once the watermark reaches ``end + allowed_lateness``, and
    an event whose window has already closed is dead-lettered as late.

    Closing is decided after every event, so the output does not depend on how the
    input was batched. At end of input every open window closes (:meth:`flush`).

    Silence re-scores run on the same clock. Closing an investor's window plans a
    re-score at ``window end + d`` for each ``d`` of ``features.rescore_after``; when
    the watermark reaches one, a :class:`~schemas.records.SilenceDue` goes out (to the
    investor's shard, which re-scores as of that instant), unless the investor has
    closed a later window since, or has a window ending by then still open (it would
    be a second lead at the same instant: the window supersedes the re-score). Window
    closes and re-scores come out in the order of their instants, a window first on a
    tie. So a re-score is published at the first engagement of the tenant at or past
    its deadline — a function of the tenant's event clock — and not whenever the
    investor's shard next hears from one of its own investors, which may be hours
    later (a case published that late was decided by a reviewer before it existed).
    Flushing at end of input fires none: the input ended, no time passed.

    With ``windows.idle_close_after`` set (live runs), a tenant that has sent nothing
    for that long (wall clock, from the ``now`` the caller passes) has its watermark
    moved on as if its event time kept pace with the wall clock since its last event:
    :meth:`idle_deadline` says when that next closes a window, :meth:`advance_idle`
    does it.

    >>> from datetime import timedelta
    >>> from esg_leads.schemas.settings import Settings
    >>> windows = InvestorWindows("acme", Settings(windows={"length": "PT1H"}))
    >>> windows.process([], now=ALIGN), windows.flush(now=ALIGN)
    ([], [])
    """

    def __init__(self, tenant: str, settings: Settings) -> None:
        windows = settings.windows
        self._tenant = tenant
        self._length = windows.length.total_seconds()
        self._lateness = windows.allowed_lateness.total_seconds()
        #: Phases: ``slot * step + offset`` for ``slot`` in ``range(slots)`` (see :meth:`phase`).
        self._slots = max(1, round(self._length / windows.stagger_step.total_seconds())) \
            if windows.stagger else 0
        self._step = self._length / self._slots if self._slots else 0.0
        self._offset = (zlib.crc32(tenant.encode()) % 1000) * self._step / 1000
        self._stale_days = settings.features.stale_after.total_seconds() / 86_400
        #: (investor id, window index) -> aggregate, for every open window.
        self._open: dict[tuple[str, int], WindowAggregate] = {}
        #: Open windows by the watermark that closes them: (close at, investor id, index).
        self._closing: list[tuple[float, str, int]] = []
        #: Latest event time seen, in seconds since ``ALIGN``.
        self.watermark = float("-inf")
        self.counts: Counter[tuple[str, str]] = Counter()
        self._phases: dict[str, float] = {}
        self._align_in: dict[tzinfo, datetime] = {}
        idle = windows.idle_close_after
        self._idle_after = idle.total_seconds() if idle is not None else None
        #: Wall clock (epoch s) and watermark when the last event arrived; not
        #: snapshotted, as a restarted run must read its backlog before calling anyone idle.
        self._arrived: tuple[float, float] | None = None
        self._rescore_after: tuple[float, ...] = ()
        self.set_rescore_after(settings.features.rescore_after)
        #: Planned silence re-scores: (due, investor id, index of the window planned
        #: from, the silence), instants in seconds since ``ALIGN`` like the watermark.
        self._timers: list[tuple[float, str, int, float]] = []
        #: Investor id -> [index of its latest closed window, its re-scores still pending].
        self._planned: dict[str, list[int]] = {}

    def __getstate__(self) -> dict:
        # Caches are rebuilt on demand: snapshots carry only the windows.
        return {**self.__dict__, "_phases": {}, "_align_in": {}, "_arrived": None}

    def __setstate__(self, state: dict) -> None:
        if "_slots" not in state:  # saved before stagger_step: 10,000 phases per length
            slots = 10_000 if state.pop("_stagger") else 0
            state.update(_slots=slots, _step=state["_length"] / slots if slots else 0.0,
                         _offset=0.0)
        state.setdefault("_idle_after", None)
        state.setdefault("_arrived", None)
        # Saved while the investor shards kept their own re-score timers (they drain
        # those, see InvestorShard): windows closed from now on plan theirs here.
        state.setdefault("_rescore_after", ())
        state.setdefault("_timers", [])
        state.setdefault("_planned", {})
        # A cache of shared signal references, saved empty (they are the facts' own now).
        state.pop("_signal_refs", None)
        self.__dict__.update(state)

    def phase(self, investor_id: str) -> float:
        """Seconds by which the investor's windows start before the aligned grid."""
        phase = self._phases.get(investor_id)
        if phase is None:
            phase = self._phases[investor_id] = (
                round((zlib.crc32(investor_id.encode()) % self._slots) * self._step + self._offset, 6)
                if self._slots else 0.0)
        return phase

    def _seconds(self, when: datetime) -> float:
        """Seconds from ``ALIGN`` to ``when``. Subtracting ``ALIGN`` expressed in
        ``when``'s own (fixed-offset) zone skips the zone arithmetic: pydantic's
        zones answer ``utcoffset()`` slowly, which made ``timestamp()`` 4x slower."""
        zone = when.tzinfo
        align = self._align_in.get(zone)  # type: ignore[arg-type]
        if align is None:
            align = self._align_in[zone] = ALIGN.astimezone(zone)  # type: ignore[index]
        return (when - align).total_seconds()

    def process(self, items: list[EnrichedEngagement], now: datetime) -> list:
        """Fold engagements in; return the windows they close, the re-scores that fall
        due (in time order) and late dead letters."""
        out: list = []
        length, lateness, open_, closing = self._length, self._lateness, self._open, self._closing
        # Not the Kafka timestamp: a producer (or `esg-leads produce` replaying a recording)
        # sets that, and it can be days old; latency is about our own processing.
        taken_ms = int(now.timestamp() * 1000) if now is not None else 0
        for item in items:
            event = item.ingested.event
            investor_id = event.investor_id  # type: ignore[attr-defined]
            at = self._seconds(event.event_time)  # type: ignore[attr-defined]
            phase = self.phase(investor_id)
            index = math.floor((at + phase) / length)
            key = (investor_id, index)
            aggregate = open_.get(key)
            if aggregate is None:
                close_at = (index + 1) * length - phase + lateness
                if close_at <= self.watermark:
                    out.append(dead_letter(item.ingested, DlqReason.LATE,
                                           "event time is behind its window's allowed lateness",
                                           now))
                    continue
                aggregate = open_[key] = WindowAggregate()
                heapq.heappush(closing, (close_at, investor_id, index))
            aggregate.add(item, self._stale_days)
            if taken_ms:
                aggregate.ingest_ms = taken_ms
            if at > self.watermark:
                self.watermark = at
                if closing[0][0] <= at or (self._timers and self._timers[0][0] <= at):
                    self._close(at, out)
        if items and self._idle_after is not None and now is not None:
            self._arrived = (now.timestamp(), self.watermark)
        return out

    def idle_deadline(self) -> datetime | None:
        """When (wall clock) :meth:`advance_idle` would next close a window, if ever."""
        if self._arrived is None or not (self._closing or self._timers):
            return None
        arrived_at, watermark = self._arrived
        next_at = min(self._closing[0][0] if self._closing else math.inf,
                      self._timers[0][0] if self._timers else math.inf)
        due = arrived_at + max(self._idle_after, next_at - watermark)  # type: ignore[type-var]
        # 1 ms late on purpose: a datetime holds whole microseconds, and a deadline
        # rounded down would find nothing due and be asked for again at once.
        return datetime.fromtimestamp(due + 0.001, tz=timezone.utc)

    def set_idle_close_after(self, idle: timedelta | None) -> None:
        """Take ``windows.idle_close_after`` from the current settings (on resume: it
        is an operating choice, not state)."""
        self._idle_after = idle.total_seconds() if idle is not None else None
        if idle is None:
            self._arrived = None

    def set_rescore_after(self, delays: tuple[timedelta, ...]) -> None:
        """Take ``features.rescore_after`` from the current settings (on resume too:
        re-scores already planned keep their instants)."""
        self._rescore_after = tuple(sorted(d.total_seconds() for d in delays))

    def forget(self, investor_id: str) -> None:
        """An erasure: no re-score stays planned for the investor, not even its id."""
        if self._planned.pop(investor_id, None) is not None:
            self._timers = [t for t in self._timers if t[1] != investor_id]
            heapq.heapify(self._timers)

    def advance_idle(self, now: datetime) -> list[InvestorWindow | SilenceDue]:
        """Close what the tenant's event clock would have closed by ``now`` had it kept
        pace with the wall clock since the last event, once the tenant has been idle
        for ``idle_close_after``; nothing otherwise."""
        out: list = []
        if self._arrived is None:
            return out
        arrived_at, watermark = self._arrived
        idle = now.timestamp() - arrived_at
        if idle >= self._idle_after and watermark + idle > self.watermark:  # type: ignore[operator]
            self.watermark = watermark + idle
            self._close(self.watermark, out)
        return out

    def flush(self, now: datetime) -> list[InvestorWindow]:
        """Close every open window: the input has ended."""
        out: list = []
        self._close(float("inf"), out, timers=False)
        return out

    def _close(self, upto: float, out: list, timers: bool = True) -> None:
        """Close the windows, and fire the re-scores, due by ``upto``, in time order."""
        closing, due = self._closing, self._timers
        while True:
            close_at = closing[0][0] if closing else math.inf
            due_at = due[0][0] if due and timers else math.inf
            if close_at <= due_at:  # a tie: the window first, it supersedes the re-score
                if not closing or close_at > upto:
                    return
                _, investor_id, index = heapq.heappop(closing)
                out.append(self._closed(investor_id, index, plan=timers))
            else:
                if due_at > upto:
                    return
                _, investor_id, index, delay = heapq.heappop(due)
                silence = self._silence(investor_id, index, due_at, delay)
                if silence is not None:
                    out.append(silence)

    def _start(self, investor_id: str, index: int) -> datetime:
        return ALIGN + timedelta(seconds=index * self._length - self.phase(investor_id))

    def _closed(self, investor_id: str, index: int, plan: bool) -> InvestorWindow:
        aggregate = self._open.pop((investor_id, index))
        start = self._start(investor_id, index)
        self.counts[("used", "investor.engagements")] += aggregate.n
        if plan and self._rescore_after:
            self._planned[investor_id] = [index, len(self._rescore_after)]
            end = (index + 1) * self._length - self.phase(investor_id)
            for delay in self._rescore_after:
                heapq.heappush(self._timers, (end + delay, investor_id, index, delay))
        return InvestorWindow(self._tenant, investor_id, start,
                              start + timedelta(seconds=self._length), aggregate)

    def _silence(self, investor_id: str, index: int, due: float,
                 delay: float) -> SilenceDue | None:
        """The re-score planned from window ``index``, due now; ``None`` if superseded."""
        planned = self._planned.get(investor_id)
        if planned is None or planned[0] != index:
            return None  # a later window closed since (it planned its own), or erased
        planned[1] -= 1
        if not planned[1]:
            del self._planned[investor_id]
        length, phase = self._length, self.phase(investor_id)
        # A window of this investor that ends by ``due`` but is still open (within its
        # allowed lateness) is newer activity: it closes soon and supersedes this. The
        # tolerance absorbs float rounding of ``end == due``.
        k = math.floor((due + phase) / length + 1e-9) - 1
        while k > index and (k + 1) * length - phase > due - self._lateness - 1e-6:
            if (investor_id, k) in self._open:
                return None
            k -= 1
        end = self._start(investor_id, index) + timedelta(seconds=length)
        return SilenceDue(self._tenant, investor_id, end + timedelta(seconds=delay), end)
