"""The real ``gatekeeper`` service under a stand-in for systemd: a unix datagram socket bound by
the test as ``$NOTIFY_SOCKET`` (tests/fake_systemd.py), with ``$WATCHDOG_USEC`` set.

* a clip from ../shared/videos replayed to its end: READY, then STOPPING as the run ends;
* two live cameras (loopback MJPEG, tests/mjpeg_server.py), one down from the start: READY once
  the other's first frame is in and the down one's FAULT is raised, with STATUS naming both;
  WATCHDOG pings every half period while both loops turn (the faulted one too), also after the
  healthy camera hangs and faults; STOPPING on SIGTERM, exit 0;
* a frame loop that is genuinely stuck: the gate's stdout is a pipe nobody reads (the journal or
  the log collector behind stdout hangs), so the camera's loop blocks writing its FAULT line. The
  pings stop and STATUS says which loop is stuck; SIGABRT, as systemd sends it when WatchdogSec
  runs out, has Python write where every thread hung (faulthandler) before it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import yaml
from fake_systemd import FakeSystemd
from mjpeg_server import MjpegServer, jpeg_frames_from_video

pytestmark = pytest.mark.slow

WATCHDOG_USEC = 4_000_000  # WatchdogSec=4: a ping every 2 s; a loop still for 2 s is stuck
PING_S = WATCHDOG_USEC / 2e6
#: Model loading and the first frame, on a machine under load.
START_S = 90.0


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(str(tmp_path / "notify.sock"))
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def no_face_jpegs(shared_dir: Path) -> list[bytes]:
    return jpeg_frames_from_video(shared_dir / "videos" / "no_face.mp4", count=30)


@pytest.fixture
def camera(no_face_jpegs: list[bytes]) -> Iterator[MjpegServer]:
    with MjpegServer(no_face_jpegs, fps=15) as cam:
        yield cam


def write_config(tmp_path: Path, face_model_path: Path, **extra: Any) -> Path:
    data = {
        "detector": {"model_path": str(face_model_path)},
        "journal": {"path": str(tmp_path / "journal.sqlite3")},
        "source": {"watchdog_s": 1.0, "reconnect_initial_s": 0.2, "reconnect_max_s": 0.5},
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextlib.contextmanager
def gatekeeper(systemd: FakeSystemd, tmp_path: Path, *args: str, stdout: int | IO[Any] = subprocess.DEVNULL) -> Iterator[subprocess.Popen[bytes]]:
    """The gate as systemd would run it: ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` set; stderr in a file."""
    env = {**os.environ, "NOTIFY_SOCKET": systemd.env_value, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    env.pop("WATCHDOG_PID", None)
    env.pop("PYTHONFAULTHANDLER", None)  # the service enables it itself under a watchdog
    with open(tmp_path / "stderr.log", "wb") as err:
        # In the test's folder: the SIGABRT test must leave no core file in the checkout.
        proc = subprocess.Popen([sys.executable, "-m", "gatekeeper.cli", *args], env=env, stdout=stdout, stderr=err, cwd=tmp_path)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def stderr_of(tmp_path: Path) -> str:
    return (tmp_path / "stderr.log").read_text(errors="replace")


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 2) for a, b in itertools.pairwise(times)]


def stop(proc: subprocess.Popen[bytes], systemd: FakeSystemd, tmp_path: Path) -> float:
    """SIGTERM as ``systemctl stop`` sends it: STOPPING=1 comes, the process exits 0. When STOPPING came."""
    proc.send_signal(signal.SIGTERM)
    at, message = systemd.wait_for("STOPPING", "1", timeout=15)
    assert message["STATUS"] == "stopping: stop requested (SIGTERM or SIGINT); delivering what is queued"
    assert proc.wait(timeout=20) == 0, stderr_of(tmp_path)[-3000:]
    return at


def test_a_replayed_clip_says_ready_then_stopping_at_its_end(systemd: FakeSystemd, tmp_path: Path, face_model_path: Path, shared_dir: Path) -> None:
    clip = shared_dir / "videos" / "face_noface.mov"
    config = write_config(tmp_path, face_model_path)
    with gatekeeper(systemd, tmp_path, "--video", str(clip), "--config", str(config), stdout=subprocess.PIPE) as proc:
        out, _ = proc.communicate(timeout=START_S)
    assert proc.returncode == 0, stderr_of(tmp_path)[-3000:]
    assert [json.loads(line)["event"] for line in out.decode().splitlines()] == ["OPEN", "FACE_LOST"], "the events are as without systemd"
    log = systemd.log()
    ready = next(i for i, m in enumerate(log) if "READY" in m)
    assert log[ready] == {"READY": "1", "STATUS": "ready: gate first frame in"}
    assert {"STATUS": "loading the models"} in log[:ready]
    assert log[-1] == {"STOPPING": "1", "STATUS": "stopping: delivering what is queued"}
    assert sum("STOPPING" in m for m in log) == 1


def test_ready_with_a_camera_down_pings_while_loops_turn_and_stopping_on_sigterm(
    systemd: FakeSystemd, tmp_path: Path, face_model_path: Path, camera: MjpegServer, no_face_jpegs: list[bytes]
) -> None:
    with MjpegServer(no_face_jpegs, fps=15) as down:
        down.refuse()  # lane2 is down from the start: no first frame, ever
        config = write_config(tmp_path, face_model_path, cameras={"lane1": {"url": camera.url}, "lane2": {"url": down.url}})
        with gatekeeper(systemd, tmp_path, "--config", str(config)) as proc:
            ready_at, ready = systemd.wait_for("READY", "1", timeout=START_S)
            status = ready["STATUS"]
            assert status.startswith("ready: lane1 first frame in; lane2 FAULT before a first frame ("), status
            waited = [m["STATUS"] for t, m in systemd.messages if t < ready_at and "STATUS" in m]
            assert any(s.startswith("waiting for the first frame of") and s.endswith("lane2") for s in waited), waited

            # Both loops turn (lane2 faulted, polling and retrying): a ping every half period.
            pings = systemd.wait_count("WATCHDOG", 3, after=ready_at, timeout=4 * PING_S + 5)
            assert all(0.8 * PING_S <= g < 2 * PING_S for g in gaps(pings)), ("each ping within WatchdogSec of the last, none early", gaps(pings))

            # lane1 hangs as well: it faults, and its loop still polls, so the pings go on.
            camera.stall()
            fault_at, _ = systemd.wait_for("STATUS", "lane1 FAULT", after=ready_at, timeout=20)
            after_fault = systemd.wait_count("WATCHDOG", 2, after=fault_at, timeout=3 * PING_S + 5)
            assert proc.poll() is None
            stopping_at = stop(proc, systemd, tmp_path)
    assert systemd.times("WATCHDOG", after=stopping_at) == [], "no ping after STOPPING"
    every = systemd.times("WATCHDOG", after=ready_at, before=stopping_at)
    assert set(after_fault) <= set(every) and max(gaps(every)) < 2 * PING_S, ("never WatchdogSec without a ping", gaps(every))
    assert "Traceback" not in stderr_of(tmp_path)


def full_pipe() -> tuple[int, int]:
    """A pipe (4 KiB) already full: whoever writes to it blocks until someone reads."""
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    os.set_blocking(w, False)
    for size in (4096, 1):
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(w, b"x" * size)
    os.set_blocking(w, True)  # the file description is shared: the gate's writes block, not fail
    return r, w


def test_a_stuck_frame_loop_stops_the_pings_and_sigabrt_shows_where_it_hangs(systemd: FakeSystemd, tmp_path: Path, face_model_path: Path, camera: MjpegServer) -> None:
    config = write_config(tmp_path, face_model_path)
    r, w = full_pipe()
    try:
        with gatekeeper(systemd, tmp_path, "--url", camera.url, "--config", str(config), stdout=w) as proc:
            os.close(w)
            w = -1
            ready_at, ready = systemd.wait_for("READY", "1", timeout=START_S)
            assert ready["STATUS"] == "ready: gate first frame in"
            systemd.wait_count("WATCHDOG", 2, after=ready_at, timeout=3 * PING_S + 5)

            # The camera hangs: after source.watchdog_s the loop raises FAULT and writes its line
            # to stdout, where it blocks. A merely faulted loop would go on polling; this one is stuck.
            camera.stall()
            _, stuck = systemd.wait_for("STATUS", "stuck", after=ready_at, timeout=20)
            assert stuck["STATUS"].startswith("stuck: gate: frame loop has not turned for "), stuck
            assert stuck["STATUS"].endswith(" s; watchdog pings stopped"), stuck
            last_ping = systemd.times("WATCHDOG")[-1]
            time.sleep(max(0.0, last_ping + 1.5 * WATCHDOG_USEC / 1e6 - time.monotonic()))
            assert proc.poll() is None, "the process lives on: only the pings tell systemd"
            assert systemd.times("WATCHDOG", after=last_ping + 0.001) == [], "systemd's WatchdogSec ran out with no ping: it restarts the service"
            assert "gate: frame loop has not turned for" in stderr_of(tmp_path)

            # What systemd does when WatchdogSec runs out: SIGABRT. Under a watchdog the service
            # has Python say where every thread stood: the camera's loop, in the stdout sink's write.
            proc.send_signal(signal.SIGABRT)
            assert proc.wait(timeout=20) == -signal.SIGABRT
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    stderr = stderr_of(tmp_path)
    assert "Fatal Python error: Aborted" in stderr, stderr[-3000:]
    stuck_thread = stderr[stderr.index("Fatal Python error: Aborted") :]
    assert re.search(r'gatekeeper/app\.py", line \d+ in emit\n\s+File "[^"]*gatekeeper/camera\.py", line \d+ in emit\n', stuck_thread), stuck_thread
