"""PackedHistory: an investor's kept vectors in one bytes, rebuilt exactly (issue 16)."""

from __future__ import annotations

import base64
import pickle
import random
import struct
import sys
import zlib
from array import array
from datetime import datetime, timedelta, timezone

import pyarrow as pa
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from esg_leads.operators.feature_definitions import FEATURE_NAMES
from esg_leads.operators.investor_profile import HISTORY, InvestorProfileState
from esg_leads.operators.kept_vectors import KeptVector, PackedHistory
from esg_leads.schemas.records import FeatureVector

N = len(FEATURE_NAMES)
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
#: pydantic's UTC: equal to timezone.utc, but another object, which must come back.
PYDANTIC_UTC = TypeAdapter(datetime).validate_python("2026-03-02T10:00:00Z").tzinfo
ZONES = st.sampled_from([timezone.utc, PYDANTIC_UTC, timezone(timedelta(hours=2)),
                         timezone(timedelta(0), "Z"), None])
# Every double, NaNs with any payload among them (bits, not values, must come back).
# Zeros and repeats too, which compress (raw LZ4), and noise, which does not (kept raw).
DOUBLES = st.integers(0, (1 << 64) - 1).map(lambda b: struct.unpack("<d", struct.pack("<Q", b))[0]) \
    | st.sampled_from([0.0, -0.0, 1.0])
INGEST = st.none() | st.integers(-(1 << 63), (1 << 63) - 1) | st.sampled_from([0, 1_700_000_000_000])


@st.composite
def kept_vectors(draw, investor="inv-1") -> KeptVector:
    keys = draw(st.sampled_from([(), ("efficiency", "fit", "stated"), ("fit",)]))
    as_of = draw(st.datetimes(timezones=ZONES)).replace(fold=draw(st.integers(0, 1)))
    return KeptVector("acme", investor, as_of, draw(st.sampled_from(["v", "v2"])),
                      array("d", draw(st.lists(DOUBLES, min_size=N + 4 + len(keys),
                                               max_size=N + 4 + len(keys)))),
                      keys, draw(INGEST), draw(st.sampled_from([(), ("recency_days",)])))


def stored(history: PackedHistory) -> list[bytes]:
    """Each vector's doubles as ``data`` holds them (decompressed), read by hand."""
    out, at = [], 20 * len(history)
    for i, meta in enumerate(history.metas):
        size = struct.unpack_from("<I", history.data, 20 * i + 16)[0]
        width = 8 * (N + 4 + len(meta[1]))
        body = history.data[at:at + size]
        out.append(body if size == width else pa.Codec("lz4_raw").decompress(
            body, decompressed_size=width, asbytes=True))
        at += size
    assert at == len(history.data)
    return out


def exact(vector: KeptVector) -> tuple:
    """Everything a kept vector holds, doubles as bits, the time zone by identity."""
    return (*vector[:2], vector.as_of, vector.as_of.tzinfo is not None and id(vector.as_of.tzinfo),
            vector.as_of.tzname(), vector.as_of.fold, *vector[3:4], vector.numbers.tobytes(),
            *vector[5:])


@hsettings(max_examples=120, deadline=None)
@given(st.lists(kept_vectors(), min_size=1, max_size=12))
def test_packed_vectors_come_back_exactly_bits_zones_and_all(vectors):
    packed = PackedHistory.of(vectors)
    assert packed is not None
    restored = pickle.loads(pickle.dumps(packed))
    for history in (packed, restored):
        assert [exact(v) for v in history] == [exact(v) for v in vectors]
        assert history.latest_as_of() == vectors[-1].as_of
    # Grown one at a time, the oldest beyond the limit dropped: the same as the list's.
    grown = PackedHistory.of(vectors[:1])
    for v in vectors[1:]:
        grown = grown.plus(v, HISTORY)
    assert [exact(v) for v in grown] == [exact(v) for v in vectors[-HISTORY:]]
    kept = vectors[-HISTORY:]
    assert stored(grown) == [v.numbers.tobytes() for v in kept]  # (a little-endian host)
    assert len(grown.data) <= sum(20 + 8 * len(v.numbers) for v in kept)  # never longer


