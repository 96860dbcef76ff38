"""The SQLite event journal and ``gatekeeper events``."""

from __future__ import annotations

import datetime as dt
import io
import json
import pathlib
import sqlite3
import statistics
import threading
import time
import uuid

import pytest

from gatekeeper.commands import events as events_command
from gatekeeper.commands import parse_since
from gatekeeper.errors import JournalError
from gatekeeper.events import DeliveryState, Event, EventType, event_from_dict
from gatekeeper.journal import Journal


def ev(kind: str = "OPEN", **kw: object) -> Event:
    defaults: dict[str, object] = {"frame": 12, "t": 1.25, "score": 0.91, "box": (1.0, 2.0, 30.0, 40.0), "faces": 1}
    defaults.update({"id": uuid.uuid4().hex, **kw})
    return Event(EventType(kind), **defaults)  # type: ignore[arg-type]


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run_events(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = events_command(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_append_records_the_event_and_a_pending_delivery_per_hook(tmp_path):
    clock = Clock()
    with Journal(tmp_path / "j.sqlite3", clock=clock) as journal:
        event = ev(reason=None)
        assert journal.append(event, ["webhook[0]", "mqtt[1]"]) == clock.now
        (entry,) = journal.entries()
    assert entry.event == event
    assert entry.created_at == clock.now
    assert [(d.hook, d.state, d.attempts) for d in entry.deliveries] == [
        ("mqtt[1]", DeliveryState.PENDING, 0),
        ("webhook[0]", DeliveryState.PENDING, 0),
    ]


def test_the_file_is_in_wal_mode_with_the_schema(tmp_path):
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"events", "deliveries"} <= tables
    db.close()


def test_attempts_and_settling(tmp_path):
    clock = Clock()
    with Journal(tmp_path / "j.sqlite3", clock=clock) as journal:
        event = ev()
        journal.append(event, ["a", "b"])
        journal.attempted(event.id, "a")
        journal.settle(event.id, "a", DeliveryState.PENDING, "HTTP 503")
        clock.now += 2
        journal.attempted(event.id, "a")
        journal.settle(event.id, "a", DeliveryState.DELIVERED)
        journal.settle(event.id, "b", DeliveryState.EXPIRED, "31.0 s old")
        (entry,) = journal.entries()
        a, b = entry.deliveries
        assert (a.state, a.attempts, a.last_error, a.updated_at) == (DeliveryState.DELIVERED, 2, "HTTP 503", clock.now)
        assert (b.state, b.attempts, b.last_error) == (DeliveryState.EXPIRED, 0, "31.0 s old")
        assert journal.pending() == []


def test_pending_survives_a_reopen_oldest_first(tmp_path):
    path = tmp_path / "j.sqlite3"
    clock = Clock()
    first, second, done = ev(frame=1), ev(frame=2), ev(frame=3)
    with Journal(path, clock=clock) as journal:
        for e in (first, second, done):
            journal.append(e, ["rec"])
            clock.now += 1
        journal.settle(done.id, "rec", DeliveryState.DELIVERED)
    with Journal(path) as journal:
        pending = journal.pending()
        assert [(p.event, p.hook, p.created_at) for p in pending] == [
            (first, "rec", 1_700_000_000.0),
            (second, "rec", 1_700_000_001.0),
        ]
        assert journal.pending("other") == []


def test_event_round_trip_through_json():
    for event in (ev(), ev("FAULT", score=None, box=None, faces=0, reason="camera lost")):
        assert event_from_dict(json.loads(json.dumps(event.to_dict()))) == event


def test_a_repeated_event_id_is_an_error(tmp_path):
    with Journal(tmp_path / "j.sqlite3") as journal:
        event = ev()
        journal.append(event, ["a"])
        with pytest.raises(JournalError, match=f"event {event.id} is already in the journal"):
            journal.append(event, ["a"])
        assert len(journal.entries()) == 1  # the failed append left nothing behind


def test_prune_removes_old_events_and_their_deliveries(tmp_path):
    clock = Clock()
    with Journal(tmp_path / "j.sqlite3", clock=clock) as journal:
        old = ev()
        journal.append(old, ["a"])
        clock.now += 100
        new = ev()
        journal.append(new, ["a"])
        assert journal.prune(older_than=clock.now - 50) == 1
        assert [e.event.id for e in journal.entries()] == [new.id]
        assert [p.event.id for p in journal.pending()] == [new.id]


def test_entries_since_and_limit(tmp_path):
    clock = Clock()
    with Journal(tmp_path / "j.sqlite3", clock=clock) as journal:
        events = []
        for i in range(5):
            events.append(ev(frame=i))
            journal.append(events[-1], [])
            clock.now += 10
        assert [e.event.frame for e in journal.entries(since=1_700_000_020.0)] == [2, 3, 4]
        assert [e.event.frame for e in journal.entries(limit=2)] == [3, 4]


def test_threads_append_and_settle_at_once(tmp_path):
    journal = Journal(tmp_path / "j.sqlite3")
    events = [ev(frame=i) for i in range(200)]
    for e in events[:100]:
        journal.append(e, ["a", "b"])
    errors: list[BaseException] = []

    def settle(hook: str) -> None:
        try:
            for e in events[:100]:
                journal.attempted(e.id, hook)
                journal.settle(e.id, hook, DeliveryState.DELIVERED)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=settle, args=(h,)) for h in ("a", "b")]
    for w in workers:
        w.start()
    for e in events[100:]:
        journal.append(e, ["a", "b"])
    for w in workers:
        w.join()
    assert errors == []
    assert len(journal.entries()) == 200
    assert len(journal.pending()) == 200  # the 100 appended meanwhile, for two hooks each
    assert all(d.attempts == 1 for e in journal.entries()[:100] for d in e.deliveries)
    journal.close()


