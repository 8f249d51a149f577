"""``esg-leads generate``: a seeded synthetic world, written as a recording plus truth.

The simulation (:mod:`replay.simulate`) says what happens; this module turns it into
Kafka messages the way real feeds deliver them: keyed and partitioned, in ingest
order, with duplicate deliveries and a configurable share of malformed messages
(bad JSON, wrong types, out-of-range values, unknown tenants, missing fields).

Output directory layout::

    OUT/segment-*.parquet, OUT/manifest.json   the recording (connectors.recording)
    OUT/truth.parquet                           per-investor ground truth
    OUT/world.json                              the arguments and what came out
    OUT/config.toml                             the world's tenants, reviewers, dev keys

With reviewers (the default), the world's reviewer teams decide the review cases the
flow opens: the generator replays its world through the flow and writes it again
with their signed decisions on ``lead.review-decisions``, in rounds until the
decisions settle (see :mod:`replay.reviewers` for why, and what that implies). With
profile answers (the default), investors without a profile answer the info requests
the flow sent them (:mod:`replay.profile_answers`), in the same rounds.

Why the rounds settle: each round's new inputs (a decision, an answer) come after
what prompted them (the case, the request) in event time, and the flow's output up to
a time depends on its input up to about that time (plus the allowed lateness). So a
round can change what the flow does only after the earliest input it changed, and
that point tends to move later round after round; a decision or an answer moves its
own lead, and others only through what the models learn from it. This is an argument,
not a proof (the lateness lets an input reach back a little). In practice the rounds
settle in two to five replays (``round_changes`` in ``world.json``: per replay, how
many decisions and answers changed; the demo world: 148, 49, 11, 1, 0 decisions and
35, 9, 4, 0, 0 answers). They are bounded (:data:`MAX_ROUNDS` worlds written after
the first, :data:`MAX_ROUNDS_WITH_ANSWERS` with answers); a world still changing then
is kept as written, with ``settled: false`` in ``world.json``: some of its last
requests or cases are answered as the round before saw them (a request a little
earlier or later, a case never decided).

Same arguments, same bytes (and, with reviewers, the same flow and settings).
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import itertools
import json
import random
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from esg_leads.connectors.recording import RecordedMessage, RecordingWriter
from esg_leads.replay.profile_answers import (
    AnswerFigures,
    InfoRequest,
    ProfileAnswer,
    answer,
    figures,
    info_requests,
)
from esg_leads.replay.simulate import DAY_S, Simulation, Truth, WorldSpec
from esg_leads.replay.reviewers import Case, decide, make_teams
from esg_leads.replay.world import DEV_REVIEWERS, dev_review_signing_key
from esg_leads.schemas.settings import Settings

#: At most this many worlds written after the first, to let the reviewers' decisions
#: settle (each is replayed once more to check and measure)...
MAX_ROUNDS = 4
#: ...and with the investors' answers too: two loops to settle (the demo world settles
#: after 4; the bound without answers stays, so that those worlds keep their bytes).
MAX_ROUNDS_WITH_ANSWERS = 6

HEADERS = (("schema-version", b"1"), ("content-type", b"application/json"))
UNKNOWN_TENANT = "ghost-fund"
MALFORMED_KINDS = ("bad_json", "wrong_type", "out_of_range", "unknown_tenant", "missing_field")


@dataclass(frozen=True, slots=True)
class GenerationReport:
    messages: int
    per_topic: dict[str, int]
    malformed: int
    malformed_by_kind: dict[str, int]
    duplicates: int
    late: int
    review_rounds: int
    review_decisions: int
    investors: int
    decided: int
    converted: int
    seconds: float
    #: Whether the last round changed nothing (None: no rounds were run).
    settled: bool | None = None
    #: Per replay, how many decisions and answers differed from the world it replayed.
    round_changes: tuple[dict[str, int], ...] = ()
    #: Investors asked for their profile, answers, rescored and decided leads (None: off).
    profile_answers: AnswerFigures | None = None

    @property
    def events_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def _corrupt(kind: str, topic: str, payload: dict, value: bytes, rng: random.Random) -> bytes:
    """A malformed version of a good message, of the given kind."""
    if kind == "bad_json":
        return value[: max(1, len(value) // 2)]
    broken = dict(payload)
    if kind == "wrong_type":
        field = rng.choice(("event_time", "tenant", "event_id"))
        broken[field] = 12345 if field != "event_id" else ["e"]
    elif kind == "out_of_range":
        if topic == "esg.property-signals":
            broken["energy_star_score"] = 140
        elif topic == "investor.engagements":
            broken["duration_s"] = -5.0
        else:
            broken["event_time"] = "1999-12-31T23:59:59+00:00"
    elif kind == "unknown_tenant":
        broken["tenant"] = UNKNOWN_TENANT
    elif kind == "missing_field":
        broken.pop("event_id", None)
    return orjson.dumps(broken)


def _decision_id(decision: dict) -> tuple:
    payload = decision["payload"]
    return payload["event_id"], payload["verdict"], payload["event_time"]


def _truth_table(truths: list[Truth], start_s: float) -> pa.Table:
    def ts(seconds: float | None) -> int | None:
        return None if seconds is None else int(seconds * 1000)

    columns: dict[str, list] = {
        "tenant": [t.investor.tenant for t in truths],
        "investor_id": [t.investor.investor_id for t in truths],
        "esg_receptivity": [t.investor.receptivity for t in truths],
        "intent": [t.investor.intent for t in truths],
        "p_convert": [t.p_convert for t in truths],
        "p_convert_pre_drift": [t.p_pre_drift for t in truths],
        "p_convert_post_drift": [t.p_post_drift for t in truths],
        "first_engagement_at": [ts(t.first_engagement_s) for t in truths],
        "decision_at": [ts(t.decision_s) for t in truths],
        "converted": [t.converted if t.decision_s is not None else None for t in truths],
        "converted_at": [ts(t.decision_s) if t.converted else None for t in truths],
        "engagements": [t.engagements for t in truths],
        "erased": [t.erased for t in truths],
    }
    schema = pa.schema([
        ("tenant", pa.string()), ("investor_id", pa.string()),
        ("esg_receptivity", pa.float64()), ("intent", pa.float64()),
        ("p_convert", pa.float64()), ("p_convert_pre_drift", pa.float64()),
        ("p_convert_post_drift", pa.float64()),
        ("first_engagement_at", pa.timestamp("ms", tz="UTC")),
        ("decision_at", pa.timestamp("ms", tz="UTC")),
        ("converted", pa.bool_()), ("converted_at", pa.timestamp("ms", tz="UTC")),
        ("engagements", pa.int32()), ("erased", pa.bool_()),
    ])
    return pa.table(columns, schema=schema)


def world_config(tenants: list, seed: int) -> str:
    """``config.toml`` of a generated world: its tenants, their reviewers and dev keys."""
    reviewers = ", ".join(f'"{r}"' for r in DEV_REVIEWERS)
    return ("# Settings for replaying this generated world: its tenants, who may decide\n"
            "# their review cases, and the keys decisions are signed with. The keys derive\n"
            "# from the seed: for development only, never for real decisions.\n"
            + "".join(f'\n[tenants."{t.name}"]\nreviewers = [{reviewers}]\n'
                      f'review_signing_key = "{dev_review_signing_key(seed, t.name)}"\n'
                      for t in tenants))


def generate(spec: WorldSpec, out: str | Path,
             progress: Callable[[int, int], None] | None = None,
             overwrite: bool = False, *, replayed: str | Path | None = None
             ) -> GenerationReport:
    """Simulate ``spec`` and write the recording, truth and metadata under ``out``.

    ``replayed``: a directory that receives the replay of the world written, with its
    own ``config.toml`` (``replay(out, replayed, load_settings(out / "config.toml"))``'s
    outputs and ``summary.json``). A world with reviewers or profile answers is replayed
    to settle it anyway, the last time as written: that run is kept instead of thrown
    away, so a caller that replays the world it generated need not do it twice.
    """
    started = time.perf_counter()
    out = Path(out)
    if replayed is not None:
        replayed = Path(replayed)
        # Each round's run replaces the last's there: never over someone's files.
        if replayed.exists() and (not replayed.is_dir() or any(replayed.iterdir())):
            raise ValueError(f"{replayed} is not an empty directory")
    out.mkdir(parents=True, exist_ok=True)
    written = _write(spec, out, [], [], progress, overwrite, 0, started)
    if not (spec.reviewers or spec.profile_answers):
        if replayed is not None:
            _replay_into(out, replayed)
        return written.report
    teams = make_teams(report_tenants(out), spec.seed) if spec.reviewers else {}
    truth = pq.read_table(out / "truth.parquet", columns=["investor_id", "p_convert_pre_drift"])
    truth_p = dict(zip(truth.column(0).to_pylist(), truth.column(1).to_pylist(), strict=True))
    end_s = spec.start.timestamp() + spec.days * DAY_S
    decisions: list[dict] = []
    answers: list[ProfileAnswer] = []
    settled = False
    changes: list[dict[str, int]] = []
    # Every world written is replayed once: to find what the next one answers, and
    # for the last, to check that nothing changes any more and to measure it.
    bound = MAX_ROUNDS_WITH_ANSWERS if spec.profile_answers else MAX_ROUNDS
    for round_ in range(1, bound + 2):
        # Measured on the answers sent: an investor erased before answering sends none.
        found = _replay_round(out, written.timeline,
                              [a for a in answers if a.investor_id in written.answered],
                              replayed)
        new_decisions = (decide(found.cases, teams, truth_p, spec.seed, end_s)
                         if spec.reviewers else [])
        new_answers = (answer(found.requests, written.profileless, spec.seed, end_s)
                       if spec.profile_answers else [])
        # What this round changed: decisions and answers sent, or no longer sent.
        changes.append({
            "decisions": len({_decision_id(d) for d in new_decisions}
                             ^ {_decision_id(d) for d in decisions}),
            "answers": len(set(new_answers) ^ set(answers))})
        if new_decisions == decisions and new_answers == answers:
            settled = True
            break
        if round_ > bound:
            break
        decisions, answers = new_decisions, new_answers
        written = _write(spec, out, decisions, answers, None, True, round_, started)
    report = dataclasses.replace(
        written.report, settled=settled, round_changes=tuple(changes),
        seconds=time.perf_counter() - started,
        profile_answers=found.figures if spec.profile_answers else None)
    if spec.profile_answers:
        # Only a world with answers says so: one without stays byte for byte the world
        # written before answers existed.
        world = json.loads((out / "world.json").read_text())
        world["settled"] = settled
        world["round_changes"] = changes
        world["profile_answers"] = report.profile_answers.as_dict()
        (out / "world.json").write_text(json.dumps(world, indent=2, sort_keys=True) + "\n")
    return report


class _Timeline:
    """When the flow can have published a case, on the tenant's clock (its watermark:
    the latest event time among the engagements that reach its windows, so neither
    unsubscribes nor an erased investor's engagements). The flow closes an investor's
    window (and scores it) once that clock reaches the window's end plus the allowed
    lateness, and re-scores a silent investor once it reaches the re-score's instant
    (operators/investor_window.py): both at the first arrival of an engagement at or
    past that time — hours later for a tenant whose investors sleep. A case's event time
    is the window's end or the re-score's instant, so :meth:`published` with the allowed
    lateness (and a margin) is when it was published or later, never earlier.
    Reviewers see a case from then on."""

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[float, float]]] = {}  # tenant -> (event_s, ingest_s)
        self._erased: set[tuple[str, str]] = set()

    def add(self, topic: str, payload: dict, ingest_s: float) -> None:
        """An input event, in arrival order."""
        if topic == "investor.erasure":
            self._erased.add((payload["tenant"], payload["investor_id"]))
            return
        if topic != "investor.engagements" or payload["action"] == "unsubscribe":
            return
        subject = (payload["tenant"], payload["investor_id"])
        if subject not in self._erased:
            self.events.setdefault(subject[0], []).append(
                (payload["event_time"].timestamp(), ingest_s))

    def freeze(self) -> _Timeline:
        self.index = {}
        for tenant, pairs in self.events.items():
            pairs.sort()
            arrivals = [i for _, i in pairs]
            for k in range(len(arrivals) - 2, -1, -1):  # earliest arrival from here on
                arrivals[k] = min(arrivals[k], arrivals[k + 1])
            self.index[tenant] = ([e for e, _ in pairs], arrivals)
        return self

    def published(self, tenant: str, event_s: float, lateness_s: float) -> float:
        times, arrivals = self.index.get(tenant, ([], []))
        k = bisect.bisect_left(times, event_s + lateness_s)
        return max(event_s, arrivals[k]) if k < len(times) else event_s


def report_tenants(out: Path) -> list[str]:
    return json.loads((out / "world.json").read_text())["tenants"]


@dataclass(frozen=True, slots=True)
class _Found:
    """What one replay of a world showed: its review cases and info requests."""

    cases: list[Case]
    requests: list[InfoRequest]
    figures: AnswerFigures  #: what became of the requests the world answered


def _world_settings(world: Path) -> Settings:
    from esg_leads.flows.config import load_settings

    # environ={}: the environment now overrides a file; a generated world must not
    # depend on the shell that generated it (same arguments, same bytes).
    return load_settings(config_file=world / "config.toml", environ={})


def _replay_into(world: Path, run: Path) -> None:
    from esg_leads.replay.runner import replay

    replay(world, run, _world_settings(world))


def _replay_round(world: Path, timeline: _Timeline, answers: list[ProfileAnswer],
                  keep: Path | None = None) -> _Found:
    """The review cases and info requests of the flow on the world written in ``world``.
    ``keep``: where the run's outputs are left (each round's replaces the last's)."""
    import shutil
    import tempfile

    from esg_leads.replay.runner import replay

    settings = _world_settings(world)
    lateness = settings.windows.allowed_lateness.total_seconds() + 60
    run = Path(tempfile.mkdtemp(prefix="esg-leads-review-round-"))
    try:
        replay(world, run, settings)
        table = pq.read_table(run / "review.parquet",
                              columns=["case_id", "tenant", "investor_id", "event_time"])
        requests = info_requests(run / "leads.parquet",
                                 lambda t, e: timeline.published(t, e, lateness))
        measured = figures(run / "leads.parquet", requests, answers)
        if keep is not None:
            # A fresh directory each round: a replay into one that holds an earlier
            # run's dead-letter keys would not be the same replay.
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(run, keep)
    finally:
        shutil.rmtree(run, ignore_errors=True)
    cases = [Case(c, t, i, timeline.published(t, e.timestamp(), lateness)) for c, t, i, e in zip(
        *(table.column(n).to_pylist() for n in ("case_id", "tenant", "investor_id", "event_time")),
        strict=True)]
    return _Found(cases, requests, measured)


