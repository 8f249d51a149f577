"""When an outreach plan's steps may happen: quiet hours in the investor's local time and
frequency caps per channel, from the region's rule pack (``[contact]`` in
``compliance_packs/*.toml``).

A plan's steps are relative ("2 days after the previous step"); :func:`schedule` gives
each step its earliest lawful instant. A step falling in quiet hours moves to the end of
them; a step that would exceed a cap (counting the contacts earlier plans already
scheduled) moves to when the oldest contact in the window leaves it. Both checks repeat
until neither moves the step, so a move made for one rule cannot break another. Steps stay
in order; a step that no instant in the next year satisfies is dropped and named (a pack
whose quiet hours leave no common hour across a country's zones).

An investor without a stated time zone is contacted only at hours allowed in every zone
of their country: the US pack's 8 a.m.-9 p.m. rule then leaves 2 p.m.-9 p.m. Eastern,
which is 8 a.m. in Honolulu.

>>> from datetime import datetime, time, timezone
>>> from esg_leads.schemas.rules import ContactPolicy
>>> policy = ContactPolicy(time_zones={"GB": ["Europe/London"]},
...     quiet_hours=[{"id": "q", "channels": ["phone"], "start": time(21), "end": time(8),
...                   "citation": "x"}],
...     caps=[{"id": "c", "channel": "phone", "max": 1, "per_days": 7, "citation": "x"}])
>>> steps = [{"channel": "phone", "wait_days": 0}, {"channel": "phone", "wait_days": 1}]
>>> start = datetime(2026, 3, 2, 22, 30, tzinfo=timezone.utc)  # 22:30 in London
>>> planned, applied = schedule(steps, start, zones_for(policy, "GB", None), policy, [])
>>> [s["at"].isoformat() for s in planned], applied
(['2026-03-03T08:00:00+00:00', '2026-03-10T08:00:00+00:00'], ['q', 'c'])
"""

from __future__ import annotations

from array import array
from datetime import datetime, timedelta, timezone
from typing import NamedTuple
from zoneinfo import ZoneInfo

from esg_leads.operators.compact import Interned
from esg_leads.schemas.common import zone_info
from esg_leads.schemas.rules import ContactPolicy, QuietHours

#: The medium a step uses: a meeting invitation is an e-mail.
MEDIUM = {"meeting_invite": "email"}
#: Moves before a step counts as unschedulable (each move goes forward at least a second).
MAX_MOVES = 200
HORIZON = timedelta(days=366)
#: Regions without a rule pack: no quiet hours or caps to apply, times in UTC.
NO_POLICY = ContactPolicy(time_zones={})


def zones_for(policy: ContactPolicy, country: str | None,
              stated: str | None) -> tuple[ZoneInfo, ...]:
    """The investor's zone if stated (and known), else every zone of the country, else UTC."""
    if stated:
        try:
            return (zone_info(stated),)
        except ValueError:
            pass  # validated on input; an old snapshot's value may not be
    names = policy.time_zones.get(country or "", ())
    return tuple(zone_info(n) for n in names) or (timezone.utc,)  # type: ignore[return-value]


def _quiet_until(rule: QuietHours, at: datetime, zone: ZoneInfo) -> datetime | None:
    """The end of the quiet period ``at`` falls in (in ``zone``), or ``None`` if none."""
    local = at.astimezone(zone)
    now = local.time()  # wall clock, naive like the rule's times
    if rule.start < rule.end:
        quiet = rule.start <= now < rule.end
        end_day = local.date()
    else:  # wraps midnight: quiet from start to 24:00 and from 00:00 to end
        quiet = now >= rule.start or now < rule.end
        end_day = local.date() + timedelta(days=1 if now >= rule.start else 0)
    if not quiet:
        return None
    end = datetime.combine(end_day, rule.end, tzinfo=zone).astimezone(timezone.utc)
    # In a DST gap the local end time does not exist; never step backwards.
    return max(end, at + timedelta(seconds=1))


def _cap_until(cap_max: int, per: float, sent: list[float], at: float) -> float | None:
    """When a contact at ``at`` would respect the cap, or ``None`` if it already does."""
    window = [t for t in sent if at - per < t <= at]
    if len(window) < cap_max:
        return None
    window.sort()
    return window[-cap_max] + per


class _Compiled:
    """What a policy says about each channel, worked out once per policy, not per step
    of every plan (issue 16): the quiet hours that apply, the caps as ``(max, seconds,
    id)``, the longest cap's window, and the zones of each (country, stated zone)."""

    __slots__ = ("policy", "quiet", "caps", "longest", "zones")

    def __init__(self, policy: ContactPolicy) -> None:
        self.policy = policy  # held: the cache is keyed by its id
        self.quiet: dict[str, tuple[QuietHours, ...]] = {}
        self.caps: dict[str, tuple[tuple[int, float, str], ...]] = {}
        self.longest = 86_400.0 * max((c.per_days for c in policy.caps), default=0)
        self.zones: dict[tuple[str | None, str | None], tuple[ZoneInfo, ...]] = {}

    def rules(self, channel: str) -> tuple[str, tuple[QuietHours, ...],
                                           tuple[tuple[int, float, str], ...]]:
        """The medium of ``channel``, its quiet hours and its medium's caps."""
        medium = MEDIUM.get(channel, channel)
        quiet = self.quiet.get(channel)
        if quiet is None:
            quiet = self.quiet[channel] = tuple(
                r for r in self.policy.quiet_hours if channel in r.channels or medium in r.channels)
            self.caps[medium] = tuple((c.max, c.per_days * 86_400.0, c.id)
                                      for c in self.policy.caps if c.channel == medium)
        return medium, quiet, self.caps[medium]


