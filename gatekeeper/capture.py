"""What every frame source yields: :class:`Frame` (RGB pixels, or an MJPEG camera's JPEG decoded
when first looked at) and the counters of a source, :class:`SourceStatus`.

A frame carries the index of the decoded frame (from 0) and its time ``t`` in seconds: the
position in the file for a file, the wall clock for a live source. The sources themselves:
:mod:`gatekeeper.capture_file` replays a video file (every frame, in order),
:mod:`gatekeeper.capture_live` reads a camera or stream in its own thread (newest frame only,
reconnecting with backoff); :mod:`gatekeeper.capture_open` opens what OpenCV reads for them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import FrameError
from .mjpeg import IMREAD_RGB, REDUCED_GREY, decode_jpeg, jpeg_size

__all__ = ["Frame", "SourceStatus", "usable_picture"]


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
            if not usable_picture(img):
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
    undecodable: int = 0  # of them, a live source's parts that arrived but could not be decoded (gatekeeper.undecodable)
    not_decoded: int = 0  # live frames read but not decoded: the gate did not want them (LiveSource.skip_until)
    reconnects: int = 0
    fault: str | None = None
    ended: bool = False


def usable_picture(img: np.ndarray | None) -> bool:
    """An HxWx3 uint8 image of at least 16x16 pixels: what the detector can take."""
    return isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and img.shape[0] >= 16 and img.shape[1] >= 16
