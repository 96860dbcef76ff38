"""An MJPEG-over-HTTP camera read frame by frame, each JPEG decoded only when it is wanted.

Cheap IP cameras send ``multipart/x-mixed-replace`` JPEG frames over HTTP. OpenCV's reader (its
FFmpeg backend) decodes every one of them, 1 ms or more of a core per 640x360 frame, even when the
gate only needs to look at a few frames a second (nobody in view, see :mod:`gatekeeper.motion`).
:class:`MjpegCapture` reads the parts itself (:meth:`grab`) and decodes nothing: the live source
hands each frame on as its JPEG bytes (:attr:`jpeg`, :meth:`gatekeeper.capture.Frame.from_jpeg`),
and the pipeline decodes what it looks at, at the scale it needs. :meth:`retrieve` decodes the
last frame, as OpenCV's would. It has the few methods of
``cv2.VideoCapture`` that :class:`~gatekeeper.capture_live.LiveSource` uses.

A URL that does not answer with a multipart stream (an RTSP-over-HTTP tunnel, an MP4 or HLS
URL) is left to OpenCV: :func:`open_mjpeg` returns None for it.
"""

from __future__ import annotations

import base64
import http.client
import logging
import urllib.parse

import cv2
import numpy as np

from .errors import SourceError
from .redact import source_name

__all__ = ["IMREAD_RGB", "REDUCED_GREY", "MjpegCapture", "decode_jpeg", "jpeg_flaw", "jpeg_size", "open_mjpeg"]

log = logging.getLogger(__name__)

#: The largest JPEG part read (a 4K frame at high quality is about 3 MB).
MAX_PART_BYTES = 16 << 20
#: The longest line of part headers read.
MAX_LINE = 4096


# -- JPEG, without decoding more than asked -------------------------------------------------------

#: Decoding straight to RGB (OpenCV 4.11 and later) saves the BGR-to-RGB conversion (0.2 ms for 640x360).
IMREAD_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)

#: ``cv2.imdecode`` flags: greyscale at 1/N scale, decoded by libjpeg at that scale.
REDUCED_GREY = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}


def decode_jpeg(data: bytes, flags: int) -> np.ndarray | None:
    """``cv2.imdecode`` of ``data``; None when it is not a picture OpenCV can decode."""
    if not data:
        return None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    return img if isinstance(img, np.ndarray) and img.size else None


