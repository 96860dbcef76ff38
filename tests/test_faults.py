"""Faults the gate survives, with the real pipeline (MediaPipe, LiteRT, gate, GPIO relay on the mock
pin factory) fed by a local MJPEG camera that refuses, stalls and drops, and by damaged files; and
the process as a whole under SIGTERM/SIGINT.

The gate in these tests takes every face as a smile (``enter_threshold: 0``), so what it does
depends on faces being seen and on the faults alone, not on how good the smile model is: a face
in view opens it after ``hold_frames`` frames, once per smile.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mjpeg_server import MjpegServer, jpeg_frames_from_video
from polling import wait_for
from prometheus_client import generate_latest
from standin import StandInPipeline
from videofiles import faststart, garbled, truncated

from gatekeeper.camera import Camera
from gatekeeper.capture import Frame
from gatekeeper.capture_live import LiveSource
from gatekeeper.classify import SmileClassifier
from gatekeeper.config import Config
from gatekeeper.config_load import config_from_dict
from gatekeeper.detect import FaceDetector
from gatekeeper.events import Event, EventType, FaceScore
from gatekeeper.gate import Gate
from gatekeeper.hooks import Delivery, Dispatcher, GpioHook, GpioHookConfig, Hook
from gatekeeper.journal import Journal
from gatekeeper.pipeline import Pipeline
from gatekeeper.serve import Watchers
from gatekeeper.web import LiveView, WebServer

REQUIRED_KEYS = {"event", "frame", "t", "score", "id", "box", "faces", "reason"}
HOLD_FRAMES = 3
RELAY_PIN = "GPIO26"

# Every face smiles; one OPEN per smile; no DENY to muddle the sequence.
GATE = {"enter_threshold": 0.0, "exit_threshold": 0.0, "hold_seconds": None, "hold_frames": HOLD_FRAMES, "cooldown_s": 0.0, "deny_after_s": 600.0}
SOURCE = {"watchdog_s": 0.5, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.4}
LIVE_TIMEOUTS = {"open_timeout_s": 1.0, "read_timeout_s": 0.5}


def make_config(face_model_path: Path, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "detector": {"model_path": str(face_model_path)},
        "gate": dict(GATE),
        "source": dict(SOURCE),
        "journal": {"enabled": False},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return config_from_dict(data)


# -- in-process: a Camera on a live MJPEG camera -----------------------------------------------------------


class Recorder:
    """An event sink that keeps what it is given and lets the test wait for it."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._cond = threading.Condition()

    def emit(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def close(self) -> None:
        pass

    def kinds(self, start: int = 0) -> list[str]:
        with self._cond:
            return [e.event.value for e in self.events[start:]]

    def wait(self, kind: str, *, start: int = 0, timeout: float = 15.0) -> tuple[int, Event]:
        """The first ``kind`` event at position ``start`` or later, and its position."""

        def find() -> tuple[int, Event] | None:
            return next(((i, e) for i, e in enumerate(self.events) if i >= start and e.event.value == kind), None)

        with self._cond:
            found = self._cond.wait_for(find, timeout)
        if found is None:
            raise AssertionError(f"no {kind} event within {timeout:g} s; got {self.kinds()}")
        return found


@pytest.fixture(scope="module")
def models(face_model_path: Path) -> Iterator[tuple[FaceDetector, SmileClassifier]]:
    """Loaded once for the module: every live test's frames carry wall-clock times, which only grow."""
    detector = FaceDetector(face_model_path, min_confidence=0.7, min_face_px=40.0)
    classifier = SmileClassifier()  # the shipped model, as the CLI finds it
    yield detector, classifier
    detector.close()


@pytest.fixture(scope="module")
def clip_jpegs(shared_dir: Path) -> list[bytes]:
    return jpeg_frames_from_video(shared_dir / "videos" / "single_face.mp4", count=30)


@pytest.fixture
def camera(clip_jpegs: list[bytes]) -> Iterator[MjpegServer]:
    with MjpegServer(clip_jpegs, fps=30) as cam:
        yield cam


class LiveGate:
    """A Camera running on a live source in a background thread, with a relay on the mock pin factory."""

    def __init__(self, cfg: Config, models: tuple[FaceDetector, SmileClassifier], source: LiveSource) -> None:
        self.recorder = Recorder()
        self.relay = GpioHook(GpioHookConfig(pin=RELAY_PIN, pin_factory="mock", pulse_ms=60_000, max_age_s=60.0), name="relay")
        self.dispatcher = Dispatcher(None, [self.relay])
        self.dispatcher.start()
        self.pipeline = Pipeline(models[0], models[1], Gate(cfg.gate))
        # The dispatcher first: by the time the recorder sees a FAULT the relay has been forced off.
        self.app = Camera(cfg.name, cfg, self.pipeline, [self.dispatcher, self.recorder])
        self.source = source
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="app", daemon=True)

    def _run(self) -> None:
        try:
            self.app.run(self.source)
        except BaseException as exc:  # reported by the test, which runs in another thread
            self.error = exc

    def stop(self) -> None:
        self.app.stopping.set()
        self.thread.join(timeout=10)
        self.dispatcher.close(timeout=2.0)
        assert not self.thread.is_alive(), "the frame loop did not stop"
        assert self.error is None, f"the frame loop raised {self.error!r}"


