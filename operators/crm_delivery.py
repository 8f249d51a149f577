"""How ``esg-leads crm-sync`` treats a CRM: what each answer means, when to ask again.

Everything here is plain, deterministic Python: time is a number passed in (seconds on
whatever clock the caller uses), randomness comes from a ``random.Random`` the caller
seeds. The HTTP and Kafka sides live in ``connectors/crm_client.py`` and
``flows/crm_sync.py``; they only ask this module what to do.

What an answer means (:func:`classify`):

===========================  ===============================================================
2xx, 409                     delivered (409: the CRM already has this state)
404 on DELETE                delivered (nothing left to erase)
429                          throttled: wait ``Retry-After`` (else back off); not a failure
503                          throttled if it says ``Retry-After``, else a failure
other 5xx, no answer         failure: back off with full jitter; counts for the breaker
401, 403                     our credentials: stop sending, alert, ask again slowly
400, 404, 422, other 4xx     rejected: dead letter ``crm_rejected``, move on
408, 425                     failure (the CRM's own timeout / "too early"): retry
1xx, 3xx                     failure: we do not follow redirects to another host
===========================  ===============================================================

Why a breaker of our own rather than pybreaker: pybreaker wraps a call and counts
exceptions on the wall clock; ours must count HTTP answers (a 429 is the CRM working,
not failing), take time from an injected clock for tests, and allow exactly one probe
while half-open. That is forty lines with every transition visible.

Why a loop of our own rather than tenacity: the wait after an answer depends on the
answer (``Retry-After`` is a floor, not a hint), on a gate shared by every in-flight
request (a 429 pauses all of them) and on the breaker; and a SIGTERM must cut any wait
short. Tenacity's waits take none of that and its jitter uses the global ``random``.
"""

from __future__ import annotations

import email.utils
import heapq
import math
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from esg_leads.schemas.keys import output_key

#: A ``Retry-After`` longer than this is taken as this (a daily quota says "tomorrow").
MAX_RETRY_AFTER = 24 * 3600.0


class Outcome(StrEnum):
    DELIVERED = "delivered"
    REJECTED = "rejected"
    THROTTLED = "throttled"
    FAILED = "failed"
    AUTH_FAILED = "auth_failed"


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    #: Seconds the CRM asked us to wait (``Retry-After``), if it said.
    retry_after: float | None = None

    @property
    def breaker_failure(self) -> bool:
        """Whether this answer says the CRM is failing (and counts toward opening)."""
        return self.outcome is Outcome.FAILED


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date.

    Fractions are accepted (some APIs send them; RFC 9110 says integers); a date in the
    past means "now"; garbage means "not said".

    >>> parse_retry_after("3", 0.0), parse_retry_after("0.25", 0.0)
    (3.0, 0.25)
    >>> parse_retry_after("Thu, 01 Jan 1970 00:01:00 GMT", 30.0)
    30.0
    >>> parse_retry_after("soon", 0.0) is None, parse_retry_after("-1", 0.0) is None
    (True, True)
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = max(0.0, when.timestamp() - now_epoch)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


def classify(method: str, status: int | None, retry_after: float | None = None) -> Verdict:
    """What a CRM answer (``status`` ``None``: none came) means; see the module table.

    >>> classify("PUT", 201).outcome, classify("DELETE", 404).outcome
    (<Outcome.DELIVERED: 'delivered'>, <Outcome.DELIVERED: 'delivered'>)
    >>> classify("PUT", 404).outcome, classify("PUT", None).outcome
    (<Outcome.REJECTED: 'rejected'>, <Outcome.FAILED: 'failed'>)
    >>> classify("PUT", 503, 2.0)
    Verdict(outcome=<Outcome.THROTTLED: 'throttled'>, retry_after=2.0)
    """
    if status is None:
        return Verdict(Outcome.FAILED)
    if 200 <= status < 300 or status == 409:
        return Verdict(Outcome.DELIVERED)
    if status == 404 and method == "DELETE":
        return Verdict(Outcome.DELIVERED)
    if status == 429:
        return Verdict(Outcome.THROTTLED, retry_after)
    if status == 503 and retry_after is not None:
        return Verdict(Outcome.THROTTLED, retry_after)
    if status in (401, 403):
        return Verdict(Outcome.AUTH_FAILED)
    if status in (408, 425) or status >= 500 or status < 200 or 300 <= status < 400:
        return Verdict(Outcome.FAILED)
    return Verdict(Outcome.REJECTED)


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """A wait in ``[0, min(cap, base * 2**attempt))`` (AWS's "full jitter").

    >>> rng = random.Random(1)
    >>> all(0 <= full_jitter(a, 0.5, 60, rng) < min(60, 0.5 * 2 ** a) for a in range(40))
    True
    """
    ceiling = min(cap, base * 2.0 ** min(attempt, 62))
    return rng.random() * ceiling


