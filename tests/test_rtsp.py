"""``--url rtsp://``, against a real RTSP server: GStreamer's, on the loopback, serving a shared clip
in a loop (``tests/rtsp_server.py``, run by the system python3). The gate reads it, opens for the
smile, holds shut with a FAULT when the server goes away, and reconnects when it comes back.

Needs Debian's python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good and
gstreamer1.0-plugins-bad (``.ci/run`` installs them); without them the test fails, saying so.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest
from polling import wait_for

pytestmark = pytest.mark.slow

SYSTEM_PYTHON = Path("/usr/bin/python3")
SERVER = Path(__file__).with_name("rtsp_server.py")
PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"


@pytest.fixture(scope="module")
def gstreamer() -> None:
    """GStreamer's RTSP server for the system python3; a failure (never a skip) when it is missing."""
    if not SYSTEM_PYTHON.is_file():
        pytest.fail(f"the RTSP test runs its server with {SYSTEM_PYTHON}, which does not exist; install: apt-get install {PACKAGES}", pytrace=False)
    proc = subprocess.run([str(SYSTEM_PYTHON), str(SERVER), "--check"], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        pytest.fail(f"the RTSP test needs GStreamer's RTSP server: {proc.stderr.strip() or proc.stdout.strip()}", pytrace=False)


class RtspServer:
    """tests/rtsp_server.py as a subprocess; start() returns once it serves."""

    def __init__(self, clip: Path, port: int, log: Path) -> None:
        self.clip, self.port, self.log = clip, port, log
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        with self.log.open("a") as err:
            self.proc = subprocess.Popen(
                [str(SYSTEM_PYTHON), str(SERVER), str(self.clip), "--port", str(self.port)], stdout=subprocess.PIPE, stderr=err, text=True
            )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(30)
        if not line or not line[0].startswith("ready "):
            self.stop()
            pytest.fail(f"the RTSP server did not start: {self.log.read_text()[-2000:]}", pytrace=False)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_events(stream: IO[str], into: list[dict]) -> None:
    for line in stream:
        if line.strip():
            into.append(json.loads(line))


def names(events: list[dict]) -> list[str]:
    return [e["event"] for e in events]


def after(events: list[dict], first: str, then: str) -> bool:
    """Whether ``then`` happened after the first ``first``."""
    seq = names(events)
    return first in seq and then in seq[seq.index(first) + 1 :]


@pytest.mark.usefixtures("gstreamer")
def test_rtsp_stream_opens_the_gate_and_survives_a_server_restart(tmp_path: Path, shared_dir: Path) -> None:
    port = free_port()
    server = RtspServer(shared_dir / "videos" / "single_face.mp4", port, tmp_path / "rtsp-server.log")
    config = tmp_path / "gate.yaml"
    config.write_text(
        "source: {watchdog_s: 1.0, reconnect_initial_s: 0.2, reconnect_max_s: 1.0}\n"
        f"journal: {{path: {json.dumps(str(tmp_path / 'journal.sqlite3'))}}}\n"
    )
    gate_log = tmp_path / "gate.log"
    events: list[dict] = []
    server.start()
    try:
        with gate_log.open("w") as err:
            gate = subprocess.Popen(
                [sys.executable, "-m", "gatekeeper.cli", "--url", f"rtsp://127.0.0.1:{port}/x", "--config", str(config)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={k: v for k, v in os.environ.items() if k != "GATEKEEPER_FACE_MODEL"},
            )
        reader = threading.Thread(target=read_events, args=(gate.stdout, events), daemon=True)
        reader.start()

        def waiting(what: str, check, timeout: float) -> None:
            try:
                wait_for(lambda: check() or gate.poll() is not None, timeout, what, interval=0.1)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; events {names(events)}; gate log: {gate_log.read_text()[-3000:]}") from None
            assert gate.poll() is None, f"the gate exited ({gate.returncode}) waiting for {what}: {gate_log.read_text()[-3000:]}"

        try:
            # frames arrive and the smile in the clip opens the gate
            waiting("an OPEN from the RTSP stream", lambda: "OPEN" in names(events), 120)
            # the server goes away: the gate holds shut and says so
            server.stop()
            waiting("a FAULT once the server is gone", lambda: after(events, "OPEN", "FAULT"), 30)
            # ... and comes back on the same port: the gate reconnects and works again
            server.start()
            waiting("RECOVERED once the server is back", lambda: after(events, "FAULT", "RECOVERED"), 60)
            waiting("an OPEN after the reconnect", lambda: after(events, "RECOVERED", "OPEN"), 60)
            gate.send_signal(signal.SIGTERM)
            assert gate.wait(30) == 0, gate_log.read_text()[-3000:]
        finally:
            if gate.poll() is None:
                gate.kill()
                gate.wait()
            reader.join(10)
            gate.stdout.close()  # type: ignore[union-attr]
    finally:
        server.stop()
    log = gate_log.read_text()
    assert "Traceback" not in log, log[-3000:]
    done = re.search(r"done: (\d+) frames, events .*, source (\{.*\})", log)
    assert done, log[-3000:]
    source = json.loads(done.group(2))
    assert source["reconnects"] >= 1 and source["read"] >= int(done.group(1)) > 0