@pytest.fixture
def live_gate(face_model_path: Path, models: tuple[FaceDetector, SmileClassifier]) -> Iterator[Callable[..., LiveGate]]:
    started: list[LiveGate] = []

    def start(url: str, *, source: dict[str, Any] | None = None, **live: Any) -> LiveGate:
        cfg = make_config(face_model_path, source=source or {})
        s = cfg.source
        src = LiveSource(url, reconnect_initial_s=s.reconnect_initial_s, reconnect_max_s=s.reconnect_max_s, max_reconnects=s.max_reconnects, **{**LIVE_TIMEOUTS, **live})
        gate = LiveGate(cfg, models, src)
        started.append(gate)
        gate.thread.start()
        return gate

    yield start
    for gate in started:
        gate.stop()


@pytest.mark.slow
def test_a_refused_camera_faults_holds_the_gate_shut_and_recovers_by_itself(camera: MjpegServer, live_gate: Callable[..., LiveGate]) -> None:
    g = live_gate(camera.url)
    rec = g.recorder
    rec.wait("OPEN")
    wait_for(lambda: g.relay.is_active, 5, "the relay to be pulsed by the OPEN")

    camera.refuse()  # the camera hangs up and refuses every reconnect
    at, fault = rec.wait("FAULT")
    assert not g.relay.is_active, "FAULT forces the relay off, cutting the 60 s pulse short"
    assert g.pipeline.gate.faulted
    assert fault.reason and ("cannot open" in fault.reason or "no frame" in fault.reason or "stopped" in fault.reason), fault.reason
    assert abs(fault.t - time.time()) < 60, "a live event's t is the wall clock"
    refused_from = len(camera.attempts)
    wait_for(lambda: len(camera.attempts) >= refused_from + 3, 10, "reconnect attempts to go on while faulted")
    assert rec.kinds(at + 1) == [], "nothing but the one FAULT while the camera is down"
    assert not g.relay.is_active and g.source.status.reconnects == 0

    camera.resume()
    back, recovered = rec.wait("RECOVERED", start=at)
    _, reopened = rec.wait("OPEN", start=back)
    # The outage outlasted gate.lost_after_s: the recovery ends the visit of before (FACE_LOST),
    # and the face seen after it is a new visit, with its own OPEN.
    assert rec.kinds() == ["OPEN", "FAULT", "RECOVERED", "FACE_LOST", "OPEN"]
    assert reopened.frame - recovered.frame >= HOLD_FRAMES - 1, "the fault dropped the smile: it is held in full again"
    assert g.source.status.reconnects == 1
    wait_for(lambda: g.relay.is_active, 5, "the relay to be pulsed again after recovery")


