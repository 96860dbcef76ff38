"""The event journal: every event is written here before any hook sees it.

An SQLite file in WAL mode holds two tables: ``events`` (the event JSON and the wall-clock time
the journal recorded it) and ``deliveries`` (one row per event and hook, with its state). A
restart reads the rows still ``pending`` and hands them back to their hooks, which retry the
fresh ones and expire the stale ones, so nothing is lost and an OPEN never fires long after the
person left.

>>> journal = Journal(":memory:")
>>> from gatekeeper.events import DeliveryState, Event, EventType
>>> created = journal.append(Event(EventType.OPEN, 7, 0.25, 0.9, "e1"), ["webhook[0]"])
>>> [(p.event.id, p.hook) for p in journal.pending()]
[('e1', 'webhook[0]')]
>>> journal.settle("e1", "webhook[0]", DeliveryState.DELIVERED)
>>> journal.pending()
[]

``gatekeeper events`` (in :mod:`gatekeeper.commands`) lists recent events and their delivery
state; it opens the file read-only, so it can run beside a live gate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import JournalError
from .events import DeliveryState, Event, EventType, event_from_dict

__all__ = [
    "DeliveryRecord",
    "Journal",
    "JournalEntry",
    "PendingDelivery",
    "iso_time",
]

#: 2: ``events.camera`` (the camera an event is about). A version-1 journal is migrated on open:
#: the column is added and its events are given the camera named ``legacy_camera`` (a one-camera
#: gate's ``name:``), so ``gatekeeper events --camera`` and a restart's resume find them.
_SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id          TEXT PRIMARY KEY,
    created_at  REAL NOT NULL,   -- wall-clock time of the append (time.time()), not the frame time
    type        TEXT NOT NULL,
    event       TEXT NOT NULL,   -- Event.to_dict() as JSON
    camera      TEXT             -- the camera it is about (version 2)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (created_at);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id    TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    hook        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'expired')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (event_id, hook)
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (state) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS command_ids (
    scope       TEXT NOT NULL,   -- the camera whose commands they were
    id          TEXT NOT NULL,   -- an operator command's id (MQTT), so a replay after a restart is refused
    seen_at     REAL NOT NULL,   -- wall-clock time it arrived
    keep_until  REAL NOT NULL,   -- forgotten after this: a replay by then is refused as stale anyway
    PRIMARY KEY (scope, id)
);
CREATE INDEX IF NOT EXISTS command_ids_by_age ON command_ids (keep_until);
"""
_INDEX_V2 = "CREATE INDEX IF NOT EXISTS events_by_camera ON events (camera, created_at);"


_SERVICE_TYPES = (EventType.OUT_OF_SERVICE.value, EventType.IN_SERVICE.value)
_LAST_SERVICE = (
    "SELECT {cols} FROM events WHERE type IN " + str(_SERVICE_TYPES) + "{where} ORDER BY created_at DESC, rowid DESC LIMIT 1"
)
#: The last service event of each camera: kept through pruning, it is that camera's service state.
_LAST_SERVICE_EACH = (
    "SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY camera ORDER BY created_at DESC, rowid DESC) AS n "
    "FROM events WHERE type IN " + str(_SERVICE_TYPES) + ") WHERE n = 1"
)

_T = TypeVar("_T")

