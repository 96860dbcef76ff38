"""The park's audit trail: every gate's events in one SQLite file (WAL), each once.

The gate journal's ``events`` table (id, the time it was recorded, type, the event's JSON,
camera) plus the gate's name, with the event id as its primary key: :meth:`ParkJournal.record`
is an ``INSERT OR IGNORE``, so an event the broker delivers twice (QoS 1 after a reconnect, a
gate that retried a publish) is journaled once. ``PRAGMA application_id`` marks the file as a
park journal, so ``gatekeeper events`` knows which kind it was given.

>>> journal = ParkJournal(":memory:", clock=lambda: 100.0)
>>> event = {"event": "OPEN", "frame": 7, "t": 0.25, "score": 0.9, "id": "e1", "camera": "lane1"}
>>> journal.record("lane1", event), journal.record("lane1", event)
(True, False)
>>> [(e.gate, e.entry.event.id) for e in journal.entries()]
[('lane1', 'e1')]
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import JournalError
from ..events import event_from_dict
from ..journal import JournalEntry, iso_time

__all__ = ["APPLICATION_ID", "ParkEntry", "ParkJournal", "describe_entry", "is_park_journal"]

#: ``PRAGMA application_id`` of a park journal ("GKPK"); a gate's journal leaves it 0.
APPLICATION_ID = 0x474B504B
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id          TEXT PRIMARY KEY,  -- the gate's event id: an event delivered twice is kept once
    created_at  REAL NOT NULL,     -- wall-clock time the park journaled it
    type        TEXT NOT NULL,
    event       TEXT NOT NULL,     -- the event's JSON as the gate published it (Event.to_dict())
    camera      TEXT,
    gate        TEXT NOT NULL      -- the gate whose topic it came on (<prefix>/<gate>/event)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (created_at);
CREATE INDEX IF NOT EXISTS events_by_gate ON events (gate, created_at);
"""
_RECENT_EACH = (
    "SELECT gate, created_at, event FROM (SELECT gate, created_at, event, ROW_NUMBER() OVER "
    "(PARTITION BY gate ORDER BY created_at DESC, rowid DESC) AS n FROM events) WHERE n <= ? ORDER BY created_at, gate"
)


@dataclass(frozen=True, slots=True)
class ParkEntry:
    """An event as the park journal holds it: the gate's name and the entry (no deliveries)."""

    gate: str
    entry: JournalEntry

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, **self.entry.to_dict()}


def is_park_journal(path: str | Path) -> bool:
    """Whether the SQLite file at ``path`` is a park journal (False for a gate's, or no file)."""
    if not Path(path).is_file():
        return False
    try:
        db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
        try:
            return db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        finally:
            db.close()
    except sqlite3.Error:
        return False


class ParkJournal:
    """The park's journal; safe to share between threads (one connection behind a lock)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time, readonly: bool = False) -> None:
        self.path = str(path)
        self._clock = clock
        self._lock = threading.Lock()
        if readonly and not is_park_journal(self.path):
            what = "does not exist" if not Path(self.path).is_file() else "is not a park journal"
            raise JournalError(f"park journal {self.path!r} {what}; expected the journal.path of a gatekeeper park service that has run")
        try:
            if readonly:
                self._db = sqlite3.connect(Path(self.path).resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
                return
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5.0)
            (app,) = self._db.execute("PRAGMA application_id").fetchone()
            (tables,) = self._db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()
            if app != APPLICATION_ID and tables:
                self._db.close()
                raise JournalError(f"{self.path!r} is not a park journal (a gate's journal?); expected a new file or a park journal")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(f"BEGIN; {_SCHEMA} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {_SCHEMA_VERSION}; COMMIT;")
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"park journal {self.path!r} cannot be opened: {exc}") from None

    def record(self, gate: str, data: dict[str, Any]) -> bool:
        """Journal the event ``data`` (its ``Event.to_dict()`` shape) of ``gate``: True when new,
        False when its id was already there. ``ValueError`` for data that is no event;
        :class:`JournalError` when the write fails."""
        try:
            event = event_from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an event: {type(exc).__name__}: {exc}") from None
        body = json.dumps(data, separators=(",", ":"))
        with self._lock:
            try:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO events (id, created_at, type, event, camera, gate) VALUES (?, ?, ?, ?, ?, ?)",
                    (event.id, self._clock(), event.event.value, body, event.camera, gate),
                )
            except sqlite3.Error as exc:
                raise JournalError(f"park journal {self.path!r}: cannot record event {event.id}: {exc}") from None
        return cur.rowcount == 1

    def prune(self, older_than: float) -> int:
        """Delete events journaled before the wall-clock time ``older_than``; returns how many."""
        with self._lock:
            try:
                return self._db.execute("DELETE FROM events WHERE created_at < ?", (older_than,)).rowcount
            except sqlite3.Error as exc:
                raise JournalError(f"park journal {self.path!r}: cannot prune: {exc}") from None

    # -- reading -------------------------------------------------------------------------------
    def entries(self, since: float | None = None, limit: int | None = None, *, gate: str | None = None) -> list[ParkEntry]:
        """Events journaled at or after ``since``, oldest first; ``limit`` keeps the newest; ``gate``: only its."""
        where, params = [], []
        if since is not None:
            where.append("created_at >= ?")
            params.append(since)
        if gate is not None:
            where.append("gate = ?")
            params.append(gate)
        sql = "SELECT gate, created_at, event FROM events" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, rowid DESC" + (" LIMIT ?" if limit is not None else "")
        rows = self._read(sql, params + ([limit] if limit is not None else []))
        return [_entry(*row) for row in reversed(rows)]

    def recent_each(self, n: int) -> list[ParkEntry]:
        """The last ``n`` events of every gate, oldest first (what a restarted park shows at once)."""
        return [_entry(*row) for row in self._read(_RECENT_EACH, (n,))]

    def counts_since(self, since: float, types: Sequence[str]) -> list[tuple[str, str, float]]:
        """``(gate, type, created_at)`` of each event of ``types`` journaled since ``since``."""
        marks = ",".join("?" * len(types))
        return [(g, t, c) for g, t, c in self._read(f"SELECT gate, type, created_at FROM events WHERE created_at >= ? AND type IN ({marks}) ORDER BY created_at", (since, *types))]

    def last_seen(self) -> dict[str, float]:
        """Each gate's newest journal time."""
        return dict(self._read("SELECT gate, MAX(created_at) FROM events GROUP BY gate", ()))

    def gates(self) -> list[str]:
        """The names of the gates the journal has events of, sorted."""
        return sorted(g for (g,) in self._read("SELECT DISTINCT gate FROM events", ()))

    def count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM events", ())[0][0])

    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(f"park journal {self.path!r}: cannot read: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ParkJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _entry(gate: str, created_at: float, body: str) -> ParkEntry:
    return ParkEntry(gate, JournalEntry(event_from_dict(json.loads(body)), created_at, ()))


def describe_entry(entry: ParkEntry) -> str:
    """One line of ``gatekeeper events`` for a park entry: when, gate, type, id, camera, who."""
    e = entry.entry.event
    line = f"{iso_time(entry.entry.created_at)}  gate {entry.gate}  {e.event.value:<14} {e.id}"
    if e.reason:
        line += f"  reason: {e.reason}"
    if e.by is not None:
        line += f"  by {e.by} via {e.via}"
    return line
