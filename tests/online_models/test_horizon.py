"""HorizonLabeller: each score meets its own outcome, point in time, never earlier."""

from __future__ import annotations

import base64
import pickle
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.online_models.horizon import DAY_S, HorizonLabeller

H = 90 * DAY_S


def test_a_qualification_labels_the_scores_before_it_by_their_own_horizon():
    # By hand, horizon 90 days, qualified on day 100: the score of day 0 is more than
    # 90 days before it (a negative), those of days 10 (exactly 90) and 50 are within.
    h = HorizonLabeller(H)
    assert h.record(["a", "a", "a"], [0.0, 10 * DAY_S, 50 * DAY_S], [0.1, 0.2, 0.3],
                    [0.11, 0.22, 0.33]) == []
    assert h.resolve("a", 100 * DAY_S, True) == [(0.1, 0.11, False), (0.2, 0.22, True),
                                                  (0.3, 0.33, True)]
    assert h.waiting() == 0


def test_a_disqualification_labels_every_waiting_score_negative():
    h = HorizonLabeller(H)
    h.record(["a", "b", "a"], [0.0, 1.0, 2.0], [0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert h.resolve("a", 3.0, False) == [(0.5, 0.5, False), (0.7, 0.7, False)]
    assert h.waiting() == 1  # b's score still waits


def test_a_score_at_or_after_the_outcome_is_not_about_it():
    h = HorizonLabeller(H)
    h.record(["a", "a"], [10.0, 20.0], [0.1, 0.2], [0.1, 0.2])
    assert h.resolve("a", 20.0, True) == [(0.1, 0.1, True)]
    assert h.waiting() == 1  # the score as of the outcome's own instant waits on


def test_a_decided_lead_is_not_kept_until_a_horizon_after_its_outcome():
    h = HorizonLabeller(H)
    h.resolve("a", 0.0, True)
    h.record(["a"], [H - 1.0], [0.9], [0.9])
    assert h.waiting() == 0
    h.record(["a"], [H], [0.4], [0.4])  # a horizon later: an open lead again
    assert h.waiting() == 1


def test_a_negative_arrives_by_event_time_once_the_horizon_has_passed_and_only_once():
    h = HorizonLabeller(H)
    h.record(["a"], [0.0], [0.3], [0.35])
    assert h.advance(H - 1.0) == []  # one second early: still unknown
    assert h.advance(H - 1.0 + DAY_S) == [(0.3, 0.35, False)]  # at the next daily sweep
    assert h.advance(10 * H) == []
    assert h.resolve("a", 10 * H, True) == []  # too late to count, and counted already


def test_the_sweep_runs_once_a_day_of_event_time_so_a_negative_may_come_later_never_earlier():
    h = HorizonLabeller(H)
    h.advance(0.0)  # swept at 0: the next sweep is due at one day
    h.record(["a"], [0.0], [0.3], [0.3])
    assert h.advance(0.5 * DAY_S) == []
    assert h.advance(H + 0.5 * DAY_S) == [(0.3, 0.3, False)]


def test_an_investor_scored_too_often_loses_its_oldest_waiting_scores():
    h = HorizonLabeller(H, max_pending=2)
    h.record(["a"] * 3, [1.0, 2.0, 3.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert h.dropped == 1
    assert h.resolve("a", 4.0, True) == [(0.2, 0.2, True), (0.3, 0.3, True)]


def test_no_investor_id_is_held_in_clear():
    h = HorizonLabeller(H, salt=b"k")
    h.record(["investor-123"], [0.0], [0.1], [0.1])
    h.resolve("investor-456", 1.0, False)
    held = repr(h.pending) + repr(h.decided)
    assert "investor" not in held and b"investor" not in b"".join([*h.pending, *h.decided])


@pytest.mark.parametrize(("horizon", "pending"), [(0.0, 1), (1.0, 0)])
def test_rejects_a_senseless_setting(horizon, pending):
    with pytest.raises(ValueError, match="positive"):
        HorizonLabeller(horizon, max_pending=pending)


# A stream of events on a nondecreasing clock: ("score", investor, raw) and
# ("outcome", investor, converted), each after a step of 0-40 days.
events = st.lists(st.tuples(
    st.sampled_from(["score", "score", "outcome"]), st.sampled_from("abcd"),
    st.integers(0, 40 * 24), st.booleans(), st.floats(0, 1)), max_size=60)


def oracle(stream: list[tuple[str, str, float, bool, float]], end: float) -> list[tuple[float, bool]]:
    """Every score's label, straight from the definition, knowing the whole stream."""
    out, last_outcome = [], {}
    for i, (kind, who, t, converted, raw) in enumerate(stream):
        if kind == "outcome":
            last_outcome[who] = t
            continue
        o = last_outcome.get(who)
        if o is not None and o <= t < o + H:
            continue  # a decided lead: not kept
        later = [(t2, c2) for k2, w2, t2, c2, _ in stream[i + 1:]
                 if k2 == "outcome" and w2 == who and t2 > t]
        if later:
            out.append((raw, later[0][1] and later[0][0] - t <= H))
        elif t + H <= end - DAY_S:  # swept by the end (a sweep a day at least)
            out.append((raw, False))
    return out


@settings(max_examples=200, deadline=None)
@given(events)
def test_labels_equal_the_definition_and_are_never_known_early(stream):
    h = HorizonLabeller(H, max_pending=1000)
    clock, timed, got = 0.0, [], []
    for kind, who, hours, converted, raw in stream:
        clock += hours * 3600.0
        timed.append((kind, who, clock, converted, raw))
        if kind == "score":
            pairs = h.record([who], [clock], [raw], [raw])
        else:
            pairs = h.resolve(who, clock, converted)
        for r, p, y in pairs:
            assert r == p
            got.append((r, y))
        # Point in time: whatever is returned now was decidable now.
        known = [(raw2, t2) for k2, _, t2, _, raw2 in timed if k2 == "score"]
        for r, _, y in pairs:
            if kind == "score" or not y:
                assert any(r == raw2 and t2 <= clock for raw2, t2 in known)
    end = clock + 2 * H
    for r, _, y in h.advance(end):
        got.append((r, y))
    assert sorted(got) == sorted(oracle(timed, end + DAY_S))
    assert h.waiting() == 0


def test_waiting_scores_are_lists_and_snapshots_holding_deques_go_on_alike():
    """Issue 16: a deque per waiting investor was 624 bytes; earlier snapshots hold them."""
    import pickle
    from collections import deque

    now, older = HorizonLabeller(H, max_pending=3), HorizonLabeller(H, max_pending=3)
    for h in (now, older):
        h.record(["a", "a", "b", "c"], [0.0, 10.0, 20.0, 30.0], [0.1, 0.2, 0.3, 0.4],
                 [0.1, 0.2, 0.3, 0.4])
    assert all(type(w) is list for w in now.pending.values())
    older.pending = {k: deque(w) for k, w in older.pending.items()}
    older = pickle.loads(pickle.dumps(older))
    for h in (now, older):
        h.out = [h.record(["a", "a"], [40.0, 50.0], [0.5, 0.6], [0.5, 0.6]),  # drops a's oldest
                 h.resolve("b", 60.0, True), h.advance(30.0 + H + 2 * DAY_S),
                 h.record(["d"], [30.0 + H + 3 * DAY_S], [0.7], [0.7])]
    assert now.out == older.out and now.dropped == older.dropped == 1
    assert {k: list(w) for k, w in older.pending.items()} == now.pending


# ------------------------------------------- packed waiting scores (issue 16)

def row(raw: float, wide: bool = False) -> bytes:
    """A payload as the scorer keeps one (float32s); ``wide``: another length."""
    return struct.pack("<2f", raw, raw / 2) + (b"\0" * 4 if wide else b"")


def raw_of(payload: bytes) -> float:
    return struct.unpack_from("<f", payload)[0]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["score", "score", "outcome", "restore"]), st.sampled_from("abc"),
    st.integers(0, 40 * 24), st.booleans(), st.integers(0, 1000), st.booleans()), max_size=60),
    st.integers(1, 4))
