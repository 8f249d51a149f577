"""Which worker a keyed step's key runs on, and key names that choose it.

bytewax sends an item of a keyed step to worker ``SipHash-1-3(key) % workers``
(Rust's ``DefaultHasher`` over the key string: its UTF-8 bytes, then ``0xff``;
:func:`worker_of`, checked against bytewax itself in tests/flows/test_placement.py).
Left to that hash, a tenant's intake, its sixteen investor shards and its scoring
land on workers at random, and in a cluster of several processes about half of the
items between two steps cross to another process, each pickled, sent and loaded
(measured: ~160 µs per crossing item on the 2-core bench machine, which doubled the
CPU per event of a two-process replay). :func:`placed` names a key so that it runs
on a chosen worker: the key plus ``~n`` for the smallest ``n`` that hashes there.

Placement changes where a step runs, never what it decides: a multi-lane step
orders the items of one input position by lane name (:mod:`flows.ordering`), and
the lanes it compares keep their order when placed — they differ before the suffix
(``investors:`` against ``scoring:`` or ``global_model:``; one shard against
another, whose numbers are fixed-width).

>>> worker_of(placed("acme/0003", 2, 4), 4)
2
>>> placed("acme", 0, 1)
'acme'
>>> unplaced("acme~3"), unplaced("acme/0003~12"), unplaced("acme")
('acme', 'acme/0003', 'acme')
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable, Mapping, Sequence

_MASK = (1 << 64) - 1
#: Separates a key from its placement suffix (sorts after digits, letters, "/", "-").
SUFFIX = "~"


def _rotl(x: int, bits: int) -> int:
    return ((x << bits) | (x >> (64 - bits))) & _MASK


def siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 of ``data`` (Rust's ``DefaultHasher`` with its fixed zero keys)."""
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573

    def sip_round() -> None:
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & _MASK
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & _MASK
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & _MASK
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & _MASK
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)

    end = len(data) - len(data) % 8
    for i in range(0, end, 8):
        m = struct.unpack_from("<Q", data, i)[0]
        v3 ^= m
        sip_round()
        v0 ^= m
    last = (len(data) & 0xFF) << 56
    for i, byte in enumerate(data[end:]):
        last |= byte << (8 * i)
    v3 ^= last
    sip_round()
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        sip_round()
    return v0 ^ v1 ^ v2 ^ v3


def worker_of(key: str, workers: int) -> int:
    """The worker (index over the whole cluster) bytewax runs ``key`` on."""
    return siphash13(key.encode() + b"\xff") % workers


def placed(key: str, worker: int, workers: int) -> str:
    """``key`` named so that it runs on ``worker`` of ``workers`` (itself for one worker)."""
    if workers <= 1:
        return key
    n = 0
    while worker_of(name := f"{key}{SUFFIX}{n}", workers) != worker:
        n += 1
    return name


def unplaced(key: str) -> str:
    """The key's name without its placement suffix."""
    return key.split(SUFFIX, 1)[0]


#: Worker 0's share of a replay's work for reading and parsing the recording (the rest is
#: the tenants' keyed steps): measured with py-spy on a 101k-event world, P=2 with the
#: tenants placed away from worker 0 (5.3 of 35.6 CPU-s).
READER_SHARE = 0.15


def assign_tenants(tenants: Iterable[str], workers: int,
                   weights: Mapping[str, float] | None = None,
                   reader: float = READER_SHARE, processes: int = 1) -> dict[str, int]:
    """Each tenant's worker, balancing the work: a tenant's keyed steps run on one worker
    (its intake holds the tenant's clock), so the unit to balance is a tenant, weighed by
    ``weights`` (e.g. its messages in a recording; equal when unknown), with worker 0
    also reading the input (``reader`` of the whole work).

    Minimises the busiest worker's load (then the spread, then the assignment's order):
    exhaustively for a few tenants, else largest-first and then moves and swaps while
    they lower it. A tenant missing from ``weights`` (or counted 0) weighs the average.
    With ``processes`` (of ``workers // processes`` workers each, numbered in order) the
    busiest *process* comes first: the workers of one process share its interpreter
    lock, so two tenants on two workers of one process run no faster than on one.

    >>> assign_tenants(["a", "b", "c"], 2)  # equal weights: worker 0 reads, so it takes one
    {'a': 0, 'b': 1, 'c': 1}
    >>> assign_tenants(["acme", "borealis", "cityline"], 2, {"acme": 41, "borealis": 33, "cityline": 26})
    {'acme': 0, 'borealis': 1, 'cityline': 1}
    >>> assign_tenants(["a", "b"], 1)
    {'a': 0, 'b': 0}
    >>> assign_tenants(["a", "b"], 4, reader=0), assign_tenants(["a", "b"], 4, reader=0, processes=2)
    ({'a': 0, 'b': 1}, {'a': 0, 'b': 2})
    """
    names = sorted(tenants)
    if workers <= 1 or not names:
        return {t: 0 for t in names}
    known = [weights[t] for t in names if weights and weights.get(t, 0) > 0]
    default = sum(known) / len(known) if known else 1.0
    raw = [(weights or {}).get(t) or default for t in names]
    total = sum(raw)
    work = [(1 - reader) * w / total for w in raw]
    per_process = max(1, workers // max(1, processes))

    def cost(choice: Sequence[int]) -> tuple[float, float, float, tuple[int, ...]]:
        loads = [0.0] * workers
        loads[0] = reader
        for w, worker in zip(work, choice, strict=True):
            loads[worker] += w
        shares = [0.0] * (workers // per_process + 1)
        for worker, load in enumerate(loads):
            shares[worker // per_process] += load
        return (round(max(shares), 12) if per_process > 1 else 0.0, round(max(loads), 12),
                round(sum(x * x for x in loads), 12), tuple(choice))

    if workers ** len(names) <= 4096:
        best = min(itertools.product(range(workers), repeat=len(names)), key=cost)
        return dict(zip(names, best, strict=True))
    loads = [reader] + [0.0] * (workers - 1)
    choice = [0] * len(names)
    for i in sorted(range(len(names)), key=lambda i: (-work[i], names[i])):
        worker = min(range(workers), key=lambda k: (loads[k], k))
        choice[i] = worker
        loads[worker] += work[i]
    improved = True
    while improved:
        improved = False
        current = cost(choice)
        candidates = [[*choice[:i], k, *choice[i + 1:]] for i in range(len(names))
                      for k in range(workers) if k != choice[i]]
        candidates += [_swapped(choice, i, j) for i in range(len(names))
                       for j in range(i + 1, len(names)) if choice[i] != choice[j]]
        better = min(candidates, key=cost, default=None)
        if better is not None and cost(better) < current:
            choice, improved = better, True
    return dict(zip(names, choice, strict=True))


def _swapped(choice: list[int], i: int, j: int) -> list[int]:
    out = list(choice)
    out[i], out[j] = out[j], out[i]
    return out


__all__ = ["READER_SHARE", "assign_tenants", "placed", "unplaced", "worker_of"]
