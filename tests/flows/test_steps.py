"""The glue in flows/steps.py: shard keys, window phases, the streaming GC policy."""

from __future__ import annotations

import gc
import zlib

from flows.steps import shard_key, streaming_gc


def test_shard_key_is_stable_and_bounded() -> None:
    keys = {shard_key("acme", f"inv-{i}", 16) for i in range(1000)}
    assert len(keys) == 16
    assert all(k.startswith("acme/") for k in keys)
    # crc32, not hash(): the same investor maps to the same shard in every process.
    assert shard_key("acme", "inv-7", 16) == f"acme/{zlib.crc32(b'inv-7') % 16:04d}"



def test_streaming_gc_freezes_survivors_and_restores_everything() -> None:
    before = gc.get_threshold()
    callbacks = list(gc.callbacks)
    with streaming_gc():
        assert gc.get_threshold()[0] == 700
        frozen = gc.get_freeze_count()
        survivors = [[i] for i in range(2000)]  # containers that outlive a young collection
        gc.collect(0)
        assert gc.get_freeze_count() >= frozen + len(survivors)
    assert gc.get_threshold() == before
    assert gc.callbacks == callbacks
    assert gc.get_freeze_count() == 0


def test_streaming_gc_restores_on_error() -> None:
    before = gc.get_threshold()
    try:
        with streaming_gc():
            raise RuntimeError("flow failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
