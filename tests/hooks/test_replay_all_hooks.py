"""Issue 4's acceptance run: the real clip, the real pipeline, all four hooks against real receivers.

``gatekeeper --video single_face.mp4`` (in-process, so the relay's mock pin can be read) with a
signed webhook to a local HTTP server, MQTT to a local mosquitto, a command, and a relay on
gpiozero's MockFactory: each must get the clip's one OPEN exactly once, and the journal must
show it delivered to all four.

How fast the replay runs must not matter: a fast machine ends the clip a few dozen milliseconds
after the OPEN, while the relay is still pulsing. The end of a finite source lets the pulse run
out (and pulses an OPEN still queued), within the shutdown bound; a stop on request
(SIGINT/SIGTERM) cuts it. The tests below pin that down with the OPEN on the clip's last frame,
where the end of the replay always comes in the middle of the pulse.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import signal
import statistics
import time
from pathlib import Path

import pytest
from standin import StandInPipeline

from gatekeeper.camera import Camera
from gatekeeper.capture import Frame
from gatekeeper.capture_file import FileSource
from gatekeeper.cli import main
from gatekeeper.config import Config
from gatekeeper.events import FaceScore
from gatekeeper.gate import Gate, GateConfig
from gatekeeper.hooks import Dispatcher, GpioHook, GpioHookConfig
from gatekeeper.journal import Journal


def all_hooks_config(tmp_path: Path, rx, secret: str, broker, runs: Path, journal: Path) -> Path:
    config = {
        "name": "entry",
        "journal": {"path": str(journal)},
        "hooks": [
            {"type": "webhook", "url": rx.url, "secret": secret, "require_signature": True, "events": ["OPEN"]},
            {"type": "mqtt", "port": broker.port, "topic_prefix": "gk", "events": ["OPEN"]},
            {"type": "command", "argv": ["/bin/sh", "-c", 'cat >> "$0"; echo >> "$0"', str(runs)]},
            {"type": "gpio", "pin": "GPIO17", "pulse_ms": 100, "pin_factory": "mock"},
        ],
    }
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def replay(shared_dir: Path, config: Path, *options: str) -> None:
    """``gatekeeper --video single_face.mp4`` in-process (so the relay's mock pin can be read)."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert main(["--video", str(shared_dir / "videos" / "single_face.mp4"), "--config", str(config), *options]) == 0
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)