@dataclass(frozen=True, slots=True)
class _Written:
    report: GenerationReport
    timeline: _Timeline
    profileless: dict[str, float]  #: investors without a profile -> their latent intent
    answered: frozenset[str]  #: investors whose answer the world sent


def _write(spec: WorldSpec, out: Path, decisions: list[dict], answers: list[ProfileAnswer],
           progress: Callable[[int, int], None] | None, overwrite: bool, rounds: int,
           started: float) -> _Written:
    sim = Simulation(spec, {a.investor_id: a.answer_s for a in answers})
    timeline = _Timeline()
    noise = random.Random(f"{spec.seed}:noise")
    offsets: Counter[tuple[str, int]] = Counter()
    per_topic: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    duplicates = late = 0
    answered: set[str] = set()
    # Malformed messages come on top of the good ones, so that the world's truth is
    # untouched and the malformed share of all messages is the requested rate.
    extra_rate = spec.malformed_rate / (1 - spec.malformed_rate) if spec.malformed_rate else 0.0
    last_day = -1

    with RecordingWriter(out, overwrite=overwrite) as writer:

        def publish(topic: str, key: bytes, value: bytes, ingest_s: float) -> None:
            partition = zlib.crc32(key) % spec.partitions
            offset = offsets[(topic, partition)]
            offsets[(topic, partition)] = offset + 1
            per_topic[topic] += 1
            writer.write(RecordedMessage(topic, partition, offset, int(ingest_s * 1000), key,
                                         value, HEADERS))

        # Redeliveries and malformed copies arrive a little after their original; they
        # wait here so that offsets follow arrival (ingest) order within a partition.
        extras: list[tuple[float, int, str, bytes, bytes]] = []
        order = itertools.count()
        # Reviewers' decisions draw nothing from the noise stream, so that adding them
        # leaves every other message of the world as it was.
        for d in decisions:
            heapq.heappush(extras, (d["ingest_s"], next(order), "lead.review-decisions",
                                    d["key"].encode(), orjson.dumps(d["payload"])))
        for emitted in sim.events():
            while extras and extras[0][0] <= emitted.ingest_s:
                ingest_s, _, topic, key, value = heapq.heappop(extras)
                publish(topic, key, value, ingest_s)
            key = emitted.key.encode()
            value = orjson.dumps(emitted.payload)
            timeline.add(emitted.topic, emitted.payload, emitted.ingest_s)
            publish(emitted.topic, key, value, emitted.ingest_s)
            if emitted.answer:
                answered.add(emitted.key)
                # Like a reviewer's decision, an answer draws nothing from the noise
                # stream: adding it leaves every other message of the world as it was.
                continue
            late += emitted.late
            if noise.random() < spec.duplicate_rate:  # a producer retry: same bytes again
                duplicates += 1
                heapq.heappush(extras, (emitted.ingest_s + noise.uniform(1, 600), next(order),
                                        emitted.topic, key, value))
            if extra_rate and noise.random() < extra_rate:
                kind = noise.choice(MALFORMED_KINDS)
                by_kind[kind] += 1
                bad = _corrupt(kind, emitted.topic, emitted.payload, value, noise)
                heapq.heappush(extras, (emitted.ingest_s + noise.uniform(0, 5), next(order),
                                        emitted.topic, key, bad))
            day = int((emitted.ingest_s - sim.t0) // DAY_S)
            if progress is not None and day != last_day:
                last_day = day
                progress(min(day, spec.days), spec.days)
        while extras:
            ingest_s, _, topic, key, value = heapq.heappop(extras)
            publish(topic, key, value, ingest_s)

    truths = sim.truths
    pq.write_table(_truth_table(truths, sim.t0), out / "truth.parquet", compression="zstd")
    decided = [t for t in truths if t.decision_s is not None]
    report = GenerationReport(
        messages=sum(per_topic.values()),
        per_topic=dict(sorted(per_topic.items())),
        malformed=sum(by_kind.values()),
        malformed_by_kind=dict(sorted(by_kind.items())),
        duplicates=duplicates,
        late=late,
        review_rounds=rounds,
        review_decisions=len(decisions),
        investors=len(truths),
        decided=len(decided),
        converted=sum(t.converted for t in decided),
        seconds=time.perf_counter() - started,
    )
    world = {
        "spec": _spec_dict(spec),
        "tenants": [t.name for t in sim.tenants],
        "unknown_tenant_used_for_noise": UNKNOWN_TENANT,
        "messages": report.messages,
        "per_topic": report.per_topic,
        "malformed": report.malformed,
        "malformed_by_kind": report.malformed_by_kind,
        "duplicates": report.duplicates,
        "late_engagements": report.late,
        "review_rounds": report.review_rounds,
        "review_decisions": report.review_decisions,
        "investors": report.investors,
        "decided": report.decided,
        "converted": report.converted,
    }
    (out / "world.json").write_text(json.dumps(world, indent=2, sort_keys=True) + "\n")
    (out / "config.toml").write_text(world_config(sim.tenants, spec.seed))
    profileless = {t.investor.investor_id: t.investor.intent for t in truths
                   if not t.investor.has_profile}
    return _Written(report, timeline.freeze(), profileless, frozenset(answered))


def _spec_dict(spec: WorldSpec) -> dict:
    """The spec as ``world.json`` states it; without profile answers, as it did before
    they existed (same bytes as a world written then)."""
    fields = {**asdict(spec), "start": spec.start.isoformat()}
    if not spec.profile_answers:
        del fields["profile_answers"]
    return fields
