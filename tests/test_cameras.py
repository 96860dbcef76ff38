"""Many cameras, one service (gatekeeper/camera.py, scheduler.py, app.Service): real processes and real streams.

The cameras are real sources: MJPEG-over-HTTP servers on the loopback (tests/mjpeg_server.py),
GStreamer's RTSP server (tests/rtsp_server.py) and video files from ../shared/videos; the models
are the real ones. Relays are gpiozero's mock pins (no relay board here).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hooks.conftest import Broker, Subscriber, mosquitto_exe
from mjpeg_server import MjpegServer, jpeg_frames_from_video
from polling import wait_for
from test_faults import Reader, gatekeeper_process, parse_events
from test_rtsp import RtspServer, free_port, gstreamer  # noqa: F401 (gstreamer: a fixture)
from test_web import metric_samples

from gatekeeper.app import Service, model_workers
from gatekeeper.capture import Frame
from gatekeeper.capture_file import FileSource
from gatekeeper.capture_live import LiveSource
from gatekeeper.config_load import config_from_dict
from gatekeeper.scheduler import FairScheduler

# Every face smiles; one OPEN per visit after three frames; no DENY to muddle the sequence.
GATE = {"enter_threshold": 0.0, "exit_threshold": 0.0, "hold_seconds": None, "hold_frames": 3, "deny_after_s": 600.0}
SOURCE = {"watchdog_s": 0.5, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.4}


@pytest.fixture(scope="module")
def clip_jpegs(shared_dir: Path) -> list[bytes]:
    return jpeg_frames_from_video(shared_dir / "videos" / "single_face.mp4", count=30)


def relay(pin: str) -> dict[str, Any]:
    return {"type": "gpio", "name": "relay", "pin": pin, "pin_factory": "mock", "pulse_ms": 100, "max_age_s": 60.0}


# -- the scheduler ------------------------------------------------------------------------------


def test_the_scheduler_serves_waiting_lanes_in_turn() -> None:
    sched = FairScheduler()
    order: list[str] = []
    gate = threading.Event()
    try:
        lanes = {name: sched.lane(name) for name in ("a", "b", "c")}
        # The worker is held in a's first job while b and c queue theirs, then a queues again:
        # b and c go before a's second job, however soon a asks.
        first = threading.Thread(target=lambda: lanes["a"].call(lambda: (gate.wait(5), order.append("a"))))
        first.start()
        time.sleep(0.05)
        threads = [threading.Thread(target=lambda n=n: lanes[n].call(lambda: order.append(n))) for n in ("b", "c")]
        for t in threads:
            t.start()
        time.sleep(0.05)
        gate.set()
        first.join(5)
        lanes["a"].call(lambda: order.append("a"))
        for t in threads:
            t.join(5)
        assert order == ["a", "b", "c", "a"]
        with pytest.raises(ZeroDivisionError):
            lanes["b"].call(lambda: 1 / 0)  # an error in a job is raised on the camera's thread
        assert lanes["b"].call(lambda: "still serving") == "still serving"
    finally:
        sched.close()


def test_two_workers_serve_two_lanes_at_once_each_on_its_own_models() -> None:
    """With two workers, a lane's job runs while another lane's job holds the first worker, and
    each job sees the index of the worker (its copy of the models) that runs it."""
    sched = FairScheduler(workers=2)
    held, release = threading.Event(), threading.Event()
    slots: dict[str, int] = {}
    try:
        a, b = sched.lane("a"), sched.lane("b")

        def hold() -> None:
            slots["a"] = sched.slot()
            held.set()
            release.wait(5)

        first = threading.Thread(target=lambda: a.call(hold))
        first.start()
        assert held.wait(5)
        slots["b"] = b.call(sched.slot)  # served by the other worker while a's job still runs
        assert not release.is_set() and first.is_alive()
        release.set()
        first.join(5)
        assert sorted(slots.values()) == [0, 1]
        assert sched.slot() == 0  # outside a job
    finally:
        release.set()
        sched.close()
    with pytest.raises(ValueError, match="at least one worker"):
        FairScheduler(workers=0)


@pytest.mark.parametrize(
    ("cameras", "configured", "cpus", "expected"),
    [(8, None, 2, 2), (8, None, 1, 1), (8, None, 16, 2), (1, None, 2, 1), (0, None, 2, 1), (8, 4, 2, 4), (3, 6, 2, 3)],
)
def test_a_service_runs_one_copy_of_the_models_per_core_up_to_two_and_never_more_than_its_cameras(
    monkeypatch: pytest.MonkeyPatch, cameras: int, configured: int | None, cpus: int, expected: int
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    raw: dict[str, Any] = {"cameras": {f"c{i}": {"url": f"http://127.0.0.1:9/{i}"} for i in range(cameras)}} if cameras else {}
    if configured is not None:
        raw["model_workers"] = configured
    assert model_workers(config_from_dict(raw)) == expected


# -- one process, several cameras -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("gstreamer")
def test_one_process_runs_three_cameras_each_with_its_own_gate_relay_and_journal_rows(
    tmp_path: Path, shared_dir: Path, face_model_path: Path, clip_jpegs: list[bytes]
) -> None:
    """An MJPEG camera, a video file and an RTSP stream in one gatekeeper process: each opens its
    own gate, every event names its camera, the one journal holds them all, and
    ``gatekeeper events --camera`` lists one camera's."""
    rtsp = RtspServer(shared_dir / "videos" / "single_face.mp4", free_port(), tmp_path / "rtsp.log")
    rtsp.start()
    journal = tmp_path / "journal.sqlite3"
    try:
        with MjpegServer(clip_jpegs, fps=30) as mjpeg:
            config = tmp_path / "config.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "name": "park",
                        "detector": {"model_path": str(face_model_path)},
                        "gate": GATE,
                        "source": SOURCE,
                        "journal": {"path": str(journal)},
                        "hooks": [relay("GPIO20")],
                        "cameras": {
                            "lane1": {"url": mjpeg.url},
                            "replay": {"video": str(shared_dir / "videos" / "single_face.mp4"), "hooks": [relay("GPIO21")]},
                            "rtsp": {"url": f"rtsp://127.0.0.1:{rtsp.port}/x", "hooks": [], "gate": {"hold_frames": 4}},
                        },
                    }
                )
            )
            with gatekeeper_process("--config", str(config)) as (proc, out):
                opened = wait_for_opens(out, {"lane1", "replay", "rtsp"}, timeout=90)
                # A stop on request cuts a relay pulse short (journaled as failed): let the last
                # OPEN's 100 ms pulse run out first, whichever camera opened last.
                time.sleep(1.0)
                proc.send_signal(signal.SIGTERM)
                rc = proc.wait(timeout=15)
                _, stderr = proc.communicate(timeout=10)
                stdout = out.join()
    finally:
        rtsp.stop()
    assert rc == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    events = parse_events(stdout)
    assert {e["camera"] for e in events} == {"lane1", "replay", "rtsp"}, "every event names its camera"
    assert opened["rtsp"]["frame"] >= 3, "the rtsp camera's own hold_frames: 4"
    for name in ("lane1", "replay", "rtsp"):
        assert f"camera {name}: done:" in stderr
    # The file camera reached its end and stopped while the live ones ran on: one OPEN, its own.
    by_camera = {name: [e["event"] for e in events if e["camera"] == name] for name in ("lane1", "replay", "rtsp")}
    assert by_camera["replay"][:1] == ["OPEN"] and by_camera["replay"].count("OPEN") == 1, by_camera

    listed = subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", "events", "--config", str(config), "--json", "--camera", "replay"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["event"]["event"] for r in rows] == by_camera["replay"]
    assert all(r["event"]["camera"] == "replay" for r in rows)
    # The replay's OPEN went to its own relay (GPIO21), journaled as delivered.
    assert [(d["hook"], d["state"]) for d in rows[0]["deliveries"]] == [("relay", "delivered")]
    listed_all = subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", "events", "--config", str(config), "--json"], capture_output=True, text=True, timeout=60, check=False
    )
    assert {json.loads(line)["event"]["camera"] for line in listed_all.stdout.splitlines()} == {"lane1", "replay", "rtsp"}