def test_packed_waiting_scores_label_exactly_as_the_list_of_them(stream, max_pending):
    """Bytes payloads (packed) and float payloads (a list each): the same pairs, in the
    same order, the same drops, across snapshot restores; a payload of another length
    unpacks that investor's scores, and they go on alike."""
    packed, listed = HorizonLabeller(H, max_pending), HorizonLabeller(H, max_pending)
    clock = 0.0
    for kind, who, hours, converted, milli, wide in stream:
        clock += hours * 3600.0
        raw = milli / 1000
        if kind == "score":
            got = packed.record([who], [clock], [row(raw, wide and milli % 5 == 0)], [raw + 1])
            want = listed.record([who], [clock], [struct.unpack("<f", row(raw)[:4])[0]], [raw + 1])
        elif kind == "outcome":
            got, want = packed.resolve(who, clock, converted), listed.resolve(who, clock, converted)
        else:
            packed, listed = (pickle.loads(pickle.dumps(h)) for h in (packed, listed))
            continue
        assert [(raw_of(r), p, y) for r, p, y in got] == want
        assert (packed.waiting(), packed.dropped) == (listed.waiting(), listed.dropped)
    got, want = packed.advance(clock + 2 * H), listed.advance(clock + 2 * H)
    assert [(raw_of(r), p, y) for r, p, y in got] == want and packed.waiting() == 0


