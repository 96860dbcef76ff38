"""The file source: a video file replayed frame by frame, nothing dropped (decoded ahead of the
pipeline on a thread of its own, or paced at the file's own rate)."""

from __future__ import annotations

import itertools
import logging
import queue
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .capture import Frame, SourceStatus, usable_picture
from .capture_open import open_capture
from .errors import SourceError
from .redact import source_name
from .worker import Worker

__all__ = ["FileSource"]

log = logging.getLogger(__name__)


def _not_a_file(path: Path) -> str | None:
    """What ``path`` is when it exists but is no regular file (``/dev/zero``: a character device); None when it does not exist."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))
    return next((what for test, what in kinds if test(mode)), "something other than a regular file")


class FileSource:
    """Replays a video file frame by frame; nothing is dropped.

    With ``realtime=True`` frames are paced at the file's own rate (for live demos and the
    browser test); otherwise as fast as the pipeline takes them.

    Damaged files play what can be decoded: a stretch of frames the decoder cannot read (garbage
    in the middle of the file) is skipped and counted in ``status.skipped``, and reading goes on
    after it; frame indices keep counting through the gap, so ``t`` stays the position in the
    file. A file cut short ends where its data ends, and the frames its index promised beyond
    that are counted as skipped too.
    """

    #: Unreadable frames in a row after which the file is taken to have ended. Cheap to try (a
    #: failed read at the end of a file takes microseconds); 10 s at 30 fps rides out a damaged
    #: group of pictures.
    max_unreadable_run = 300

    def __init__(self, path: str | Path, *, realtime: bool = False) -> None:
        p = Path(path)
        name = source_name(str(path))  # a URL given as a file keeps its "//" (and its secrets masked) here
        if p.is_dir():
            raise SourceError(f"video file {name} is a directory; expected a readable video file (mp4, mov, avi...)")
        if not p.is_file():
            what = _not_a_file(p)
            if what is None:
                raise SourceError(f"video file {name} does not exist; expected a readable video file (mp4, mov, avi...)")
            raise SourceError(f"{name} is not a video file but {what}; expected a readable video file (mp4, mov, avi...)")
        self.path = p
        self.realtime = realtime
        self.status = SourceStatus()
        self._read_s = 0.0  # seconds the last read() took (the decode stage metric)
        self._stop = threading.Event()
        self._decoder: Worker | None = None
        try:
            self._cap = open_capture(str(p))
        except SourceError:
            # Not a video at all, or one cut short before its index (an MP4 that keeps its moov
            # box at the end, as most cameras write it, has nothing left to demux).
            raise SourceError(f"video file {name} cannot be opened; expected a video OpenCV/FFmpeg can read (not truncated before its index)") from None
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 1.0 <= fps <= 1000.0 else 30.0
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count: int | None = count if count > 0 else None
        # A file OpenCV "opens" but cannot decode (a renamed text file, a truncated header)
        # must fail now, not look like an empty video.
        self._decoded = self._read_all()
        self._head: tuple[int, np.ndarray] | None = None
        for index, img in self._decoded:
            if usable_picture(img):
                self._head = (index, img)
                break
            self.status.skipped += 1
        if self._head is None:
            self._cap.release()
            raise SourceError(f"video file {name} has no decodable frames; expected a video OpenCV/FFmpeg can read")

    def _read_all(self) -> Iterator[tuple[int, np.ndarray]]:
        """Every image the decoder returns, with its frame index; unreadable stretches are skipped."""
        index = failed = 0
        while True:
            t0 = time.perf_counter()
            ok, img = self._cap.read()
            self._read_s = time.perf_counter() - t0  # read by __iter__ for the image yielded next
            if ok and img is not None:
                if failed:
                    # Only now is it a gap and not the end of the file.
                    self.status.skipped += failed
                    log.warning("%s: frames %d-%d could not be decoded; skipped", self.path, index - failed, index - 1)
                    failed = 0
                yield index, img
            else:
                failed += 1
                if failed > self.max_unreadable_run or (self.frame_count is not None and index >= self.frame_count):
                    break
            index += 1
        seen = index - failed + 1
        # The count is often an estimate (duration x rate: variable frame rate, edit lists), a few
        # frames off on intact files; only a clear shortfall is a file cut short.
        if self.frame_count is not None and self.frame_count - seen > max(3, 0.05 * self.frame_count):
            self.status.skipped += self.frame_count - seen
            log.warning("%s: ended after %d of the %d frames its index lists (truncated?); the rest is counted as skipped", self.path, seen, self.frame_count)

    #: Frames decoded ahead of the pipeline when replaying as fast as possible: decoding runs in
    #: its own thread and overlaps detection (both release the GIL), on a second core.
    read_ahead = 4

    def _frames(self) -> Iterator[Frame]:
        """Decoded RGB frames in order, on the calling thread."""
        head, self._head = self._head, None
        for index, img in itertools.chain([head] if head is not None else [], self._decoded):
            if not usable_picture(img):
                self.status.skipped += 1
                continue
            # Decode time is the read plus the conversion, never a realtime pacing sleep.
            t0 = time.perf_counter()
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            yield Frame(rgb, index, index / self.fps, self._read_s + time.perf_counter() - t0)

    def __iter__(self) -> Iterator[Frame]:
        if self.realtime:
            start = time.monotonic()
            for frame in self._frames():
                delay = start + frame.t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.status.read += 1
                yield frame
        else:
            for frame in self._read_ahead():
                self.status.read += 1
                yield frame
        self.status.ended = True

    def _read_ahead(self) -> Iterator[Frame]:
        handoff: queue.Queue[Frame | BaseException | None] = queue.Queue(maxsize=self.read_ahead)
        self._stop.clear()

        def put(item: Frame | BaseException | None) -> bool:
            while not self._stop.is_set():
                try:
                    handoff.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def decode() -> None:
            try:
                for frame in self._frames():
                    if not put(frame):
                        return
                put(None)
            except Exception as exc:  # handed to the consumer, which raises it in its own thread
                put(exc)

        self._decoder = Worker(decode, "decode", stopping=self._stop)
        self._decoder.start()
        try:
            while (item := handoff.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            self._decoder.finish(timeout=2.0)

    def close(self) -> None:
        self._stop.set()
        if self._decoder is not None:
            self._decoder.finish(timeout=2.0)
        self._cap.release()
