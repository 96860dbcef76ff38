"""Opening what OpenCV reads: a video file, a stream URL or a camera index, with read timeouts
for streams, camera indices checked before OpenCV sees them, and an error for a camera that
cannot be opened that says which cameras this machine has."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2

from .errors import SourceError
from .redact import source_name
from .schema import MAX_CAMERA_INDEX

__all__ = ["check_camera_index", "open_capture"]


def check_camera_index(index: int) -> int:
    """``index`` when it is a camera index OpenCV takes as one; :class:`SourceError` otherwise."""
    if isinstance(index, bool) or not 0 <= index <= MAX_CAMERA_INDEX:
        raise SourceError(f"camera index {index} is out of range; expected 0 to {MAX_CAMERA_INDEX} (0 is the first camera)")
    return index


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
