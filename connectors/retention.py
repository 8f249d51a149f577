"""Retention: delete audit partitions and dead letters older than ``retention.*_days``.

Age is measured from a reference instant the caller chooses, never read here:

* a replay passes the timestamp of the recording's newest message (its manifest): the
  time of the run's newest data, so the same recording always keeps the same rows,
  whenever and however fast it is replayed. Message timestamps, not event times: one
  forged ``event_time`` in 2099 must not expire the whole trail;
* ``esg-leads run`` passes the wall clock at each snapshot (:func:`audit_expiry`): a
  live audit directory ages like any other log. Its dead letters are on a Kafka topic,
  whose own ``retention.ms`` governs them.

A partition or dead letter is kept while its date is within ``days`` days of the
reference date (dates are UTC): ``days = 1`` keeps the reference day and the day before.

>>> from datetime import date
>>> expired(date(2026, 1, 10), date(2026, 1, 8), 1), expired(date(2026, 1, 10), date(2026, 1, 9), 1)
(True, False)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from esg_leads.connectors.parquet_sink import read_output


def expired(reference: date, day: date, days: int) -> bool:
    """Whether ``day`` is more than ``days`` days before ``reference``.

    Compared as a difference of days: ``reference - timedelta(days)`` overflows for a
    reference near year 1 (a hostile or corrupt partition name).

    >>> expired(date(2026, 3, 10), date(2026, 3, 1), 7), expired(date(2, 1, 1), date(2000, 1, 1), 366)
    (True, False)
    """
    return (reference - day).days > days


def expire_audit(directory: str | Path, reference: date, days: int) -> list[Path]:
    """Delete the ``tenant=*/date=*`` partitions of ``directory`` that have expired.

    Returns the partitions deleted. A folder whose date does not parse is left alone
    (it is not ours to judge).
    """
    removed = []
    for folder in sorted(Path(directory).glob("tenant=*/date=*")):
        try:
            day = date.fromisoformat(folder.name.removeprefix("date="))
        except ValueError:
            continue
        if folder.is_dir() and expired(reference, day, days):
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


def expire_dlq(path: str | Path, reference: date, days: int) -> int:
    """Drop the dead letters of ``path`` (a ``dlq.parquet``) whose message timestamp has
    expired; returns how many. Letters without a timestamp are kept: their age is unknown."""
    path = Path(path)
    if not path.exists():
        return 0
    table = read_output(path, "dlq")  # typed: the message timestamp is a column of its own
    keep = [stamp is None or not expired(reference, stamp.astimezone(timezone.utc).date(), days)
            for stamp in pc.struct_field(table.column("record"), "timestamp").to_pylist()]
    dropped = keep.count(False)
    if dropped:
        partial = path.with_name(f".{path.name}.partial")
        pq.write_table(table.filter(pa.array(keep)), partial, compression="zstd")
        partial.replace(path)
    return dropped


def audit_expiry(days: int | None, clock: Callable[[], datetime]) -> Callable[[Path], object] | None:
    """For a live audit sink: at each snapshot, expire by the wall clock's date."""
    if days is None:
        return None
    return lambda directory: expire_audit(directory, clock().astimezone(timezone.utc).date(), days)
