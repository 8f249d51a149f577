"""The routing rule (operators/routing.py) as a table: each row is one reason a lead goes
where it goes, in the order the policy checks them, at and around the thresholds."""

from __future__ import annotations

import pytest

from esg_leads.operators.routing import target_state, why
from esg_leads.schemas.settings import Settings

S = Settings(lifecycle={"qualification_threshold": 0.5}, scoring={"warm": 0.25})
R = [{"code": "ticket_above_limit"}]
M = ["jurisdiction"]

ROWS = [
    # state, p, blocked, reasons, missing, uncertain -> target
    ("scored", 0.99, True, R, M, True, "suppressed"),  # blocked outranks everything
    ("handed_off", 0.99, True, [], [], False, "suppressed"),
    ("handed_off", 0.01, False, R, M, True, "handed_off"),  # the CRM owns it
    ("in_review", 0.99, False, [], [], False, "in_review"),  # a person owns it
    ("disqualified", 0.49, False, R, M, False, "disqualified"),  # below the bar: stays out
    ("disqualified", 0.50, False, [], [], False, "handed_off"),  # a strong signal revives
    ("scored", 0.25, False, R, M, False, "needs_info"),  # missing facts before review
    ("scored", 0.24, False, R, M, False, "scored"),  # not worth asking yet
    ("needs_info", 0.01, False, [], M, False, "needs_info"),  # once asked, it waits
    ("planned", 0.99, False, R, [], True, "in_review"),  # reasons before uncertainty
    ("scored", 0.99, False, [], [], True, "planned"),  # uncertain: never a handoff
    ("scored", 0.50, False, [], [], False, "handed_off"),  # at the threshold
    ("scored", 0.4999, False, [], [], False, "planned"),
    ("planned", 0.25, False, [], [], False, "planned"),  # at warm
    ("planned", 0.2499, False, [], [], False, "scored"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r[0]}-{r[1]}-{r[-1]}")
def test_the_lead_goes_where_the_policy_says(row):
    state, p, blocked, reasons, missing, uncertain, target = row
    assert target_state(state, p, blocked=blocked, reasons=reasons, missing=missing,
                        uncertain=uncertain, settings=S) == target


def test_each_reason_names_what_decided():
    assert why("needs_info", 0.3, [], ["jurisdiction", "subscriber_type"], S) == (
        "profile too thin to check compliance (missing jurisdiction, subscriber_type): "
        "information requested")
    assert why("suppressed", 0.9, [], [], S) == \
        "no lawful contact channel (compliance verdict blocked)"
    assert why("in_review", 0.9, R + [{"code": "stale_esg_data"}], [], S) == \
        "review needed: ticket_above_limit, stale_esg_data"
    assert why("handed_off", 0.567, [], [], S) == \
        "qualified: probability 0.57 >= 0.50, nothing to review"
    assert why("planned", 0.301, [], [], S) == "worth outreach: probability 0.30"
    assert why("scored", 0.1, [], [], S) == "below outreach threshold: probability 0.10"