def wait_for_opens(out: Reader, cameras: set[str], timeout: float) -> dict[str, dict[str, Any]]:
    """The first OPEN of each of ``cameras`` from the process's stdout."""
    deadline = time.monotonic() + timeout
    while True:
        found = {}
        for e in map(json.loads, list(out.lines)):
            if e["event"] == "OPEN" and e.get("camera") in cameras:
                found.setdefault(e["camera"], e)
        if set(found) == cameras:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no OPEN within {timeout:g} s from {sorted(cameras - set(found))}; got {out.lines}")
        time.sleep(0.1)


TOKEN = "a-token-of-twenty-chars"


def http(port: int, path: str, *, method: str = "GET", body: dict[str, Any] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request to the process's web server, with the bearer token."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def status_of(port: int, path: str = "/status") -> dict[str, Any]:
    code, _, body = http(port, path)
    assert code == 200, (path, code, body[:300])
    return json.loads(body)


@pytest.mark.slow
def test_every_surface_names_the_camera(tmp_path: Path, face_model_path: Path, clip_jpegs: list[bytes]) -> None:
    """Two MJPEG cameras in one process with the live view and an MQTT hook on a real mosquitto:
    the page lists both, each has its own live view, /status and /healthz answer per camera and
    overall, /metrics labels both, each camera has its own MQTT topics and Home Assistant device,
    and an operator action for one camera leaves the other alone."""
    broker = Broker(mosquitto_exe(), tmp_path)
    broker.start()
    sub = Subscriber(broker.port, ("gatekeeper/#", "homeassistant/#"))
    port = free_port()
    mqtt_hook = {"type": "mqtt", "port": broker.port, "discovery": True, "commands": True}
    try:
        with MjpegServer(clip_jpegs, fps=30) as cam1, MjpegServer(clip_jpegs, fps=30) as cam2:
            config = tmp_path / "config.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "name": "park",
                        "detector": {"model_path": str(face_model_path)},
                        "gate": {**GATE, "reopen": "cooldown", "cooldown_s": 0.0},
                        "source": SOURCE,
                        "journal": {"path": str(tmp_path / "journal.sqlite3")},
                        "http": {"token": TOKEN},
                        "hooks": [mqtt_hook],
                        "cameras": {"lane1": {"url": cam1.url}, "lane2": {"url": cam2.url}},
                    }
                )
            )
            with gatekeeper_process("--config", str(config), "--http", f"127.0.0.1:{port}") as (proc, out):
                wait_for_opens(out, {"lane1", "lane2"}, timeout=90)
                wait_for(lambda: http(port, "/healthz")[0] == 200, 10, "both cameras healthy")

                # The page: the camera list (several cameras), and each camera's own live view.
                code, headers, page = http(port, "/")
                assert code == 200 and b"gatekeeper camera list" in page
                code, _, live = http(port, "/cameras/lane2/")
                assert code == 200 and b'id="picture"' in live
                code, headers, jpeg = http(port, "/cameras/lane1/snapshot.jpg")
                assert code == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
                assert http(port, "/cameras/lane3/status")[0] == 404
                assert http(port, "/stream.mjpg")[0] == 404, "several cameras: the stream is per camera"

                overall = status_of(port)
                assert overall["name"] == "park" and overall["healthy"] is True
                assert set(overall["cameras"]) == {"lane1", "lane2"}
                assert {name: c["name"] for name, c in overall["cameras"].items()} == {"lane1": "lane1", "lane2": "lane2"}
                assert status_of(port, "/cameras/lane1/status")["frames"]["processed"] > 0
                code, _, health = http(port, "/healthz")
                assert json.loads(health)["cameras"] == {"lane1": {"ok": True, "reason": "ok"}, "lane2": {"ok": True, "reason": "ok"}}

                m = metric_samples(http(port, "/metrics")[2].decode())
                for name in ("lane1", "lane2"):
                    assert m[("gatekeeper_frames_processed_total", (("camera", name),))] > 0
                    assert m[("gatekeeper_events_total", (("camera", name), ("type", "OPEN")))] >= 1
                    assert m[("gatekeeper_in_service", (("camera", name), ("via", "")))] == 1
                    assert ("gatekeeper_hook_deliveries_total", (("camera", name), ("hook", "mqtt[0]"))) in m

                # MQTT: each camera its own topics and its own Home Assistant device.
                for name in ("lane1", "lane2"):
                    (msg,) = sub.wait_for(lambda m, n=name: m.topic == f"gatekeeper/{n}/event", timeout=10)
                    assert json.loads(msg.payload)["camera"] == name
                    (disc,) = sub.wait_for(lambda m, n=name: m.topic == f"homeassistant/binary_sensor/gatekeeper_{n}/gate/config")
                    assert json.loads(disc.payload)["device"]["identifiers"] == [f"gatekeeper_{name}"]
                    sub.wait_for(lambda m, n=name: m.topic == f"homeassistant/switch/gatekeeper_{n}/in_service/config")

                # An action for one camera: POST /cameras/lane2/actions/..., or its MQTT command topic.
                code, _, body = http(port, "/actions/open", method="POST", body={"by": "maria"})
                assert code == 404 and json.loads(body)["refused"] == "no_camera"
                code, _, body = http(port, "/cameras/lane2/actions/out_of_service", method="POST", body={"by": "ali", "reason": "cleaning"})
                assert code == 200, body
                assert [(e["event"], e["camera"]) for e in json.loads(body)["events"]] == [("OUT_OF_SERVICE", "lane2")]
                wait_for(lambda: status_of(port, "/cameras/lane2/status")["state"] == "out_of_service", 5, "lane2 out of service")
                assert status_of(port, "/cameras/lane1/status")["in_service"] is True
                command = {"action": "open", "by": "desk", "id": uuid.uuid4().hex, "ts": time.time()}
                sub.client.publish("gatekeeper/lane1/command", json.dumps(command), qos=1)
                out.wait_event("OPEN", timeout=10)
                wait_for(lambda: any(json.loads(line).get("by") == "desk" for line in out.lines), 10, "the MQTT open of lane1")
                manual = next(json.loads(line) for line in out.lines if json.loads(line).get("by") == "desk")
                assert (manual["camera"], manual["via"], manual["reason"]) == ("lane1", "mqtt", "manual")

                # One camera frozen: its health and the overall are bad, the other's stays good.
                cam2.stall()
                wait_for(lambda: http(port, "/healthz")[0] == 503, 10, "/healthz to go bad")
                health = json.loads(http(port, "/healthz")[2])
                assert health["cameras"]["lane1"]["ok"] is True and health["cameras"]["lane2"]["ok"] is False
                assert health["reason"].startswith("camera lane2: ")
                assert http(port, "/cameras/lane1/healthz")[0] == 200 and http(port, "/cameras/lane2/healthz")[0] == 503
                cam2.resume()

                proc.send_signal(signal.SIGTERM)
                rc = proc.wait(timeout=15)
                _, stderr = proc.communicate(timeout=10)
    finally:
        sub.close()
        broker.stop()
    assert rc == 0, stderr[-3000:]
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_the_report_is_written_per_camera(tmp_path: Path, shared_dir: Path, face_model_path: Path) -> None:
    clip = str(shared_dir / "videos" / "single_face.mp4")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"detector": {"model_path": str(face_model_path)}, "journal": {"enabled": False}, "cameras": {"east": {"video": clip}, "west": {"video": str(shared_dir / "videos" / "no_face.mp4")}}})
    )
    proc = subprocess.run([sys.executable, "-m", "gatekeeper.cli", "--config", str(config), "--report", str(tmp_path / "run.html")], capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    east, west = (tmp_path / "run-east.html").read_text(), (tmp_path / "run-west.html").read_text()
    assert "east: single_face.mp4" in east and "OPEN" in east
    assert "west: no_face.mp4" in west and "OPEN" not in west
    assert not (tmp_path / "run.html").exists()
    assert {json.loads(line)["camera"] for line in proc.stdout.splitlines()} == {"east"}, "only east's man smiles"


@pytest.mark.slow
def test_a_camera_down_at_start_holds_only_its_own_gate_shut_until_it_comes(tmp_path: Path, face_model_path: Path, clip_jpegs: list[bytes]) -> None:
    """Of two cameras, one refuses connections when the process starts: the other opens its gate,
    the absent one says FAULT (why, with its URL) and opens once it is there."""
    with MjpegServer(clip_jpegs, fps=30) as up, MjpegServer(clip_jpegs, fps=30) as down:
        down.refuse()
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "detector": {"model_path": str(face_model_path)},
                    "gate": GATE,
                    "source": SOURCE,
                    "journal": {"enabled": False},
                    "cameras": {"up": {"url": up.url}, "down": {"url": down.url}},
                }
            )
        )
        with gatekeeper_process("--config", str(config)) as (proc, out):
            wait_for_opens(out, {"up"}, timeout=90)
            wait_for(lambda: any(json.loads(line)["event"] == "FAULT" and json.loads(line)["camera"] == "down" for line in out.lines), 15, "down's FAULT")
            down.resume()
            wait_for_opens(out, {"down"}, timeout=30)
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=15)
            _, stderr = proc.communicate(timeout=10)
            stdout = out.join()
    assert rc == 0, stderr[-3000:]
    events = parse_events(stdout)
    down_events = [(e["event"], e["reason"]) for e in events if e["camera"] == "down"]
    assert down_events[0][0] == "FAULT" and "cannot open" in (down_events[0][1] or ""), down_events
    assert [k for k, _ in down_events[1:3]] == ["RECOVERED", "OPEN"], down_events
    assert not any(e["event"] == "FAULT" for e in events if e["camera"] == "up"), "the camera that was there never faulted"
    assert "starting without it and retrying in the background" in stderr


