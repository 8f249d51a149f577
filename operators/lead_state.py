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


class LeadStateMachine:
    """One lead's state and its recent transitions ``(time, from, to, reason)``."""

    __slots__ = ("state", "history")

    def __init__(self, state: str = R) -> None:
        if state not in TRANSITIONS:
            raise IllegalTransition(f"unknown lead state {state!r}")
        self.state = state
        self.history: list[tuple[float, str, str, str]] = []

    def can(self, target: str) -> bool:
        return target in TRANSITIONS[self.state]

    def move(self, target: str, when: float, reason: str) -> tuple[str, str]:
        """Move to ``target``; returns ``(from, to)``. Raises on an illegal move."""
        if target not in TRANSITIONS:
            raise IllegalTransition(f"unknown lead state {target!r}")
        if target not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.state} -> {target} is not a lead transition")
        transition = (self.state, target)
        self.history.append((when, self.state, target, reason))
        if len(self.history) > HISTORY:
            del self.history[0]
        self.state = target
        return transition

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
