"""Frame sources: a video file (every frame, in order) or a live camera/stream (newest frame only).

Both yield :class:`Frame` objects with RGB pixels, the index of the decoded frame (from 0) and
its time ``t`` in seconds: the position in the file for a file, the wall clock for a live
source. A live source reads in its own thread, keeps only the newest frame (dropped frames are
counted), reconnects with exponential backoff, and reports what happened through
:class:`SourceStatus` so the app can raise a FAULT and hold the gate shut.
"""

from __future__ import annotations

import itertools
import logging
import queue
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import FrameError, SourceError
from .mjpeg import IMREAD_RGB, REDUCED_GREY, MjpegCapture, decode_jpeg, jpeg_size, open_mjpeg
from .redact import source_name
from .schema import MAX_CAMERA_INDEX
from .worker import Worker

__all__ = ["MAX_CAMERA_INDEX", "FileSource", "Frame", "LiveSource", "SourceStatus", "check_camera_index", "open_capture"]

log = logging.getLogger(__name__)


def check_camera_index(index: int) -> int:
    """``index`` when it is a camera index OpenCV takes as one; :class:`SourceError` otherwise."""
    if isinstance(index, bool) or not 0 <= index <= MAX_CAMERA_INDEX:
        raise SourceError(f"camera index {index} is out of range; expected 0 to {MAX_CAMERA_INDEX} (0 is the first camera)")
    return index


