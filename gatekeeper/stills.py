"""Faces in still photos of any size: ``gatekeeper score``, ``gatekeeper eval`` and training.

A gate camera sees people at a known distance; photos do not. BlazeFace (short range) looks at
a 128x128 letterboxed copy of the image and finds faces that fill a good part of it. Photos
break that both ways:

* a tight face crop (a dataset image, an ID photo, a 64-pixel thumbnail) fills the whole frame
  and has no context around it: found in 76% of SMILEsmileD's 64x64 crops as they are, 97%
  once padded with replicated borders and upscaled;
* a face in a large group photo is a few pixels wide at 128x128.

So a still is tried in up to three kinds of view, stopping at the first that finds a face:

1. the image as it is, and the image padded by half its size on each side with replicated
   borders (small images upscaled to about :data:`PADDED_SIDE` pixels); small images (long side
   under :data:`SMALL_IMAGE`) try the padded view first, because they are usually tight crops;
2. the same padding as a flat frame of the image's mean grey: a face cut off by its crop (chin
   and forehead outside the picture) smears into streaks when its borders are replicated. Of the
   dataset crops the views above miss, this one finds 332 of 337 on SMILEsmileD and 507 of 708
   on FER2013 (the rest are mostly profiles, cartoons and blank pictures);
3. overlapping tiles, 2x2, 3x3 then 4x4, for images large enough that a tile still shows a
   whole face (short side at least :data:`MIN_TILE` pixels per tile row).

A face that is small in the view that found it is looked at again, closer up (:func:`refine`):
the keypoints, and so the chip, come out far more precise. A face found in a tile must survive
that second look with confidence :data:`REFINE_CONFIDENCE`, because dozens of small looks at a
photo otherwise turn texture into faces. Faces under :data:`SURE` confidence (blurred lettering,
a pattern on a shirt) are doubtful: the search goes on to the next views, and they are reported
only when no sure face turns up; next to a sure face they are dropped. Measured on a frame of
the shared clip: an 87-pixel face is found, with its box within 2 pixels, on canvases up to
2000x1500; at 3000x2250 (face under 4% of the short side) it is not.

Faces come back in the original image's pixels, so chips are cut from the original, never from
a resampled view. The training sets (SMILEsmileD, FER2013) take the padded view first, which is
exactly how their chips were always prepared.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from ._native import captured_stderr
from .detect import Face, FaceDetector
from .track import intersection, iou

#: File names taken for photos when a folder is scanned (``gatekeeper score``, class-folder
#: datasets); OpenCV reads all of them (a GIF's first frame).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})

#: The most pixels a photo is decoded at (a 48-megapixel phone photo is 8000x6000). Decoded, a
#: pixel takes 3 bytes, and the views below take several copies: a 20000x20000 PNG of 389 KB
#: would need 1.2 GB to decode and several more to look at. A JPEG above it is decoded at a half,
#: a quarter or an eighth of its size (libjpeg scales while decoding, so the full picture is
#: never in memory); any other photo above it is refused.
MAX_PHOTO_PIXELS = 50_000_000

#: The formats whose size :func:`image_size` reads from the header: every suffix above, and PNM.
PHOTO_FORMATS = "JPEG, PNG, WebP, BMP, GIF, TIFF or PNM"


class PhotoError(ValueError):
    """A photo that is not read: unreadable, of an unknown format, or too large. The message is
    the ``error`` of its line in ``gatekeeper score``."""


def read_photo(path: str | Path, max_pixels: int = MAX_PHOTO_PIXELS) -> np.ndarray:
    """The photo at ``path`` as BGR pixels, its size read from the header before anything is
    decoded: at most ``max_pixels`` (a larger JPEG is decoded reduced to fit), else
    :class:`PhotoError` ("image too large: 20000x20000, expected at most 50 megapixels")."""
    size = image_size(path)
    if size is None:
        raise PhotoError(f"unreadable image: not a {PHOTO_FORMATS} file")
    kind, width, height = size
    if width <= 0 or height <= 0:
        raise PhotoError(f"unreadable image: its header says {width}x{height} pixels")
    flags = cv2.IMREAD_COLOR
    if width * height > max_pixels:
        factors = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
        fitting = [f for f in factors if kind == "jpeg" and -(-width // f) * -(-height // f) <= max_pixels]
        if not fitting:
            raise PhotoError(f"image too large: {width}x{height}, expected at most {max_pixels / 1e6:g} megapixels")
        flags = factors[fitting[0]]
    try:
        # libjpeg reports a damaged file ("Premature end of JPEG file") on fd 2 by itself.
        with captured_stderr():
            image = cv2.imread(str(path), flags)
    except cv2.error:
        image = None
    if image is None:
        raise PhotoError("unreadable image")
    return image


def image_size(path: str | Path) -> tuple[str, int, int] | None:
    """``(format, width, height)`` from the file's header, without decoding it; None when it is
    not one of :data:`PHOTO_FORMATS` (or its header is cut short or malformed)."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            for kind, sniff, reader in _SIZE_READERS:
                if sniff(head):
                    f.seek(0)
                    dims = reader(f)
                    return None if dims is None else (kind, *dims)
    except (OSError, struct.error, ValueError):
        return None
    return None


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError("cut short")
    return data


