"""A bytewax source over a recording: the same messages, in the same order, every time.

One partition; its resume state is the number of messages already read (an offset
into the recording's replay order). A ``stop`` event ends the input early (a replay
interrupted by a signal, or whose outputs cannot be written): the flow then finishes
what it has read, as if the recording ended there.

With ``rows`` (one :class:`~connectors.recording.reader.RowFilter` per partition) the
source has a partition per filter, ``recording-0000``, ``recording-0001``, ...: each
reads the whole recording in replay order and hands on only the rows its filter
selects — a cluster whose worker *n* builds partition *n* then has each worker read
its own share of the input, and no input message crosses to another worker. The
filters must split the recording: every message selected by exactly one of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from esg_leads.connectors.recording import RecordedMessage, RecordingReader
from esg_leads.connectors.recording.format import RowFilter

Progress = Callable[[int, int], None]


class _RecordingPartition(StatefulSourcePartition[RecordedMessage, int]):
    def __init__(self, reader: RecordingReader, read: int, progress: Progress | None,
                 source: RecordingSource, part: str) -> None:
        self._batches = reader.iter_batches()
        self._read = read  # messages of the replay order read (handed on or not)
        self._total = reader.count()
        self._progress = progress
        self._source = source
        self._part = part
        source.handed[part] = 0

    def next_batch(self) -> list[RecordedMessage]:
        stop = self._source.stop
        if stop is not None and stop.is_set():
            if self._read < self._total:
                self._source.stopped_early = True
            raise StopIteration
        batch = next(self._batches)  # StopIteration ends the partition
        self._read += self._source.batch_rows if self._source.rows is not None else len(batch)
        self._read = min(self._read, self._total)
        self._source.handed[self._part] += len(batch)
        if self._progress is not None:
            self._progress(self._read, self._total)
        return batch

    def snapshot(self) -> int:
        return self._read


class RecordingSource(FixedPartitionedSource[RecordedMessage, int]):
    """Replays the recording in ``directory`` in (timestamp, topic, partition, offset) order.

    Parameters
    ----------
    directory
        A recording directory (see :mod:`connectors.recording`).
    batch_rows
        Messages per batch handed to the dataflow (read per batch, with ``rows``).
    progress
        Called with ``(read, total)`` after each batch.
    stop
        Once set, no further batch is read: the input ends there.
    rows
        One row filter per partition (module docstring); ``None``: one partition, every row.

    After a run, :attr:`emitted` is the number of messages this process's partitions
    handed to the flow and :attr:`stopped_early` says whether ``stop`` cut the
    recording short.
    """

    def __init__(self, directory: str | Path, batch_rows: int = 2000,
                 progress: Progress | None = None, stop: threading.Event | None = None,
                 rows: Sequence[RowFilter] | None = None) -> None:
        self.directory = Path(directory)
        self.batch_rows = batch_rows
        self.progress = progress
        self.stop = stop
        self.rows = list(rows) if rows is not None else None
        #: Messages each partition built in this process handed to the flow.
        self.handed: dict[str, int] = {}
        self.stopped_early = False

    @property
    def emitted(self) -> int:
        return sum(self.handed.values())

    def with_rows(self, rows: Sequence[RowFilter]) -> RecordingSource:
        """This source, from now on read as one partition per filter of ``rows`` (the
        caller keeps the object that counts what was read)."""
        self.rows = list(rows)
        return self

    def list_parts(self) -> list[str]:
        if self.rows is None:
            return ["recording"]
        return [f"recording-{n:04d}" for n in range(len(self.rows))]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _RecordingPartition:
        read = resume_state or 0
        rows = None if self.rows is None else self.rows[int(for_part.rsplit("-", 1)[1])]
        reader = RecordingReader(self.directory, batch_rows=self.batch_rows, start_at=read,
                                 rows=rows)
        return _RecordingPartition(reader, read, self.progress, self, for_part)
