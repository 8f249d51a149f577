"""The lead state machine: legal moves only, a bounded history, and paths between states.

The oracle is ``DIAGRAM`` below, written by hand from the documented lifecycle (the
module docstring, the comment on ``TRANSITIONS`` and the moves ``operators.lifecycle``
makes), never read from ``TRANSITIONS`` itself: a test that used the table as its own
oracle would accept any edit of it.
"""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from esg_leads.operators import lead_state
from esg_leads.operators.lead_state import (
    HISTORY,
    TRANSITIONS,
    IllegalTransition,
    LeadStateMachine,
    shared_reason,
)
from esg_leads.schemas.outputs import LeadState

STATES = [s.value for s in LeadState]
HAPPY_PATH = ["enriched", "scored", "planned", "in_review", "handed_off"]

#: Every allowed move, each with the documented reason it exists. Any pair of states
#: not listed here (self-moves included: re-scoring is not a transition) is forbidden.
ALLOWED: dict[tuple[str, str], str] = {
    ("received", "enriched"): "ESG facts of engaged properties attached",
    ("received", "scored"): "first score of a lead with no engaged property",
    ("received", "suppressed"): "no lawful channel before the first score",
    ("received", "erased"): "erasure request (GDPR art. 17) from any live state",
    ("enriched", "scored"): "first score",
    ("enriched", "suppressed"): "no lawful channel left",
    ("enriched", "erased"): "erasure request",
    ("scored", "planned"): "a plan applies: qualified or in the review band",
    ("scored", "disqualified"): "CRM outcome: disqualified",
    ("scored", "suppressed"): "no lawful channel left",
    ("scored", "erased"): "erasure request",
    ("planned", "scored"): "the plan no longer applies",
    ("planned", "in_review"): "a person must check it",
    ("planned", "handed_off"): "clearly qualified: straight to the CRM",
    ("planned", "disqualified"): "CRM outcome: disqualified",
    ("planned", "suppressed"): "no lawful channel left",
    ("planned", "erased"): "erasure request",
    ("in_review", "planned"): "reviewer asked for more information",
    ("in_review", "handed_off"): "reviewer approved",
    ("in_review", "disqualified"): "reviewer rejected",
    ("in_review", "suppressed"): "no lawful channel left",
    ("in_review", "erased"): "erasure request",
    ("handed_off", "disqualified"): "CRM outcome after the handoff: disqualified",
    ("handed_off", "suppressed"): "no lawful channel left",
    ("handed_off", "erased"): "erasure request",
    ("disqualified", "scored"): "a disqualified lead's plan no longer applies: scored again",
    ("disqualified", "suppressed"): "no lawful channel left",
    ("disqualified", "erased"): "erasure request",
    ("suppressed", "scored"): "a lawful channel reappeared",
    ("suppressed", "erased"): "erasure request",
    ("scored", "needs_info"): "profile too thin to check compliance: ask for it",
    ("planned", "needs_info"): "profile too thin to check compliance: ask for it",
    ("needs_info", "scored"): "the profile arrived: scored again",
    ("needs_info", "disqualified"): "CRM outcome: disqualified",
    ("needs_info", "suppressed"): "no lawful channel left",
    ("needs_info", "erased"): "erasure request",
}
DIAGRAM: dict[str, set[str]] = {s: {b for a, b in ALLOWED if a == s} for s in STATES}
PAIRS = [(a, b) for a in STATES for b in STATES]


def reachable(start: str) -> dict[str, int]:
    """Shortest hop count from ``start`` to every state reachable from it (itself: 0)."""
    distance = {start: 0}
    frontier = [start]
    while frontier:
        nxt = []
        for state in frontier:
            for target in DIAGRAM[state]:
                if target not in distance:
                    distance[target] = distance[state] + 1
                    nxt.append(target)
        frontier = nxt
    return distance


def assert_legal_path(start: str, path: list[str], target: str) -> None:
    assert path and path[-1] == target
    for here, there in zip([start, *path], path):
        assert there in DIAGRAM[here], f"{here} -> {there} in {path}"