_PROBE_ID = "~probe"  # never an event id (those are hex); written and deleted by check_writable


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One hook's delivery state of one event."""

    hook: str
    state: DeliveryState
    attempts: int
    last_error: str | None
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "state": self.state.value,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "updated_at": iso_time(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """An event as the journal holds it, with the delivery state of every hook it went to."""

    event: Event
    created_at: float
    deliveries: tuple[DeliveryRecord, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.event.id,
            "created_at": iso_time(self.created_at),
            "event": self.event.to_dict(),
            "deliveries": [d.to_dict() for d in self.deliveries],
        }


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """An event one hook has not settled yet (what a restart resumes)."""

    event: Event
    created_at: float
    hook: str
    attempts: int


def _with_camera(event: Event, camera: str | None) -> Event:
    """An event read back, with the journal's camera column where its JSON predates the key."""
    return event if event.camera is not None or camera is None else dataclasses.replace(event, camera=camera)


class Journal:
    """An SQLite (WAL) journal of events and their per-hook delivery state; safe to share between threads.

    One connection serves every thread behind a lock: writes are a few per minute, so a lock
    costs nothing and keeps transactions from interleaving. ``synchronous=NORMAL`` in WAL mode
    survives a killed process (what the at-least-once promise needs); only a power cut can lose
    the last few commits, and an OPEN that old is not worth replaying anyway.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        readonly: bool = False,
        legacy_camera: str = "gate",
    ) -> None:
        self.path = str(path)
        self._clock = clock
        self._lock = threading.Lock()
        if readonly and not Path(self.path).exists():
            raise JournalError(
                f"journal {self.path!r} does not exist; expected the journal.path of a gate that has run"
            )
        try:
            if readonly:
                uri = Path(self.path).resolve().as_uri() + "?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
                # An unmigrated version-1 file: its events read as legacy_camera's, as a migration would make them.
                self._camera_column = "camera" if "camera" in columns else "'" + legacy_camera.replace("'", "''") + "'"
                return
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            if 1 <= version < 2:
                self._migrate_to_2(legacy_camera)
            if version <= _SCHEMA_VERSION:
                self._db.executescript(f"BEGIN; {_SCHEMA} {_INDEX_V2} PRAGMA user_version = {_SCHEMA_VERSION}; COMMIT;")
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"journal {self.path!r} cannot be opened: {exc}") from None
        if version > _SCHEMA_VERSION:
            self._db.close()
            raise JournalError(
                f"journal {self.path!r} has schema version {version}, newer than this gatekeeper ({_SCHEMA_VERSION}); "
                "expected a journal written by this or an older version"
            )

    _camera_column = "camera"

    def _cam(self, table: str) -> str:
        c = self._camera_column
        return f"{table}.{c}" if c == "camera" else c

    def _migrate_to_2(self, legacy_camera: str) -> None:
        """Version 1 -> 2 in one transaction: the ``camera`` column, filled with ``legacy_camera``."""
        quoted = legacy_camera.replace("'", "''")
        self._db.executescript(
            f"BEGIN; ALTER TABLE events ADD COLUMN camera TEXT; UPDATE events SET camera = '{quoted}'; {_INDEX_V2} "
            "PRAGMA user_version = 2; COMMIT;"
        )

    # -- writing -------------------------------------------------------------------------------
    def append(self, event: Event, hooks: Iterable[str]) -> float:
        """Record ``event`` with a pending delivery for each hook name, in one transaction.

        Returns the journal's wall-clock time of the append: hooks measure ``max_age`` from it.
        """
        created_at = self._clock()
        body = json.dumps(event.to_dict(), separators=(",", ":"))
        rows = [(event.id, hook, created_at) for hook in hooks]
        def write() -> None:
            self._db.execute(
                "INSERT INTO events (id, created_at, type, event, camera) VALUES (?, ?, ?, ?, ?)",
                (event.id, created_at, event.event.value, body, event.camera),
            )
            self._db.executemany(
                "INSERT INTO deliveries (event_id, hook, state, updated_at) VALUES (?, ?, 'pending', ?)", rows
            )

        with self._lock:
            try:
                self._transaction(write)
            except sqlite3.IntegrityError:
                raise JournalError(f"event {event.id} is already in the journal; expected a unique event id") from None
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self.path!r}: cannot append event {event.id}: {exc}") from None
        return created_at

    def attempted(self, event_id: str, hook: str) -> None:
        """Count one delivery attempt (recorded before it is made, so a crash mid-attempt still counts)."""
        self._write(
            "UPDATE deliveries SET attempts = attempts + 1, updated_at = ? WHERE event_id = ? AND hook = ?",
            (self._clock(), event_id, hook),
        )

    def settle(self, event_id: str, hook: str, state: DeliveryState, error: str | None = None) -> None:
        """Set a delivery's state; ``PENDING`` with an error records a failed attempt that will be retried."""
        self._write(
            "UPDATE deliveries SET state = ?, last_error = COALESCE(?, last_error), updated_at = ? "
            "WHERE event_id = ? AND hook = ?",
            (DeliveryState(state).value, error, self._clock(), event_id, hook),
        )

    def prune(self, older_than: float) -> int:
        """Delete events appended before the wall-clock time ``older_than``; returns how many.

        The last OUT_OF_SERVICE/IN_SERVICE of each camera is kept however old: it is the camera's
        service state (a gate out of service for longer than ``keep_days`` stays out).
        """
        with self._lock:
            try:
                cur = self._db.execute(f"DELETE FROM events WHERE created_at < ? AND id NOT IN ({_LAST_SERVICE_EACH})", (older_than,))
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self.path!r}: cannot prune: {exc}") from None
        return cur.rowcount

    def remember_command(self, scope: str, command_id: str, seen_at: float, keep_until: float) -> bool:
        """Record that the command ``command_id`` arrived for ``scope`` (a camera) at ``seen_at``;
        False if it was already recorded and is still remembered (a repeat), True if it is new.

        Ids are forgotten once ``keep_until`` (wall clock) has passed; those past it are deleted here.
        The table is created in any version-2 journal on open (older gatekeepers ignore it).
        """

        def write() -> bool:
            self._db.execute("DELETE FROM command_ids WHERE keep_until < ?", (seen_at,))
            cur = self._db.execute(
                "INSERT OR IGNORE INTO command_ids (scope, id, seen_at, keep_until) VALUES (?, ?, ?, ?)",
                (scope, command_id, seen_at, keep_until),
            )
            return cur.rowcount == 1

        with self._lock:
            try:
                return self._transaction(write)
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self.path!r}: cannot record command {command_id!r}: {exc}") from None

    def check_writable(self) -> None:
        """Raise :class:`JournalError` unless a write reaches the file now (a full disk, a file gone read-only).

        Writes and deletes a row of the size of a small event in one transaction, so the pages
        an append would touch are written as an append would write them; the journal's content
        does not change.
        """
        def write() -> None:
            self._db.execute(
                "INSERT INTO events (id, created_at, type, event) VALUES (?, ?, 'PROBE', ?)",
                (_PROBE_ID, self._clock(), "x" * 200),
            )
            self._db.execute("DELETE FROM events WHERE id = ?", (_PROBE_ID,))

        with self._lock:
            try:
                self._transaction(write)
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self.path!r}: cannot write: {exc}") from None

    def _transaction(self, write: Callable[[], _T]) -> _T:
        """``write`` in one transaction (the caller holds the lock), returning what it returns;
        rolled back if any of it fails.

        A full disk may fail the COMMIT itself, and SQLite may or may not have rolled back by
        then; either way no transaction is left open to break the next write.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = write()
            self._db.execute("COMMIT")
        except sqlite3.Error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return result

    def _write(self, sql: str, params: Sequence[Any]) -> None:
        with self._lock:
            try:
                self._db.execute(sql, params)
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self.path!r}: {exc}") from None

    # -- reading -------------------------------------------------------------------------------
    def pending(self, hook: str | None = None, *, camera: str | None = None) -> list[PendingDelivery]:
        """Deliveries not yet settled (all hooks, or one; all cameras, or one), oldest event first."""
        params = [v for v in (hook, camera) if v is not None]
        sql = (
            f"SELECT e.event, e.created_at, d.hook, d.attempts, {self._cam('e')} FROM deliveries d "
            "JOIN events e ON e.id = d.event_id WHERE d.state = 'pending'"
            + (" AND d.hook = ?" if hook is not None else "")
            + (f" AND {self._cam('e')} = ?" if camera is not None else "")
            + " ORDER BY e.created_at, e.rowid"
        )
        rows = self._read(sql, params)
        return [
            PendingDelivery(_with_camera(event_from_dict(json.loads(body)), cam), created, name, attempts)
            for body, created, name, attempts, cam in rows
        ]

    def last_service_event(self, camera: str | None = None) -> Event | None:
        """The newest OUT_OF_SERVICE or IN_SERVICE event (of ``camera``, or of any), or None:
        what start-up restores."""
        last = self.last_service(camera)
        return None if last is None else last[0]

    def last_service(self, camera: str | None = None) -> tuple[Event, float] | None:
        """:meth:`last_service_event` with the wall-clock time it was appended (the opening
        hours ask whether it was made since their last boundary)."""
        where = "" if camera is None else f" AND {self._camera_column} = ?"
        rows = self._read(_LAST_SERVICE.format(cols=f"event, {self._camera_column}, created_at", where=where), () if camera is None else (camera,))
        return (_with_camera(event_from_dict(json.loads(rows[0][0])), rows[0][1]), float(rows[0][2])) if rows else None

    def cameras(self) -> list[str]:
        """The names of the cameras the journal has events of, sorted (``gatekeeper events --camera``
        tells a camera with no events from one that never was)."""
        rows = self._read(f"SELECT DISTINCT {self._camera_column} FROM events", ())
        return sorted(str(cam) for (cam,) in rows if cam is not None)

    def entries(self, since: float | None = None, limit: int | None = None, *, camera: str | None = None) -> list[JournalEntry]:
        """Events appended at or after ``since`` (wall clock), oldest first; ``limit`` keeps the newest;
        ``camera``: only that camera's."""
        params: list[Any] = []
        where = []
        sql = f"SELECT id, created_at, event, {self._camera_column} FROM events"
        if since is not None:
            where.append("created_at >= ?")
            params.append(since)
        if camera is not None:
            where.append(f"{self._camera_column} = ?")
            params.append(camera)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        events = list(reversed(self._read(sql, params)))
        if not events:
            return []
        deliveries: dict[str, list[DeliveryRecord]] = {}
        marks = ",".join("?" * len(events))
        for event_id, hook, state, attempts, error, updated in self._read(
            f"SELECT event_id, hook, state, attempts, last_error, updated_at FROM deliveries WHERE event_id IN ({marks}) "
            "ORDER BY hook",
            [e[0] for e in events],
        ):
            deliveries.setdefault(event_id, []).append(
                DeliveryRecord(hook, DeliveryState(state), attempts, error, updated)
            )
        return [
            JournalEntry(_with_camera(event_from_dict(json.loads(body)), cam), created, tuple(deliveries.get(event_id, ())))
            for event_id, created, body, cam in events
        ]

    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(f"journal {self.path!r}: cannot read: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iso_time(ts: float) -> str:
    """A journal time (``time.time()``) as local ISO 8601 with milliseconds, as the JSON shapes give it."""
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")