#: JPEG start-of-frame markers (SOF0-SOF15 but DHT C4, JPG C8 and DAC CC), which hold the size.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, without decoding it; None when ``data`` is
    not a JPEG or its header is damaged."""
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # standalone markers: no length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF:
            if i + 9 > n:
                return None
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return (width, height) if width and height else None
        if marker == 0xDA or length < 2:  # scan data before any frame header: damaged
            return None
        i += 2 + length
    return None


def jpeg_flaw(data: bytes, size: tuple[int, int] | None, min_side: int = 16) -> str | None:
    """Why ``data`` (whose :func:`jpeg_size` is ``size``) is no picture of at least ``min_side``
    pixels a side, by its look alone (microseconds); None when it may be one (its data can still
    be damaged: only decoding tells). A JPEG without its end marker (FF D9, padding after it
    allowed) was cut short: libjpeg would fill the rest of the picture with grey."""
    if not data:
        return "an empty part"
    if data[:2] != b"\xff\xd8":
        return "not JPEG"
    if size is None:
        return "damaged JPEG header"
    if min(size) < min_side:
        return f"a picture of {size[0]}x{size[1]} pixels, smaller than {min_side}x{min_side}"
    if data.rfind(b"\xff\xd9", max(0, len(data) - 64)) < 0:
        return "truncated JPEG (no end marker)"
    return None


class MjpegCapture:
    """One open ``multipart/x-mixed-replace`` response; see the module docs."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse, boundary: bytes) -> None:
        self._conn = conn
        self._response = response
        self._boundary = b"--" + boundary
        self._jpeg: bytes | None = None
        self._open = True

    def isOpened(self) -> bool:  # noqa: N802  (the name cv2.VideoCapture gives it)
        return self._open

    def set(self, prop: int, value: float) -> bool:
        return False  # the size of an IP camera's pictures is set on the camera

    def grab(self) -> bool:
        """Read the next frame's JPEG bytes; False at the end of the stream or on an error."""
        try:
            self._jpeg = self._next_part()
        except (OSError, http.client.HTTPException, ValueError) as exc:  # socket.timeout is an OSError
            log.debug("mjpeg stream: %s", exc)
            self._jpeg = None
        return self._jpeg is not None

    @property
    def jpeg(self) -> bytes | None:
        """The bytes of the last :meth:`grab` (None after a failed one)."""
        return self._jpeg

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        """Decode the JPEG of the last :meth:`grab` (BGR, like OpenCV); (False, None) when it
        is not a decodable JPEG."""
        img = decode_jpeg(self._jpeg or b"", cv2.IMREAD_COLOR)
        return img is not None, img

    def read(self) -> tuple[bool, np.ndarray | None]:
        """The next frame, decoded. A part that is not a JPEG is an image of None, not the end."""
        if not self.grab():
            return False, None
        ok, img = self.retrieve()
        return True, img if ok else None

    def release(self) -> None:
        self._open = False
        try:
            self._response.close()
        finally:
            self._conn.close()

    def _line(self) -> bytes:
        line = self._response.readline(MAX_LINE)
        if not line:
            raise EOFError("the stream ended")
        return line

    def _next_part(self) -> bytes | None:
        r = self._response
        # Up to the boundary line; some cameras send blank lines (or the previous part's tail) first.
        for _ in range(64):
            try:
                line = self._line()
            except EOFError:
                return None
            if line.strip().startswith(self._boundary):
                if line.strip() == self._boundary + b"--":
                    return None  # the closing boundary
                break
        else:
            raise ValueError("no multipart boundary within 64 lines")
        length = None
        while True:
            line = self._line()
            if not line.strip():
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is not None:
            if not 0 <= length <= MAX_PART_BYTES:
                raise ValueError(f"part of {length} bytes")
            data = r.read(length)
            if len(data) < length:
                return None  # hung up mid-frame
            return data
        # No Content-Length: the JPEG runs to its end marker (FF D9).
        data = bytearray()
        while not data.endswith(b"\xff\xd9"):
            chunk = r.readline(65536)
            if not chunk:
                return None
            data += chunk
            if len(data) > MAX_PART_BYTES:
                raise ValueError("part without an end marker")
        return bytes(data)


def open_mjpeg(url: str, *, open_timeout_s: float = 10.0, read_timeout_s: float = 5.0) -> MjpegCapture | None:
    """An :class:`MjpegCapture` for ``url`` when it answers with a multipart JPEG stream; None
    when it answers with something else (left to OpenCV). Raises :class:`SourceError` when it
    cannot be reached or refuses (4xx/5xx)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=open_timeout_s)
    headers = {"Accept": "multipart/x-mixed-replace, image/jpeg, */*"}
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
    except (OSError, http.client.HTTPException):
        conn.close()
        raise SourceError(f"cannot open video source {source_name(url)}") from None
    ctype = response.getheader("Content-Type", "")
    if response.status != 200 or not ctype.lower().startswith("multipart/"):
        status = response.status
        response.close()
        conn.close()
        if status != 200:
            raise SourceError(f"cannot open video source {source_name(url)} (HTTP {status})")
        return None
    boundary = None
    for param in ctype.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        response.close()
        conn.close()
        return None
    if conn.sock is not None:
        conn.sock.settimeout(read_timeout_s)
    return MjpegCapture(conn, response, boundary.removeprefix("--").encode("latin-1"))
