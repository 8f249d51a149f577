"""The properties an investor engaged with most, kept compact (issue 16).

An investor keeps up to ``TOP_PROPERTIES`` properties by decayed engagement, each with
the facts of its newest signal and, once computed, its thesis checks (the sum and
number of the checks ``operators.features.thesis_fit`` makes): a dict entry, a list
and two float objects per property were ~870 bytes per investor. :class:`TopProperties`
holds the facts in one tuple (shared objects: the catalog's) and every number in one
array of doubles: the weights, then the checks' sums, then their numbers (``-1``: not
computed yet). The ids are the facts' own ``property_id`` (equal, by construction:
``operators.investor_window`` keys properties by them); a table whose ids are not keeps
them in a tuple. Same doubles as the dict held, in the same (insertion) order.

>>> from esg_leads.schemas.records import PropertyFacts
>>> from datetime import datetime, timezone
>>> def facts(pid):
...     return PropertyFacts(pid, "t", datetime(2026, 1, 1, tzinfo=timezone.utc), "DE",
...                          "office", 1e6, None, None, None, False, False, None, None,
...                          None, None, False, 0, False, False)
>>> top = TopProperties()
>>> top.merge({"a": (2, facts("a")), "b": (1, facts("b"))}, limit=8)
>>> top.scale(0.5)
>>> top.merge({"b": (1, facts("b")), "c": (3, facts("c"))}, limit=2)  # "a" drops out
>>> [(pid, w) for pid, (w, _) in top.items()]
[('c', 3.0), ('b', 1.5)]
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Any

from esg_leads.schemas.records import PropertyFacts

#: The number of checks of a property whose checks are not computed yet.
UNCHECKED = -1.0


class TopProperties:
    """Up to ``limit`` properties: facts, decayed weights, thesis checks (module doc)."""

    __slots__ = ("facts", "numbers", "_ids")

    def __init__(self, facts: tuple[PropertyFacts, ...] = (), numbers: array | None = None,
                 ids: tuple[str, ...] | None = None) -> None:
        self.facts = facts
        #: weights (n), sums of checks (n), numbers of checks (n; ``UNCHECKED``).
        self.numbers = numbers if numbers is not None else array("d")
        self._ids = ids  # None: each facts' property_id

    @classmethod
    def of(cls, table: dict[str, list] | TopProperties) -> TopProperties:
        """``table`` (``{property_id: [weight, facts, (sum, number of checks)]}``, as
        snapshots before this class and tests hold it) as top properties."""
        if type(table) is TopProperties:
            return table
        ids = tuple(table)  # type: ignore[arg-type]
        entries = list(table.values())  # type: ignore[union-attr]
        facts = tuple(entry[1] for entry in entries)
        checks = [(entry[2], entry[3]) if len(entry) > 3 else (0.0, UNCHECKED) for entry in entries]
        numbers = array("d", [entry[0] for entry in entries] + [c[0] for c in checks]
                        + [c[1] for c in checks])
        return cls(facts, numbers, _own_ids(ids, facts))

    @property
    def ids(self) -> tuple[str, ...]:
        return self._ids if self._ids is not None else tuple(f.property_id for f in self.facts)

    def __len__(self) -> int:
        return len(self.facts)

    @property
    def weights(self) -> array:
        return self.numbers[:len(self.facts)]

    def items(self) -> Iterator[tuple[str, tuple[float, PropertyFacts]]]:
        """``(property_id, (weight, facts))`` in order, as the dict's items were."""
        return zip(self.ids, zip(self.numbers, self.facts))

    def values(self) -> Iterator[tuple[float, PropertyFacts]]:
        return zip(self.numbers, self.facts)

    def scale(self, factor: float) -> None:
        """Every weight times ``factor`` (decay): the checks do not change."""
        n = len(self.facts)
        numbers = self.numbers
        self.numbers = array("d", [v * factor for v in numbers[:n]]) + numbers[n:]

    def clear_checks(self) -> None:
        """The thesis checks of another profile: computed again when next read."""
        n = len(self.facts)
        if n:
            self.numbers = self.numbers[:n] + array("d", [0.0] * n + [UNCHECKED] * n)

    def merge(self, properties: dict[str, Any], limit: int) -> None:
        """A window's ``{property_id: (count, facts)}`` added: a new property after the
        known ones, a known one's weight raised and its facts replaced by newer ones
        (its checks then computed again); beyond ``limit``, the most engaged kept, by
        ``(-weight, property_id)``, in that order -- as the dict did."""
        if not properties:
            return
        n = len(self.facts)
        ids, facts = list(self.ids), list(self.facts)
        numbers = self.numbers
        weights, sums, checked = numbers[:n].tolist(), numbers[n:2 * n].tolist(), numbers[2 * n:].tolist()
        for property_id, (count, new) in properties.items():
            try:
                i = ids.index(property_id)
            except ValueError:
                ids.append(property_id)
                facts.append(new)
                weights.append(float(count))
                sums.append(0.0)
                checked.append(UNCHECKED)
            else:
                weights[i] += count
                if new is not facts[i] and new.effective >= facts[i].effective:
                    facts[i] = new
                    sums[i], checked[i] = 0.0, UNCHECKED  # the checks of the old facts
        if len(ids) > limit:
            keep = sorted(range(len(ids)), key=lambda i: (-weights[i], ids[i]))[:limit]
            ids, facts = [ids[i] for i in keep], [facts[i] for i in keep]
            weights, sums, checked = ([v[i] for i in keep] for v in (weights, sums, checked))
        self.facts = tuple(facts)
        self.numbers = array("d", weights + sums + checked)
        self._ids = _own_ids(tuple(ids), self.facts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TopProperties):
            return (self.ids, self.facts, self.numbers.tobytes()) == (
                other.ids, other.facts, other.numbers.tobytes())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TopProperties({dict(self.items())!r})"

    def __reduce__(self) -> tuple:
        # The weights only (the checks are a cache, as before this class), as floats: a
        # snapshot reads the same on a host of either byte order.
        return (_top, (self._ids, self.facts, self.weights.tolist()))


def _own_ids(ids: tuple[str, ...], facts: tuple[PropertyFacts, ...]) -> tuple[str, ...] | None:
    """``None`` when each id equals its facts' ``property_id`` (the case in a flow)."""
    if all(i == f.property_id and type(i) is str for i, f in zip(ids, facts, strict=True)):
        return None
    return ids


def _top(ids: tuple[str, ...] | None, facts: tuple[PropertyFacts, ...],
         weights: list[float]) -> TopProperties:
    n = len(facts)
    return TopProperties(facts, array("d", weights + [0.0] * n + [UNCHECKED] * n), ids)
