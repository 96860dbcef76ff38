"""A camera URL's credentials never leave the process (issue 24).

IP cameras are opened with ``rtsp://user:password@host/...`` or a ``?token=`` in the URL, and a
gate's stderr ends up in journald, log shippers and support tickets. Every surface that names the
source must mask the secret and keep the rest (scheme, host, port, path, other parameters), so the
operator still sees which camera it was.

The real command runs here in a child process, against a camera that is not there and against a
loopback MJPEG camera (``tests/mjpeg_server.py``, the server ignores the credentials as a camera
without auth would) that hangs up, refuses and comes back, with the journal, the report, the live
page in headless Chromium, ``/status`` and ``/metrics`` on. Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mjpeg_server import MjpegServer, jpeg_frames_from_video
from polling import wait_for
from test_web import browser  # noqa: F401  (the headless Chromium fixture)

from gatekeeper.redact import source_name

PASSWORD = "hunter2secret"
TOKEN = "t0kenValue9876"
SECRETS = (PASSWORD, TOKEN)


def gatekeeper(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gatekeeper.cli", *args], capture_output=True, text=True, timeout=90, cwd=cwd)


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} carries the secret {secret!r}:\n{text[-3000:]}"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        pytest.param(["--url", f"rtsp://admin:{PASSWORD}@127.0.0.1:1/stream"], "'rtsp://admin:<redacted>@127.0.0.1:1/stream'", id="rtsp user and password, nobody listening"),
        pytest.param(
            ["--url", f"http://127.0.0.1:1/video.mjpg?channel=2&token={TOKEN}"],
            "'http://127.0.0.1:1/video.mjpg?channel=2&token=<redacted>'",
            id="a token parameter, nobody listening",
        ),
        pytest.param(["--video", f"rtsp://{TOKEN}@127.0.0.1:1/live"], "'rtsp://<redacted>@127.0.0.1:1/live'", id="a URL given as --video"),
    ],
)
def test_a_credentialed_source_refused_at_start_is_named_without_its_secret(tmp_path: Path, face_model_path: Path, args: list[str], named: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"detector": {"model_path": str(face_model_path)}, "journal": {"path": str(tmp_path / "journal.sqlite3")}}))
    proc = gatekeeper(*args, "--dry-run", "--config", str(config), "--log-level", "debug", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gatekeeper: error:")]
    assert len(errors) == 1 and named in errors[0], proc.stderr
    assert_no_secret("stderr", proc.stderr)
    assert_no_secret("stdout", proc.stdout)


class Child:
    """The gate in a child process; its stdout (events) and stderr (the log) read on threads."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "gatekeeper.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.log_lines: queue.Queue[str] = queue.Queue()
        self._threads = [threading.Thread(target=self._pump, args=(s, into), daemon=True) for s, into in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))]
        for t in self._threads:
            t.start()

    def _pump(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)
            if into is self.stderr:
                self.log_lines.put(line)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.stdout)]

    def kinds(self) -> list[str]:
        return [e["event"] for e in self.events()]

    def listening_on(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                line = self.log_lines.get(timeout=0.5)
                if "live view on " in line:
                    return line.split("live view on ", 1)[1].strip()
            assert self.proc.poll() is None, "".join(self.stderr)
        raise AssertionError("the server never said where it listens:\n" + "".join(self.stderr))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        for t in self._threads:
            t.join(timeout=10)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for t in self._threads:
            t.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def camera(shared_dir: Path) -> Iterator[MjpegServer]:
    with MjpegServer(jpeg_frames_from_video(shared_dir / "videos" / "single_face.mp4", count=60), fps=30) as cam:
        yield cam


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode("utf-8", "replace")


@pytest.mark.slow
def test_a_credentialed_camera_that_hangs_up_leaks_its_secret_nowhere(tmp_path: Path, face_model_path: Path, camera: MjpegServer, browser: Any) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    url = camera.url.replace("http://", f"http://admin:{PASSWORD}@") + f"?channel=1&token={TOKEN}"
    masked = source_name(url)
    assert masked == f"'http://admin:<redacted>@127.0.0.1:{camera.port}/stream.mjpg?channel=1&token=<redacted>'"
    journal, report = tmp_path / "journal.sqlite3", tmp_path / "report.html"
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "detector": {"model_path": str(face_model_path)},
                "source": {"watchdog_s": 0.5, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.4},
                "journal": {"path": str(journal)},
            }
        )
    )
    args = ["--url", url, "--http", "127.0.0.1:0", "--report", str(report), "--config", str(config), "--log-level", "debug"]
    child = Child(args, cwd=tmp_path)
    try:
        base = child.listening_on().rstrip("/")
        wait_for(lambda: json.loads(fetch(base + "/status"))["frames"]["processed"] >= 10, 60, "frames through the pipeline", interval=0.1)

        for _ in range(2):  # the camera hangs up; the reader reconnects at once
            reconnects = json.loads(fetch(base + "/status"))["reconnects"]
            camera.drop()
            wait_for(lambda r=reconnects: json.loads(fetch(base + "/status"))["reconnects"] > r, 20, "a reconnect after the hang-up", interval=0.1)

        camera.refuse()  # down for longer than the watchdog: FAULT, its reason names the source
        wait_for(lambda: "FAULT" in child.kinds(), 20, "a FAULT while the camera refuses", interval=0.1)
        wait_for(lambda: masked in (json.loads(fetch(base + "/status"))["source_fault"] or ""), 20, "/status to name the refusing source", interval=0.1)
        status_faulted = fetch(base + "/status")
        browser.get(base)
        fault_item = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, '#events li[data-event="FAULT"]'), 30, "the FAULT on the page", interval=0.1)
        page_text, page_source = fault_item[0].text, browser.page_source
        camera.resume()
        wait_for(lambda: "RECOVERED" in child.kinds(), 20, "RECOVERED once the camera serves again", interval=0.1)
        status_after, metrics, index = fetch(base + "/status"), fetch(base + "/metrics"), fetch(base + "/")
        rc = child.stop()
    finally:
        child.kill()
    stdout, stderr = "".join(child.stdout), "".join(child.stderr)
    assert rc == 0, stderr[-3000:]

    # The surfaces did name the camera (masked), so the checks below look where the URL would be.
    assert f"source {masked} stopped delivering frames; reconnecting" in stderr
    assert f"source {masked} reconnected" in stderr
    fault = next(e for e in child.events() if e["event"] == "FAULT")
    assert masked in fault["reason"], fault
    assert masked in json.loads(status_faulted)["source_fault"]
    assert "<redacted>" in page_text, page_text
    report_html = report.read_text(encoding="utf-8")
    assert f"report: http://admin:&lt;redacted&gt;@127.0.0.1:{camera.port}/stream.mjpg?channel=1&amp;token=&lt;redacted&gt;" in report_html

    journal_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite3*"))
    assert b"FAULT" in journal_bytes and masked.encode() in journal_bytes, "the journal recorded the FAULT and its reason"
    listed = gatekeeper("events", "--journal", str(journal), cwd=tmp_path)
    assert listed.returncode == 0 and "FAULT" in listed.stdout, listed.stderr
    for where, text in (
        ("stderr", stderr),
        ("stdout (the events)", stdout),
        ("the journal file", journal_bytes.decode("latin-1")),
        ("gatekeeper events", listed.stdout + listed.stderr),
        ("the report", report_html),
        ("/status while faulted", status_faulted),
        ("/status after", status_after),
        ("/metrics", metrics),
        ("the page as served", index),
        ("the page in the browser", page_source),
    ):
        assert_no_secret(where, text)
