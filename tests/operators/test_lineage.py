"""Lineage: bounded lists whose overflow is counted and digested, never cut (issue 19.6)."""

from __future__ import annotations

import pickle
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from esg_leads.operators.investor_profile import MAX_LINEAGE, InvestorProfileState
from esg_leads.operators.investor_window import MAX_REFS
from esg_leads.operators.lineage import (
    append_refs,
    as_dicts,
    audit_pointer,
    combine,
    compact,
    digest_hex,
    extend_refs,
    omitted_summary,
    PackedRefs,
    pack,
    ref,
    ref_digest,
)
from tests.operators.test_investor_window import T0, facts, fold, item

HALF_LIVES = (1.0, 7.0, 30.0)
refs_st = st.lists(st.builds(ref, st.sampled_from(["e1", "e2", "e3"]),
                             st.sampled_from(["investor.engagements", "esg.property-signals"]),
                             st.integers(0, 2), st.integers(0, 30)), max_size=60)


def _key(r: dict) -> tuple:
    return (r["topic"], r["partition"], r["offset"])


@given(st.lists(refs_st, max_size=6), st.integers(1, 20))
def test_every_reference_is_listed_or_in_the_digest(chunks, limit):
    """Against a plain model: each chunk's new references (not listed yet) join the
    list; what no longer fits falls off, oldest first, into the digest. A reference
    that is used again after it fell off (a property signal) is listed again."""
    listed, omitted = [], None
    model: list[dict] = []
    dropped: list[dict] = []
    for chunk in chunks:
        listed, omitted = append_refs(listed, omitted, chunk, limit)
        for r in chunk:
            if _key(r) not in {_key(m) for m in model}:
                model.append(r)
        while len(model) > limit:
            dropped.append(model.pop(0))
    assert listed == model and len(listed) <= limit
    assert omitted == omitted_summary(len(dropped), sum(ref_digest(r) for r in dropped))
    everything = {_key(r) for chunk in chunks for r in chunk}
    assert everything == {_key(r) for r in (*listed, *dropped)}  # nothing lost


#: References as state meets them: mostly plain, some that cannot be packed (an id
#: holding the separator, an offset beyond 64 bits), so lists go packed and back.
odd_refs_st = st.lists(st.builds(
    ref, st.sampled_from(["e1", "e2", "e3", "", "e\x1f4"]),
    st.sampled_from(["investor.engagements", "esg.property-signals"]), st.integers(0, 2),
    st.integers(0, 30) | st.just(2**40) | st.just(2**64)), max_size=60)


@given(st.lists(refs_st | odd_refs_st, max_size=6), st.integers(1, 20))
def test_compact_references_rebuild_exactly_the_dicts_they_replaced(chunks, limit):
    """Issue 16: state keeps references compact and packed (extend_refs), records
    list dicts. The dicts rebuilt from the packed list are the list of dicts the code
    before kept (append_refs), with the same omitted count and digest, after every
    chunk, and also after a snapshot of the packed list."""
    dicts, compact_refs, omitted_d, omitted_c = [], (), None, None
    for chunk in chunks:
        dicts, omitted_d = append_refs(dicts, omitted_d, chunk, limit)
        previous, before = compact_refs, tuple(compact_refs)
        compact_refs, omitted_c = extend_refs(compact_refs, omitted_c, list(map(compact, chunk)),
                                              limit)
        assert as_dicts(compact_refs) == dicts and omitted_c == omitted_d
        assert list(map(compact, dicts)) == list(compact_refs)
        assert tuple(compact_refs) == tuple(pack(tuple(compact_refs)))
        compact_refs = pickle.loads(pickle.dumps(compact_refs))
        assert tuple(compact_refs) == tuple(map(compact, dicts))
        # What vectors built before share stays as it was, to the last byte.
        assert pickle.dumps(previous) == pickle.dumps(pack(before))
    assert all(ref_digest(r) == ref_digest(compact(r)) for chunk in chunks for r in chunk)


compact_st = st.lists(st.tuples(
    st.text(max_size=6) | st.sampled_from(["e1", "e\x1f", "\x1f", ""]),
    st.sampled_from(["investor.engagements", "esg.property-signals"]),
    st.integers(0, 3) | st.integers(-(2**70), 2**70), st.integers(-(2**70), 2**70)), max_size=12)