def test_an_investors_waiting_scores_are_one_bytes_with_little_endian_times():
    h = HorizonLabeller(H, salt=b"k")
    h.record(["a", "a"], [10.0, 20.0], [row(0.5), row(0.25)], [0.1, 0.2])
    (waiting,) = h.pending.values()
    assert waiting == struct.pack("<I", 8) + struct.pack("<dd", 10.0, 0.1) + row(0.5) + \
        struct.pack("<dd", 20.0, 0.2) + row(0.25)
    assert pickle.loads(pickle.dumps(h)).pending == h.pending


#: ``pickle.dumps`` of a HorizonLabeller that a4481ae's code built (zlib, base85):
#: ``HorizonLabeller(H, max_pending=3, salt=b"k")``, then ``record(["a", "a", "b",
#: "c", "a", "a"], [0, 10, 20, 30, 40, 50], [row3(i) for i in range(6)], [0.1, ...,
#: 0.6])`` (``row3``: ``struct.pack("<3f", i, i / 2, i / 3)``) and ``resolve("c",
#: 35.0, True)``: its waiting scores lists of tuples.
A4481AE_LABELLER = (
    "c-m`VnL34$0StQNQ;XB%b5aviiuLmIax(K$<8$*<Qge#+GV+TutMc=v^zeH?SU!nKsW~~RMN=kE(QKSjJ4K_16RI"
    "Y@c#6AY?8*aR1G#e(E8+`M^HMVN(x-Sc_prtnC+3t)ac0b((!&lD2kLefkd)gRe$K?D^1uPLY=?<QWv9eW(QtQAf"
    "jG>Whk>EN9>}m?y=s-+6nFcRGeKZh`xJKv7bGPPK!yWQi9Jxs1Bf_Ci6=tI0-zEFhtSZgASI8D!JvIgs<XiM!j)H"
    "hn(s$`I9|?VRHASQXurFI2|^=-1IP)hS80JXUWRE*EbU=WNlng7NlgKI!&%@QL*c=hNxAvAXFt1N{Nwdgpc#%0U^"
    "9w)Sd(+|ld}=d>EVvgORXr0FD_3_EdUCCl~w=?v!@j07Zd;u^kytg(gOgew2MF"
)


def test_a_snapshot_of_a4481ae_restores_packed_and_goes_on_identically():
    def row3(i: float) -> bytes:
        return struct.pack("<3f", i, i / 2, i / 3)

    unbroken = HorizonLabeller(H, max_pending=3, salt=b"k")
    unbroken.record(["a", "a", "b", "c", "a", "a"], [0.0, 10.0, 20.0, 30.0, 40.0, 50.0],
                    [row3(i) for i in range(6)], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    unbroken.resolve("c", 35.0, True)
    restored = pickle.loads(zlib.decompress(base64.b85decode("".join(A4481AE_LABELLER))))
    assert all(type(w) is bytes for w in restored.pending.values())
    assert restored.__dict__ == unbroken.__dict__
    for h in (unbroken, restored):
        h.out = [h.record(["a", "b"], [60.0, 70.0], [row3(6), row3(7)], [0.7, 0.8]),
                 h.resolve("a", 80.0, True), h.advance(H + 2 * DAY_S),
                 h.record(["d"], [H + 3 * DAY_S], [row3(8)], [0.9])]
    assert restored.out == unbroken.out and restored.dropped == unbroken.dropped == 2
