"""Decoding a segment's next Arrow batch in the background while the current one is used."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, Final

import pyarrow as pa


class Prefetcher:
    """Decode the next Arrow batch in a daemon thread while the current one is used.

    Parquet decoding (decompression, page decoding) releases the GIL, so it
    overlaps with the Python work of turning the previous batch into
    messages.  The thread decodes a batch only after the consumer has taken
    the previous one, so at most two decoded batches exist per segment (the
    consumer's and the prefetched one).  :meth:`close` stops the thread.
    """

    _DONE: Final = object()

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._slot = threading.Semaphore(1)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(
            target=self._run, args=(batches,), name="recording-prefetch", daemon=True
        )
        self._thread.start()

    def _run(self, batches: Iterator[pa.RecordBatch]) -> None:
        item: Any = self._DONE
        try:
            while True:
                self._slot.acquire()
                if self._stop.is_set():
                    return
                batch = next(batches, None)
                if batch is None:
                    break
                self._queue.put(batch)
        except BaseException as exc:  # re-raised in the consumer
            item = exc
        self._queue.put(item)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self

    def __next__(self) -> pa.RecordBatch:
        if self._finished:
            raise StopIteration
        item = self._queue.get()
        if item is self._DONE:
            self._finished = True
            self._thread.join()
            raise StopIteration
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        self._slot.release()  # let the thread decode the next batch
        return item

    def close(self) -> None:
        """Stop the background thread and drop a prefetched batch."""
        self._finished = True
        self._stop.set()
        self._slot.release()  # wake the thread if it waits for a slot
        self._thread.join()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break


__all__ = ["Prefetcher"]