@given(compact_st)
def test_packed_references_rebuild_exactly_the_tuples_they_replaced(refs):
    """Issue 16: an investor's references packed (ids joined, topics interned, pairs
    of 64-bit integers) iterate as exactly the tuples packed, also after a snapshot;
    what cannot be packed (an id holding the separator, a number beyond 64 bits) is
    kept as it was."""
    refs = tuple(refs)
    packed = pack(refs)
    assert tuple(packed) == refs and len(packed) == len(refs) and packed == refs
    assert as_dicts(packed) == as_dicts(refs) == [ref(*r) for r in refs]
    restored = pickle.loads(pickle.dumps(packed))
    assert tuple(restored) == refs and restored == packed
    fits = refs and not any("\x1f" in r[0] or not all(-(2**63) <= x < 2**63 for x in r[2:])
                            for r in refs)
    assert (type(packed) is not tuple) == bool(fits)
    if fits:  # one string per topic in the process, however restored
        assert all(t is u for t, u in zip(restored.topics, packed.topics))


@given(refs_st, refs_st)
def test_digests_combine_whatever_the_order(a, b):
    x = omitted_summary(len(a), sum(ref_digest(r) for r in a))
    y = omitted_summary(len(b), sum(ref_digest(r) for r in b))
    assert combine(x, y) == combine(y, x) == omitted_summary(
        len(a) + len(b), sum(ref_digest(r) for r in (*b, *a)))


def test_the_digest_tells_references_apart():
    one = ref("e1", "investor.engagements", 0, 5)
    assert len({ref_digest(one), ref_digest({**one, "offset": 6}), ref_digest({**one, "partition": 1}),
                ref_digest({**one, "event_id": "e2"}), ref_digest({**one, "topic": "x"})}) == 5
    assert combine({"count": 1, "digest": "0" * 64, "audit": "audit:a:i:"},
                   {"count": 2, "digest": "0" * 63 + "1"})["audit"] == "audit:a:i:"
    assert audit_pointer("acme", "inv-1") == "audit:acme:inv-1:"


def test_a_busy_window_counts_and_digests_what_it_does_not_list():
    items = [item("email_open", minutes=i % 50) for i in range(MAX_REFS + 9)]
    agg = fold(items)["inv-1"]
    assert len(agg.refs) == MAX_REFS and agg.omitted["count"] == 9
    late = [{"event_id": it.ingested.event.event_id, "topic": "investor.engagements",
             "partition": 0, "offset": it.ingested.offset} for it in items[MAX_REFS:]]
    assert agg.omitted["digest"] == digest_hex(sum(ref_digest(r) for r in late))


def test_windows_name_the_property_signals_behind_their_facts_once():
    signal = ("sig-9", "esg.property-signals", 1, 77)
    green = facts("p1", high=True)._replace(ref=signal)
    agg = fold([item(f=green), item(f=green), item(f=facts("p2"))])["inv-1"]
    signals = [r for r in agg.refs if r[1] == "esg.property-signals"]
    assert signals == [signal]  # facts without a signal (p2) add nothing
    assert len(agg.refs) == 4


def test_investor_lineage_is_bounded_and_loses_nothing():
    state = InvestorProfileState(HALF_LIVES)
    total = 0
    for w in range(8):
        items = [item("email_open", minutes=i) for i in range(20)]
        total += len(items)
        state.apply_window(fold(items)["inv-1"], T0 + timedelta(hours=w + 1), HALF_LIVES)
    assert len(state.lineage) == MAX_LINEAGE
    assert state.lineage_omitted["count"] == total - MAX_LINEAGE
    # Snapshots from before the digest resume with nothing omitted, not an error.
    old = pickle.loads(pickle.dumps(state))
    del old.lineage_omitted
    resumed = pickle.loads(pickle.dumps(old))
    assert resumed.lineage_omitted is None and resumed.lineage == state.lineage


def test_packed_references_pickle_little_endian_on_any_host(monkeypatch):
    """A snapshot moves between hosts: the 64-bit partitions and offsets are written
    little-endian whatever the host's order (a4481ae wrote them native)."""
    import struct

    from esg_leads.operators import lineage

    refs = (("e1", "investor.engagements", 3, 2**40 + 7), ("e2", "esg.property-signals", -1, 5))
    packed = pack(refs)
    _, (_, _, coords) = packed.__reduce__()
    assert coords == struct.pack("<4q", 3, 2**40 + 7, -1, 5)
    # A big-endian host swaps on the way out and back in: the same bytes, the same refs
    # (simulated here by telling this module the host is big-endian: it then swaps
    # native little-endian integers, which a real big-endian host holds swapped).
    monkeypatch.setattr(lineage, "_LITTLE", False)
    _, (_, _, swapped) = packed.__reduce__()
    assert swapped == struct.pack(">4q", 3, 2**40 + 7, -1, 5)
    assert tuple(lineage._unpickle(packed.ids, packed.topics, swapped)) == refs