@pytest.mark.slow
def test_a_stalled_camera_trips_the_watchdog_and_recovers(camera: MjpegServer, live_gate: Callable[..., LiveGate]) -> None:
    # The read timeout is far longer than the watchdog: the FAULT comes from the frame loop's
    # watchdog alone, while the capture thread is still waiting on the socket.
    g = live_gate(camera.url, source={"watchdog_s": 0.3}, read_timeout_s=10.0)
    rec = g.recorder
    rec.wait("OPEN")
    camera.stall()
    at, fault = rec.wait("FAULT")
    assert fault.reason == "no frame for 0.3 s"
    assert not g.relay.is_active
    camera.resume()  # the same connection carries on
    back, _ = rec.wait("RECOVERED", start=at)
    rec.wait("OPEN", start=back)
    assert rec.kinds() == ["OPEN", "FAULT", "RECOVERED", "FACE_LOST", "OPEN"]  # a new visit, as above


@pytest.mark.slow
def test_a_dropped_connection_is_reconnected_under_the_watchdog(camera: MjpegServer, live_gate: Callable[..., LiveGate]) -> None:
    # A reconnect to a camera that answers takes milliseconds; a 3 s watchdog never notices it.
    g = live_gate(camera.url, source={"watchdog_s": 3.0})
    g.recorder.wait("OPEN")
    frames_before = g.app.frames
    camera.drop()
    wait_for(lambda: g.source.status.reconnects == 1, 10, "the reconnect")
    wait_for(lambda: g.app.frames >= frames_before + 10, 10, "frames to flow again")
    assert "FAULT" not in g.recorder.kinds()


@pytest.mark.slow
def test_a_source_that_gives_up_ends_the_run_with_the_gate_shut(camera: MjpegServer, live_gate: Callable[..., LiveGate]) -> None:
    g = live_gate(camera.url, source={"max_reconnects": 2, "watchdog_s": 30.0})
    g.recorder.wait("OPEN")
    camera.refuse()
    g.thread.join(timeout=15)
    assert not g.thread.is_alive(), "the run ends by itself once the source gives up"
    assert g.recorder.kinds() == ["OPEN", "FAULT"]
    assert "cannot open" in (g.recorder.events[-1].reason or "")
    assert not g.relay.is_active


def test_shutdown_mid_pulse_shuts_the_relay_at_once_instead_of_waiting_the_pulse_out() -> None:
    relay = GpioHook(GpioHookConfig(pin=RELAY_PIN, pin_factory="mock", pulse_ms=60_000, max_age_s=60.0), name="relay")
    dispatcher = Dispatcher(None, [relay])
    dispatcher.start()
    for frame in (1, 2):  # the second OPEN waits in the queue behind the first one's pulse
        dispatcher.emit(Event(EventType.OPEN, frame, 0.1 * frame, 0.9, f"open-{frame}", (0.0, 0.0, 90.0, 90.0), 1))
    wait_for(lambda: relay.is_active, 5, "the pulse to start")
    pin = relay.device.pin  # the mock pin outlives the device, so its level can be read after close
    started = time.monotonic()
    dispatcher.close(timeout=5.0)
    assert time.monotonic() - started < 2.0, "close waited for the pulse (or the bound) instead of cutting it"
    assert relay.device.closed and pin.state is False, "the relay is left shut"
    assert relay.stats.delivered == 0 and relay.stats.failed == 2, "neither the cut pulse nor the queued OPEN counts as delivered"


# -- the whole process: damaged files, live URL, signals ----------------------------------------------


def write_config(path: Path, face_model_path: Path, journal: Path, **sections: dict[str, Any]) -> Path:
    data: dict[str, Any] = {
        "detector": {"model_path": str(face_model_path)},
        "gate": dict(GATE),
        "source": dict(SOURCE),
        "journal": {"path": str(journal)},
        # A 60 s pulse that is still on when the signal comes: shutdown must not wait for it.
        "hooks": [{"type": "gpio", "pin": RELAY_PIN, "pin_factory": "mock", "pulse_ms": 60_000, "max_age_s": 60.0}],
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    path.write_text(yaml.safe_dump(data))
    return path


def gatekeeper_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "gatekeeper.cli", *args]


def parse_events(stdout: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in stdout.splitlines()]  # every line is a complete object
    for e in events:
        assert REQUIRED_KEYS <= set(e), e
    return events


