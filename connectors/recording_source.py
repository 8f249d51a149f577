"""A bytewax source over a recording: the same messages, in the same order, every time.

One partition; its resume state is the number of messages already emitted (an
offset into the recording's replay order). A ``stop`` event ends the input early
(a replay interrupted by a signal, or whose outputs cannot be written): the flow
then finishes what it has read, as if the recording ended there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from esg_leads.connectors.recording import RecordedMessage, RecordingReader

Progress = Callable[[int, int], None]


class _RecordingPartition(StatefulSourcePartition[RecordedMessage, int]):
    def __init__(self, reader: RecordingReader, emitted: int, progress: Progress | None,
                 source: RecordingSource) -> None:
        self._batches = reader.iter_batches()
        self._emitted = emitted
        self._total = reader.count()
        self._progress = progress
        self._source = source

    def next_batch(self) -> list[RecordedMessage]:
        stop = self._source.stop
        if stop is not None and stop.is_set():
            self._source.stopped_early = self._emitted < self._total
            raise StopIteration
        batch = next(self._batches)  # StopIteration ends the partition
        self._emitted += len(batch)
        self._source.emitted = self._emitted
        if self._progress is not None:
            self._progress(self._emitted, self._total)
        return batch

    def snapshot(self) -> int:
        return self._emitted


class RecordingSource(FixedPartitionedSource[RecordedMessage, int]):
    """Replays the recording in ``directory`` in (timestamp, topic, partition, offset) order.

    Parameters
    ----------
    directory
        A recording directory (see :mod:`connectors.recording`).
    batch_rows
        Messages per batch handed to the dataflow.
    progress
        Called with ``(emitted, total)`` after each batch.
    stop
        Once set, no further batch is read: the input ends there.

    After a run, :attr:`emitted` is the number of messages handed to the flow and
    :attr:`stopped_early` says whether ``stop`` cut the recording short.
    """

    def __init__(self, directory: str | Path, batch_rows: int = 2000,
                 progress: Progress | None = None, stop: threading.Event | None = None) -> None:
        self.directory = Path(directory)
        self.batch_rows = batch_rows
        self.progress = progress
        self.stop = stop
        self.emitted = 0
        self.stopped_early = False

    def list_parts(self) -> list[str]:
        return ["recording"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _RecordingPartition:
        emitted = self.emitted = resume_state or 0
        reader = RecordingReader(self.directory, batch_rows=self.batch_rows, start_at=emitted)
        return _RecordingPartition(reader, emitted, self.progress, self)
