"""The lead state machine: explicit, validated transitions with a history.

    received -> enriched -> scored -> planned -> in_review -> handed_off
                                         \\-> disqualified, suppressed, erased (see TRANSITIONS)

    scored, planned -> needs_info -> scored     (the profile arrived: scoring again)
                                  \\-> disqualified, suppressed, erased

``needs_info`` is where a lead waits whose profile is missing or too thin to check
compliance (no jurisdiction, no subscriber type): it gets an info-request plan, not a
review case, because a person could not decide more than the rules can without the
facts. It never goes straight to review or to the CRM: the arriving profile sends it
back to ``scored``, and the next score routes it like any other lead.

An illegal transition raises :class:`IllegalTransition`; nothing is ever silently
overwritten. ``erased`` is terminal.

>>> lead = LeadStateMachine()
>>> lead.move("scored", 1.0, "first score")
('received', 'scored')
>>> lead.move("handed_off", 2.0, "jump")
Traceback (most recent call last):
...
esg_leads.operators.lead_state.IllegalTransition: scored -> handed_off is not a lead transition
"""

from __future__ import annotations

from array import array

from esg_leads.operators.compact import Interned
from esg_leads.schemas.outputs import LeadState

R, E, S, P, NI, IR, H, D, SU, ER = (s.value for s in (
    LeadState.RECEIVED, LeadState.ENRICHED, LeadState.SCORED, LeadState.PLANNED,
    LeadState.NEEDS_INFO, LeadState.IN_REVIEW, LeadState.HANDED_OFF, LeadState.DISQUALIFIED,
    LeadState.SUPPRESSED, LeadState.ERASED))

#: Every legal transition. Re-scoring keeps a lead where it is (no transition);
#: a scored, planned or disqualified lead goes back to ``scored`` when its plan no
#: longer applies; ``suppressed`` leads come back when a lawful channel reappears.
TRANSITIONS: dict[str, frozenset[str]] = {
    R: frozenset({E, S, SU, ER}),
    E: frozenset({S, SU, ER}),
    S: frozenset({P, NI, D, SU, ER}),
    P: frozenset({S, NI, IR, H, D, SU, ER}),
    NI: frozenset({S, D, SU, ER}),
    IR: frozenset({P, H, D, SU, ER}),
    H: frozenset({D, SU, ER}),
    D: frozenset({S, SU, ER}),
    SU: frozenset({S, ER}),
    ER: frozenset(),
}
HISTORY = 32


class IllegalTransition(ValueError):
    """A transition the lead state machine does not allow."""


#: Reasons of routing moves, one string per distinct text: leads repeat them ("worth
#: outreach: probability 0.26" is built anew for each), and each lead keeps up to
#: HISTORY moves (issue 16). Only for texts made from templates and numbers
#: (``routing.why``): a reason that names an investor or a case (a review decision's)
#: would outlive that investor's erasure in this process-wide table. Bounded: past
#: 4,096 distinct texts a reason is kept unshared.
shared_reason = Interned(4096)
#: ``(from, to, reason)`` of moves whose reason is a shared text, one object each.
_shared_moves = Interned(16_384)


class LeadStateMachine:
    """One lead's state and its recent transitions ``(time, from, to, reason)``.

    The transitions are kept as an array of times and a tuple of ``(from, to, reason)``
    triples; a routing move's triple (its reason a shared template text,
    :data:`shared_reason`) is one object for every lead that made it. A move was a
    4-tuple and a float, ~100 bytes; now it is 16 bytes and, when the reason names a
    case, a triple (issue 16). :attr:`history` gives the 4-tuples back.
    """

    __slots__ = ("state", "_when", "_moves")

    def __init__(self, state: str = R) -> None:
        if state not in TRANSITIONS:
            raise IllegalTransition(f"unknown lead state {state!r}")
        self.state = state
        self._when = array("d")
        self._moves: tuple[tuple[str, str, str], ...] = ()

    @property
    def history(self) -> list[tuple[float, str, str, str]]:
        """The latest moves (at most :data:`HISTORY`), oldest first."""
        return [(when, *move) for when, move in zip(self._when, self._moves, strict=True)]

    @property
    def last(self) -> tuple[float, str, str, str] | None:
        """The latest move, if any."""
        return (self._when[-1], *self._moves[-1]) if self._moves else None

    def can(self, target: str) -> bool:
        return target in TRANSITIONS[self.state]

    def move(self, target: str, when: float, reason: str) -> tuple[str, str]:
        """Move to ``target``; returns ``(from, to)``. Raises on an illegal move."""
        if target not in TRANSITIONS:
            raise IllegalTransition(f"unknown lead state {target!r}")
        if target not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.state} -> {target} is not a lead transition")
        transition = (self.state, target)
        triple = (self.state, target, reason)
        if shared_reason.table.get(reason) is reason:  # a template's text: share the move
            triple = _shared_moves(triple)
        # New exact-size containers: moves are rare, and appends over-allocate.
        self._when = (self._when + array("d", (when,)))[-HISTORY:]
        self._moves = (*self._moves, triple)[-HISTORY:]
        self.state = target
        return transition

    def __getstate__(self) -> tuple:
        return (None, {"state": self.state, "history": self.history})

    def __setstate__(self, state: tuple) -> None:
        # Snapshots of every version hold ``history`` as 4-tuples (at most HISTORY).
        slots = state[1]
        self.state = slots["state"]
        history = slots["history"][-HISTORY:]
        self._when = array("d", (when for when, *_ in history))
        self._moves = tuple(_restored(*move) for _, *move in history)

    def path_to(self, target: str) -> list[str]:
        """The shortest legal path from the current state to ``target`` (exclusive of now).

        >>> LeadStateMachine("received").path_to("planned")
        ['scored', 'planned']
        """
        if target == self.state:
            return []
        frontier = [[self.state]]
        seen = {self.state}
        while frontier:
            path = frontier.pop(0)
            for nxt in sorted(TRANSITIONS[path[-1]]):
                if nxt in seen:
                    continue
                if nxt == target:
                    return path[1:] + [nxt]
                seen.add(nxt)
                frontier.append(path + [nxt])
        raise IllegalTransition(f"no path from {self.state} to {target}")


def _restored(source: str, target: str, reason: str) -> tuple[str, str, str]:
    """A restored move, shared when its reason is a template text this process shares
    (a reason that is not one, say a review decision's, is never added to the table).
    Right after a restart the table is empty, so restored moves stay unshared (memory
    only) until HISTORY newer moves replace them: a snapshot cannot say which of its
    texts are templates without a format older versions could not read."""
    shared = shared_reason.table.get(reason)
    if shared is None:
        return (source, target, reason)
    return _shared_moves((source, target, shared))
