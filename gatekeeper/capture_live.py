"""The live source: a camera index or stream URL read in its own thread, only the newest frame
handed over (drops are counted), reconnecting with exponential backoff, and what went wrong
reported in :class:`~gatekeeper.capture.SourceStatus` so the camera can raise a FAULT and hold
the gate shut."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np

from .capture import Frame, SourceStatus, usable_picture
from .capture_open import open_capture
from .errors import SourceError
from .mjpeg import MjpegCapture, jpeg_flaw, jpeg_size, open_mjpeg
from .redact import source_name
from .undecodable import Undecodable
from .worker import Worker

__all__ = ["LiveSource"]

log = logging.getLogger(__name__)


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

    Parts that arrive but are no picture are skipped and counted in :attr:`undecodable` (the
    ones a look tells here; the reader of the frames reports those that fail to decode,
    :meth:`frame_failed`, and those that go through, :meth:`frame_decoded`), and
    :meth:`undecodable_fault` says so while they keep arriving.
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
        self.undecodable = Undecodable(self.status)  # what arrived since the last frame that decoded, and how much was no picture
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
                self.undecodable.unit = "parts"
                return mjpeg
        self.undecodable.unit = "frames"
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
        size = len(cap.jpeg or b"") if lazy else None
        if unwanted:
            self._arrived(size)
            self.status.not_decoded += 1
            return True
        frame = self._frame(cap, img)
        if frame is not None:
            self._arrived(size)
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
            flaw = jpeg_flaw(jpeg, size)
            if flaw is not None:
                self.undecodable.rejected(len(jpeg), flaw)
                return None
            return Frame.from_jpeg(jpeg, self._index, time.time(), size)
        t0 = time.perf_counter()
        if not usable_picture(img):
            self.undecodable.rejected(None, "no picture of at least 16x16 pixels")
            return None
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return Frame(rgb, self._index, time.time(), time.perf_counter() - t0)

    def _arrived(self, size: int | None) -> None:
        """A frame of ``size`` bytes (None: unknown) came: the connection works, and the next
        failure starts the backoff afresh."""
        self._delivered = True
        self._failures, self._backoff = 0, self.reconnect_initial_s
        self.undecodable.arrived(size, self._index)
        self._index += 1

    def _hand_over(self, frame: Frame) -> None:
        with self._new:
            if self._latest is not None:
                self.status.dropped += 1
            self._latest = frame
            self.status.read += 1
            self.status.fault = None
            self._new.notify()

    # -- what the reader of the frames reports, and asks -----------------------------------------
    def frame_failed(self, frame: Frame, why: str) -> None:
        """``frame`` could not be decoded where it was looked at (``why``): skipped and counted."""
        self.undecodable.failed(frame.index, why)

    def frame_decoded(self) -> None:
        """A frame went through: the count of undecodable parts starts afresh."""
        self.undecodable.decoded()

    def undecodable_fault(self, within_s: float) -> str | None:
        """What a FAULT says while parts keep arriving (the last within ``within_s``) and none
        since the last decoded frame could be decoded, instead of "no frame"; None otherwise
        (see :meth:`Undecodable.says <gatekeeper.undecodable.Undecodable.says>`)."""
        said = self.undecodable.says(within_s)
        return None if said is None else f"source {self.name}: {said}"

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
