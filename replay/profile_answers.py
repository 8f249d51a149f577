"""Investors who start without a profile, and fill it in when the flow asks.

One investor in ten has no CRM record (``has_profile`` in :mod:`replay.world`). The flow
cannot check compliance for such a lead, so when it is worth contacting it moves the
lead to ``needs_info`` and publishes, on ``leads.scored``, an outreach plan with one
step: an e-mail asking for the missing facts (trigger ``lead needs info``, sent at the
step's ``at``). That e-mail is the only thing the world answers: like the reviewers
(:mod:`replay.reviewers`), an investor cannot guess that they will be asked, so the
generator finds the requests in the replayed output of a round
(:func:`info_requests`) and writes the world again with the answers.

Who answers, and when (:func:`answer`): an investor asked answers with a probability
that follows their latent purchase intent (:func:`answer_probability`: 0.2 + 0.7 ×
intent; a keen buyer fills in the form, a browser does not, some never do), after a
delay drawn from a lognormal of median 20 hours (hours to a few days). Only the first
request counts: a later one finds the investor's mind made up. The answer is the
investor's profile as it stands then, on ``investor.profiles``, with that event time,
ingested about a minute later (:meth:`replay.simulate.Simulation._answered_profile`).
After it the investor's CRM record exists but sends no later updates (those draw from
the world's shared random stream; an answer must not move anything else).

Everything is drawn from a stream seeded by the world's seed and the investor id, so
the same request gets the same answer, whichever round finds it.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: The trigger of the one step of an info-request plan (operators.outreach.info_request_steps).
INFO_REQUEST_TRIGGER = "lead needs info"
#: Chance of answering at intent 0 and its rise up to intent 1.
ANSWER_BASE, ANSWER_PER_INTENT = 0.2, 0.7
#: Median delay between the request and the answer, hours, and its log-spread.
MEDIAN_DELAY_HOURS, DELAY_SIGMA = 20.0, 0.9
#: States in which the flow has decided a lead (no human or information pending).
DECIDED = ("handed_off", "disqualified")


@dataclass(frozen=True, slots=True)
class InfoRequest:
    tenant: str
    investor_id: str
    asked_s: float  #: when the e-mail went out: its scheduled instant, once published


@dataclass(frozen=True, slots=True)
class ProfileAnswer:
    tenant: str
    investor_id: str
    asked_s: float
    answer_s: float  #: when the investor filled in the profile (its event time)


def answer_probability(intent: float) -> float:
    """The chance that an investor of this latent intent answers an info request.

    >>> round(answer_probability(0.0), 6), round(answer_probability(1.0), 6)
    (0.2, 0.9)
    """
    return ANSWER_BASE + ANSWER_PER_INTENT * min(1.0, max(0.0, intent))


def answer(requests: Iterable[InfoRequest], profileless: Mapping[str, float], seed: int,
           end_s: float) -> list[ProfileAnswer]:
    """The answers of the investors without a profile (``profileless``: id -> intent).

    A request to an investor who has a profile (it reached the flow after the request)
    gets none: their record is on its way anyway. Answers after the world's end are
    not sent. Sorted by answer time, then investor.

    >>> reqs = [InfoRequest("t", f"inv-{i}", 1000.0) for i in range(200)]
    >>> got = answer(reqs, {f"inv-{i}": 0.9 for i in range(200)}, seed=1, end_s=1e9)
    >>> 150 < len(got) < 200, all(a.answer_s > a.asked_s for a in got)
    (True, True)
    >>> got == answer(reversed(reqs), {f"inv-{i}": 0.9 for i in range(200)}, 1, 1e9)
    True
    >>> answer(reqs, {}, seed=1, end_s=1e9)
    []
    """
    answers = []
    for request in requests:
        intent = profileless.get(request.investor_id)
        if intent is None:
            continue
        rng = random.Random(f"{seed}:profile-answer:{request.investor_id}")
        answers_at_all = rng.random() < answer_probability(intent)
        delay = rng.lognormvariate(math.log(MEDIAN_DELAY_HOURS), DELAY_SIGMA) * 3600
        when = round(request.asked_s + max(delay, 60.0), 3)
        if answers_at_all and when < end_s:
            answers.append(ProfileAnswer(request.tenant, request.investor_id, request.asked_s,
                                         when))
    answers.sort(key=lambda a: (a.answer_s, a.investor_id))
    return answers


def info_requests(leads: Path, published: Callable[[str, float], float]) -> list[InfoRequest]:
    """The info requests the flow published in ``leads`` (a run's ``leads.parquet``).

    A request is a lead record in ``needs_info`` whose plan has an info-request step;
    it goes out at the step's ``at``, or when the flow published the record if that is
    later (``published(tenant, event_s)``: the flow scores on its tenant's clock, after
    the event time). A lead whose investor objected to e-mail gets a plan without a
    step: nobody is asked, and the lead waits for the CRM. The first request per
    investor, sorted by time then investor.
    """
    table = pq.read_table(leads, columns=["tenant", "investor_id", "event_time", "state",
                                          "record.outreach_plan.steps"],
                          filters=[("state", "=", "needs_info")])
    first: dict[str, InfoRequest] = {}
    for tenant, investor, event_time, steps in zip(
            *(table.column(n).to_pylist() for n in ("tenant", "investor_id", "event_time",
                                                    "steps")), strict=True):
        sent = [s["at"].timestamp() if s.get("at") is not None else event_time.timestamp()
                for s in steps or () if s.get("trigger") == INFO_REQUEST_TRIGGER]
        if not sent:
            continue
        asked = max(min(sent), published(tenant, event_time.timestamp()))
        known = first.get(investor)
        if known is None or asked < known.asked_s:
            first[investor] = InfoRequest(tenant, investor, asked)
    return sorted(first.values(), key=lambda r: (r.asked_s, r.investor_id))


@dataclass(frozen=True, slots=True)
class AnswerFigures:
    """What became of the requests, in one replay of the final world."""

    asked: int  #: investors the flow sent an info request
    answered: int  #: of them, investors who filled in the profile
    rescored: int  #: of those, leads scored again with the profile (out of needs_info)
    decided: int  #: of those, leads the flow then decided (handed off or disqualified)
    final_states: dict[str, int]  #: the answered leads' last states

    def line(self, settled: bool | None, rounds: int) -> str:
        """The figures in one line, as ``generate`` and ``demo`` print them.

        >>> AnswerFigures(40, 12, 11, 4, {}).line(True, 2).split(", ")[:2]
        ['info requests: 40 investors asked for their profile', '12 answered']
        >>> AnswerFigures(40, 12, 11, 4, {}).line(False, 4).endswith("not settled after 4 rounds")
        True
        """
        unsettled = "" if settled else f"; not settled after {rounds} rounds"
        return (f"info requests: {self.asked:,} investors asked for their profile, "
                f"{self.answered:,} answered, {self.rescored:,} scored again with it, "
                f"{self.decided:,} then decided (handed off or disqualified){unsettled}")

    def as_dict(self) -> dict:
        return {"asked": self.asked, "answered": self.answered, "rescored": self.rescored,
                "decided": self.decided, "final_states": dict(sorted(self.final_states.items()))}


def figures(leads: Path, requests: list[InfoRequest],
            answers: list[ProfileAnswer]) -> AnswerFigures:
    """How many were asked, answered, scored again with their profile, then decided.

    A lead counts as scored with its profile when a record after the answer has a
    compliance verdict from a rule pack (the pack follows the profile's jurisdiction;
    a lead without a profile has none) and is not in ``needs_info``.
    """
    answered = {a.investor_id: a.answer_s for a in answers}
    table = pq.read_table(leads, columns=["investor_id", "event_time", "state",
                                          "record.compliance.pack"])
    table = table.filter(pc.is_in(table.column("investor_id"),
                                  value_set=pa.array(sorted(answered), type=pa.string())))
    last: dict[str, tuple[float, str]] = {}
    rescored: set[str] = set()
    for investor, event_time, state, pack in zip(
            *(table.column(n).to_pylist() for n in ("investor_id", "event_time", "state",
                                                    "pack")), strict=True):
        t = event_time.timestamp()
        if t >= answered[investor] and state != "needs_info" and pack:
            rescored.add(investor)
        if investor not in last or t >= last[investor][0]:
            last[investor] = (t, state)
    states = Counter(last[i][1] for i in rescored)
    return AnswerFigures(asked=len(requests), answered=len(answers), rescored=len(rescored),
                         decided=sum(states[s] for s in DECIDED), final_states=dict(states))