@hsettings(max_examples=60, deadline=None)
@given(st.lists(kept_vectors(), min_size=1, max_size=6), st.datetimes(timezones=st.just(timezone.utc)))
def test_the_vector_as_of_a_time_is_the_lists(vectors, when):
    vectors = [v._replace(as_of=v.as_of.replace(tzinfo=timezone.utc)) for v in vectors]
    packed = PackedHistory.of(vectors)
    expected = next((v for v in reversed(vectors) if v.as_of <= when), None)
    found = packed.last_at_or_before(when)
    assert (found and exact(found)) == (expected and exact(expected))


def test_what_cannot_be_packed_exactly_is_not():
    base = KeptVector("acme", "inv-1", T0, "v", array("d", [0.0] * (N + 4)), (), None, ())
    assert PackedHistory.of([]) is None
    assert PackedHistory.of([base, base._replace(investor_id="inv-2")]) is None
    assert PackedHistory.of([base._replace(ingest_ms=1 << 63)]) is None  # beyond 64 bits
    assert PackedHistory.of([base._replace(ingest_ms=True)]) is None  # a bool, not an int
    assert PackedHistory.of([base._replace(numbers=array("d", [0.0] * N))]) is None
    assert PackedHistory.of([base._replace(numbers=array("f", [0.0] * (N + 4)))]) is None
    old = FeatureVector("acme", "inv-1", T0, "v", None, (), 0.0, {}, 0.0, 0.0, None, None, ())
    assert PackedHistory.of([base, old]) is None
    assert PackedHistory.of([base]).plus(old, HISTORY) is None  # type: ignore[arg-type]


def test_doubles_are_little_endian_in_memory_and_snapshots_on_any_host():
    numbers = array("d", [float(i) + 0.5 for i in range(N + 4)])
    packed = PackedHistory.of([KeptVector("acme", "inv-1", T0, "v", numbers, (), 7, ())])
    us = (T0.toordinal() - 1) * 86_400_000_000 + 10 * 3_600_000_000
    expected = struct.pack(f"<qq{N + 4}d", us, 7, *numbers)
    assert packed.data[:16] + stored(packed)[0] == expected
    assert pickle.loads(pickle.dumps(packed)) == packed
    # What a big-endian host does: swap on the way in and out, same bytes.
    with_big = sys.modules["esg_leads.operators.kept_vectors"]
    try:
        with_big._LITTLE = False
        swapped = PackedHistory.of([KeptVector("acme", "inv-1", T0, "v", numbers, (), 7, ())])
        (native,) = stored(swapped)
        (back,) = swapped
    finally:
        with_big._LITTLE = True
    # On this (little-endian) host the swapped path writes big-endian doubles and reads
    # them back: a real big-endian host runs the same two swaps on its native order.
    assert native == struct.pack(f">{N + 4}d", *numbers)
    assert back.numbers == numbers