def test_append_is_fast_enough_for_the_frame_loop(tmp_path):
    with Journal(tmp_path / "j.sqlite3") as journal:
        times = []
        for _ in range(100):
            event = ev()
            t0 = time.perf_counter()
            journal.append(event, ["webhook[0]", "mqtt[1]", "gpio[2]", "command[3]"])
            times.append(time.perf_counter() - t0)
    # A 30 fps frame lasts 33 ms; an append must be a small part of it even on a slow SD card.
    assert statistics.median(times) < 0.005, statistics.median(times)


def test_a_journal_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "j.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(JournalError, match="schema version 99, newer than this gatekeeper"):
        Journal(path)


def test_a_directory_that_cannot_hold_the_journal(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(JournalError, match="cannot be opened"):
        Journal(blocker / "sub" / "j.sqlite3")


# -- gatekeeper events ---------------------------------------------------------------------------


@pytest.fixture
def filled(tmp_path):
    """A journal with three events an hour apart, ending now; the last one still pending."""
    path = tmp_path / "j.sqlite3"
    now = time.time()
    clock = Clock(now - 7200)
    events = [
        ev("OPEN", frame=1),
        ev("DENY", frame=2, score=0.12),
        ev("FAULT", score=None, box=None, reason="camera lost"),
    ]
    with Journal(path, clock=clock) as journal:
        for e in events:
            journal.append(e, ["webhook[0]"])
            journal.attempted(e.id, "webhook[0]")
            clock.now += 3600
        journal.settle(events[0].id, "webhook[0]", DeliveryState.DELIVERED)
        journal.settle(events[1].id, "webhook[0]", DeliveryState.FAILED, "HTTP 400 Bad Request")
    return path, events


def test_events_lists_events_with_delivery_state(filled):
    path, events = filled
    code, out, err = run_events(["--journal", str(path)])
    assert code == 0, err
    lines = out.splitlines()
    assert [e.id in out for e in events] == [True, True, True]
    assert "OPEN" in lines[0] and "webhook[0]=delivered" in lines[0]
    assert any("webhook[0]=failed" in line for line in lines)
    assert "    webhook[0]: HTTP 400 Bad Request" in lines
    assert "    reason: camera lost" in lines
    assert "webhook[0]=pending" in out


def test_events_json_lines(filled):
    path, events = filled
    code, out, _ = run_events(["--journal", str(path), "--json"])
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == [e.id for e in events]
    assert rows[0]["event"] == events[0].to_dict()
    assert rows[1]["deliveries"] == [
        {
            "hook": "webhook[0]",
            "state": "failed",
            "attempts": 1,
            "last_error": "HTTP 400 Bad Request",
            "updated_at": rows[1]["deliveries"][0]["updated_at"],
        }
    ]
    assert dt.datetime.fromisoformat(rows[0]["created_at"]).tzinfo is not None


@pytest.mark.parametrize(
    ("since", "expected"),
    [("90m", 2), ("5400", 2), ("30m", 1), ("3h", 3), ("1d", 3)],
)
def test_events_since_seconds_ago(filled, since, expected):
    path, _ = filled
    code, out, _ = run_events(["--journal", str(path), "--json", "--since", since])
    assert code == 0
    assert len(out.splitlines()) == expected


def test_events_since_an_iso_time(filled):
    path, events = filled
    cutoff = dt.datetime.fromtimestamp(time.time() - 5400).astimezone().isoformat()
    code, out, _ = run_events(["--journal", str(path), "--json", "--since", cutoff])
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == [e.id for e in events[1:]]
    naive_local = dt.datetime.fromtimestamp(time.time() - 5400).isoformat()  # no zone: local time
    assert run_events(["--journal", str(path), "--json", "--since", naive_local])[1] == out


def test_events_reads_while_a_gate_is_writing(tmp_path):
    path = tmp_path / "j.sqlite3"
    with Journal(path) as live:
        event = ev()
        live.append(event, ["a"])
        code, out, _ = run_events(["--journal", str(path)])
        assert code == 0 and event.id in out
        live.append(ev(), ["a"])  # the reader left no lock behind


def test_events_finds_the_journal_through_the_config(tmp_path, filled):
    path, events = filled
    config = tmp_path / "config.yaml"
    config.write_text(f"journal:\n  path: {path}\n")
    code, out, _ = run_events(["--config", str(config), "--json", "--limit", "1"])
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == [events[-1].id]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--journal", "{missing}"], "does not exist"),
        (["--journal", "{notdb}"], "error: journal"),
        (["--journal", "{db}", "--since", "yesterday"], "--since: expected seconds ago"),
        (["--journal", "{db}", "--limit", "0"], "--limit: expected an integer >= 1"),
    ],
)
def test_events_errors_are_one_line_and_exit_2(tmp_path, argv, message):
    notdb = tmp_path / "notdb.sqlite3"
    notdb.write_text("this is not a database" * 100)
    db = tmp_path / "db.sqlite3"
    Journal(db).close()
    paths = {"missing": tmp_path / "nope.sqlite3", "notdb": notdb, "db": db}
    code, out, err = run_events([a.format(**paths) for a in argv])
    assert code == 2
    assert out == ""
    assert err.startswith("gatekeeper: error: ") and message in err and err.count("\n") == 1


