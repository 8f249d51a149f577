"""Compact, shared containers for the state kept per investor (issue 16).

At 100k investors what each investor keeps is the memory: a dict and a float object
per entry cost several times the doubles they hold, and many investors hold equal
small dicts. :func:`shared` keeps one dict per distinct content (consents, the
stated-profile features); :class:`Weights` is a decayed table of weights by name as
a shared tuple of names and an array of doubles. Both hold exactly the values the
dicts held, in the same order.
"""

from __future__ import annotations

from array import array

#: Consent maps and stated-profile features, one dict per distinct content (see
#: :func:`shared`), and how many distinct ones at most.
_SHARED: dict[str, dict] = {}
_SHARED_MAX = 4096


def shared(d: dict) -> dict:
    """One dict for every investor whose consents (or stated-profile features) are these.

    Few combinations exist (channels x statuses; features of a few stated fields), and a
    dict each cost ~420 bytes per investor (issue 16). Shared dicts are never changed:
    a change builds a new dict. Keyed by the items' ``repr``: in order (records list
    consents in the order the profile gave them), and exact for floats (-0.0). Beyond
    ``_SHARED_MAX`` distinct contents a dict is kept as it is: same values, unshared.

    >>> shared({"email": "opted_in"}) is shared({"email": "opted_in"})
    True
    """
    key = repr(list(d.items()))
    found = _SHARED.get(key)
    if found is None:
        if len(_SHARED) >= _SHARED_MAX:
            return d
        found = _SHARED[key] = d
    return found


class Weights:
    """Decayed weights by name (the countries and asset classes an investor viewed),
    read like a dict (``values``, ``items``, ``get``, truth), never changed: a window
    or a decay builds new weights (:meth:`plus`, :meth:`scaled`).

    The names in one tuple, shared by every investor with the same names in the same
    order (bounded), the weights in one array of doubles: a dict and a float object per
    name cost ~120 bytes more per table, two tables per investor (issue 16). The same
    floats as the dict held, in the same (insertion) order.

    >>> w = Weights().plus({"DE": 2, "FR": 1}).scaled(0.5).plus({"FR": 1, "GB": 3})
    >>> dict(w.items()), w.get("IT", 0.0), bool(Weights())
    ({'DE': 1.0, 'FR': 1.5, 'GB': 3.0}, 0.0, False)
    """

    __slots__ = ("names", "weights")

    def __init__(self, names: tuple[str, ...] = (), weights: array | None = None) -> None:
        self.names = names
        self.weights = weights if weights is not None else array("d")

    @classmethod
    def of(cls, table: dict[str, float] | Weights) -> Weights:
        """``table`` (a dict, in snapshots of earlier versions) as weights."""
        if type(table) is Weights:
            return table
        return cls(_shared_names(tuple(table)), array("d", table.values()))  # type: ignore[union-attr]

    def __len__(self) -> int:
        return len(self.names)

    def values(self) -> array:
        return self.weights

    def items(self) -> zip:
        return zip(self.names, self.weights)

    def get(self, name: str, default: float = 0.0) -> float:
        try:
            return self.weights[self.names.index(name)]
        except ValueError:
            return default

    def scaled(self, factor: float) -> Weights:
        return Weights(self.names, array("d", [v * factor for v in self.weights]))

    def plus(self, counts: dict[str, int]) -> Weights:
        """These weights with ``counts`` added (new names after the known ones, in the
        order ``counts`` gives them, as a dict would insert them)."""
        names, weights = self.names, list(self.weights)
        added = []
        for name, n in counts.items():
            try:
                i = names.index(name)
            except ValueError:
                added.append(name)
                weights.append(0.0 + n)
            else:
                weights[i] = weights[i] + n
        if added:
            names = _shared_names(names + tuple(added))
        return Weights(names, array("d", weights))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Weights):
            return self.names == other.names and self.weights == other.weights
        return isinstance(other, dict) and dict(self.items()) == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Weights({dict(self.items())!r})"

    def __reduce__(self) -> tuple:
        return (_weights, (self.names, self.weights.tolist()))


class Interned:
    """One object per distinct value, for values many holders repeat (name tuples,
    reason texts): the first one seen is kept and handed out for every equal one.
    Bounded: at ``bound`` distinct values the table starts again empty, so it cannot
    grow with the input and keeps sharing what comes next. (It used to stop adding when
    full: at 100k investors the name tuples filled it and later ones went unshared, and
    one tenant sending many distinct values could end the sharing for every tenant.)
    Objects handed out before stay what they are: equal values, fewer of them shared.

    >>> texts = Interned(2)
    >>> a, b = "".join(["to ", "review"]), "".join(["to ", "review"])
    >>> texts(a) is texts(b), texts("other") == "other", len(texts)
    (True, True, 2)
    >>> c, d = "".join(["to ", "plan"]), "".join(["to ", "plan"])
    >>> texts(c) is texts(d), len(texts)  # full: a new generation, sharing goes on
    (True, 1)
    """

    __slots__ = ("bound", "table")

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.table: dict = {}

    def __call__(self, value):  # noqa: ANN001, ANN204 - any hashable value, the same type back
        table = self.table
        shared = table.get(value)
        if shared is None:
            if len(table) >= self.bound:
                table.clear()
            shared = table[value] = value
        return shared

    def __len__(self) -> int:
        return len(self.table)


#: Name tuples of :class:`Weights` and an investor's stated targets (countries, asset
#: classes, exclusions, certifications), one per distinct sequence: most investors
#: state one of a few (a tuple each cost ~50 bytes per investor and list, issue 16).
_shared_names = Interned(65_536)
shared_names = _shared_names


def _weights(names: tuple[str, ...], weights: list[float]) -> Weights:
    return Weights(_shared_names(tuple(names)), array("d", weights))