#: ``pickle.dumps`` of an InvestorProfileState that a4481ae's code (main at stop 31's
#: start) built with ``remember(vector(i))`` for i in 0, 1, 2 (``vector`` below), zlib
#: and base85: its history a list of ``esg_leads.operators.investor_profile.KeptVector``.
A4481AE_STATE = (
    "c-rk%U1(fI6yCH=ve|9(gMpU%N1@>6!HCZVCrQy#7D7=J1miHdcXsbIckkWI%-uAt!4_gfxFDEO+gP=!)l{u*Q-5"
    "2k7)7e!Llk}RO&@&msfdX6$uoCmCmRj;QhajuE_de4%sFSi?>lpkZh3yWkjq-Sn~Ew9De=W%T&JAKn2SLcHK>3du"
    "JgFULaNgK{nm8ASRRr@QZ=szj;YZZRZ2S~jYuR_np0^pAj0i@Cf(+|$>};(qiK&w#)Ze(ICZA22NTYO&pgTE2*!C"
    "Yjs%UQP&44qk8u=B?2#}8e+9|B2`X`o>6LCo4rxDN#I){VPNIp{@i>Wm7;oovGGUzh*rQys3iF7LDAYh&6cr!xA-"
    "qbZ-kD5b0fvx_(-6kJ5CD52tHHT3<f^^*&_iCB_~4BQL8bQ6YaC!NP9n(})wXTc<`#A9{aD5!;2nAT{6#pgB%Z{a"
    "R<huc!^npt_q2{N(fRc?5ylltWWpiRXxiOG%6NmFU6R!(J{(6nO1l@vo=&_YOHZh@op4U3fnJ<-AiM@%^27tafZm"
    "c@Vc+vAZSz&RcW*vto0955nD%L11}fNH3hoL@8_YKtof2wa)0!5w?l`T-T(+9KA#K*6c#1`Sylz9MJ`_lzCB}i=O"
    ">QRFuBL!QORS-r<a<pR>8%@;o)_2Znz}TPrzooifDTmIn3~hOJFJ9)`<j-{1_=|2qZXjLj7cQ57GvHTCtGbbN+pY"
    "`LX`nt;3Cv%LBB)Bl7vEysZu$oe{N4XM}g`o3WW%hE#`GA`k<;v7{lS<p9KcZbwMP!25?OawNPOk`hrqj!^M!mz%"
    "Z}Ns?KSH#fexmb<4P}1z*=yOS4-ck7-mTRjSLnGh`8kKGar^?c%t`q%^Yu)7Q_mPC3Y>g)&I>5$Y7ag?Kf%;o9Mv"
    "y8B-6>qCX>s%h=ctG$KJUp8+tx26hkn%DNMuIBYHt23X5lEB!2_B8PG6#O%u+8S$G8adjQ`@j7s?MGzZtM;8AT3?"
    "QvD@+1OqXSYMQ^8}UU@Uk%AcpIr<@%r|FsN-r-*was^KjO_ci|RJ==PPhe}SIcy&s;>?EI(bwri8{T(#>iqX)K+$"
    "#3re(5`<U_3v4}WzX`vcHbq`m$hZP|0230Yv-+>bEtG-@#@^KZ&`nDq8)Ptp0n2P67qKyAN_LV4eS4Pbfo|MzMl@"
    "Cv2k8Q!99x~&;EYe#ygE(II@#mURtzq7tw6*NPgGsDI5P3%HR3K^_9+7Z62?n+rJxz=VhDENwj)prT@mcmuy}OXy"
    "=(>couAaC(xfePCmPG<G9W9IQp%9W*D!&i2jc2diwr&vWZtlU%<<48!@-_-<it|H6s~Bes&Q}gdZHE29a-FCgy}+"
    "JBAIy*BsLZ(a#;@2Ei4_yg}>}rvQV{6{iG)$VW~QhPe-%G7NL?IfWSJE;*$b=9Zme409Kqatw19oPrE<?>HqH=H7"
    "OSGR&<h%P@D=Da<gpgx2Hw&%$fs)nsl{#vDxx@DZ568+}t~S~Q=Di71|e??f`E#s~ibrz#+n"
)


def test_a_snapshot_of_a4481ae_restores_packed_and_continues_identically():
    def vector(i: int) -> FeatureVector:
        values = tuple(float(i) / (k + 1) for k in range(N))
        return FeatureVector("acme", "inv-1", T0 + timedelta(hours=i), "v",
                             dict(zip(FEATURE_NAMES, values)), values, 1.0 * i, {"fit": 0.1 * i},
                             0.5, 0.25, None if i % 2 else 3.0, None, (), i or None, ())

    unbroken = InvestorProfileState((1.0,))
    for i in range(3):
        unbroken.remember(vector(i))
    restored = pickle.loads(zlib.decompress(base64.b85decode("".join(A4481AE_STATE))))
    assert type(restored.history) is PackedHistory
    assert restored.history == unbroken.history
    for i in range(3, 9):
        for state in (unbroken, restored):
            state.remember(vector(i))
        for j in range(i + 1):
            when = T0 + timedelta(hours=j, minutes=30)
            assert repr(restored.features_as_of(when)) == repr(unbroken.features_as_of(when))
    assert restored.latest_as_of() == unbroken.latest_as_of() == T0 + timedelta(hours=8)
    assert restored.features_as_of(T0 + timedelta(hours=8)) == vector(8).features_only()


def test_the_doubles_are_compressed_when_that_is_shorter_else_kept_raw():
    zeros = KeptVector("acme", "inv-1", T0, "v", array("d", [0.0] * (N + 4)), (), None, ())
    packed = PackedHistory.of([zeros] * HISTORY)
    assert len(packed.data) < HISTORY * (20 + 8 * (N + 4)) / 2  # compressed
    noise = zeros._replace(numbers=array("d", random.Random(7).randbytes(8 * (N + 4))))
    raw = PackedHistory.of([noise])
    assert len(raw.data) == 20 + 8 * (N + 4)  # noise does not compress: kept raw
    assert [exact(v) for v in raw] == [exact(noise)]
    assert [exact(v) for v in packed.plus(noise, HISTORY)] == [exact(zeros)] * 3 + [exact(noise)]