@pytest.fixture
def cli_config(tmp_path: Path, face_model_path: Path) -> Callable[..., Path]:
    def make(**sections: dict[str, Any]) -> Path:
        return write_config(tmp_path / "config.yaml", face_model_path, tmp_path / "journal.sqlite3", **sections)

    return make


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["cut-short", "garbled-middle"])
def test_a_damaged_file_replays_what_it_can_and_exits_0(shared_dir: Path, tmp_path: Path, cli_config: Callable[..., Path], damage: str) -> None:
    clip = shared_dir / "videos" / "single_face.mp4"
    if damage == "cut-short":
        video = truncated(faststart(clip, tmp_path / "fs.mp4"), tmp_path / "cut.mp4", 0.6)
    else:
        video = garbled(clip, tmp_path / "garbled.mp4", 0.4, 0.5)
    proc = subprocess.run(gatekeeper_cmd("--video", str(video), "--config", str(cli_config())), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    events = parse_events(proc.stdout)
    assert [e["event"] for e in events][:1] == ["OPEN"], "the decodable part was processed"
    assert "could not be decoded" in proc.stderr or "truncated" in proc.stderr, "the damage is reported"


def test_an_mp4_cut_before_its_index_exits_2_with_one_line(shared_dir: Path, tmp_path: Path, cli_config: Callable[..., Path]) -> None:
    video = truncated(shared_dir / "videos" / "single_face.mp4", tmp_path / "cut.mp4", 0.6)
    proc = subprocess.run(gatekeeper_cmd("--video", str(video), "--config", str(cli_config())), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("gatekeeper: error:")]
    assert len(lines) == 1 and str(video) in lines[0], proc.stderr


def test_a_url_nobody_serves_exits_2(cli_config: Callable[..., Path], camera: MjpegServer) -> None:
    camera.refuse()
    proc = subprocess.run(gatekeeper_cmd("--url", camera.url, "--config", str(cli_config())), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "gatekeeper: error: cannot open video source" in proc.stderr


class Reader:
    """Collects a subprocess's stdout lines on a thread, so the test can wait for one without blocking."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._proc = proc
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_event(self, kind: str, timeout: float = 60.0) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((e for e in map(json.loads, self.lines) if e["event"] == kind), None)

        with self._cond:
            found = self._cond.wait_for(find, timeout)
        if found is None:
            raise AssertionError(f"no {kind} event within {timeout:g} s; got {self.lines}")
        return found

    def join(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


@contextmanager
def gatekeeper_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], Reader]]:
    proc = subprocess.Popen(gatekeeper_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc, Reader(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.mark.slow
def test_the_cli_rides_out_a_camera_outage(cli_config: Callable[..., Path], camera: MjpegServer) -> None:
    with gatekeeper_process("--url", camera.url, "--config", str(cli_config())) as (proc, out):
        out.wait_event("OPEN")
        camera.refuse()
        out.wait_event("FAULT", timeout=15)
        camera.resume()
        out.wait_event("RECOVERED", timeout=15)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        _, stderr = proc.communicate(timeout=10)
        stdout = out.join()
    assert rc == 0, stderr[-3000:]
    kinds = [e["event"] for e in parse_events(stdout)]
    assert kinds[:3] == ["OPEN", "FAULT", "RECOVERED"]
    assert '"reconnects": 1' in stderr, "the outage cost exactly one reconnect (the done line counts them)"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_run_stops_in_order_and_exits_0(shared_dir: Path, cli_config: Callable[..., Path], sig: signal.Signals) -> None:
    video = shared_dir / "videos" / "face_noface.mov"  # 5.6 s at its own rate: the signal comes mid-way
    with gatekeeper_process("--video", str(video), "--realtime", "--config", str(cli_config())) as (proc, out):
        out.wait_event("OPEN")  # the relay is now in the middle of a 60 s pulse
        sent = time.monotonic()
        proc.send_signal(sig)
        rc = proc.wait(timeout=10)
        took = time.monotonic() - sent
        _, stderr = proc.communicate(timeout=10)
        stdout = out.join()
    assert rc == 0, stderr[-3000:]
    assert took < 5.0, f"exit took {took:.1f} s after {sig.name}"
    assert "Traceback" not in stderr
    assert f"received {sig.name}; stopping" in stderr
    assert stdout.endswith("\n"), "the last event line is complete"
    events = parse_events(stdout)
    assert events[0]["event"] == "OPEN"
    done = re.search(r"done: (\d+) frames", stderr)
    assert done is not None, stderr[-2000:]
    assert int(done.group(1)) < 169, "it stopped mid-clip, not at the end"


# -- a journal that cannot write ------------------------------------------------------------------------

VISIT = ["face"] * 6 + [None] * 15  # at 30 fps: one OPEN after HOLD_FRAMES frames, FACE_LOST 0.3 s after the face goes


def scored(cfg: Config, script: list[str | None]) -> StandInPipeline:
    """The real tracker and gate of ``cfg``, fed one smiling face on the frames ``script`` names, none elsewhere."""
    face = FaceScore((10.0, 10.0, 100.0, 100.0), 0.95)
    return StandInPipeline(Gate(cfg.gate), lambda frame: [face] if script[frame.index] else [])


class Taker(Hook):
    """A hook that takes OPEN and FAULT and remembers which it got."""

    kind = "taker"

    def __init__(self) -> None:
        super().__init__("taker", events=("OPEN", "FAULT"), max_age_s=60, queue_size=64)
        self.got: list[tuple[str, str]] = []

    def deliver(self, delivery: Delivery, attempt: int) -> None:
        self.got.append((delivery.event.event.value, delivery.event.id))


class FullDisk:
    """A 1 MiB tmpfs that the test fills to the last byte and frees again: a real full disk."""

    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint
        self.filler = mountpoint / "filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[FullDisk]:
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(
            f"mounting a tmpfs needs root ({mounted.stderr.strip()}); the journal-on-a-read-only-connection tests "
            "take the same path with an SQLite-level fault"
        )
    try:
        yield FullDisk(mountpoint)
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def journal_world(fail: Callable[[], None], heal: Callable[[], None], dispatcher: Dispatcher, seen: dict[str, Any], view: Any, app_of: list[Camera]) -> Iterator[Frame]:
    """Frames at 30 fps for seven visits: the journal breaks before the second visit and heals
    before the sixth. What health, trouble and the metrics said while it was broken goes in ``seen``."""
    image = np.zeros((8, 8, 3), np.uint8)
    script = VISIT * 7
    for i in range(len(script)):
        if i == len(VISIT):
            fail()
        if i == 5 * len(VISIT):
            app = app_of[0]
            seen.update(health=view.health(), trouble=app.trouble(), metrics=generate_latest(view.registry).decode(), errors=app.journal_errors)
            heal()
            wait_for(lambda: dispatcher.journal_fault is None, 10, "the journal probe to find it writable again")
        yield Frame(image, i, i / 30)


def run_journal_world(tmp_path: Path, journal_path: Path, fail: Callable[[Journal], None], heal: Callable[[Journal], None], on_error: str = "fail_closed"):
    cfg = config_from_dict({"gate": dict(GATE), "journal": {"path": str(journal_path), "on_error": on_error}})
    journal = Journal(journal_path)
    taker = Taker()
    dispatcher = Dispatcher(journal, [taker], on_error=cfg.journal.on_error, probe_interval_s=0.05)
    dispatcher.start()
    recorder = Recorder()
    watchers = Watchers()
    script = VISIT * 7
    app_of: list[Camera] = []
    seen: dict[str, Any] = {}
    app = Camera(cfg.name, cfg, scored(cfg, script), [recorder, watchers], watchers.on_frame, dispatcher=dispatcher)
    view = LiveView(app)
    watchers.add(view)
    app_of.append(app)
    app.run(journal_world(lambda: fail(journal), lambda: heal(journal), dispatcher, seen, view, app_of))
    app.close()
    with Journal(journal_path, readonly=True) as j:
        recorded = {e.event.id: e for e in j.entries()}
    return recorder, taker, recorded, seen, app


def check_fail_closed(recorder: Recorder, taker: Taker, recorded: dict[str, Any], seen: dict[str, Any], expected_error: str) -> None:
    kinds = [k for k in recorder.kinds() if k in ("OPEN", "FAULT", "RECOVERED")]
    assert kinds == ["OPEN", "FAULT", "RECOVERED", "OPEN", "OPEN"], recorder.kinds()
    fault = next(e for e in recorder.events if e.event is EventType.FAULT)
    assert fault.reason is not None and fault.reason.startswith("journal cannot write") and expected_error in fault.reason
    recovered = next(e for e in recorder.events if e.event is EventType.RECOVERED)
    assert recovered.reason == "journal writable again" and recovered.frame >= 5 * len(VISIT)
    # Every OPEN that reached the hook has its record; the one of the second visit reached nothing.
    opens = [id_ for kind, id_ in taker.got if kind == "OPEN"]
    assert opens == [e.id for e in recorder.events if e.event is EventType.OPEN]
    assert all(i in recorded for i in opens), "an OPEN reached a hook without its record"
    assert ("FAULT", fault.id) in taker.got and fault.id not in recorded, "the FAULT reached the hook, unrecorded"
    assert recovered.id in recorded
    healthy, why = seen["health"]
    assert not healthy and why.startswith("fault: journal cannot write") and expected_error in why
    assert seen["trouble"] is not None and expected_error in seen["trouble"]
    errors = re.search(r'^gatekeeper_journal_errors_total\{camera="gate"\} (\S+)$', seen["metrics"], re.M)
    assert errors is not None and float(errors.group(1)) == seen["errors"] >= 1
    assert 'gatekeeper_events_total{camera="gate",type="FAULT"} 1.0' in seen["metrics"]
    assert 'gatekeeper_gate_state{camera="gate",state="fault"} 1.0' in seen["metrics"]


def test_a_full_disk_under_the_journal_holds_the_gate_shut_until_space_returns(tmp_path: Path, full_disk: FullDisk) -> None:
    recorder, taker, recorded, seen, app = run_journal_world(
        tmp_path, full_disk.mountpoint / "journal.sqlite3", lambda j: full_disk.fill(), lambda j: full_disk.free()
    )
    check_fail_closed(recorder, taker, recorded, seen, "database or disk is full")
    assert app.trouble() == "source ended"


def read_only(journal: Journal, on: bool) -> None:
    """A fault injected at the SQLite layer: the connection refuses writes (SQLITE_READONLY), as a
    file system remounted read-only would. Portable (no root), unlike the full tmpfs above."""
    with journal._lock:
        journal._db.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")


def test_a_journal_that_refuses_writes_holds_the_gate_shut_until_it_takes_them_again(tmp_path: Path) -> None:
    recorder, taker, recorded, seen, _ = run_journal_world(
        tmp_path, tmp_path / "journal.sqlite3", lambda j: read_only(j, True), lambda j: read_only(j, False)
    )
    check_fail_closed(recorder, taker, recorded, seen, "readonly")


def test_on_error_deliver_keeps_the_gate_opening_unrecorded_and_says_it_is_unhealthy(tmp_path: Path) -> None:
    recorder, taker, recorded, seen, _ = run_journal_world(
        tmp_path, tmp_path / "journal.sqlite3", lambda j: read_only(j, True), lambda j: read_only(j, False), on_error="deliver"
    )
    opens = [e.id for e in recorder.events if e.event is EventType.OPEN]
    assert "FAULT" not in recorder.kinds() and len(opens) == 7, "the gate went on opening"
    assert [i for kind, i in taker.got if kind == "OPEN"] == opens
    assert sum(i not in recorded for i in opens) == 4, "the four OPENs while the journal refused writes went unrecorded"
    healthy, why = seen["health"]
    assert not healthy and why.startswith("journal cannot write") and "readonly" in why


# -- a closed stdout ----------------------------------------------------------------------------------


def journal_kinds(path: Path) -> list[str]:
    with Journal(path, readonly=True) as journal:
        return [e.event.event.value for e in journal.entries()]


@pytest.mark.slow
@pytest.mark.parametrize("head", ["head -n 0", "head -n 1"])
def test_a_closed_stdout_stops_nothing_else(shared_dir: Path, tmp_path: Path, cli_config: Callable[..., Path], head: str) -> None:
    """``gatekeeper ... | head``: the reader goes away; the gate, the journal and the hooks go on, exit 0."""
    runs = tmp_path / "runs.jsonl"
    config = cli_config()
    data = yaml.safe_load(config.read_text())
    data["hooks"] = [{"type": "command", "argv": ["/bin/sh", "-c", 'cat >> "$0"; echo >> "$0"', str(runs)], "events": ["OPEN", "FACE_LOST"]}]
    config.write_text(yaml.safe_dump(data))
    video = shared_dir / "videos" / "face_noface.mov"
    cmd = " ".join(map(shlex.quote, gatekeeper_cmd("--video", str(video), "--config", str(config))))
    # A real pipe to a real head; the pipeline's status is gatekeeper's (bash's PIPESTATUS).
    proc = subprocess.run(["bash", "-c", f"{cmd} | {head}; exit ${{PIPESTATUS[0]}}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    told = proc.stderr.count("stdout cannot be written")
    assert told == 1 if head == "head -n 0" else told <= 1, proc.stderr[-3000:]  # head -1 may leave before or after the last line
    assert len(proc.stdout.splitlines()) == (0 if head == "head -n 0" else 1)
    kinds = journal_kinds(tmp_path / "journal.sqlite3")
    assert kinds[:2] == ["OPEN", "FACE_LOST"], "the journal has every event, the ones after the pipe closed too"
    delivered = [json.loads(line)["event"] for line in runs.read_text().splitlines() if line.strip()]
    assert delivered == [k for k in kinds if k in ("OPEN", "FACE_LOST")], "the hook got every event it takes"
    assert re.search(r"done: \d+ frames", proc.stderr), "the replay ran to the end"


# -- health at the end of the source ------------------------------------------------------------------


def healthz(server: WebServer) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.url + "healthz", timeout=10) as r:
            return r.status, json.loads(r.read())["reason"]
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())["reason"]


def test_healthz_turns_503_as_soon_as_the_source_ends_not_after_the_watchdog(tmp_path: Path) -> None:
    cfg = config_from_dict({"gate": dict(GATE), "source": {"watchdog_s": 60.0}, "journal": {"enabled": False}})
    watchers = Watchers()
    app = Camera(cfg.name, cfg, scored(cfg, VISIT), [watchers], watchers.on_frame, dispatcher=Dispatcher(None, []))
    view = LiveView(app)
    watchers.add(view)
    server = WebServer(view, "127.0.0.1", 0)
    server.start()
    seen: list[tuple[int, str]] = []

    def frames() -> Iterator[Frame]:
        image = np.zeros((8, 8, 3), np.uint8)
        for i in range(len(VISIT)):
            yield Frame(image, i, i / 30)
        seen.append(healthz(server))  # the last frame has gone through; the source is about to end

    try:
        app.run(frames())
        seen.append(healthz(server))  # the run is over; the hooks have not been closed yet
        app.close()
        seen.append(healthz(server))
    finally:
        server.stop()
    assert seen == [(200, "ok"), (503, "source ended"), (503, "source ended")]


# -- a camera whose data arrives but cannot be decoded (issue 32 row 10) ---------------------------------

NOT_JPEG = b"<html>camera firmware error</html>" * 30  # 1020 bytes a part


def damaged(good: bytes) -> bytes:
    """``good`` with a sound JPEG header up to and with its frame header (its size reads) and
    random bytes after it: libjpeg complains ("Corrupt JPEG data") and gives up, so
    ``cv2.imdecode`` returns None."""
    sof = good.index(b"\xff\xc0")
    cut = sof + 2 + int.from_bytes(good[sof + 2 : sof + 4], "big")
    body = np.random.default_rng(len(good)).integers(0, 256, len(good) - cut - 2, dtype=np.uint8).tobytes()
    return good[:cut] + body + b"\xff\xd9"


def undecodable_reason(url: str, last: str) -> re.Pattern[str]:
    """The FAULT's reason for a camera whose data arrives but does not decode: (bad, parts, amount, kB or MB, rest)."""
    return re.compile(
        rf"source '{re.escape(url)}': data arrives but cannot be decoded: (\d+) of the last (\d+) parts "
        rf"\(([\d.]+) ([kM]B) in [\d.]+ s\) were no picture( and the rest were not looked at)? \(last: {re.escape(last)}\)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["not JPEG", "damaged JPEG data"])
def test_a_camera_whose_data_cannot_be_decoded_faults_saying_so_and_recovers(clip_jpegs: list[bytes], live_gate: Callable[..., LiveGate], kind: str) -> None:
    bad = [NOT_JPEG] if kind == "not JPEG" else [damaged(j) for j in clip_jpegs]
    with MjpegServer(bad, fps=30) as cam:
        g = live_gate(cam.url)
        at, fault = g.recorder.wait("FAULT")
        said = undecodable_reason(cam.url, kind).fullmatch(fault.reason or "")
        assert said is not None, fault.reason
        failed, parts = int(said[1]), int(said[2])
        # Frames the camera's loop took over and found damaged are counted where they fail; one
        # replaced by a newer before the loop took it was never looked at.
        assert 3 <= failed <= parts, "the parts of the watchdog's half second, every one looked at no picture"
        if kind == "not JPEG":
            assert failed == parts and said[5] is None, "each part rejected as it arrives"
        assert g.source.status.undecodable >= failed and g.source.status.reconnects == 0
        assert g.app.frames == 0 and g.pipeline.gate.faulted
        cam.frames = clip_jpegs  # the camera heals
        g.recorder.wait("RECOVERED", start=at)
        g.recorder.wait("OPEN", start=at)
    assert g.recorder.kinds()[:3] == ["FAULT", "RECOVERED", "OPEN"]


@pytest.mark.slow
def test_a_good_stream_with_a_damaged_frame_now_and_then_does_not_fault(clip_jpegs: list[bytes], live_gate: Callable[..., LiveGate]) -> None:
    stream = [*clip_jpegs[:19], damaged(clip_jpegs[19]), *clip_jpegs[20:25], NOT_JPEG, *clip_jpegs[26:]]  # 1 part in 15 no picture
    with MjpegServer(stream, fps=30) as cam:
        g = live_gate(cam.url)
        g.recorder.wait("OPEN")
        wait_for(lambda: g.source.status.undecodable >= 6 and g.app.frames >= 60, 20, "damaged parts counted, good frames through")
        view = LiveView(g.app, source_status=g.source.status)
        metrics = generate_latest(view.registry).decode()
    assert "FAULT" not in g.recorder.kinds() and not g.pipeline.gate.faulted, g.recorder.kinds()
    counted = re.search(rf'^gatekeeper_frames_undecodable_total{{camera="{g.app.name}"}} (\d+)', metrics, re.M)
    assert counted is not None and int(float(counted[1])) >= 6, metrics


@pytest.mark.parametrize("kind", ["not JPEG", "damaged JPEG data"])
def test_the_cli_names_a_camera_whose_data_cannot_be_decoded(cli_config: Callable[..., Path], clip_jpegs: list[bytes], kind: str) -> None:
    """Parts that are no JPEG, or JPEG headers over damaged data: the FAULT says data arrives but
    cannot be decoded, and how much; RECOVERED when pictures come; libjpeg's complaints stay
    off the terminal."""
    bad = [NOT_JPEG] if kind == "not JPEG" else [damaged(j) for j in clip_jpegs]
    with MjpegServer(bad, fps=30) as cam:
        with gatekeeper_process("--url", cam.url, "--config", str(cli_config())) as (proc, out):
            fault = out.wait_event("FAULT", timeout=30)
            cam.frames = clip_jpegs
            out.wait_event("RECOVERED", timeout=30)
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=10)
            _, stderr = proc.communicate(timeout=10)
    assert rc == 0, stderr[-3000:]
    said = undecodable_reason(cam.url, kind).fullmatch(fault["reason"])
    assert said is not None, fault["reason"]
    failed, parts, kb = int(said[1]), int(said[2]), float(said[3]) * (1000 if said[4] == "MB" else 1)
    assert 2 <= failed <= parts
    assert 0.95 * parts * min(map(len, bad)) / 1000 <= kb <= 1.05 * parts * max(map(len, bad)) / 1000 + 0.1, "the data of every part that arrived"
    if kind == "not JPEG":
        assert failed == parts and said[5] is None and kb == pytest.approx(parts * 1.02, abs=0.1)  # each part rejected as it arrives
    chatter = [ln for ln in stderr.splitlines() if "JPEG" in ln or "Traceback" in ln]
    assert chatter == [], "libjpeg's complaints go to the debug log, not the terminal"
