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

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from ._native import captured_stderr
from .detect import Face, FaceDetector

#: File names taken for photos when a folder is scanned (``gatekeeper score``, class-folder
#: datasets); OpenCV reads all of them (a GIF's first frame).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})

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


def _overlaps(a: Face, b: Face, iou: float = 0.3) -> bool:
    ax, ay, aw, ah = a.box
    bx, by, bw, bh = b.box
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    # A face cut by a tile edge is found twice: whole in one tile, partly in the next.
    smaller = min(aw * ah, bw * bh)
    return union > 0 and (inter / union >= iou or (smaller > 0 and inter / smaller >= 0.6))


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


__all__ = ["View", "detect_still", "padded_view", "tile_views", "views"]