# ------------------------------------------------------------------- the transitions


def test_the_transitions_name_exactly_the_lead_states():
    assert set(TRANSITIONS) == set(STATES)
    for targets in TRANSITIONS.values():
        assert targets <= set(STATES)


def test_the_table_allows_exactly_the_documented_moves():
    assert {s: set(t) for s, t in TRANSITIONS.items()} == DIAGRAM


def _pair_id(pair: tuple[str, str]) -> str:
    return f"{pair[0]}->{pair[1]}"


@pytest.mark.parametrize("start, target", [p for p in PAIRS if p in ALLOWED], ids=_pair_id)
def test_a_documented_move_is_allowed_and_recorded(start, target):
    lead = LeadStateMachine(start)
    assert lead.can(target)
    reason = ALLOWED[(start, target)]
    assert lead.move(target, 5.0, reason) == (start, target)
    assert lead.state == target and lead.history == [(5.0, start, target, reason)]


@pytest.mark.parametrize("start, target", [p for p in PAIRS if p not in ALLOWED], ids=_pair_id)
def test_an_undocumented_move_is_forbidden_and_changes_nothing(start, target):
    lead = LeadStateMachine(start)
    assert not lead.can(target)
    with pytest.raises(IllegalTransition, match=f"^{start} -> {target} is not a lead transition$"):
        lead.move(target, 5.0, "not in the diagram")
    assert lead.state == start and lead.history == []


# The moves no test used to notice when they were deleted from the table (issue 21).

def test_scored_lead_can_be_disqualified():
    lead = LeadStateMachine("scored")
    assert lead.move("disqualified", 1.0, "CRM disqualified the lead") == ("scored", "disqualified")


def test_handed_off_lead_can_still_be_disqualified_by_the_crm():
    lead = LeadStateMachine("handed_off")
    assert lead.move("disqualified", 1.0, "CRM disqualified the lead") == ("handed_off", "disqualified")


def test_disqualified_lead_can_be_scored_again():
    lead = LeadStateMachine("disqualified")
    assert lead.move("scored", 1.0, "plan no longer applies") == ("disqualified", "scored")


def test_handed_off_lead_cannot_go_back_to_review_or_planning():
    for target in ("in_review", "planned", "scored"):
        assert not LeadStateMachine("handed_off").can(target)


def test_suppressed_lead_returns_only_through_scoring():
    lead = LeadStateMachine("suppressed")
    assert [t for t in STATES if lead.can(t)] == ["scored", "erased"]


@pytest.mark.parametrize("start, target, path", [
    ("received", "planned", ["scored", "planned"]),
    ("received", "in_review", ["scored", "planned", "in_review"]),
    ("enriched", "handed_off", ["scored", "planned", "handed_off"]),
    ("handed_off", "scored", ["disqualified", "scored"]),  # ties broken alphabetically
    ("handed_off", "planned", ["disqualified", "scored", "planned"]),
    ("in_review", "scored", ["disqualified", "scored"]),
    ("disqualified", "in_review", ["scored", "planned", "in_review"]),
    ("suppressed", "disqualified", ["scored", "disqualified"]),
    ("scored", "scored", []),
])
def test_path_to_follows_the_documented_diagram(start, target, path):
    lead = LeadStateMachine(start)
    assert lead.path_to(target) == path
    assert lead.state == start


def test_a_new_lead_is_received_with_no_history():
    lead = LeadStateMachine()
    assert lead.state == "received" and lead.history == []


def test_the_happy_path_is_legal_and_recorded():
    lead = LeadStateMachine()
    previous = "received"
    for when, target in enumerate(HAPPY_PATH, start=1):
        assert lead.move(target, float(when), f"to {target}") == (previous, target)
        previous = target
    assert lead.state == "handed_off"
    assert lead.history == [(float(i), a, b, f"to {b}") for i, (a, b) in
                            enumerate(zip(["received", *HAPPY_PATH], HAPPY_PATH), start=1)]