class Frame:
    """One frame: ``image`` is HxWx3 uint8 RGB, ``index`` counts the source's frames from 0 and
    ``t`` is its time in seconds.

    A frame of an MJPEG camera (:meth:`from_jpeg`) carries its JPEG bytes and is decoded only
    when ``image`` is first read, on the reader's thread: a frame the pipeline only compares with
    the last detected one (:mod:`gatekeeper.motion`) is decoded to a small greyscale copy at
    reduced scale (:meth:`grey`, a tenth of a full decode), and a frame dropped for a newer one
    is never decoded at all. ``decode_s`` sums the seconds spent reading and converting it (the
    "decode" stage metric); ``decoded`` says whether the full picture was made.
    """

    __slots__ = ("_grey", "_image", "_jpeg", "_size", "decode_s", "index", "t")

    def __init__(self, image: np.ndarray | None, index: int, t: float, decode_s: float = 0.0, *, jpeg: bytes | None = None) -> None:
        if image is None and jpeg is None:
            raise ValueError("a frame needs its image or its JPEG bytes")
        self._image = image
        self._jpeg = jpeg
        self._grey: tuple[int, np.ndarray] | None = None  # (width, copy) of the last grey() call
        self._size: tuple[int, int] | None = None
        self.index = index
        self.t = t
        self.decode_s = decode_s

    @classmethod
    def from_jpeg(cls, jpeg: bytes, index: int, t: float, size: tuple[int, int] | None = None) -> Frame:
        """A frame decoded when it is first looked at (see the class docs); ``size``: (width,
        height) when the caller has read the JPEG's header already (:func:`jpeg_size`)."""
        frame = cls(None, index, t, jpeg=jpeg)
        frame._size = size
        return frame

    def __repr__(self) -> str:
        return f"Frame(index={self.index}, t={self.t:.3f}, decoded={self.decoded})"

    @property
    def decoded(self) -> bool:
        return self._image is not None

    @property
    def image(self) -> np.ndarray:
        """The RGB picture; raises :class:`FrameError` when its JPEG cannot be decoded."""
        if self._image is None:
            t0 = time.perf_counter()
            img = decode_jpeg(self._jpeg or b"", IMREAD_RGB or cv2.IMREAD_COLOR)
            if not _valid(img):
                raise FrameError(f"frame {self.index}: not a decodable JPEG of at least 16x16 pixels")
            assert img is not None
            self._image = img if IMREAD_RGB else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            self.decode_s += time.perf_counter() - t0
        return self._image

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, without decoding a JPEG frame."""
        if self._size is None:
            if self._image is not None:
                h, w = self._image.shape[:2]
                self._size = (w, h)
            else:
                self._size = jpeg_size(self._jpeg or b"") or (self.image.shape[1], self.image.shape[0])  # no header: decoding says why
        return self._size

    def grey(self, width: int) -> np.ndarray:
        """A greyscale copy ``width`` pixels wide (or the frame's width, if narrower), for
        comparing frames. From a JPEG it is decoded at reduced scale (libjpeg's 1/2, 1/4 or 1/8
        DCT scaling, the largest that stays at least ``width`` wide: an area average), whether
        or not the full picture has been decoded too, so that all copies of one camera are made
        the same way; from pixels, bilinear sampling (tens of microseconds)."""
        if self._grey is not None and self._grey[0] == width:
            return self._grey[1]
        t0 = time.perf_counter()
        if self._jpeg is not None:
            full_w = self.size[0]
            reduced = next((r for r in (8, 4, 2) if -(-full_w // r) >= width), 1)
            small = decode_jpeg(self._jpeg, REDUCED_GREY[reduced])
            if small is None or small.ndim != 2 or min(small.shape) < 2:
                raise FrameError(f"frame {self.index}: not a decodable JPEG")
        else:
            assert self._image is not None
            h, w = self._image.shape[:2]
            width = min(width, w)
            # Bilinear sampling: a tenth of the cost of area averaging here (0.02 against 0.2-0.6 ms
            # for 640x360 to 960x540), and its noisier copy only makes more frames count as
            # changed (more detections), never fewer.
            small = cv2.cvtColor(cv2.resize(self._image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_LINEAR), cv2.COLOR_RGB2GRAY)
        if small.shape[1] > width:
            h, w = small.shape
            small = cv2.resize(small, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
        self.decode_s += time.perf_counter() - t0
        self._grey = (width, small)
        return small


@dataclass
class SourceStatus:
    """Counters and the fault state of a source (read by the app, written by the source)."""

    read: int = 0
    dropped: int = 0
    skipped: int = 0  # undecodable or malformed frames
    not_decoded: int = 0  # live frames read but not decoded: the gate did not want them (LiveSource.skip_until)
    reconnects: int = 0
    fault: str | None = None
    ended: bool = False


def open_capture(target: str | int, *, open_timeout_s: float | None = None, read_timeout_s: float | None = None) -> cv2.VideoCapture:
    """Open a file, URL or camera index with OpenCV; raises :class:`SourceError` if it cannot.

    The timeouts apply to files and URLs (the FFmpeg backend): without them a network camera
    that stalls blocks ``read()`` for FFmpeg's default 30 s, and with it the reconnect. Camera
    indices ignore them (V4L2 refuses an open with parameters it does not know).
    """
    # OpenCV logs decoder warnings to stderr by itself; ours are enough.
    if not isinstance(target, str):
        check_camera_index(target)
    params: list[int] = []
    if isinstance(target, str):
        if open_timeout_s is not None:
            params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, int(open_timeout_s * 1000))]
        if read_timeout_s is not None:
            params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1, int(read_timeout_s * 1000))]
    cap = cv2.VideoCapture(target, cv2.CAP_ANY, params) if params else cv2.VideoCapture(target)
    if not cap.isOpened():
        cap.release()
        hint = "" if isinstance(target, str) else f": {_cameras_hint()}"
        raise SourceError(f"cannot open video source {source_name(target)}{hint}")
    return cap


def _cameras_hint() -> str:
    """What the error for a camera index that cannot be opened adds: the cameras this machine
    has (Linux: ``/dev/video*``), and how to list them."""
    listing = "list them with `v4l2-ctl --list-devices` (v4l-utils) or `ls /dev/video*`"
    if not sys.platform.startswith("linux"):
        return "expected the index of a connected camera that no other program is using (0 is the first camera)"
    found = sorted(int(d.name[5:]) for d in Path("/dev").glob("video*") if d.name[5:].isdigit())
    if not found:
        return f"this machine has no camera (no /dev/video* device); expected the index of a connected camera; {listing}"
    return f"this machine's camera devices are {', '.join(f'/dev/video{i}' for i in found)}; expected one of their indices that no other program is using; {listing}"


def _not_a_file(path: Path) -> str | None:
    """What ``path`` is when it exists but is no regular file (``/dev/zero``: a character device); None when it does not exist."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))
    return next((what for test, what in kinds if test(mode)), "something other than a regular file")


def _valid(img: np.ndarray | None) -> bool:
    """An HxWx3 uint8 image of at least 16x16 pixels: what the detector can take."""
    return isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and img.shape[0] >= 16 and img.shape[1] >= 16


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
            if _valid(img):
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
            if not _valid(img):
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


class _Garbage:
    """Parts or frames in a row that were no picture: how many, how many bytes, since when."""

    def __init__(self) -> None:
        self.parts = 0
        self.bytes = 0
        self.since = 0.0

    def add(self, size: int | None) -> str:
        """Count one more (``size``: its bytes; None: a frame from OpenCV); returns what the fault says."""
        now = time.monotonic()
        if not self.parts:
            self.since = now
        self.parts += 1
        self.bytes += size or 0
        secs = now - self.since
        if size is None:  # OpenCV's reader: no bytes to count
            return f"data arrives but cannot be decoded: {self.parts} frames in a row ({secs:.1f} s) were no picture of at least 16x16 pixels"
        return f"data arrives but cannot be decoded: {self.parts} parts in a row ({_amount(self.bytes)} in {secs:.1f} s) were not JPEG pictures of at least 16x16 pixels"


def _amount(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1_000_000 else f"{n / 1e3:.1f} kB" if n >= 1000 else f"{n} bytes"


class LiveSource:
    """A camera index or stream URL read in its own thread; hands over only the newest frame.

    ``frames()`` yields frames as they arrive and returns when :meth:`close` is called. When
    nothing arrives for ``poll_s`` it yields ``None`` so the caller can run its watchdog.

    When the stream fails (read error, hang-up, a read blocked for ``read_timeout_s``) the
    thread reconnects: at once if the connection had been delivering frames, otherwise after a
    wait that starts at ``reconnect_initial_s`` and doubles up to ``reconnect_max_s``, so a
    camera that is down, or that accepts and hangs up, is not hammered. Successful reconnects
    are counted in ``status.reconnects``.

    The first open fails loudly (:class:`~gatekeeper.errors.SourceError`: a camera that does not
    exist is bad input), unless ``wait_for_source``: then the source starts without its camera,
    says why in ``status.fault``, and keeps trying with the same backoff (one camera of several
    that is down at start must not keep the others from starting).
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
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        wait_for_source: bool = False,
    ) -> None:
        self.target = target
        self.name = source_name(target)  # what messages say: the URL with its secrets masked
        self.width, self.height = width, height
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.max_reconnects = max_reconnects
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.status = SourceStatus()
        self._stop = threading.Event()
        self._new = threading.Condition()
        self._latest: Frame | None = None
        self._index = 0
        self._garbage = _Garbage()  # what arrived since the last good frame that was no picture
        # The capture thread's own (see _run): attempts in a row that brought no frame (refused
        # opens, connections that died empty), the wait before the next, whether the source has
        # ever been opened, and whether the current connection has delivered a frame.
        self._failures = 0
        self._backoff = reconnect_initial_s
        self._opened = False
        self._delivered = False
        #: Wall-clock time (``time.time()``, as ``Frame.t``) before which frames are read but not
        #: decoded: the reader of the frames sets it when it will not look at them (nobody in view).
        self.skip_until = 0.0
        self._cap: cv2.VideoCapture | MjpegCapture | None
        try:
            self._cap = self._open()  # the first open fails loudly: a camera that does not exist is bad input
            self._opened = True
        except SourceError as exc:
            if not wait_for_source:
                raise
            self._cap = None
            self.status.fault = str(exc)
            log.warning("%s; starting without it and retrying in the background", exc)
        self._worker = Worker(self._run, "capture", stopping=self._stop)
        self._worker.start()

    def _open(self) -> cv2.VideoCapture | MjpegCapture:
        if isinstance(self.target, str):
            # An MJPEG camera is read without OpenCV: a frame the gate does not want is not decoded.
            mjpeg = open_mjpeg(self.target, open_timeout_s=self.open_timeout_s, read_timeout_s=self.read_timeout_s)
            if mjpeg is not None:
                return mjpeg
        cap = open_capture(self.target, open_timeout_s=self.open_timeout_s, read_timeout_s=self.read_timeout_s)
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        return cap

    # -- the capture thread: connect, read a frame, hand it over; reconnect with backoff ---------
    def _run(self) -> None:
        # A first open that failed (wait_for_source) waits before the next, and is no reconnect when it succeeds.
        going = self._cap is not None or self._failed()
        while going and not self._stop.is_set():
            going = self._reconnect() if self._cap is None else self._read()
        if self._cap is not None:
            self._cap.release()
        with self._new:
            self._new.notify_all()

    def _reconnect(self) -> bool:
        """Open the source again; False when it is time to stop (closing, or out of attempts)."""
        try:
            self._cap = self._open()
        except SourceError as exc:
            self.status.fault = str(exc)
            return self._failed()
        if self._opened:
            self.status.reconnects += 1
            log.info("source %s reconnected", self.name)
        else:
            log.info("source %s opened", self.name)
        self._opened, self._delivered = True, False
        return True

    def _failed(self) -> bool:
        """An attempt that brought no frame: wait before the next, twice as long as the last time
        (up to ``reconnect_max_s``); False when it is time to stop."""
        self._failures += 1
        if self.max_reconnects is not None and self._failures > self.max_reconnects:
            log.error("source %s: giving up after %d failed reconnect attempts", self.name, self._failures - 1)
            self.status.ended = True
            return False
        # Wait on the stop event, not sleep, so shutdown is immediate.
        if self._stop.wait(self._backoff):
            return False
        self._backoff = min(self._backoff * 2, self.reconnect_max_s)
        return True

    def _read(self) -> bool:
        """Read one frame and hand it over (or skip it); False when it is time to stop."""
        cap = self._cap
        assert cap is not None
        # Frames before skip_until are not wanted (nobody in view, see gatekeeper.motion):
        # they are read, not decoded. An MJPEG camera's frames are handed over undecoded
        # (Frame.from_jpeg): the pipeline decodes what it looks at, and a frame dropped for a
        # newer one costs nothing. OpenCV decodes in read(), whose wait for the camera's
        # next frame is not decoding, so only its conversion is timed.
        unwanted = time.time() < self.skip_until
        lazy = isinstance(cap, MjpegCapture)
        ok, img = (cap.grab(), None) if unwanted or lazy else cap.read()
        if not ok:
            return self._lost(cap)
        if unwanted:
            self._arrived()
            self.status.not_decoded += 1
            return True
        frame = self._frame(cap, img)
        if frame is not None:
            self._arrived()
            self._hand_over(frame)
        return True

    def _lost(self, cap: cv2.VideoCapture | MjpegCapture) -> bool:
        """The stream failed (an error, a hang-up, a read timeout): reconnect at once if it had
        been delivering frames, else after a wait (it opened but died empty: retrying at once
        would spin on the camera)."""
        cap.release()
        self._cap = None
        self.status.fault = f"source {self.name} stopped delivering frames"
        log.warning("%s; reconnecting", self.status.fault)
        return True if self._delivered else self._failed()

    def _frame(self, cap: cv2.VideoCapture | MjpegCapture, img: np.ndarray | None) -> Frame | None:
        """The frame just read, or None when it is no picture (skipped and counted)."""
        if isinstance(cap, MjpegCapture):
            jpeg = cap.jpeg or b""
            size = jpeg_size(jpeg)  # microseconds: a part that is no JPEG is skipped here, as OpenCV's would be
            if size is None or min(size) < 16:
                self._undecodable(len(jpeg))
                return None
            return Frame.from_jpeg(jpeg, self._index, time.time(), size)
        t0 = time.perf_counter()
        if not _valid(img):
            self._undecodable(None)
            return None
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return Frame(rgb, self._index, time.time(), time.perf_counter() - t0)

    def _arrived(self) -> None:
        """A frame came: the connection works, and the next failure starts the backoff afresh."""
        self._delivered = True
        self._failures, self._backoff = 0, self.reconnect_initial_s
        self._index += 1

    def _hand_over(self, frame: Frame) -> None:
        with self._new:
            if self._latest is not None:
                self.status.dropped += 1
            self._latest = frame
            self.status.read += 1
            self.status.fault = None
            self._garbage = _Garbage()
            self._new.notify()

    def _undecodable(self, size: int | None) -> None:
        """A part (``size`` bytes; None: a frame OpenCV decoded to no usable picture) arrived that
        is no picture: skipped and counted, and the fault says data arrives that cannot be decoded
        and how much, so a FAULT raised meanwhile (the watchdog's) says so instead of "no frame"."""
        self.status.skipped += 1
        self.status.fault = f"source {self.name}: {self._garbage.add(size)}"

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
            self._new.notify_all()  # a reader waiting in frames() leaves now
        self._worker.finish(timeout=2.0)
