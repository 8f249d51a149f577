"""The world's reviewer teams: people who work each tenant's review queue.

How reviewers find cases
------------------------
A real reviewer reads ``leads.review``: the cases exist because the system opened
them. A world written before the system runs cannot see that topic, and a reviewer
that guesses (an investor the world knows to be borderline, a case id it predicts)
decides cases that were never opened, or too early, and leaves the real ones open.
So the generator closes the loop in rounds (:func:`replay.generator.generate`):
it writes the world, replays it through the flow, hands the cases the flow opened to
these teams, and writes the world again with their decisions — until the decisions
stop changing (a decision only moves its own lead, so each round settles the cases
the previous one found). The recording is then what the reviewers would have sent
to *this* flow; a flow that opens other cases finds some decisions for cases it
never opened (``unknown_case`` dead letters) and some of its cases undecided, as a
changed system would with the people who reviewed the old one.

A team has a capacity per day, a decision delay, and judgement that follows the
truth with noise: it reads the investor's true chance of converting through noise
and approves when that read clears a bar; a few cases it sends back for more
information. Everything is seeded by the world's seed and the case — its investor and
number within the tenant's team (:attr:`Case.legacy_name`) — so the same cases always
get the same decisions, whatever the form of the id the flow gives them.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

from esg_leads.operators import review_auth
from esg_leads.replay.world import DEV_REVIEWERS, dev_review_signing_key, entity_rng
from esg_leads.schemas.keys import case_number

DAY_S = 86_400.0
#: A reviewer approves when their read of the true conversion chance reaches this.
APPROVE_AT = 0.3
#: Share of cases sent back for more information.
NEEDS_INFO_SHARE = 0.04
#: Working hours of the teams, UTC.
WORK_START_H, WORK_END_H = 8.0, 18.0


@dataclass(frozen=True, slots=True)
class ReviewerTeam:
    tenant: str
    capacity_per_day: int
    median_delay_hours: float
    noise: float  #: standard deviation of a reviewer's read of the truth


@dataclass(frozen=True, slots=True)
class Case:
    case_id: str
    tenant: str
    investor_id: str
    seen_s: float  #: when the reviewers could first see it (published by the flow)

    @property
    def legacy_name(self) -> str:
        """``case:<investor_id>:<n>``: what seeds the verdict, orders the team's queue and
        names the decision's event id. The flow's case id named no tenant before stop 31
        and names it now (schemas/keys.py); this name keeps the form of before, so every
        world generated then (the golden world, the demo) gets exactly the verdicts it
        got. The tenant need not enter: each team works, seeds and dedups (event ids are
        per tenant) its own tenant's cases only, where investor and number identify a
        case. Two tenants sharing an investor id draw the same stream for their n-th
        case, read through different teams and truths: a correlation, not a merge."""
        return f"case:{self.investor_id}:{case_number(self.case_id)}"


def make_teams(tenants: list[str], seed: int) -> dict[str, ReviewerTeam]:
    teams = {}
    for i, tenant in enumerate(tenants):
        rng = entity_rng(seed, "review-team", i)
        teams[tenant] = ReviewerTeam(tenant, capacity_per_day=rng.randint(6, 14),
                                     median_delay_hours=rng.uniform(3, 10),
                                     noise=rng.uniform(0.08, 0.18))
    return teams


def _next_work_time(t: float) -> float:
    """``t`` if within working hours, else the next working-hours start."""
    day = math.floor(t / DAY_S) * DAY_S
    hour = (t - day) / 3600
    if hour < WORK_START_H:
        return day + WORK_START_H * 3600
    if hour >= WORK_END_H:
        return day + DAY_S + WORK_START_H * 3600
    return t


def decide(cases: list[Case], teams: dict[str, ReviewerTeam], truth_p: dict[str, float],
           seed: int, end_s: float) -> list[dict]:
    """The decisions the teams send, as ``{"ingest_s", "key", "payload"}`` (signed).

    Each team works its cases in the order they were published, at most its capacity
    per (UTC) day; a case still waiting when the world ends stays open.
    """
    by_tenant: dict[str, list[Case]] = defaultdict(list)
    for case in sorted(cases, key=lambda c: (c.seen_s, c.legacy_name)):
        by_tenant[case.tenant].append(case)
    decisions = []
    for tenant in sorted(by_tenant):
        team = teams.get(tenant)
        if team is None:
            continue
        key = dev_review_signing_key(seed, tenant)
        used: dict[int, int] = defaultdict(int)  # decisions per day
        for case in by_tenant[tenant]:
            rng = random.Random(f"{seed}:review:{case.legacy_name}")
            delay = rng.lognormvariate(math.log(team.median_delay_hours), 0.6) * 3600
            when = _next_work_time(case.seen_s + delay)
            while used[int(when // DAY_S)] >= team.capacity_per_day:
                when = _next_work_time(math.floor(when / DAY_S) * DAY_S + DAY_S)
            if when >= end_s:
                continue
            used[int(when // DAY_S)] += 1
            read = truth_p.get(case.investor_id, 0.0) + rng.gauss(0, team.noise)
            if rng.random() < NEEDS_INFO_SHARE:
                verdict = "needs_info"
            else:
                verdict = "approve" if read >= APPROVE_AT else "reject"
            reviewer = DEV_REVIEWERS[int(rng.random() * len(DEV_REVIEWERS))]
            event_time = datetime.fromtimestamp(round(when, 3), tz=timezone.utc)
            fields = dict(tenant=tenant, event_id=f"rd:{case.legacy_name}", event_time=event_time,
                          investor_id=case.investor_id, case_id=case.case_id, verdict=verdict,
                          reviewer=reviewer, note=None)
            payload = {**fields, "source": "review-desk",
                       "signature": review_auth.sign(key, **fields)}
            del payload["note"]
            decisions.append({"ingest_s": when + rng.uniform(1, 30), "key": case.investor_id,
                              "payload": payload})
    decisions.sort(key=lambda d: (d["ingest_s"], d["payload"]["event_id"]))
    return decisions