def test_events_on_an_empty_journal(tmp_path):
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    assert run_events(["--journal", str(path)]) == (0, "", "no events\n")


def test_parse_since():
    assert parse_since("90", now=1000.0) == 910.0
    assert parse_since("2h", now=10_000.0) == 2800.0
    assert (
        parse_since("2024-05-01T12:00:00+00:00", now=0)
        == dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc).timestamp()
    )
    assert parse_since("2024-05-01T12:00:00Z", now=0) == parse_since("2024-05-01T12:00:00+00:00", now=0)
    with pytest.raises(ValueError, match="--since"):
        parse_since("-5m", now=0)


def test_events_on_a_missing_journal_says_exactly_that(tmp_path):
    path = tmp_path / "nope.sqlite3"
    assert run_events(["--journal", str(path)]) == (
        2,
        "",
        f"gatekeeper: error: journal {str(path)!r} does not exist; expected the journal.path of a gate that has run\n",
    )
    assert not path.exists()  # reading never creates a journal


def test_check_writable_writes_through_and_leaves_no_trace(tmp_path):
    journal = Journal(tmp_path / "j.sqlite3")
    journal.append(ev(), ["a"])
    before = [e.to_dict() for e in journal.entries()]
    journal.check_writable()
    assert [e.to_dict() for e in journal.entries()] == before
    with journal._lock:
        journal._db.execute("PRAGMA query_only = ON")  # as a file system remounted read-only would
    with pytest.raises(JournalError, match="cannot write: attempt to write a readonly database"):
        journal.check_writable()
    with pytest.raises(JournalError, match="cannot append"):
        journal.append(ev(), ["a"])
    with journal._lock:
        journal._db.execute("PRAGMA query_only = OFF")
    journal.check_writable()  # no transaction was left open by the failures
    journal.append(ev(), ["a"])
    assert len(journal.entries()) == 2
    journal.close()


