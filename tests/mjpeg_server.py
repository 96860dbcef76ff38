"""A local MJPEG-over-HTTP camera for the capture and fault tests.

It serves ``multipart/x-mixed-replace`` JPEG frames on ``http://127.0.0.1:PORT/stream.mjpg``,
the way cheap IP cameras do, and can misbehave on request so the tests can drive the real
OpenCV/FFmpeg reader through the faults a network camera has:

* :meth:`MjpegServer.drop` closes every open connection mid-stream (a camera rebooting);
* :meth:`MjpegServer.stall` keeps connections open but sends nothing (a hung camera);
* :meth:`MjpegServer.refuse` answers new connections with 503 (a camera that is down);
* :meth:`MjpegServer.resume` goes back to serving frames.

``max_frames`` ends each connection after that many frames (a stream that ends).

>>> with MjpegServer(frames) as cam:                          # doctest: +SKIP
...     cap = cv2.VideoCapture(cam.url)
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

BOUNDARY = "gatekeeperframe"


def jpeg_frames_from_video(path: Path | str, count: int = 30, quality: int = 80) -> list[bytes]:
    """The first ``count`` frames of a video, each JPEG-encoded (BGR in, as OpenCV decodes)."""
    cap = cv2.VideoCapture(str(path))
    frames: list[bytes] = []
    try:
        while len(frames) < count:
            ok, img = cap.read()
            if not ok:
                break
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                frames.append(buf.tobytes())
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"no frames could be read from {path}")
    return frames


def numbered_jpeg_frames(count: int, size: tuple[int, int] = (160, 120)) -> list[bytes]:
    """Frames whose mean grey level encodes their number (0..count-1), to check ordering."""
    w, h = size
    frames = []
    for i in range(count):
        level = round(i * 250 / max(count - 1, 1))
        img = np.full((h, w, 3), level, dtype=np.uint8)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        frames.append(buf.tobytes())
    return frames


class MjpegServer:
    """A threaded HTTP server that plays ``frames`` in a loop at ``fps`` to every client."""

    def __init__(self, frames: Sequence[bytes], *, fps: float = 30.0, max_frames: int | None = None) -> None:
        self.frames = list(frames)
        self.fps = fps
        self.max_frames = max_frames
        self.mode = "serve"  # serve | stall | refuse
        self.connections = 0  # stream connections accepted (each reconnect adds one)
        self.attempts: list[float] = []  # time.monotonic() of every request for the stream, refused or not
        self.frames_sent = 0
        self._lock = threading.Lock()
        self._generation = 0  # bumped by drop(): handlers of an older generation hang up
        self._wake = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="mjpeg-server", daemon=True)

    # -- control --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> MjpegServer:
        self._thread.start()
        return self

    def drop(self) -> None:
        """Hang up every open stream now; new connections are served as before."""
        with self._lock:
            self._generation += 1
            self._wake.notify_all()

    def stall(self) -> None:
        """Keep connections open but stop sending frames (and stall new connections too)."""
        with self._lock:
            self.mode = "stall"

    def refuse(self) -> None:
        """Hang up open streams and answer new ones with 503 until :meth:`resume`."""
        with self._lock:
            self.mode = "refuse"
            self._generation += 1
            self._wake.notify_all()

    def resume(self) -> None:
        """Serve frames again, on open and new connections."""
        with self._lock:
            self.mode = "serve"
            self._wake.notify_all()

    def close(self) -> None:
        self._closing.set()
        self.drop()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- serving --------------------------------------------------------------------------------
    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one stream per connection; the end of the stream is the hang-up

            def log_message(self, format: str, *args: object) -> None:
                pass  # test output stays readable

            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/stream.mjpg":
                    self.send_error(404)
                    return
                server._stream(self)

        return Handler

    def _stream(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.attempts.append(time.monotonic())
            if self.mode == "refuse":
                refused = True
            else:
                refused = False
                self.connections += 1
                generation = self._generation
        if refused:
            handler.send_error(503, "camera unavailable")
            return
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        period = 1.0 / self.fps
        sent = 0
        next_at = time.monotonic()
        try:
            while not self._closing.is_set():
                with self._lock:
                    # A stall parks the handler here until resume() or drop(); no frame goes out.
                    while self.mode == "stall" and self._generation == generation and not self._closing.is_set():
                        self._wake.wait(0.1)
                        next_at = time.monotonic()
                    if self._generation != generation:
                        break
                if self.max_frames is not None and sent >= self.max_frames:
                    break
                jpeg = self.frames[sent % len(self.frames)]
                part = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n").encode() + jpeg + b"\r\n"
                handler.wfile.write(part)
                handler.wfile.flush()
                sent += 1
                with self._lock:
                    self.frames_sent += 1
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    with self._lock:
                        self._wake.wait(delay)  # woken early by drop()/refuse()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client went away; that is its right
        # Hang up hard (RST-free close): the reader sees the stream end mid-way.
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