def retry_wait(verdict: Verdict, attempt: int, *, base: float, cap: float, auth_retry: float,
               rng: random.Random) -> float:
    """Seconds to wait before asking again after ``verdict`` (the ``attempt``-th, from 0).

    ``Retry-After`` is a floor: we wait exactly that, never less. Without it, a 429 or
    failure backs off with full jitter; a credentials problem waits ``auth_retry``.
    """
    if verdict.outcome is Outcome.AUTH_FAILED:
        return auth_retry
    if verdict.retry_after is not None:
        return verdict.retry_after
    return full_jitter(attempt, base, cap, rng)


# ------------------------------------------------------------------------ breaker


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class Breaker:
    """Closed → (``failures`` consecutive failures) → open → (``cooldown``) → half-open.

    Half-open lets exactly one request through (the probe); its success closes the
    breaker, its failure opens it for another cooldown. Transitions to open and back to
    closed are returned so the caller can alert on them.

    >>> b = Breaker(failures=2, cooldown=10.0)
    >>> b.allow(0.0), b.record(False, 0.0), b.record(False, 0.1), b.allow(5.0)
    (True, None, 'opened', False)
    >>> b.allow(10.1), b.allow(10.2), b.record(True, 10.3), b.state
    (True, False, 'closed', <BreakerState.CLOSED: 'closed'>)
    """

    failures: int
    cooldown: float
    state: BreakerState = BreakerState.CLOSED
    consecutive: int = 0
    opened_at: float = 0.0
    probing: bool = False

    def allow(self, now: float) -> bool:
        """Whether a request may go now (taking the probe slot when half-open)."""
        if self.state is BreakerState.OPEN and now >= self.opened_at + self.cooldown:
            self.state, self.probing = BreakerState.HALF_OPEN, False
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def retry_at(self, now: float) -> float:
        """When to ask :meth:`allow` again after it said no."""
        if self.state is BreakerState.OPEN:
            return max(now, self.opened_at + self.cooldown)
        return now  # half-open with the probe out: the probe's answer will wake us

    def record(self, ok: bool, now: float) -> str | None:
        """Count an answer (``ok``: not a failure); ``'opened'``/``'closed'`` on a change."""
        if ok:
            was = self.state
            self.state, self.consecutive, self.probing = BreakerState.CLOSED, 0, False
            return "closed" if was is not BreakerState.CLOSED else None
        if self.state is BreakerState.HALF_OPEN:
            # The probe failed: open again (already counted as open: no new alert).
            self.state, self.opened_at, self.probing = BreakerState.OPEN, now, False
            return None
        if self.state is BreakerState.OPEN:
            return None  # a request that left before the breaker opened
        self.consecutive += 1
        if self.consecutive >= self.failures:
            self.state, self.opened_at = BreakerState.OPEN, now
            return "opened"
        return None

    def release_probe(self) -> None:
        """The probe ended without an answer that counts (throttled, shutdown)."""
        self.probing = False


# --------------------------------------------------------------------- rate limit


@dataclass
class TokenBucket:
    """``rate`` requests per second with bursts of ``burst``; plus a gate ``hold_until``.

    :meth:`reserve` takes a token and says how long to wait before using it, so callers
    queue fairly instead of spinning. A ``Retry-After`` closes the gate for everyone.

    >>> bucket = TokenBucket(rate=2.0, burst=1.0, now=0.0)
    >>> bucket.reserve(0.0), bucket.reserve(0.0), bucket.reserve(0.0)
    (0.0, 0.5, 1.0)
    >>> bucket.hold_until(10.0); bucket.reserve(1.0) >= 9.0
    True
    """

    rate: float
    burst: float
    now: float = 0.0
    tokens: float = field(init=False)
    gate: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def hold_until(self, when: float) -> None:
        self.gate = max(self.gate, when)

    def reserve(self, now: float) -> float:
        start = max(now, self.gate)
        if start > self.now:
            self.tokens = min(self.burst, self.tokens + (start - self.now) * self.rate)
            self.now = start
        self.tokens -= 1.0
        ready = self.now if self.tokens >= 0 else self.now + (-self.tokens) / self.rate
        return max(0.0, ready - now)


# ------------------------------------------------------------ order and coalescing


@dataclass
class Entry:
    """The latest record of one investor waiting (or on the wire), and what it covers."""

    key: str
    partition: int
    offset: int
    payload: Any
    #: Kafka offsets (of this partition) that are acknowledged when this entry is.
    covers: list[int] = field(default_factory=list)


