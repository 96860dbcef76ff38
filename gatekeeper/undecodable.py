"""What a live camera sends that cannot be decoded, counted so that a FAULT can say so.

A camera whose stream keeps coming but carries no picture (an HTML error page in every part, a
JPEG header over damaged data, JPEGs cut short) is not a camera that is silent, and the FAULT
that the watchdog raises should not say "no frame". Two threads see such parts: the capture
thread rejects the ones whose look gives them away (no JPEG header, no end marker, too small;
OpenCV's reader's frames that are no picture), and the camera's loop finds the ones whose data
fails to decode where the pipeline looks at them. :class:`Undecodable` counts both, since the
last frame that decoded, and says what the FAULT says: how many of how many parts, how much
data in how long, and why the last one was no picture.
"""

from __future__ import annotations

import threading
import time

from .capture import SourceStatus

__all__ = ["Undecodable"]


class Undecodable:
    """The parts a live source received since the last frame that decoded, and how many of them
    could not be decoded; every undecodable part is counted in ``status`` too (``skipped`` and
    ``undecodable``, the ``gatekeeper_frames_undecodable_total`` counter).

    The capture thread counts each part as it arrives, handed on as frame ``index``
    (:meth:`arrived`) or rejected (:meth:`rejected`); the camera's loop counts each frame that
    fails to decode (:meth:`failed`) or goes through the pipeline (:meth:`decoded`, which starts
    the count afresh). A frame that arrived before the count started afresh and fails after it
    belongs to the old count, so the count never has more failures than parts.
    """

    def __init__(self, status: SourceStatus, unit: str = "parts") -> None:
        self.status = status
        self.unit = unit  # what a part is called: "parts" (MJPEG), "frames" (OpenCV's reader)
        self._lock = threading.Lock()
        self._parts = 0  # parts since the count started
        self._bad = 0  # of them, the ones that could not be decoded
        self._bytes = 0
        self._first = self._last = 0.0  # time.monotonic() of the count's first and last part
        self._why = ""  # why the last undecodable part was no picture
        self._next = 0  # the index of the next frame handed on
        self._floor = 0  # frames with a lower index arrived before the count started

    def arrived(self, size: int | None, index: int) -> None:
        """A part of ``size`` bytes (None: unknown) that looks like a picture, handed on as frame ``index``."""
        with self._lock:
            self._add(size)
            self._next = index + 1

    def rejected(self, size: int | None, why: str) -> None:
        """A part of ``size`` bytes that is no picture by its look (``why``), skipped."""
        with self._lock:
            self._add(size)
            self._count_bad(why)

    def failed(self, index: int, why: str) -> None:
        """Frame ``index`` could not be decoded where it was looked at (``why``), skipped."""
        with self._lock:
            if index >= self._floor:
                self._count_bad(why)
            else:  # it belongs to a count that a decoded frame has closed
                self.status.skipped += 1
                self.status.undecodable += 1

    def decoded(self) -> None:
        """A frame went through: the count starts afresh."""
        with self._lock:
            self._parts = self._bad = self._bytes = 0
            self._floor = self._next

    def says(self, within_s: float) -> str | None:
        """What the FAULT says while parts arrive that cannot be decoded: how many of how many
        (a frame the reader replaced by a newer one before looking at it is neither), how much
        data in how long, and why the last was no picture; None when none of the parts
        since the last decoded frame was undecodable, or when the last part is older than
        ``within_s`` seconds (then the camera has fallen silent, and that is the fault)."""
        with self._lock:
            if not self._bad or time.monotonic() - self._last > within_s:
                return None
            how_much = f"{_amount(self._bytes)} in " if self._bytes else ""
            secs = self._last - self._first
            rest = "" if self._bad == self._parts else " and the rest were not looked at"  # replaced by newer ones first
            return f"data arrives but cannot be decoded: {self._bad} of the last {self._parts} {self.unit} ({how_much}{secs:.1f} s) were no picture{rest} (last: {self._why})"

    def _add(self, size: int | None) -> None:
        now = time.monotonic()
        if not self._parts:
            self._first = now
        self._parts += 1
        self._bytes += size or 0
        self._last = now

    def _count_bad(self, why: str) -> None:
        self._bad += 1
        self._why = why
        self.status.skipped += 1
        self.status.undecodable += 1


def _amount(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1_000_000 else f"{n / 1e3:.1f} kB" if n >= 1000 else f"{n} bytes"