def test_cameras_in_the_config_and_a_source_on_the_command_line_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("cameras:\n  lane1: {camera: 0}\n")
    proc = subprocess.run([sys.executable, "-m", "gatekeeper.cli", "--config", str(config), "--video", "x.mp4"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "gatekeeper: error: --video: the config names its cameras (cameras: lane1); expected no --camera, --url or --video with it, or a config without cameras:"
    ]


# -- isolation: one camera's trouble never delays another's decisions -----------------------------


class Latencies:
    """An ``on_frame`` callback: the healthy camera's frame-to-decision time (capture to the gate's events out)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.measuring = False

    def __call__(self, frame: Frame, pipeline: Any) -> None:
        if self.measuring:
            self.samples.append(time.time() - frame.t)  # a live frame's t is the wall clock at capture


def troubled_service(cfg: Any, healthy: MjpegServer, frozen: MjpegServer, hanging: MjpegServer, flood: Path, latencies: Latencies) -> Service:
    service = Service(cfg)
    cams = {c.name: c for c in cfg.cameras}
    timeouts = {"open_timeout_s": 1.0, "read_timeout_s": 0.5, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.2}
    service.add_camera(cams["healthy"], LiveSource(healthy.url, **timeouts), on_frame=latencies)
    service.add_camera(cams["frozen"], LiveSource(frozen.url, **timeouts))
    service.add_camera(cams["hanging"], LiveSource(hanging.url, **timeouts))
    service.add_camera(cams["flood"], FileSource(flood))  # a file replayed as fast as it decodes: never a pause
    return service


def run_in_shared_queue(service: Service, stop: threading.Event) -> list[threading.Thread]:
    """The design the scheduler avoids, for contrast: every camera's frames into one FIFO and one
    loop taking them in order (a file source's frames all go in; a live source's as they come)."""
    frames: queue.Queue[tuple[Any, Frame]] = queue.Queue()

    def feed(cam: Any) -> None:
        src = cam.source
        for frame in src.frames(poll_s=0.05) if isinstance(src, LiveSource) else src:
            if stop.is_set():
                return
            if frame is not None:
                frames.put((cam, frame))

    def loop() -> None:
        while not stop.is_set():
            try:
                cam, frame = frames.get(timeout=0.1)
            except queue.Empty:
                continue
            cam.step(frame)

    threads = [threading.Thread(target=feed, args=(c,), daemon=True) for c in service.cameras.values()]
    threads.append(threading.Thread(target=loop, daemon=True))
    for t in threads:
        t.start()
    return threads


@pytest.fixture
def trouble(clip_jpegs: list[bytes], shared_dir: Path, face_model_path: Path) -> Iterator[Callable[[str], list[float]]]:
    """Runs four cameras for a few seconds, the healthy one measured, and returns its latencies."""
    servers = [MjpegServer(clip_jpegs, fps=30) for _ in range(3)]
    for s in servers:
        s.__enter__()
    healthy, frozen, hanging = servers
    cfg = config_from_dict(
        {
            "detector": {"model_path": str(face_model_path)},
            "gate": GATE,
            "source": SOURCE,
            "journal": {"enabled": False},
            "cameras": {"healthy": {"url": healthy.url}, "frozen": {"url": frozen.url}, "hanging": {"url": hanging.url}, "flood": {"video": "flood.mp4"}},
        }
    )
    flood = shared_dir / "videos" / "funny_faces.mp4"  # 34 s of faces: far more frames than the run takes

    def run(design: str) -> list[float]:
        latencies = Latencies()
        service = troubled_service(cfg, healthy, frozen, hanging, flood, latencies)
        stop = threading.Event()
        if design == "scheduler":
            runner = threading.Thread(target=service.run, daemon=True)
            runner.start()
        else:
            threads = run_in_shared_queue(service, stop)
        try:
            time.sleep(1.0)  # every camera delivering; the flood long under way
            frozen.stall()  # a camera that hangs: connected, nothing sent
            latencies.measuring = True
            end = time.monotonic() + 4.0
            while time.monotonic() < end:
                hanging.drop()  # a camera that hangs up, again and again
                time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            latencies.measuring = False
        finally:
            stop.set()
            service.stopping.set()
            if design == "scheduler":
                runner.join(10)
            else:
                for t in threads:
                    t.join(5)
            frozen.resume()
            service.close()
            for cam in service.cameras.values():
                cam.source.close()  # the shared-queue design never ran the cameras' own loops, which close them
        return latencies.samples

    try:
        yield run
    finally:
        for s in servers:
            s.__exit__(None, None, None)


P99_BOUND_S = 0.25  # this shared 2-core machine: a detector run is 3-10 ms, a fair round a few of them


@pytest.mark.slow
def test_a_healthy_camera_decides_on_time_while_others_freeze_hang_up_and_flood(trouble: Callable[[str], list[float]]) -> None:
    samples = trouble("scheduler")
    assert len(samples) >= 30, f"the healthy camera processed only {len(samples)} frames in 4 s"
    p99 = float(np.percentile(samples, 99))
    print(f"fair scheduler: {len(samples)} frames, p50 {np.percentile(samples, 50) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    assert p99 < P99_BOUND_S, f"healthy camera's p99 frame-to-decision {p99 * 1000:.0f} ms while others freeze, hang up and flood"


@pytest.mark.slow
def test_the_same_measurement_fails_a_shared_frame_queue(trouble: Callable[[str], list[float]]) -> None:
    """The measurement above is sharp enough to catch the design it guards against."""
    samples = trouble("shared queue")
    p99 = float(np.percentile(samples, 99)) if samples else float("inf")
    print(f"shared queue: {len(samples)} frames, p99 {p99 * 1000:.0f} ms")
    assert p99 > 4 * P99_BOUND_S, f"a shared FIFO gave a p99 of only {p99 * 1000:.0f} ms; the measurement would not catch it"


def test_check_config_checks_every_camera(tmp_path: Path, shared_dir: Path, face_model_path: Path) -> None:
    """--check-config prints the cameras with their effective gate and hooks, and runs start-up's
    checks per camera: each one's hooks as built for it, each video camera's file."""
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "detector": {"model_path": str(face_model_path)},
                "journal": {"path": str(tmp_path / "journal.sqlite3")},
                "gate": {"hold_seconds": 0.7},
                "cameras": {
                    "east": {"video": str(shared_dir / "videos" / "single_face.mp4"), "gate": {"deny_after_s": 9}},
                    "west": {"video": str(tmp_path / "missing.mp4"), "hooks": [{"type": "webhook", "url": "https://example.test/x", "secret_env": "GK_TEST_UNSET_SECRET"}]},
                },
            }
        )
    )
    proc = subprocess.run([sys.executable, "-m", "gatekeeper.cli", "--check-config", "--config", str(config)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    printed = yaml.safe_load(proc.stdout)["cameras"]
    assert (printed["east"]["gate"]["hold_seconds"], printed["east"]["gate"]["deny_after_s"], printed["west"]["gate"]["deny_after_s"]) == (0.7, 9.0, 6.0)
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 2, errors
    assert errors[0].startswith("gatekeeper: error: cameras.west: hooks[0].secret_env: environment variable GK_TEST_UNSET_SECRET is not set")
    assert errors[1].startswith("gatekeeper: error: cameras.west.video: ") and "missing.mp4" in errors[1]


def test_one_detector_shared_by_cameras_finds_what_a_detector_of_its_own_finds(shared_dir: Path, face_model_path: Path) -> None:
    """The shared MediaPipe detector runs in VIDEO mode, which needs increasing timestamps: frames
    of two cameras interleaved (a file's times from 0, a live camera's Unix times) are nudged
    forward, and each camera's faces come out exactly as from a detector of its own."""
    import cv2

    from gatekeeper.detect import FaceDetector

    def frames(name: str, n: int = 40) -> list[np.ndarray]:
        cap = cv2.VideoCapture(str(shared_dir / "videos" / name))
        out = []
        while len(out) < n:
            ok, img = cap.read()
            if not ok:
                break
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        cap.release()
        return out

    clips = {"file": (frames("single_face.mp4"), 0.0), "live": (frames("funny_faces.mp4"), time.time())}

    def boxes(det: FaceDetector, image: np.ndarray, t: float) -> list[tuple[float, ...]]:
        return [tuple(f.box) for f in det.detect(image, t)]

    alone = {}
    for name, (images, t0) in clips.items():
        with FaceDetector(face_model_path, min_confidence=0.7) as det:
            alone[name] = [boxes(det, img, t0 + i / 30) for i, img in enumerate(images)]
    shared: dict[str, list[list[tuple[float, ...]]]] = {name: [] for name in clips}
    with FaceDetector(face_model_path, min_confidence=0.7) as det:
        for i in range(40):
            for name, (images, t0) in clips.items():
                shared[name].append(boxes(det, images[i], t0 + i / 30))
    assert sum(map(len, alone["file"])) >= 30 and sum(map(len, alone["live"])) >= 30, "faces in both clips"
    assert shared == alone