class DeliveryQueue:
    """Per investor in order, latest state wins, offsets committed only behind acks.

    * one entry per investor on the wire at a time, so the CRM never sees a record of an
      investor before the one read ahead of it completed;
    * while one is on the wire (or waiting), a newer record replaces the waiting one
      (coalescing): the CRM gets the latest state, never an older after a newer;
    * an offset becomes committable when the entry covering it is resolved (delivered
      or dead-lettered); :meth:`committable` is the first unresolved offset.

    >>> q = DeliveryQueue()
    >>> for off, key in enumerate("aab"): q.add(key, 0, off, f"{key}{off}")
    >>> [e.payload for e in q.take(5)]
    ['a1', 'b2']
    >>> q.committable()
    {}
    >>> _ = q.resolve("b"); q.committable()
    {}
    >>> _ = q.resolve("a"); q.committable()
    {0: 3}
    """

    def __init__(self) -> None:
        self._waiting: OrderedDict[str, Entry] = OrderedDict()
        self._flying: dict[str, Entry] = {}
        self._newest: dict[str, int] = {}
        self._open: dict[int, list[int]] = {}  # partition -> heap of unresolved offsets
        self._resolved: dict[int, set[int]] = {}
        self._next: dict[int, int] = {}  # partition -> offset after the highest read
        self._first: dict[int, int] = {}  # partition -> first offset read

    def __len__(self) -> int:
        """Records read and not yet resolved (waiting, coalesced or on the wire)."""
        return sum(len(h) - len(self._resolved.get(p, ())) for p, h in self._open.items())

    @property
    def in_flight(self) -> int:
        return len(self._flying)

    def add(self, key: str, partition: int, offset: int, payload: Any) -> None:
        heapq.heappush(self._open.setdefault(partition, []), offset)
        self._first.setdefault(partition, offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)
        if offset <= self._newest.get(key, -1):
            # Read again (a rebalance, a seek): older than what we hold, never sent.
            self._attach(key, partition, offset)
            return
        self._newest[key] = offset
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.covers.append(offset)
            waiting.partition, waiting.offset, waiting.payload = partition, offset, payload
            return
        self._waiting[key] = Entry(key, partition, offset, payload, [offset])

    def skip(self, partition: int, offset: int) -> None:
        """A record that needs no delivery (dead-lettered on reading): resolved at once."""
        heapq.heappush(self._open.setdefault(partition, []), offset)
        self._first.setdefault(partition, offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)
        self._mark(partition, offset)

    def _attach(self, key: str, partition: int, offset: int) -> None:
        holder = self._waiting.get(key) or self._flying.get(key)
        if holder is not None:
            holder.covers.append(offset)
        else:
            self._mark(partition, offset)

    def take(self, limit: int) -> list[Entry]:
        """Up to ``limit`` waiting entries whose investor has nothing on the wire."""
        out = []
        for key in list(self._waiting):
            if len(out) >= limit:
                break
            if key in self._flying:
                continue
            entry = self._waiting.pop(key)
            self._flying[key] = entry
            out.append(entry)
        return out

    def resolve(self, key: str) -> Entry:
        """The entry of ``key`` on the wire is done: its offsets may be committed."""
        entry = self._flying.pop(key)
        for offset in entry.covers:
            self._mark(entry.partition, offset)
        return entry

    def give_back(self, key: str) -> None:
        """The entry of ``key`` was not delivered (shutdown): it stays unresolved."""
        entry = self._flying.pop(key)
        newer = self._waiting.get(key)
        if newer is not None:
            newer.covers.extend(entry.covers)
        else:
            self._waiting[key] = entry
            self._waiting.move_to_end(key, last=False)

    def _mark(self, partition: int, offset: int) -> None:
        self._resolved.setdefault(partition, set()).add(offset)
        heap, done = self._open[partition], self._resolved[partition]
        while heap and heap[0] in done:
            done.discard(heapq.heappop(heap))

    def committable(self) -> dict[int, int]:
        """Per partition read from, the offset to commit once past its first record:
        the first unresolved offset, or the one after the last read if all are resolved.
        """
        out = {}
        for partition, heap in self._open.items():
            position = heap[0] if heap else self._next[partition]
            if position > self._first[partition]:
                out[partition] = position
        return out


# -------------------------------------------------------------------- field map


def crm_body(record: dict, field_map: dict[str, str]) -> dict:
    """The JSON body the CRM gets: the mapped fields, under the CRM's property names.

    ``lead_key`` (:data:`~schemas.settings.CRM_DERIVED_FIELDS`) is no field of the
    handoff: it is the lead's ``<tenant>/<investor_id>``, for the CRM's unique external id.

    >>> crm_body({"score": 87, "tier": "hot", "contact_ref": "h"}, {"score": "hs_lead_score",
    ...          "tier": "lead_tier"})
    {'hs_lead_score': 87, 'lead_tier': 'hot'}
    >>> crm_body({"tenant": "acme", "investor_id": "inv-1", "score": 87},
    ...          {"lead_key": "External_Id__c", "tenant": "Tenant__c", "score": "Lead_Score__c"})
    {'External_Id__c': 'acme/inv-1', 'Tenant__c': 'acme', 'Lead_Score__c': 87}
    """
    if "lead_key" in field_map:
        record = {**record, "lead_key": output_key(record["tenant"], record["investor_id"])}
    return {name: record[ours] for ours, name in field_map.items() if ours in record}