@pytest.mark.parametrize("start, target", [
    ("received", "handed_off"), ("received", "planned"), ("scored", "handed_off"),
    ("scored", "in_review"), ("enriched", "received"), ("handed_off", "planned"),
    ("suppressed", "planned"), ("disqualified", "handed_off"), ("scored", "scored"),
])
def test_an_illegal_move_raises_and_changes_nothing(start, target):
    lead = LeadStateMachine(start)
    with pytest.raises(IllegalTransition, match=f"{start} -> {target}"):
        lead.move(target, 1.0, "not allowed")
    assert lead.state == start and lead.history == []


def test_a_move_to_an_unknown_state_raises_and_changes_nothing():
    lead = LeadStateMachine("scored")
    with pytest.raises(IllegalTransition, match="^unknown lead state 'qualified'$"):
        lead.move("qualified", 1.0, "no such state")
    assert lead.state == "scored" and lead.history == []


def test_a_lead_cannot_start_in_an_unknown_state():
    with pytest.raises(IllegalTransition, match="^unknown lead state 'qualified'$"):
        LeadStateMachine("qualified")


@pytest.mark.parametrize("target", STATES)
def test_erased_is_terminal(target):
    lead = LeadStateMachine("erased")
    assert not lead.can(target)
    with pytest.raises(IllegalTransition):
        lead.move(target, 1.0, "after erasure")
    assert lead.state == "erased"


def test_can_agrees_with_move():
    for start in STATES:
        for target in STATES:
            lead = LeadStateMachine(start)
            if lead.can(target):
                lead.move(target, 0.0, "")
                assert lead.state == target
            else:
                with pytest.raises(IllegalTransition):
                    lead.move(target, 0.0, "")


def test_history_keeps_the_latest_32_moves():
    assert HISTORY == 32
    lead = LeadStateMachine("scored")
    for i in range(HISTORY + 9):
        lead.move("planned" if lead.state == "scored" else "scored", float(i), f"move {i}")
    assert len(lead.history) == HISTORY
    assert lead.history[0][0] == 9.0 and lead.history[-1][0] == float(HISTORY + 8)


def test_a_lead_survives_a_snapshot():
    lead = LeadStateMachine()
    lead.move("scored", 1.0, "first score")
    restored = pickle.loads(pickle.dumps(lead))
    assert (restored.state, restored.history) == (lead.state, lead.history)
    restored.move("planned", 2.0, "plan")
    assert lead.state == "scored"


def test_a_snapshot_of_the_version_that_kept_4_tuples_restores_alike():
    """a4481ae pickled ``(None, {"state", "history"})`` with up to HISTORY 4-tuples."""
    moves = [(float(i), "scored" if i % 2 else "planned", "planned" if i % 2 else "scored",
              f"move {i}") for i in range(40)]
    old = LeadStateMachine.__new__(LeadStateMachine)
    old.__setstate__((None, {"state": "scored", "history": moves}))
    assert old.state == "scored" and old.history == moves[-HISTORY:] and old.last == moves[-1]
    assert pickle.loads(pickle.dumps(old)).history == moves[-HISTORY:]
    old.move("planned", 99.0, "again")
    assert old.history == [*moves[-HISTORY + 1:], (99.0, "scored", "planned", "again")]


def test_routing_moves_are_shared_between_leads_and_no_other_reason_is():
    """Issue 16: a routing move (a shared template text) is one object for every lead
    that made it; a reason naming a case is never put in a process-wide table, which
    would outlive the investor's erasure."""
    reason = shared_reason("".join(["worth outreach: ", "probability 0.26"]))
    a, b = LeadStateMachine("scored"), LeadStateMachine("scored")
    a.move("planned", 1.0, reason)
    b.move("planned", 2.0, shared_reason("worth outreach: probability 0.26"))
    assert a._moves[0] is b._moves[0] and a.last == (1.0, "scored", "planned", reason)
    private = "".join(["reviewer r-1 decided approve on ", "case:acme/inv-1:1"])
    a.move("handed_off", 3.0, private)
    assert a.last[3] == private
    assert all(private not in move for move in lead_state._shared_moves.table)
    assert private not in shared_reason.table
    restored = pickle.loads(pickle.dumps(a))  # sharing is restored, privacy too
    assert restored._moves[0] is b._moves[0] and restored.history == a.history
    assert all(private not in move for move in lead_state._shared_moves.table)