def _png_size(f: BinaryIO) -> tuple[int, int] | None:
    head = _read(f, 24)
    return struct.unpack(">II", head[16:24]) if head[12:16] == b"IHDR" else None


def _gif_size(f: BinaryIO) -> tuple[int, int]:
    return struct.unpack("<HH", _read(f, 10)[6:10])


def _bmp_size(f: BinaryIO) -> tuple[int, int]:
    head = _read(f, 26)
    if struct.unpack("<I", head[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", head[18:22])
    width, height = struct.unpack("<ii", head[18:26])
    return width, abs(height)  # a negative height is a top-down bitmap


def _webp_size(f: BinaryIO) -> tuple[int, int] | None:
    head = _read(f, 30)
    chunk = head[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


#: JPEG start-of-frame markers (the frame header holds the size); C4, C8 and CC are not frames.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    _read(f, 2)  # SOI
    for _ in range(10_000):  # segments before the frame header: APPn (EXIF, ICC...), DQT, DHT
        if _read(f, 1) != b"\xff":
            return None
        marker = _read(f, 1)[0]
        while marker == 0xFF:  # fill bytes
            marker = _read(f, 1)[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            continue  # markers without a length
        if marker in (0xD9, 0xDA):
            return None  # the end, or the image data, before any frame header
        (length,) = struct.unpack(">H", _read(f, 2))
        if marker in _SOF:
            height, width = struct.unpack(">xHH", _read(f, 5))
            return width, height
        f.seek(length - 2, 1)
    return None


def _tiff_size(f: BinaryIO) -> tuple[int, int] | None:
    head = _read(f, 16)
    order = "<" if head[:2] == b"II" else ">"
    big = struct.unpack(order + "H", head[2:4])[0] == 43  # BigTIFF: 64-bit offsets and counts
    f.seek(struct.unpack(order + "Q", head[8:16])[0] if big else struct.unpack(order + "I", head[4:8])[0])
    count_fmt, entry_fmt, entry_size = ("Q", "HHQ8s", 20) if big else ("H", "HHI4s", 12)
    (count,) = struct.unpack(order + count_fmt, _read(f, struct.calcsize(count_fmt)))
    dims: dict[int, int] = {}
    for _ in range(min(count, 4096)):
        tag, kind, _n, value = struct.unpack(order + entry_fmt, _read(f, entry_size))
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG (LONG8 in BigTIFF)
            fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if fmt is None:
                return None
            dims[tag] = struct.unpack(order + fmt, value[: struct.calcsize(fmt)])[0]
    return (dims[256], dims[257]) if len(dims) == 2 else None


def _pnm_size(f: BinaryIO) -> tuple[int, int] | None:
    tokens: list[int] = []
    for line in f.read(4096)[2:].splitlines():
        for word in line.split(b"#", 1)[0].split():
            tokens.append(int(word))
            if len(tokens) == 2:
                return tokens[0], tokens[1]
    return None


_SIZE_READERS = (
    ("png", lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"), _png_size),
    ("jpeg", lambda h: h.startswith(b"\xff\xd8\xff"), _jpeg_size),
    ("gif", lambda h: h[:6] in (b"GIF87a", b"GIF89a"), _gif_size),
    ("bmp", lambda h: h.startswith(b"BM"), _bmp_size),
    ("webp", lambda h: h.startswith(b"RIFF") and h[8:12] == b"WEBP", _webp_size),
    ("tiff", lambda h: h[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff_size),
    ("pnm", lambda h: h[:1] == b"P" and h[1:2] in b"123456" and h[2:3].isspace(), _pnm_size),
)

#: Padding on each side of a padded view, as a share of the image's height and width.
PAD_FRACTION = 0.5
#: A padded view is upscaled (at most :data:`MAX_UPSCALE` times) until its long side is this big.
PADDED_SIDE = 384
MAX_UPSCALE = 3.0
#: Images whose long side is under this are taken for tight face crops: padded view first.
SMALL_IMAGE = 200
#: Tiles are tried only when each tile's short side would be at least this many pixels.
MIN_TILE = 256
TILE_OVERLAP = 0.25
#: A face narrower than this share of its view's long side is looked at again, closer up.
SMALL_IN_VIEW = 0.25
#: The closer look: a square this many times the face's box, scaled to REFINE_SIDE pixels.
REFINE_CONTEXT = 2.5
REFINE_SIDE = 256
#: The confidence a face found in a tile must have when looked at again.
REFINE_CONFIDENCE = 0.75
#: Faces found with less confidence are doubtful: they count only when no view finds a surer one.
SURE = 0.7


@dataclass(frozen=True, slots=True)
class View:
    """An image derived from a still, with the map back: ``original = view / scale - offset``."""

    name: str
    image: np.ndarray
    scale: float
    offset: tuple[float, float]

    def to_original(self, face: Face) -> Face:
        ox, oy = self.offset
        x, y, w, h = face.box
        s = self.scale
        box = (x / s - ox, y / s - oy, w / s, h / s)
        return Face(box, face.keypoints / s - np.array([ox, oy], dtype=np.float32), face.score)


def padded_view(image: np.ndarray, border: str = "replicate") -> View:
    """The image padded by :data:`PAD_FRACTION` of its size on each side, then upscaled with
    bicubic interpolation by up to :data:`MAX_UPSCALE` towards :data:`PADDED_SIDE` pixels (a
    64x64 or 48x48 crop is upscaled 3x).

    ``border``: "replicate" (the edge pixels drawn outwards: view "padded") or "mean" (a flat
    frame of the image's mean grey: view "padded_mean"). A face cut off by its crop (chin and
    forehead outside the picture) smears into long streaks when replicated; a flat frame shows
    where it ends."""
    h, w = image.shape[:2]
    py, px = int(PAD_FRACTION * h), int(PAD_FRACTION * w)
    if border == "replicate":
        padded, name = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_REPLICATE), "padded"
    elif border == "mean":
        value = [round(float(c)) for c in image.reshape(h * w, -1).mean(axis=0)]
        padded, name = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_CONSTANT, value=value), "padded_mean"
    else:
        raise ValueError(f"border must be 'replicate' or 'mean', got {border!r}")
    scale = float(np.clip(PADDED_SIDE / max(padded.shape[:2]), 1.0, MAX_UPSCALE))
    if scale > 1.0:
        padded = cv2.resize(padded, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    return View(name, padded, scale, (float(px), float(py)))


def tile_views(image: np.ndarray, n: int) -> Iterator[View]:
    """``n`` x ``n`` overlapping tiles, each :data:`TILE_OVERLAP` wider than its share."""
    h, w = image.shape[:2]
    th, tw = (min(dim, int(np.ceil(dim / n * (1.0 + TILE_OVERLAP)))) for dim in (h, w))
    for y0 in np.linspace(0, h - th, n).round().astype(int):
        for x0 in np.linspace(0, w - tw, n).round().astype(int):
            yield View(f"tile{n}", image[y0 : y0 + th, x0 : x0 + tw], 1.0, (-float(x0), -float(y0)))


def views(image: np.ndarray) -> Iterator[list[View]]:
    """Groups of views to try in order; the first group that finds a face wins."""
    as_is = View("as_is", image, 1.0, (0.0, 0.0))
    h, w = image.shape[:2]
    if max(h, w) < SMALL_IMAGE:
        yield [padded_view(image)]
        yield [as_is]
    else:
        yield [as_is]
        yield [padded_view(image)]
    yield [padded_view(image, "mean")]
    for n in (2, 3, 4):
        if min(h, w) >= n * MIN_TILE:
            yield list(tile_views(image, n))


def _overlaps(a: Face, b: Face, min_iou: float = 0.3) -> bool:
    # A face cut by a tile edge is found twice: whole in one tile, partly in the next.
    smaller = min(a.box[2] * a.box[3], b.box[2] * b.box[3])
    return iou(a.box, b.box) >= min_iou or (smaller > 0 and intersection(a.box, b.box) / smaller >= 0.6)


def refine(detector: FaceDetector, image: np.ndarray, face: Face, min_score: float = 0.0) -> Face | None:
    """Look again at a face found small in its view: a square of :data:`REFINE_CONTEXT` times its
    box around it, scaled to :data:`REFINE_SIDE` pixels. The detector places the keypoints far
    better when the face fills a good part of its input. Returns None when it does not find the
    face again with at least ``min_score``."""
    x, y, w, h = face.box
    side = max(8, round(REFINE_CONTEXT * max(w, h)))
    x0, y0 = round(x + w / 2.0 - side / 2.0), round(y + h / 2.0 - side / 2.0)
    ih, iw = image.shape[:2]
    # The square, cut from the image and completed with replicated borders where it runs over.
    roi = image[max(y0, 0) : min(y0 + side, ih), max(x0, 0) : min(x0 + side, iw)]
    if roi.size == 0:
        return None
    square = cv2.copyMakeBorder(roi, max(-y0, 0), max(y0 + side - ih, 0), max(-x0, 0), max(x0 + side - iw, 0), cv2.BORDER_REPLICATE)
    scale = REFINE_SIDE / side
    crop = cv2.resize(square, (REFINE_SIDE, REFINE_SIDE), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    view = View("refined", crop, scale, (-float(x0), -float(y0)))
    centre = REFINE_SIDE / 2.0
    near = [f for f in detector.detect(crop) if f.score >= min_score and abs(f.box[0] + f.box[2] / 2 - centre) < REFINE_SIDE / 4 and abs(f.box[1] + f.box[3] / 2 - centre) < REFINE_SIDE / 4]
    if not near:
        return None
    return view.to_original(max(near, key=lambda f: f.score))


def detect_still(detector: FaceDetector, image: np.ndarray) -> tuple[list[Face], str | None]:
    """Faces in one still (``detector`` in IMAGE mode), in the image's own pixels, most
    confident first, and the name of the view that found them (None when none did).

    The first view that finds a sure face wins; when no view does, the first doubtful find."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    # New image sizes make LiteRT print a notice about buffer alignment now and then; it goes
    # to the log at DEBUG instead of the middle of the output.
    with captured_stderr():
        unsure: tuple[list[Face], str] | None = None
        for group in views(image):
            found = _detect_group(detector, image, group)
            if not found:
                continue
            kept: list[Face] = []
            for f in sorted(found, key=lambda f: f.score, reverse=True):
                if not any(_overlaps(f, k) for k in kept):
                    kept.append(f)
            if kept[0].score >= SURE:
                return [f for f in kept if f.score >= SURE], group[0].name
            # Only doubtful faces here: a later view may still find a sure one.
            unsure = unsure or (kept, group[0].name)
    return unsure or ([], None)


def _detect_group(detector: FaceDetector, image: np.ndarray, group: list[View]) -> list[Face]:
    found = []
    for v in group:
        for f in detector.detect(v.image):
            small = f.box[2] < SMALL_IN_VIEW * max(v.image.shape[:2])
            f = v.to_original(f)
            if v.name.startswith("tile"):
                # Dozens of small looks at a photo turn texture into faces now and then
                # (two at 0.56 in a noise picture): a tile's face must be found again, surely.
                f = refine(detector, image, f, REFINE_CONFIDENCE)
            elif small:
                f = refine(detector, image, f) or f
            if f is not None:
                found.append(f)
    return found


__all__ = ["MAX_PHOTO_PIXELS", "PhotoError", "View", "detect_still", "image_size", "padded_view", "read_photo", "tile_views", "views"]