#: ``pickle.dumps`` (base85) of ``(pack(REFS), pack(REFS[1:]))`` by a4481ae's code.
A4481AE_REFS = (
    "fCQD=000000001t8)b86Uu<PzWOFWWaAk5~bZ>HVE^KLTWnpJ!l#B^qb#8EJV{2?>l#`T<2xT!JWilUSGn9-JX>N"
    "99b98TVE@f_KVP|D+Wo~qHl#CQ*b7wAaa&K^Da&&nub7^O8VQh1hXat9pLofpX00000000L70000100960|NsC0|"
    "NjL5000000000000000000R900000005MSlv0#v0*nP^G9P6#lxPKL1csDDApigW|NsC0{{;X500000000000000"
    "000{s9000000F;N6Qj~_2E&"
)
REFS = (("e1", "investor.engagements", 3, 2**40 + 7), ("e2", "esg.property-signals", -1, 5),
        ("e3", "investor.engagements", 0, 9))


def test_references_hold_a_byte_per_topic_and_32_bit_pairs_when_they_fit():
    """Stop 31 (issue 16): a topic index (one byte) per reference instead of a tuple
    slot, and 32-bit pairs unless one needs 64; a4481ae's snapshots restore so, and
    what this version pickles is what a4481ae pickled (topic names, 64-bit pairs)."""
    import base64

    wide, narrow = pickle.loads(base64.b85decode("".join(A4481AE_REFS)))
    assert tuple(wide) == REFS and tuple(narrow) == REFS[1:]
    assert (wide.coords.typecode, narrow.coords.typecode) == ("q", "i")
    assert len(narrow.kinds) == 2 and type(narrow.kinds) is bytes
    assert pickle.dumps((pack(REFS), pack(REFS[1:]))) == base64.b85decode("".join(A4481AE_REFS))
    # Extended past the 64-bit pair, the rest is 32-bit again; equal lists pickle alike.
    grown, _ = extend_refs(wide, None, [("e4", "esg.property-signals", 1, 2)], limit=3)
    assert grown.coords.typecode == "i" and tuple(grown) == (*REFS[1:], ("e4", "esg.property-signals", 1, 2))
    assert pickle.dumps(grown) == pickle.dumps(pack(tuple(grown)))


def test_a_257th_topic_is_kept_unpacked(monkeypatch):
    from esg_leads.operators import lineage

    topics = [f"t{i}" for i in range(256)]
    monkeypatch.setattr(lineage, "_TOPICS", list(topics))
    monkeypatch.setattr(lineage, "_TOPIC_INDEX", {t: i for i, t in enumerate(topics)})
    assert type(pack((("e1", "t255", 0, 1),))) is PackedRefs
    refs = (("e1", "t1", 0, 1), ("e2", "another", 0, 2))
    assert pack(refs) == refs and type(pack(refs)) is tuple
    assert lineage._unpickle("e1\x1fe2", ("t1", "another"), bytes(32)) == (
        ("e1", "t1", 0, 0), ("e2", "another", 0, 0))


def test_threads_adding_topics_at_once_never_share_an_index() -> None:
    """bytewax runs a process's workers as threads: two adding new topics together must
    not give both one index (a topic would read back as another, in every lineage)."""
    import sys
    import threading

    from esg_leads.operators import lineage as module

    saved = (list(module._TOPICS), dict(module._TOPIC_INDEX), sys.getswitchinterval())
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        for _ in range(40):
            module._TOPICS.clear()
            module._TOPIC_INDEX.clear()
            start = threading.Barrier(4)

            def add(k: int) -> None:
                start.wait()
                for j in range(50):
                    module._kinds((f"topic-{k}-{j}",))

            threads = [threading.Thread(target=add, args=(k,)) for k in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(module._TOPICS) == 200
            assert all(module._TOPICS[i] == t for t, i in module._TOPIC_INDEX.items())
    finally:
        module._TOPICS[:] = saved[0]
        module._TOPIC_INDEX.clear()
        module._TOPIC_INDEX.update(saved[1])
        sys.setswitchinterval(saved[2])