# ----------------------------------------------------------------------- reachability


@pytest.mark.parametrize("start", [s for s in STATES if s != "erased"])
def test_every_live_state_can_reach_erased(start):
    """Erasure must always be possible (GDPR art. 17)."""
    lead = LeadStateMachine(start)
    assert lead.path_to("erased") == ["erased"]  # directly, from anywhere


@pytest.mark.parametrize("start", [s for s in STATES if s != "erased"])
def test_every_live_state_can_reach_suppressed(start):
    lead = LeadStateMachine(start)
    expected = [] if start == "suppressed" else ["suppressed"]
    assert lead.path_to("suppressed") == expected


def test_path_to_is_the_shortest_legal_path():
    assert LeadStateMachine("received").path_to("handed_off") == ["scored", "planned", "handed_off"]
    assert LeadStateMachine("suppressed").path_to("in_review") == ["scored", "planned", "in_review"]
    assert LeadStateMachine("planned").path_to("planned") == []


@pytest.mark.parametrize("start, target", [
    ("erased", "received"), ("erased", "scored"), ("scored", "received"), ("planned", "enriched"),
    ("handed_off", "received"), ("scored", "qualified"),
])
def test_path_to_raises_when_no_path_exists(start, target):
    lead = LeadStateMachine(start)
    with pytest.raises(IllegalTransition, match=f"^no path from {start} to {target}$"):
        lead.path_to(target)
    assert lead.state == start


@given(start=st.sampled_from(STATES), target=st.sampled_from(STATES))
def test_path_to_agrees_with_an_independent_search(start, target):
    distances = reachable(start)
    lead = LeadStateMachine(start)
    if target not in distances:
        with pytest.raises(IllegalTransition):
            lead.path_to(target)
        return
    path = lead.path_to(target)
    assert len(path) == distances[target]
    if path:
        assert_legal_path(start, path, target)
    for step in path:  # and the machine itself accepts every hop
        lead.move(step, 0.0, "follow the path")
    assert lead.state == target


# ---------------------------------------------------------------- stateful property


class LeadMachine(RuleBasedStateMachine):
    """Random moves, legal and illegal, against a model of the state and the history."""

    @initialize(start=st.sampled_from([s for s in STATES if s != "erased"]))
    def start(self, start):
        self.lead = LeadStateMachine(start)
        self.state = start
        self.moves: list[tuple[float, str, str, str]] = []
        self.clock = 0.0

    def _move(self, target: str) -> None:
        self.clock += 1.0
        reason = f"step {self.clock:.0f}"
        before = self.lead.state
        if target in DIAGRAM[self.state]:
            assert self.lead.move(target, self.clock, reason) == (self.state, target)
            self.moves.append((self.clock, self.state, target, reason))
            self.state = target
        else:
            with pytest.raises(IllegalTransition):
                self.lead.move(target, self.clock, reason)
            assert self.lead.state == before

    @precondition(lambda self: self.state != "erased")
    @rule(data=st.data(), burst=st.integers(1, 8))
    def legal_moves(self, data, burst):
        # Bursts clear of erasure, so that runs live long enough to fill the history.
        for _ in range(burst):
            allowed = sorted(DIAGRAM[self.state] - {"erased"})
            self._move(data.draw(st.sampled_from(allowed)))

    @rule(state=st.sampled_from([*STATES, "qualified"]))
    def any_move(self, state):
        self._move(state)

    @rule(goal=st.sampled_from(STATES))
    def plan_a_path(self, goal):
        distances = reachable(self.state)
        if goal in distances:
            path = self.lead.path_to(goal)
            assert len(path) == distances[goal]
            if path:
                assert_legal_path(self.state, path, goal)
        else:
            with pytest.raises(IllegalTransition):
                self.lead.path_to(goal)
        assert self.lead.state == self.state  # planning a path moves nothing

    @invariant()
    def state_matches_the_model(self):
        assert self.lead.state == self.state

    @invariant()
    def history_is_exactly_the_latest_successful_moves(self):
        assert len(self.lead.history) <= HISTORY
        assert self.lead.history == self.moves[-HISTORY:]

    @invariant()
    def history_is_a_chain_of_legal_moves_ending_here(self):
        history = self.lead.history
        for _, here, there, _ in history:
            assert there in DIAGRAM[here]
        for earlier, later in zip(history, history[1:]):
            assert earlier[2] == later[1]
        if history:
            assert history[-1][2] == self.lead.state

    @invariant()
    def erasure_and_suppression_stay_within_reach(self):
        if self.state != "erased":
            assert self.lead.path_to("erased") == ["erased"]
            assert self.lead.path_to("suppressed") in ([], ["suppressed"])


