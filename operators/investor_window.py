"""What an investor did inside one event-time window: a compact, mergeable aggregate.

The flow windows engagements per shard of investors (see ``flows/pipeline.py`` for
why shards); the window's accumulator maps each investor to a
:class:`WindowAggregate`. Aggregates only count and sum, so the result does not
depend on the order of items within the window.

>>> from datetime import timedelta
>>> folder = WindowFolder(stale_after=timedelta(days=365))
>>> acc = folder.empty()
>>> len(acc)
0
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from schemas.common import EngagementAction
from schemas.records import EnrichedEngagement, PropertyFacts

ACTIONS: tuple[str, ...] = tuple(a.value for a in EngagementAction)
ACTION_INDEX: dict[str, int] = {a: i for i, a in enumerate(ACTIONS)}
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
        self.refs: list[dict] = []  # lineage, as output records carry it
        # Time spent on property pages: [seconds, views] on ESG-strong properties, then others.
        self.dwell = [0.0, 0, 0.0, 0]
        self.unknown_property = 0
        self.catalog_log_value: float | None = None
        self.ingest_ms = 0  # latest Kafka timestamp of the window's events

    def add(self, item: EnrichedEngagement, stale_days: float) -> None:
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
        if len(self.refs) < MAX_REFS:
            self.refs.append({"event_id": event.event_id, "topic": ingested.topic,  # type: ignore[attr-defined]
                              "partition": ingested.partition, "offset": ingested.offset})
        if item.mix.log_value is not None:
            self.catalog_log_value = item.mix.log_value
        facts = item.facts
        if facts is None:
            if event.property_id is not None:  # type: ignore[attr-defined]
                self.unknown_property += 1
            return
        self._add_facts(facts, item, when, stale_days)
        duration = event.duration_s  # type: ignore[attr-defined]
        if duration is not None and event.action == "property_view":  # type: ignore[attr-defined]
            at = 0 if (facts.high_epc or facts.certified) else 2
            self.dwell[at] += duration
            self.dwell[at + 1] += 1

    def _add_facts(self, facts: PropertyFacts, item: EnrichedEngagement, when: datetime,
                   stale_days: float) -> None:
        self.with_facts += 1
        self.high_epc += facts.high_epc
        self.certified += facts.certified
        self.low_risk += facts.low_climate_risk
        self.third_party += facts.third_party
        mix = item.mix
        self.expected_high += mix.high_epc
        self.expected_certified += mix.certified
        self.expected_low_risk += mix.low_climate_risk
        age = when.toordinal() - facts.data_as_of_ordinal
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

    def __deepcopy__(self, memo: dict) -> WindowAggregate:
        """A snapshot copy (bytewax deep-copies window state at every epoch).

        Only the containers this object mutates are copied; the facts and lineage
        entries they hold are never changed in place, so they are shared.
        """
        copy = WindowAggregate.__new__(WindowAggregate)
        for name in self.__slots__:
            value = getattr(self, name)
            if type(value) is list:
                value = list(value)
            elif type(value) is dict:
                value = {k: (list(v) if type(v) is list else v) for k, v in value.items()}
            setattr(copy, name, value)
        return copy


class WindowFolder:
    """The fold of a shard window: investor id -> :class:`WindowAggregate`."""

    __slots__ = ("_stale_days",)

    def __init__(self, stale_after: timedelta) -> None:
        self._stale_days = stale_after.total_seconds() / 86_400

    @staticmethod
    def empty() -> dict[str, WindowAggregate]:
        return {}

    def __call__(self, acc: dict[str, WindowAggregate], item: EnrichedEngagement) -> dict[str, WindowAggregate]:
        investor = item.ingested.event.investor_id  # type: ignore[attr-defined]
        agg = acc.get(investor)
        if agg is None:
            agg = acc[investor] = WindowAggregate()
        agg.add(item, self._stale_days)
        return acc

    @staticmethod
    def merge(a: dict[str, WindowAggregate], b: dict[str, WindowAggregate]) -> dict[str, WindowAggregate]:
        """Only session windows merge; tumbling windows never call this."""
        raise ValueError("investor windows are tumbling and never merge")
