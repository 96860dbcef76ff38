"""An MJPEG camera read without OpenCV (gatekeeper.mjpeg), and the frames a live source does not decode.

Against the tests' MJPEG-over-HTTP camera (tests/mjpeg_server.py, a real HTTP server on
loopback) and a real gatekeeper process: the parts come in order and decode as OpenCV decodes
them; what is not an MJPEG stream is left to OpenCV; a refused or absent camera is one error
that keeps the URL's secrets out; frames before ``LiveSource.skip_until`` are read but not
decoded; and a live gate on an empty entrance decodes a few frames a second, then opens for the
person who walks up as a gate that decodes everything does.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from mjpeg_server import MjpegServer, jpeg_frames_from_video, numbered_jpeg_frames
from polling import wait_for

from gatekeeper.capture_live import LiveSource
from gatekeeper.errors import SourceError
from gatekeeper.mjpeg import MjpegCapture, open_mjpeg

FAST = {"reconnect_initial_s": 0.05, "reconnect_max_s": 0.4, "open_timeout_s": 1.0, "read_timeout_s": 0.5}


def test_parts_come_in_order_and_decode_as_opencv_decodes_them() -> None:
    jpegs = numbered_jpeg_frames(20)
    with MjpegServer(jpegs, fps=200) as cam:
        cap = open_mjpeg(cam.url, open_timeout_s=2, read_timeout_s=2)
        assert isinstance(cap, MjpegCapture)
        try:
            levels = []
            for i in range(25):
                if i % 3 == 2:
                    assert cap.grab()  # read, not decoded
                    levels.append(None)
                    continue
                ok, img = cap.read()
                assert ok and img is not None
                expected = cv2.imdecode(np.frombuffer(jpegs[i % 20], np.uint8), cv2.IMREAD_COLOR)
                assert np.array_equal(img, expected)
                levels.append(round(float(img.mean()) * 19 / 250))
        finally:
            cap.release()
    assert [v for v in levels if v is not None] == [i % 20 for i in range(25) if i % 3 != 2]


class PlainHttp(http.server.BaseHTTPRequestHandler):
    """Answers every request with one status and body: not an MJPEG stream."""

    status = 200
    ctype = "text/plain"

    def do_GET(self) -> None:
        body = b"not a camera"
        self.send_response(self.status)
        self.send_header("Content-Type", self.ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def plain_http() -> Iterator[tuple[str, type[PlainHttp]]]:
    handler = type("Handler", (PlainHttp,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # shutdown() waits out serve_forever's poll interval: 0.05 s, as the other test servers use, not 0.5 s.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/video", handler
    finally:
        server.shutdown()
        server.server_close()


def test_what_is_not_an_mjpeg_stream_is_left_to_opencv(plain_http: tuple[str, type[PlainHttp]]) -> None:
    url, _ = plain_http
    assert open_mjpeg(url) is None
    assert open_mjpeg("rtsp://127.0.0.1:1/stream") is None
    # ... which cannot read a text page either: one error, as before.
    with pytest.raises(SourceError, match="cannot open video source"):
        LiveSource(url, **FAST)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("status", "ctype", "expected"),
    [
        pytest.param(503, "text/plain", r"^cannot open video source 'http://admin:<redacted>@127\.0\.0\.1:\d+/video' \(HTTP 503\)$", id="refused with 503"),
        pytest.param(401, "text/plain", r"\(HTTP 401\)$", id="wrong password"),
        pytest.param(404, "text/html", r"\(HTTP 404\)$", id="no such path"),
    ],
)
def test_a_camera_that_refuses_is_one_error_without_its_password(plain_http: tuple[str, type[PlainHttp]], status: int, ctype: str, expected: str) -> None:
    url, handler = plain_http
    handler.status, handler.ctype = status, ctype
    secret_url = url.replace("http://", "http://admin:hunter2@")
    with pytest.raises(SourceError, match=expected) as info:
        open_mjpeg(secret_url)
    assert "hunter2" not in str(info.value)


def test_nothing_listening_is_one_error() -> None:
    with pytest.raises(SourceError, match=r"^cannot open video source 'http://127\.0\.0\.1:\d+/x'$"):
        open_mjpeg(f"http://127.0.0.1:{free_port()}/x", open_timeout_s=1)


def test_frames_before_skip_until_are_read_but_not_decoded() -> None:
    with MjpegServer(numbered_jpeg_frames(30), fps=60) as cam:
        src = LiveSource(cam.url, **FAST)
        try:
            wait_for(lambda: src.status.read >= 3, 5, "the first frames")
            src.skip_until = time.time() + 0.5
            read_before = src.status.read
            time.sleep(0.4)
            assert src.status.read - read_before <= 1  # at most the frame decoded as it was set
            assert src.status.not_decoded >= 15  # 60 fps for 0.4 s, read all the same
            wait_for(lambda: src.status.read >= read_before + 5, 5, "decoded frames again after skip_until")
        finally:
            src.close()


@pytest.mark.slow
def test_a_live_gate_on_an_empty_entrance_decodes_a_few_frames_then_opens(shared_dir: Path, face_model_path: Path, tmp_path: Path) -> None:
    """A real gatekeeper process on an MJPEG camera: 3 s of an empty entrance (a still picture,
    each JPEG with its own camera noise), then someone walks up smiling. The gate reads 30
    frames a second but decodes about 10 of them while nobody is there, and opens."""
    face = jpeg_frames_from_video(shared_dir / "videos" / "single_face.mp4", count=72)
    first = cv2.imdecode(np.frombuffer(face[0], np.uint8), cv2.IMREAD_COLOR)
    empty = np.full_like(first, 110)
    empty[::24] = 60
    rng = np.random.default_rng(0)
    still = [cv2.imencode(".jpg", np.clip(empty + rng.normal(0, 2, empty.shape), 0, 255).astype(np.uint8))[1].tobytes() for _ in range(30)]
    config = tmp_path / "gate.yaml"
    config.write_text("source: {watchdog_s: 2.0}\n")
    env = {**os.environ, "GATEKEEPER_FACE_MODEL": str(face_model_path)}
    with MjpegServer(still, fps=30) as cam:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gatekeeper.cli", "--url", cam.url, "--config", str(config), "--dry-run"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        lines: list[str] = []
        errs: list[str] = []
        readers = [
            threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True),  # type: ignore[union-attr]
            threading.Thread(target=lambda: errs.extend(iter(proc.stderr.readline, "")), daemon=True),  # type: ignore[union-attr]
        ]
        for reader in readers:
            reader.start()
        try:
            wait_for(lambda: cam.connections >= 1 and cam.frames_sent >= 90, 60, "3 s of the empty entrance read")
            cam.frames = face + still  # someone walks up, smiles, walks away
            # Within the 4 s the test used to give the walk-up (it slept them out whatever happened).
            wait_for(lambda: any('"OPEN"' in line for line in lines), 4.0, "an OPEN line on stdout", interval=0.05)
        finally:
            proc.send_signal(2)
            proc.wait(timeout=30)
            for reader in readers:
                reader.join(10)
            for pipe in (proc.stdout, proc.stderr):
                pipe.close()  # type: ignore[union-attr]
    err = "".join(errs)
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert "OPEN" in [e["event"] for e in events], err[-2000:]
    done = re.search(r"done: .* source (\{.*\})", err)
    assert done is not None, err[-2000:]
    counts = json.loads(done.group(1))
    assert counts["not_decoded"] >= 30, counts  # while nobody was there, two frames in three or more
