"""Frame sources: a video file (every frame, in order) or a live camera/stream (newest frame only).

Both yield :class:`Frame` objects with RGB pixels, the index of the decoded frame (from 0) and
its time ``t`` in seconds: the position in the file for a file, the wall clock for a live
source. A live source reads in its own thread, keeps only the newest frame (dropped frames are
counted), reconnects with exponential backoff, and reports what happened through
:class:`SourceStatus` so the app can raise a FAULT and hold the gate shut.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import SourceError

__all__ = ["Frame", "FileSource", "LiveSource", "SourceStatus", "open_capture"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: ``image`` is HxWx3 uint8 RGB."""

    image: np.ndarray
    index: int
    t: float


@dataclass
class SourceStatus:
    """Counters and the fault state of a source (read by the app, written by the source)."""

    read: int = 0
    dropped: int = 0
    skipped: int = 0  # undecodable or malformed frames
    reconnects: int = 0
    fault: str | None = None
    ended: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def open_capture(target: str | int) -> cv2.VideoCapture:
    # OpenCV logs decoder warnings to stderr by itself; ours are enough.
    cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"cannot open video source {target!r}")
    return cap


def _valid(img: np.ndarray | None) -> bool:
    return img is not None and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and img.shape[0] >= 16 and img.shape[1] >= 16


class FileSource:
    """Replays a video file frame by frame; nothing is dropped.

    With ``realtime=True`` frames are paced at the file's own rate (for live demos and the
    browser test); otherwise as fast as the pipeline takes them.
    """

    def __init__(self, path: str | Path, *, realtime: bool = False) -> None:
        p = Path(path)
        if not p.is_file():
            raise SourceError(f"video file {str(p)!r} does not exist; expected a readable video file (mp4, mov, avi...)")
        self.path = p
        self.realtime = realtime
        self.status = SourceStatus()
        self._cap = open_capture(str(p))
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 1.0 <= fps <= 1000.0 else 30.0
        # A file OpenCV "opens" but cannot decode (a renamed text file, a truncated header)
        # must fail now, not look like an empty video.
        ok, first = self._cap.read()
        if not ok or not _valid(first):
            self._cap.release()
            raise SourceError(f"video file {str(p)!r} has no decodable frames; expected a video OpenCV/FFmpeg can read")
        self._first: np.ndarray | None = first

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        start = time.monotonic()
        img = self._first
        self._first = None
        while img is not None or index == 0:
            if img is not None and _valid(img):
                t = index / self.fps
                if self.realtime:
                    delay = start + t - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                self.status.read += 1
                yield Frame(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), index, t)
            else:
                self.status.skipped += 1
            index += 1
            ok, img = self._cap.read()
            if not ok:
                break
        self.status.ended = True

    def close(self) -> None:
        self._cap.release()


class LiveSource:
    """A camera index or stream URL read in its own thread; hands over only the newest frame.

    ``frames()`` yields frames as they arrive and returns when :meth:`close` is called. When
    nothing arrives for ``poll_s`` it yields ``None`` so the caller can run its watchdog.
    """

    def __init__(
        self,
        target: int | str,
        *,
        width: int | None = None,
        height: int | None = None,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        max_reconnects: int | None = None,
    ) -> None:
        self.target = target
        self.width, self.height = width, height
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.max_reconnects = max_reconnects
        self.status = SourceStatus()
        self._stop = threading.Event()
        self._new = threading.Condition()
        self._latest: Frame | None = None
        self._index = 0
        self._cap = self._open()  # the first open fails loudly: a camera that does not exist is bad input
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def _open(self) -> cv2.VideoCapture:
        cap = open_capture(self.target)
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        return cap

    def _run(self) -> None:
        cap: cv2.VideoCapture | None = self._cap
        backoff = self.reconnect_initial_s
        failures = 0
        while not self._stop.is_set():
            if cap is None:
                try:
                    cap = self._open()
                    self.status.reconnects += 1
                    log.info("source %r reconnected", self.target)
                except SourceError as exc:
                    failures += 1
                    self.status.fault = str(exc)
                    if self.max_reconnects is not None and failures > self.max_reconnects:
                        log.error("source %r: giving up after %d reconnect attempts", self.target, failures - 1)
                        self.status.ended = True
                        break
                    # Wait on the stop event, not sleep, so shutdown is immediate.
                    if self._stop.wait(backoff):
                        break
                    backoff = min(backoff * 2, self.reconnect_max_s)
                    continue
            ok, img = cap.read()
            if not ok:
                cap.release()
                cap = None
                self.status.fault = f"source {self.target!r} stopped delivering frames"
                log.warning("%s; reconnecting", self.status.fault)
                continue
            if not _valid(img):
                self.status.skipped += 1
                continue
            failures, backoff = 0, self.reconnect_initial_s
            frame = Frame(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), self._index, time.time())
            self._index += 1
            with self._new:
                if self._latest is not None:
                    self.status.dropped += 1
                self._latest = frame
                self.status.read += 1
                self.status.fault = None
                self._new.notify()
        if cap is not None:
            cap.release()
        with self._new:
            self._new.notify_all()

    def frames(self, poll_s: float = 0.1) -> Iterator[Frame | None]:
        while not self._stop.is_set():
            with self._new:
                if self._latest is None:
                    self._new.wait(poll_s)
                frame, self._latest = self._latest, None
            if frame is None and self.status.ended:
                return
            yield frame

    def close(self) -> None:
        self._stop.set()
        with self._new:
            self._new.notify_all()
        self._thread.join(timeout=2.0)
