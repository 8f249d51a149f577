"""The key store for crypto-shredding: one random key per (tenant, investor), in SQLite.

:mod:`operators.erasure` says what is sealed; this module keeps the keys. An erasure
deletes the investor's key and records that they are erased, so no key is made for
them again. Design points:

* Keys are random (``os.urandom``), never derived: only a key that exists nowhere else
  can be destroyed.
* Investors are stored under a keyed hash (HMAC with a random pepper kept in the same
  file): the store lists no investor ids, also not those it has erased.
* ``PRAGMA secure_delete``: SQLite overwrites a deleted key's bytes in the database
  file, rather than leaving them on a free page, and a destruction truncates the
  write-ahead log, whose older frames still hold the key. What the file system does
  with blocks it frees (an SSD's remapped ones) is beyond SQLite: keep the store on
  encrypted storage, like the recovery directory.
* Every call is one SQLite transaction; processes on one host may share a file
  (SQLite's file locks), threads share a :class:`KeyVault` (a lock). Nothing is cached
  in memory, so a key destroyed by one process is gone for all at once.

>>> vault = KeyVault(":memory:")
>>> key = vault.key_for("acme", "inv-1")
>>> len(key), vault.key_for("acme", "inv-1") == key, vault.existing_key("acme", "inv-2")
(32, True, None)
>>> vault.destroy("acme", "inv-1")
>>> vault.key_for("acme", "inv-1"), vault.existing_key("acme", "inv-1")
(None, None)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
from pathlib import Path

import orjson

from esg_leads.operators.erasure import KEY_BYTES, Position

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS keys (subject BLOB PRIMARY KEY, key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS erased (subject BLOB PRIMARY KEY, at TEXT);
"""


class KeyVault:
    """Random AES keys per (tenant, investor) in an SQLite file (``":memory:"``: none).

    A vault in memory dies with its process, and the values sealed under its keys
    with it: right for tests, wrong for a deployment whose dead letters must be
    opened later (``esg-leads run`` warns).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.in_memory = self.path == ":memory:"
        if not self.in_memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Readable by the service only: it holds the keys to every sealed value.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA secure_delete = ON")
        if not self.in_memory:
            # A new key is committed without an fsync (WAL, synchronous=NORMAL: it
            # survives a crash of the process, ~50 µs instead of a disk flush per new
            # investor); a destruction is checkpointed and flushed at once (destroy).
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        with self._lock, self._transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(erased)")}
            if "at" not in columns:  # a store written before erasures had a position
                self._db.execute("ALTER TABLE erased ADD COLUMN at TEXT")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('pepper', ?)",
                             (os.urandom(32),))
            (self._pepper,) = self._db.execute(
                "SELECT value FROM meta WHERE name = 'pepper'").fetchone()

    def _transaction(self):  # noqa: ANN202 - a context manager
        return _Immediate(self._db)

    def _subject(self, tenant: str, investor_id: str) -> bytes:
        return hmac.digest(self._pepper, f"{tenant}\x00{investor_id}".encode(),
                           hashlib.sha256)[:20]

    def key_for(self, tenant: str, investor_id: str) -> bytes | None:
        """The investor's key, made on first use; ``None`` once they are erased."""
        subject = self._subject(tenant, investor_id)
        with self._lock, self._transaction():
            row = self._db.execute("SELECT key FROM keys WHERE subject = ?", (subject,)).fetchone()
            if row is not None:
                return bytes(row[0])
            if self._db.execute("SELECT 1 FROM erased WHERE subject = ?",
                                (subject,)).fetchone() is not None:
                return None
            key = os.urandom(KEY_BYTES)
            self._db.execute("INSERT INTO keys VALUES (?, ?)", (subject, key))
            return key

    def existing_key(self, tenant: str, investor_id: str) -> bytes | None:
        """The key if there is one; never makes one (for opening sealed values)."""
        subject = self._subject(tenant, investor_id)
        with self._lock:
            row = self._db.execute("SELECT key FROM keys WHERE subject = ?", (subject,)).fetchone()
        return None if row is None else bytes(row[0])

    def destroy(self, tenant: str, investor_id: str, at: Position | None = None) -> None:
        """Delete the investor's key (its bytes overwritten) and remember the erasure.

        ``at`` is the erasure's input position; the earliest one is kept, and an erasure
        of unknown position (``None``) counts as before everything.
        """
        subject = self._subject(tenant, investor_id)
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM keys WHERE subject = ?", (subject,))
            row = self._db.execute("SELECT at FROM erased WHERE subject = ?",
                                   (subject,)).fetchone()
            if row is None:
                self._db.execute("INSERT INTO erased VALUES (?, ?)", (subject, _encode(at)))
            elif row[0] is not None and (at is None or at < _decode(row[0])):
                self._db.execute("UPDATE erased SET at = ? WHERE subject = ?",
                                 (_encode(at), subject))
        if not self.in_memory:
            # The write-ahead log still holds the page as it was when the key was made:
            # copy the zeroed page into the database and cut the log to nothing.
            with self._lock:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def erased_at(self, tenant: str, investor_id: str) -> Position | None:
        """Where in the input the investor was erased: ``None`` if they were not, ``()``
        if they were at an unknown position (before everything)."""
        subject = self._subject(tenant, investor_id)
        with self._lock:
            row = self._db.execute("SELECT at FROM erased WHERE subject = ?",
                                   (subject,)).fetchone()
        if row is None:
            return None
        return () if row[0] is None else _decode(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> KeyVault:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _encode(at: Position | None) -> str | None:
    return None if at is None else orjson.dumps(list(at)).decode()


_SHAPE = (int, str, int, int)  # schemas.records.RawMessage.sort_key


def _decode(text: str) -> Position:
    """A stored position; ``()`` (unknown: before everything, the side that withholds)
    when the column is not one: a store edited by hand or damaged on disk must neither
    lose the erasure nor raise at every dead letter about the investor."""
    try:
        at = orjson.loads(text)
    except orjson.JSONDecodeError:
        return ()
    if type(at) is not list or len(at) != len(_SHAPE) \
            or not all(type(v) is t for v, t in zip(at, _SHAPE, strict=True)):
        return ()
    return tuple(at)


class _Immediate:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: the check-then-insert of a key is atomic across
    processes sharing the file."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, error, trace) -> None:  # noqa: ANN001
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")
