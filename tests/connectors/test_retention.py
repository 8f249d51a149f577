"""connectors/retention.py: old audit partitions and dead letters go, by a given date."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as st

from esg_leads.connectors.parquet_sink import read_records, to_table
from esg_leads.connectors.retention import audit_expiry, expire_audit, expire_dlq, expired


@given(reference=st.dates(), day=st.dates(), days=st.integers(1, 3650))
def test_expired_means_more_than_n_days_before(reference, day, days):
    assert expired(reference, day, days) == ((reference - day).days > days)


def test_expire_audit_deletes_old_partitions_only(tmp_path: Path) -> None:
    for tenant in ("acme", "beta"):
        for day in ("2026-01-01", "2026-01-08", "2026-01-09", "2026-01-10"):
            folder = tmp_path / f"tenant={tenant}" / f"date={day}"
            folder.mkdir(parents=True)
            (folder / "part-000000.parquet").write_bytes(b"x")
    (tmp_path / "tenant=acme" / "date=not-a-date").mkdir()
    removed = expire_audit(tmp_path, date(2026, 1, 10), 2)
    assert sorted(p.name for p in removed) == ["date=2026-01-01", "date=2026-01-01"]
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("*/*"))
    assert "tenant=acme/date=2026-01-08" in left and "tenant=acme/date=not-a-date" in left
    assert expire_audit(tmp_path, date(2026, 1, 10), 1) and not (
        tmp_path / "tenant=beta" / "date=2026-01-08").exists()


def test_expire_dlq_keeps_recent_and_undated_letters(tmp_path: Path) -> None:
    def letter(i: int, stamp: datetime | None) -> dict:
        return {"idempotency_key": f"dlq:{i}", "reason": "late", "topic": "t", "partition": 0,
                "offset": i, "tenant": "acme", "event_id": None, "processed_at": None,
                "timestamp": stamp}
    day = lambda d: datetime(2026, 1, d, 12, tzinfo=timezone.utc)  # noqa: E731
    path = tmp_path / "dlq.parquet"
    pq.write_table(to_table("dlq", [letter(1, day(1)), letter(2, day(9)), letter(3, None)]), path)
    assert expire_dlq(path, date(2026, 1, 10), 3) == 1
    kept = [r["idempotency_key"] for r in read_records(path)]
    assert kept == ["dlq:2", "dlq:3"]
    assert expire_dlq(tmp_path / "missing.parquet", date(2026, 1, 10), 3) == 0


def test_live_expiry_follows_the_injected_clock(tmp_path: Path) -> None:
    (tmp_path / "tenant=acme" / "date=2026-01-01").mkdir(parents=True)
    assert audit_expiry(None, lambda: datetime(2030, 1, 1, tzinfo=timezone.utc)) is None
    expire = audit_expiry(5, lambda: datetime(2026, 1, 6, tzinfo=timezone.utc))
    expire(tmp_path)
    assert (tmp_path / "tenant=acme" / "date=2026-01-01").exists()
    audit_expiry(5, lambda: datetime(2026, 1, 7, tzinfo=timezone.utc))(tmp_path)
    assert not (tmp_path / "tenant=acme" / "date=2026-01-01").exists()
