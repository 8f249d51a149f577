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
from itertools import count
from operator import attrgetter, neg
from typing import Any

from esg_leads.schemas.records import PropertyFacts

_PROPERTY_ID = attrgetter("property_id")
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
        return self._ids if self._ids is not None else tuple(map(_PROPERTY_ID, self.facts))

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
        facts = self.facts
        n = len(facts)
        ids = self._ids if self._ids is not None else tuple(map(_PROPERTY_ID, facts))
        numbers = self.numbers  # this table's own: weights raised in place
        replaced: list[PropertyFacts] | None = None
        added: list[tuple[str, float, PropertyFacts]] = []
        own = self._ids is None  # and stays so while every new facts' id is its key's
        for property_id, (views, new) in properties.items():
            try:
                i = ids.index(property_id)
            except ValueError:
                added.append((property_id, float(views), new))
                own = own and new.property_id == property_id
                continue
            numbers[i] += views  # the double ``entry[0] += count`` gave
            old = facts[i] if replaced is None else replaced[i]
            if new is not old and new.effective >= old.effective:
                if replaced is None:
                    replaced = list(facts)
                replaced[i] = new
                own = own and new.property_id == property_id
                numbers[n + i], numbers[2 * n + i] = 0.0, UNCHECKED  # the old facts' checks
        if replaced is None and not added:
            return  # weights only (the common case): nothing rebuilt
        facts_list = replaced if replaced is not None else list(facts)
        ids_list = list(ids)
        if added:
            k = len(added)
            values = numbers.tolist()
            ids_list += [a[0] for a in added]
            facts_list += [a[2] for a in added]
            weights = values[:n] + [a[1] for a in added]
            sums = values[n:2 * n] + [0.0] * k
            checked = values[2 * n:] + [UNCHECKED] * k
            if len(ids_list) > limit:
                # By (-weight, id), as the dict was (ids are unique: the index that
                # follows them is never compared), without a Python call per property.
                keep = [r[2] for r in sorted(zip(map(neg, weights), ids_list, count()))[:limit]]
                ids_list, facts_list = [ids_list[i] for i in keep], [facts_list[i] for i in keep]
                weights = [weights[i] for i in keep]
                sums = [sums[i] for i in keep]
                checked = [checked[i] for i in keep]
            self.numbers = array("d", weights + sums + checked)
        self.facts = tuple(facts_list)
        self._ids = None if own else tuple(ids_list)

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
    return None if ids == tuple(map(_PROPERTY_ID, facts)) else ids


def _top(ids: tuple[str, ...] | None, facts: tuple[PropertyFacts, ...],
         weights: list[float]) -> TopProperties:
    n = len(facts)
    return TopProperties(facts, array("d", weights + [0.0] * n + [UNCHECKED] * n), ids)