TestLeadMachine = LeadMachine.TestCase
TestLeadMachine.settings = settings(max_examples=100, stateful_step_count=120, deadline=None)


# ------------------------------------------------------------------------ needs_info


@pytest.mark.parametrize("start, target", [
    ("scored", "needs_info"), ("planned", "needs_info"), ("needs_info", "scored"),
    ("needs_info", "disqualified"), ("needs_info", "suppressed"), ("needs_info", "erased"),
])
def test_needs_info_moves(start, target):
    assert LeadStateMachine(start).move(target, 1.0, "needs info") == (start, target)


@pytest.mark.parametrize("start, target", [
    ("needs_info", "in_review"), ("needs_info", "handed_off"), ("needs_info", "planned"),
    ("received", "needs_info"), ("in_review", "needs_info"), ("handed_off", "needs_info"),
])
def test_needs_info_never_skips_scoring(start, target):
    """A lead that waited for its profile is scored again before anything else."""
    with pytest.raises(IllegalTransition):
        LeadStateMachine(start).move(target, 1.0, "skip")


def test_needs_info_paths_go_through_scored():
    assert LeadStateMachine("received").path_to("needs_info") == ["scored", "needs_info"]
    assert LeadStateMachine("needs_info").path_to("handed_off") == ["scored", "planned",
                                                                     "handed_off"]


def test_routing_reasons_are_shared_up_to_a_bound(monkeypatch):
    """Issue 16: routing reasons are formatted per move (``f"... {p:.2f}"``); leads that
    moved for the same reason share one string, and at the bound the table starts anew:
    a reason is never lost, and sharing goes on."""
    from esg_leads.operators import lead_state
    from esg_leads.operators.compact import Interned

    shared = Interned(2)
    monkeypatch.setattr(lead_state, "shared_reason", shared)
    leads = [LeadStateMachine() for _ in range(3)]
    for lead in leads:
        lead.move("scored", 1.0, shared("".join(["worth outreach: ", "probability 0.26"])))
    assert leads[0].history[0][3] is leads[1].history[0][3] is leads[2].history[0][3]
    lead = LeadStateMachine()
    lead.move("scored", 1.0, shared("first score"))
    lead.move("disqualified", 2.0, shared("".join(["CRM ", "disqualified"])))  # past the bound
    assert [h[3] for h in lead.history] == ["first score", "CRM disqualified"]
    assert len(shared) == 1  # full at two: a new generation, which shares on
    assert shared("".join(["CRM ", "disqualified"])) is lead.history[1][3]
    restored = pickle.loads(pickle.dumps(leads[0]))
    assert restored.history == leads[0].history and restored.state == "scored"
