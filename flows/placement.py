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

import struct

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


__all__ = ["placed", "unplaced", "worker_of"]