# -- cameras ------------------------------------------------------------------------------------

_V1_SCHEMA = """
CREATE TABLE events (id TEXT PRIMARY KEY, created_at REAL NOT NULL, type TEXT NOT NULL, event TEXT NOT NULL);
CREATE INDEX events_by_time ON events (created_at);
CREATE TABLE deliveries (
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE, hook TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'expired')),
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, updated_at REAL NOT NULL, PRIMARY KEY (event_id, hook)
);
PRAGMA user_version = 1;
"""


def version_1_journal(path) -> None:
    """A journal as gatekeeper wrote it before cameras (schema version 1, events without ``camera``)."""
    db = sqlite3.connect(path)
    db.executescript(_V1_SCHEMA)
    for i, kind in enumerate(["OPEN", "FACE_LOST"]):
        body = {k: v for k, v in ev(kind, id=f"old{i}").to_dict().items() if k != "camera"}
        db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (f"old{i}", time.time() - 10 + i, kind, json.dumps(body)))
    db.execute("INSERT INTO deliveries VALUES ('old0', 'relay', 'pending', 0, NULL, ?)", (time.time(),))
    db.commit()
    db.close()


def test_events_carry_their_camera_into_the_journal_and_back(tmp_path):
    with Journal(tmp_path / "j.sqlite3") as journal:
        journal.append(ev("OPEN", id="a1", camera="lane1"), ["relay"])
        journal.append(ev("OPEN", id="b1", camera="lane2"), ["relay"])
        assert [e.event.camera for e in journal.entries()] == ["lane1", "lane2"]
        assert [e.event.id for e in journal.entries(camera="lane2")] == ["b1"]
        assert [(p.event.id, p.event.camera) for p in journal.pending(camera="lane1")] == [("a1", "lane1")]
        assert len(journal.pending()) == 2


def test_a_version_1_journal_is_migrated_its_events_given_the_gates_name(tmp_path):
    path = tmp_path / "old.sqlite3"
    version_1_journal(path)
    # Read-only (gatekeeper events beside an old gate): not migrated, read as the gate's.
    with Journal(path, readonly=True, legacy_camera="entrance") as journal:
        assert [(e.event.id, e.event.camera) for e in journal.entries(camera="entrance")] == [("old0", "entrance"), ("old1", "entrance")]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (1,)
    with Journal(path, legacy_camera="entrance") as journal:
        assert [(p.event.id, p.event.camera, p.hook) for p in journal.pending(camera="entrance")] == [("old0", "entrance", "relay")]
        assert journal.pending(camera="lane2") == []
        journal.append(ev("OPEN", id="new", camera="lane2"), [])
        assert [e.event.id for e in journal.entries(camera="lane2")] == ["new"]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (2,)
    assert db.execute("SELECT id, camera FROM events ORDER BY created_at").fetchall() == [("old0", "entrance"), ("old1", "entrance"), ("new", "lane2")]


def test_events_command_filters_by_camera(tmp_path):
    path = tmp_path / "j.sqlite3"
    with Journal(path) as journal:
        for i, camera in enumerate(["lane1", "lane2", "lane1"]):
            journal.append(ev("OPEN", id=f"e{i}", camera=camera), [])
    code, out, _ = run_events(["--journal", str(path), "--json", "--camera", "lane1"])
    assert code == 0
    assert [(json.loads(line)["id"], json.loads(line)["event"]["camera"]) for line in out.splitlines()] == [("e0", "lane1"), ("e2", "lane1")]
    code, out, _ = run_events(["--journal", str(path), "--camera", "lane2"])
    assert code == 0 and "camera lane2" in out and "e1" in out and "e0" not in out
    code, out, err = run_events(["--journal", str(path), "--camera", "gate3"])  # no camera of the journal: an error (issue 32)
    assert (code, out) == (2, "") and "--camera 'gate3': no camera of that name in the journal; expected one of lane1, lane2" in err
    code, out, err = run_events(["--journal", str(path), "--camera", "lane2", "--since", "0s"])  # a camera, with no events since
    assert (code, out) == (0, "") and "no events" in err


