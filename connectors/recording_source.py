"""A bytewax source over a recording: the same messages, in the same order, every time.

One partition; its resume state is the number of messages already emitted (an
offset into the recording's replay order).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.recording import RecordedMessage, RecordingReader

Progress = Callable[[int, int], None]


class _RecordingPartition(StatefulSourcePartition[RecordedMessage, int]):
    def __init__(self, reader: RecordingReader, emitted: int, progress: Progress | None) -> None:
        self._batches = reader.iter_batches()
        self._emitted = emitted
        self._total = reader.count()
        self._progress = progress

    def next_batch(self) -> list[RecordedMessage]:
        batch = next(self._batches)  # StopIteration ends the partition
        self._emitted += len(batch)
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
    """

    def __init__(self, directory: str | Path, batch_rows: int = 2000,
                 progress: Progress | None = None) -> None:
        self.directory = Path(directory)
        self.batch_rows = batch_rows
        self.progress = progress

    def list_parts(self) -> list[str]:
        return ["recording"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _RecordingPartition:
        emitted = resume_state or 0
        reader = RecordingReader(self.directory, batch_rows=self.batch_rows, start_at=emitted)
        return _RecordingPartition(reader, emitted, self.progress)
