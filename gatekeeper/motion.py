"""When the face detector runs: only on frames where something changed, and slower while nobody is in view.

A camera at a ride entrance sees an empty queue most of the day. Detecting faces on every frame
of it costs as much as a busy one, so the pipeline asks a :class:`DetectSchedule` first, as the
motion detection of camera event services does:

* **nothing changed, nothing to do**: each frame is shrunk to a small greyscale copy (``width``
  pixels wide: bilinear sampling, tens of microseconds; a live MJPEG camera's JPEG is decoded
  straight to it at reduced scale, a tenth of a full decode, see :meth:`Frame.grey`) and
  compared with the copy of the frame the detector last ran on. A pixel changed when its grey
  level moved by more than ``pixel_threshold``; the frame changed when more than ``min_changed`` of all pixels did, or more
  than ``face_min_changed`` of the pixels inside one of the faces last detected (a smile moves
  only the mouth and cheeks: a small part of the frame, a large part of the face). Comparing with
  the last *detected* frame, not the previous one, lets a slow change add up until it counts.
  On a frame where nothing changed the detector does not run and the pipeline reuses the last
  detection's faces and scores: the tracker and the gate see the same face, held still, at the
  new time, which is what detecting again would have found.
* **idle rate**: while the last detection found nobody, the picture is looked at (compared, and
  detected when it changed) only ``idle_fps`` times a second (every 0.1 s at the default 10), so
  leaves in the wind or people passing far away cost 10 detections a second, not 30, and a still
  empty picture 10 comparisons. A face entering is seen at most that much later; from the first
  frame with a face in view, every changed frame is detected. A live source is told
  (:meth:`DetectSchedule.next_look`), so it does not even decode the frames in between.
* **refresh**: the detector runs at least every ``refresh_s`` whatever the picture does.

Time is an argument (``t``, the frame's time), as in the gate. MediaPipe's VIDEO mode needs
increasing timestamps: skipped frames are simply never given to the detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .schema import check_bounds, opt

if TYPE_CHECKING:
    from .capture import Frame

__all__ = ["DetectSchedule", "MotionConfig"]

Box = tuple[float, float, float, float]
EPSILON_S = 0.001


@dataclass(frozen=True)
class MotionConfig:
    """The ``motion:`` section of ``config.yaml``."""

    enabled: bool = opt(True, "skip the face detector on frames where nothing changed since the last detection, and detect at idle_fps while nobody is in view")
    width: int = opt(160, "width in pixels of the greyscale copy compared between frames", ge=16, le=1920)
    pixel_threshold: int = opt(12, "a pixel of the copy changed when its grey level moved by more than this (0-255)", ge=0, le=255)
    min_changed: float = opt(0.002, "the frame changed when more than this share of all pixels changed", ge=0, le=1)
    face_min_changed: float = opt(0.01, "the frame also changed when more than this share of the pixels inside one of the faces last detected did", ge=0, le=1)
    idle_fps: float = opt(10.0, "detections per second at most while nobody is in view (a face entering is seen at most 1/idle_fps late)", gt=0)
    refresh_s: float = opt(1.0, "the detector runs at least this often, whatever changed", gt=0)

    def __post_init__(self) -> None:
        check_bounds(self)


class DetectSchedule:
    """Says, frame by frame, whether the detector must run (see the module docs).

    >>> schedule = DetectSchedule(MotionConfig())
    >>> schedule.due(frame, boxes)   # doctest: +SKIP
    True
    """

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._ref: np.ndarray | None = None  # the small grey copy of the last detected frame
        self._scale = 1.0  # small pixels per frame pixel
        self._last_t: float | None = None  # the last frame detected
        self._last_look: float | None = None  # the last frame looked at (detected, or compared)
        self.detected = 0  # frames the detector ran on
        self.skipped = 0  # frames it did not

    def due(self, frame: Frame, boxes: Sequence[Box]) -> bool:
        """Whether to detect on ``frame`` (at its time ``frame.t``); ``boxes``: the faces the last
        detection found. When it says yes, the frame becomes the reference for the next ones.
        Only the frame's small grey copy is read (:meth:`Frame.grey`): a JPEG frame that is not
        due is never decoded in full."""
        cfg, t = self.config, frame.t
        ref, last_t = self._ref, self._last_t
        # Times to the millisecond: frame times i / fps do not add up exactly (9/30 - 6/30 < 0.1).
        if ref is None or last_t is None or t - last_t + EPSILON_S >= cfg.refresh_s:
            return self._run(self._small(frame), t)
        if not boxes and self._last_look is not None and t - self._last_look + EPSILON_S < 1.0 / cfg.idle_fps:
            self.skipped += 1  # nobody in view: the picture is looked at idle_fps times a second
            return False
        small = self._small(frame)
        self._last_look = t
        if small is None or ref.shape != small.shape or self._changed(small, ref, boxes):
            return self._run(small, t)
        self.skipped += 1
        return False

    def next_look(self) -> float | None:
        """The time before which :meth:`due` will say no without looking at the picture, while
        the last detection found nobody (the idle rate); None before the first look. A live
        source need not even decode the frames before it."""
        if self._last_look is None or self._last_t is None:
            return None
        return min(self._last_look + 1.0 / self.config.idle_fps, self._last_t + self.config.refresh_s) - EPSILON_S

    def _run(self, small: np.ndarray | None, t: float) -> bool:
        self._ref, self._last_t, self._last_look = small, t, t
        self.detected += 1
        return True

    def _small(self, frame: Frame) -> np.ndarray | None:
        w, h = frame.size
        if h < 2 or w < 2:
            return None
        small = frame.grey(self.config.width)
        self._scale = small.shape[1] / w
        return small

    def _changed(self, small: np.ndarray, ref: np.ndarray, boxes: Sequence[Box]) -> bool:
        cfg = self.config
        moved = cv2.absdiff(small, ref) > cfg.pixel_threshold
        if np.count_nonzero(moved) > cfg.min_changed * moved.size:
            return True
        k = self._scale
        height, width = moved.shape
        for x, y, w, h in boxes:
            x0, y0 = max(0, int(x * k)), max(0, int(y * k))
            x1, y1 = min(width, int(np.ceil((x + w) * k))), min(height, int(np.ceil((y + h) * k)))
            if x1 > x0 and y1 > y0:
                region = moved[y0:y1, x0:x1]
                if np.count_nonzero(region) > cfg.face_min_changed * region.size:
                    return True
        return False