def test_each_camera_keeps_its_own_service_state_through_pruning(tmp_path):
    clock = Clock()
    with Journal(tmp_path / "j.sqlite3", clock=clock) as journal:
        out1 = ev("OUT_OF_SERVICE", camera="lane1", by="ali")
        journal.append(out1, [])
        clock.now += 1
        journal.append(ev("OUT_OF_SERVICE", camera="lane2", by="mo"), [])
        clock.now += 1
        in2 = ev("IN_SERVICE", camera="lane2", by="mo")
        journal.append(in2, [])
        journal.append(ev("OPEN", camera="lane1"), [])
        clock.now += 100 * 86400
        assert journal.prune(clock.now - 86400) == 2, "the OPEN and lane2's first OUT_OF_SERVICE go; each camera's last service event stays"
        assert journal.last_service_event("lane1") == out1 and journal.last_service_event("lane2") == in2
        assert journal.last_service_event("lane3") is None


def test_command_ids_are_remembered_across_a_reopen_until_they_expire(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as journal:
        assert journal.remember_command("front", "cmd-R", 100.0, 120.0)
        assert not journal.remember_command("front", "cmd-R", 110.0, 130.0)
        assert journal.remember_command("side", "cmd-R", 110.0, 130.0)  # another camera's commands
    with Journal(path) as journal:  # a restart
        assert not journal.remember_command("front", "cmd-R", 119.0, 139.0)
        assert journal.remember_command("front", "cmd-R", 121.0, 141.0)  # forgotten once past keep_until
        assert journal.remember_command("front", "cmd-S", 200.0, 220.0)
    db = sqlite3.connect(path)
    assert db.execute("SELECT scope, id FROM command_ids ORDER BY scope, id").fetchall() == [("front", "cmd-S")]  # the expired ones deleted
    db.close()


# -- the journal first: a gate's when_opened hears of an OPEN once it is recorded -------------------


@pytest.mark.parametrize("journal_works", [True, False], ids=["recorded", "the journal cannot write"])
def test_when_opened_is_called_once_the_journal_holds_the_open(tmp_path: pathlib.Path, journal_works: bool) -> None:
    """A camera's gate opens on the third frame of a held smile. Its ``when_opened`` runs after
    the journal has the OPEN (it reads the journal from the callback); when the journal cannot
    record it (``on_error: fail_closed``), the OPEN does not happen and nobody is told."""
    import numpy as np
    from standin import StandInPipeline

    from gatekeeper.camera import Camera
    from gatekeeper.capture import Frame
    from gatekeeper.config import Config
    from gatekeeper.events import FaceScore
    from gatekeeper.gate import Gate, GateConfig
    from gatekeeper.hooks import Dispatcher

    journal = Journal(tmp_path / "journal.sqlite3")
    if not journal_works:
        journal._db.execute("CREATE TRIGGER no_writes BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    heard: list[tuple[str, list[str]]] = []
    gate = Gate(GateConfig(hold_seconds=None, hold_frames=3))
    gate.when_opened = lambda e: heard.append((e.id, [x.event.id for x in journal.entries()]))
    smiling = StandInPipeline(gate, lambda frame: [FaceScore((10.0, 10.0, 80.0, 80.0), 0.95)])
    dispatcher = Dispatcher(journal, [], on_error="fail_closed", probe_interval_s=60.0)
    camera = Camera("lane1", Config(), smiling, dispatcher=dispatcher)  # type: ignore[arg-type]
    camera.run(Frame(np.zeros((8, 8, 3), np.uint8), i, i / 30) for i in range(4))
    camera.close(1.0, close_journal=False)
    if journal_works:
        (opened,) = journal.entries()
        assert heard == [(opened.event.id, [opened.event.id])]
    else:
        assert heard == [] and journal.entries() == [] and dispatcher.withheld == 1
    journal.close()