@pytest.mark.slow
def test_replay_delivers_the_open_to_every_hook_exactly_once(
    tmp_path: Path, shared_dir: Path, face_model_path: Path, receiver, secret, broker, subscribe, mock_factory, wait, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("GATEKEEPER_FACE_MODEL", str(face_model_path))
    rx = receiver()
    sub = subscribe(broker.port, ("gk/entry/event",))
    runs = tmp_path / "runs.jsonl"
    pin = mock_factory.pin("GPIO17")
    journal = tmp_path / "journal.sqlite3"
    replay(shared_dir, all_hooks_config(tmp_path, rx, secret, broker, runs, journal))
    stdout = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (open_event,) = [e for e in stdout if e["event"] == "OPEN"]

    # The run drains the hooks before it returns, so everything has arrived by now.
    assert [r.id for r in rx.requests] == [open_event["id"]] and rx.requests[0].signature_ok
    mqtt = sub.wait_for(lambda m: True, n=1)
    assert [m.json["id"] for m in sub.messages] == [open_event["id"]] and mqtt[0].json["gate"] == "entry"
    assert [json.loads(line)["id"] for line in runs.read_text().split("\n") if line.strip()] == [open_event["id"]]
    on_states = [s.state for s in pin.states]
    assert on_states.count(True) == 1 and on_states[-1] is False  # one pulse, relay off at the end
    assert pulse_lengths(pin) == [pytest.approx(0.1, abs=0.09)] and pulse_lengths(pin)[0] >= 0.1, "the pulse ran out in full"

    assert main(["events", "--json", "--journal", str(journal)]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (entry,) = [e for e in entries if e["id"] == open_event["id"]]
    assert {d["hook"]: d["state"] for d in entry["deliveries"]} == {
        "webhook[0]": "delivered", "mqtt[1]": "delivered", "command[2]": "delivered", "gpio[3]": "delivered"
    }
    created = dt.datetime.fromisoformat(entry["created_at"]).timestamp()
    latency = {"webhook": rx.requests[0].at - created, "mqtt": mqtt[0].at - created}
    print("\nreplay delivery latency, journal append -> receiver (ms):", {k: round(1000 * v, 1) for k, v in latency.items()})
    assert statistics.median(latency.values()) < 1.0


@pytest.mark.slow
def test_a_dry_run_replays_with_every_hook_configured_and_runs_none(
    tmp_path: Path, shared_dir: Path, face_model_path: Path, receiver, secret, broker, subscribe, mock_factory, capsys, caplog, monkeypatch
) -> None:
    monkeypatch.setenv("GATEKEEPER_FACE_MODEL", str(face_model_path))
    caplog.set_level(logging.INFO, logger="gatekeeper")  # the app says which hooks it did not build
    rx = receiver()
    sub = subscribe(broker.port, ("gk/#",))
    runs, journal = tmp_path / "runs.jsonl", tmp_path / "journal.sqlite3"
    pin = mock_factory.pin("GPIO17")
    replay(shared_dir, all_hooks_config(tmp_path, rx, secret, broker, runs, journal), "--dry-run")
    kinds = [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
    assert kinds.count("OPEN") == 1, "the gate ran as usual"
    assert "dry run: hooks not run (webhook[0], mqtt[1], command[2], gpio[3]); journal in memory" in caplog.text
    assert rx.requests == [] and not runs.exists()
    assert [s.state for s in pin.states] == [False], "the relay pin was never claimed, let alone pulsed"
    assert not journal.exists(), "the gate's own journal never saw the run"
    assert sub.on("gk/entry/event") == [] and sub.on("gk/entry/availability") == []


# -- the end of a replay in the middle of a pulse ----------------------------------------------------

RELAY_PIN = "GPIO22"


def pulse_lengths(pin) -> list[float]:
    """Seconds the mock pin stayed on, pulse by pulse (each state's timestamp is the time since the last change)."""
    states = pin.states
    return [b.timestamp for a, b in itertools.pairwise(states) if a.state and not b.state]


class ScriptedPipeline(StandInPipeline):
    """Stands in for detect -> crop -> classify: on each frame named, one more person steps in
    front of the camera, larger than the last (so they decide) and smiling; the real tracker and
    gate, opening on a smile's first frame, make it an OPEN on exactly that frame."""

    def __init__(self, opens_at: set[int], on_open=None) -> None:
        super().__init__(Gate(GateConfig(hold_seconds=None, hold_frames=1)), self._faces)
        self.opens_at = sorted(opens_at)
        self.on_open = on_open

    def _faces(self, frame: Frame) -> list[FaceScore]:
        if frame.index not in self.opens_at:
            return []
        if self.on_open is not None:
            self.on_open()
        rank = self.opens_at.index(frame.index)
        return [FaceScore((100.0 + 300.0 * k, 100.0, 80.0 + 20.0 * k, 80.0 + 20.0 * k), 0.9) for k in range(rank + 1)]


def replay_with_relay(tmp_path: Path, clip: Path, pulse_ms: int, opens_at, on_open=None):
    """The real clip through a scripted pipeline, to the real journal and a relay on the mock pin."""
    journal = Journal(tmp_path / "journal.sqlite3")
    relay = GpioHook(GpioHookConfig(pin=RELAY_PIN, pin_factory="mock", pulse_ms=pulse_ms, max_age_s=10.0), name="relay")
    dispatcher = Dispatcher(journal, [relay])
    dispatcher.start()
    source = FileSource(clip)
    last = source.frame_count - 1
    app = Camera("gate", Config(), ScriptedPipeline({last + k for k in opens_at}, on_open), [], dispatcher=dispatcher)
    return app, source, relay, journal


def deliveries(path: Path) -> list[tuple[str, int, str | None]]:
    with Journal(path, readonly=True) as journal:
        return [(d.state.value, d.attempts, d.last_error) for e in journal.entries() for d in e.deliveries]


def test_a_replay_that_ends_mid_pulse_lets_the_pulse_and_a_queued_open_run_out(shared_dir: Path, tmp_path: Path, mock_factory) -> None:
    # An OPEN on each of the last two frames: when the file ends, the first is pulsing (or about
    # to) and the second waits in the relay's queue. Both are pulsed in full, then the run ends.
    app, source, relay, _ = replay_with_relay(tmp_path, shared_dir / "videos" / "single_face.mp4", 300, opens_at=(-1, 0))
    pin = mock_factory.pin(RELAY_PIN)
    app.run(source)
    app.close()
    assert app.ended == "source ended" and not app.stopping.is_set()
    assert pulse_lengths(pin) == [pytest.approx(0.3, abs=0.25)] * 2 and min(pulse_lengths(pin)) >= 0.3, pin.states
    assert pin.state is False and relay.device.closed
    assert deliveries(tmp_path / "journal.sqlite3") == [("delivered", 1, None)] * 2
    assert relay.stats.delivered == 2 and relay.stats.failed == 0


def test_a_stop_on_request_mid_pulse_shuts_the_relay_at_once(shared_dir: Path, tmp_path: Path, mock_factory, wait) -> None:
    # As SIGTERM does: the handler sets app.stopping; here it comes with the OPEN of frame 10.
    holder: list[Camera] = []
    app, source, relay, _ = replay_with_relay(
        tmp_path, shared_dir / "videos" / "single_face.mp4", 5000, opens_at=(-61,), on_open=lambda: holder[0].stopping.set()
    )
    holder.append(app)
    pin = mock_factory.pin(RELAY_PIN)
    app.run(source)
    assert app.ended == "stopped" and app.frames == 11, "the loop stopped at the frame after the request"
    wait(lambda: relay.is_active, 10)  # the relay's worker has taken the OPEN: the pulse is on
    started = time.monotonic()
    app.close()
    assert time.monotonic() - started < 2.0, "shutdown waited for the 5 s pulse instead of cutting it"
    assert pin.state is False and relay.device.closed
    ((state, attempts, error),) = deliveries(tmp_path / "journal.sqlite3")
    assert (state, attempts) == ("failed", 1)
    assert error is not None and "cut short" in error and "by shutdown on request" in error, error