#: Compiled policies by ``id`` (each entry holds its policy, so an id is never reused
#: while its entry lives). Packs are loaded once; the bound is for callers that make
#: policies of their own.
_COMPILED: dict[int, _Compiled] = {}


def _compiled(policy: ContactPolicy) -> _Compiled:
    compiled = _COMPILED.get(id(policy))
    if compiled is None:
        if len(_COMPILED) >= 256:
            _COMPILED.clear()
        compiled = _COMPILED[id(policy)] = _Compiled(policy)
    return compiled


def schedule(steps: list[dict], start: datetime, zones: tuple[ZoneInfo, ...],
             policy: ContactPolicy, history: list[tuple[str, float]]
             ) -> tuple[list[dict], list[str]]:
    """Each step with ``at`` (UTC), and the ids of the rules that moved a step or dropped it.

    ``history`` holds ``(medium, epoch seconds)`` of contacts already scheduled, all at or
    before ``start``. ``steps`` are not changed; the dicts returned are copies.
    """
    planned, applied, _ = _schedule(steps, start, zones, _compiled(policy), history)
    return planned, applied


def _schedule(steps: list[dict], start: datetime, zones: tuple[ZoneInfo, ...],
              rules: _Compiled, history: list[tuple[str, float]]
              ) -> tuple[list[dict], list[str], list[tuple[str, float]]]:
    """:func:`schedule`, with the ``(medium, epoch s)`` of each planned step."""
    sent: dict[str, list[float]] = {}
    for medium, when in history:
        sent.setdefault(medium, []).append(when)
    applied: list[str] = []
    planned: list[dict] = []
    contacts: list[tuple[str, float]] = []
    previous = start
    for step in steps:
        medium, quiet, caps = rules.rules(step["channel"])
        # Whole seconds from here on: every move below lands on a whole second too.
        at = _ceil_second(previous + timedelta(days=step["wait_days"]))
        moves = 0
        while moves < MAX_MOVES and at - start < HORIZON:
            moved = False
            for rule in quiet:
                for zone in zones:
                    until = _quiet_until(rule, at, zone)
                    if until is not None:
                        at, moved = until, True
                        _note(applied, rule.id)
            for cap_max, per, cap_id in caps:
                until_s = _cap_until(cap_max, per, sent.get(medium, []), at.timestamp())
                if until_s is not None:
                    at, moved = _ceil_second(datetime.fromtimestamp(until_s, timezone.utc)), True
                    _note(applied, cap_id)
            if not moved:
                break
            moves += 1
        else:
            _note(applied, f"unschedulable: {step['channel']}")
            continue
        stamp = at.timestamp()
        sent.setdefault(medium, []).append(stamp)
        contacts.append((medium, stamp))
        planned.append({**step, "order": len(planned) + 1, "at": at})
        previous = at
    return planned, applied, contacts


def _ceil_second(at: datetime) -> datetime:
    return at if not at.microsecond else (at + timedelta(seconds=1)).replace(microsecond=0)


def _note(applied: list[str], rule_id: str) -> None:
    if rule_id not in applied:
        applied.append(rule_id)


#: Sequences of media of kept contact histories, one tuple per distinct sequence.
_shared_media = Interned(4096)


def kept_contacts(pairs: list[tuple[str, float]]) -> tuple:
    """A lead's contact history as the lifecycle keeps it: the media (one shared tuple
    per sequence) and the instants (an array of doubles). A list of ``(medium, epoch s)``
    pairs was ~90 bytes a contact (issue 16).

    >>> kept = kept_contacts([("email", 10.0), ("phone", 20.0)])
    >>> contact_pairs(kept), contact_pairs(()), contact_pairs([("email", 1.0)])
    ([('email', 10.0), ('phone', 20.0)], [], [('email', 1.0)])
    """
    if not pairs:
        return ()
    return (_shared_media(tuple(medium for medium, _ in pairs)),
            array("d", [stamp for _, stamp in pairs]))


def contact_pairs(kept: tuple | list) -> list[tuple[str, float]]:
    """The ``(medium, epoch s)`` pairs of :func:`kept_contacts` (a list, as snapshots of
    earlier versions hold it, is returned as it is)."""
    if isinstance(kept, list):
        return kept
    if not kept:
        return []
    media, stamps = kept
    return list(zip(media, stamps, strict=True))


class PlannedContacts(NamedTuple):
    steps: list[dict]  #: the plan's steps, each with ``at``
    applied: list[str]  #: ids of the rules that moved or dropped a step
    contacts: list[tuple[str, float]]  #: the lead's contact history to keep
    zones: list[str]  #: the time zones whose quiet hours the instants respect


def schedule_plan(policy: ContactPolicy | None, country: str | None, time_zone: str | None,
                  contacts: list[tuple[str, float]], steps: list[dict], when: float
                  ) -> PlannedContacts:
    """A new plan made at ``when`` (epoch s). An earlier plan's steps up to ``when`` count
    as sent; the new plan replaces the rest; history older than the longest cap is dropped."""
    rules = _compiled(policy or NO_POLICY)
    horizon = when - rules.longest
    history = [c for c in contacts if horizon < c[1] <= when]
    zones = rules.zones.get((country, time_zone))
    if zones is None:
        zones = zones_for(rules.policy, country, time_zone)
        if len(rules.zones) >= 1024:  # a stated zone is the investor's: bound the memo
            rules.zones.clear()
        rules.zones[(country, time_zone)] = zones
    planned, applied, scheduled = _schedule(steps, datetime.fromtimestamp(when, timezone.utc),
                                            zones, rules, history)
    return PlannedContacts(planned, applied, history + scheduled,
                           [getattr(zone, "key", "UTC") for zone in zones])
