"""The one function that turns an image and a detected face into the CNN's input.

Training and run time both call :func:`face_chip`, so what the model learned is what it sees.

Geometry (all in the face's own frame, after rotating the eye line level):

* ``e``: midpoint of the two eye keypoints; ``m``: the mouth keypoint.
* face scale ``d = max(|m - e|, |eye_r - eye_l| / 0.9)``. Frontal faces have an inter-ocular
  distance of about 0.9 of the eye-to-mouth distance; taking the larger of the two keeps the
  scale steady when the head turns (the eyes close up) or nods (eyes and mouth close up).
* the chip is a square of side ``CHIP_SIDE_D * d`` (1.8 d), centred horizontally on ``e``,
  its top edge ``CHIP_TOP_D * d`` (0.45 d) above the eye line: eyebrows at the top, the mouth
  (about 1.0 d below the eyes) well inside, the bottom edge just above the chin, both cheeks
  inside. Eyes and cheeks matter as much as the mouth: they separate a
  smile from a grimace or a cry.
* pixels outside the image are filled by replicating the border (``cv2.BORDER_REPLICATE``),
  the same at training and at run time.
* output: 64x64, one channel, uint8 (greyscale, ITU-R 601 luma as ``cv2.COLOR_RGB2GRAY``).

This geometry was matched to the training sets by running the detector over them (see
``gatekeeper.training.data``): a SMILEsmileD crop spans about 1.9 d with its top 0.5 d above the
eyes, and a FER2013 crop 2.6 d with its top 1.0 d above, so both contain the whole chip for a
typical face. A first version (2.0 d, top 0.55 d) ran past the chin of most SMILEsmileD crops and
filled 10-15% of those chips with replicated border, a texture the camera never shows.
"""

from __future__ import annotations

import cv2
import numpy as np

from .detect import Face

__all__ = [
    "CHIP_SIZE",
    "GEOMETRY",
    "chip_from_keypoints",
    "chip_transform",
    "face_chip",
]

CHIP_SIZE = 64
CHIP_SIDE_D = 1.8
CHIP_TOP_D = 0.45
IOD_TO_D = 0.9

#: Written into the model card so a model is never run on chips cut another way.
GEOMETRY = {
    "version": 1,
    "size": CHIP_SIZE,
    "channels": 1,
    "side_d": CHIP_SIDE_D,
    "top_d": CHIP_TOP_D,
    "iod_to_d": IOD_TO_D,
    "anchor": "eyes (level), scale max(eye-mouth, iod/0.9)",
    "border": "replicate",
}


def chip_transform(eye_right: np.ndarray, eye_left: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """Return the 2x3 affine matrix that maps image pixels onto the 64x64 chip.

    Keypoints are (x, y) in pixels. ``eye_right`` is the subject's right eye, which appears on
    the left of an unmirrored image. The order matters: swapped eyes turn the chip upside down.
    """
    eye_right = np.asarray(eye_right, dtype=np.float64)
    eye_left = np.asarray(eye_left, dtype=np.float64)
    mouth = np.asarray(mouth, dtype=np.float64)
    e = (eye_right + eye_left) / 2.0
    eye_vec = eye_left - eye_right
    iod = float(np.hypot(*eye_vec))
    emd = float(np.hypot(*(mouth - e)))
    d = max(emd, iod / IOD_TO_D, 1e-3)
    # Roll: the angle of the eye line. A face seen upside down is not a gate customer; the
    # detector does not find those anyway.
    angle = np.arctan2(eye_vec[1], eye_vec[0]) if iod > 1e-6 else 0.0
    cos, sin = np.cos(angle), np.sin(angle)
    scale = CHIP_SIZE / (CHIP_SIDE_D * d)
    # Image -> face frame: translate e to origin, rotate by -angle, scale, then shift so that e
    # lands at (size/2, top*scale*d).
    rot = np.array([[cos, sin], [-sin, cos]]) * scale
    target = np.array([CHIP_SIZE / 2.0, CHIP_TOP_D * d * scale])
    offset = target - rot @ e
    return np.hstack([rot, offset[:, None]]).astype(np.float64)


def face_chip(image: np.ndarray, face: Face) -> np.ndarray:
    """Cut the aligned 64x64 greyscale chip of ``face`` out of ``image``.

    ``image`` is HxWx3 RGB or HxW greyscale, uint8. Returns a (64, 64) uint8 array.

    >>> chip = face_chip(frame.image, faces[0])  # doctest: +SKIP
    >>> chip.shape
    (64, 64)
    """
    return chip_from_keypoints(image, face.keypoints)


def chip_from_keypoints(image: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """:func:`face_chip` for a bare (6, 2) keypoint array in pixels (detector order)."""
    # Warp at twice the size, then shrink with area averaging: a face usually spans far more
    # than 64 pixels, and a plain bilinear warp would alias (moire on glasses, teeth).
    m = chip_transform(keypoints[0], keypoints[1], keypoints[3])
    m[:, :] *= _OVERSAMPLE
    big = _OVERSAMPLE * CHIP_SIZE
    image, m = _shrink_large_face(image, m, big)
    chip = cv2.warpAffine(
        image, m, (big, big), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    if chip.ndim == 3:
        chip = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)
    return cv2.resize(chip, (CHIP_SIZE, CHIP_SIZE), interpolation=cv2.INTER_AREA)


def _shrink_large_face(image: np.ndarray, m: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """For a face far larger than the warp (a close-up photo), area-average the face's region
    down to the warp's scale first: bilinear sampling at a step of several pixels aliases.
    Returns the image and transform to warp with (unchanged for faces of camera size)."""
    scale = float(np.hypot(m[0, 0], m[0, 1]))
    if scale >= 0.5:
        return image, m
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [side, 0, 1], [0, side, 1], [side, side, 1]], dtype=np.float64).T
    xs, ys = inv @ corners
    h, w = image.shape[:2]
    x0, y0 = max(int(np.floor(xs.min())) - 2, 0), max(int(np.floor(ys.min())) - 2, 0)
    x1, y1 = min(int(np.ceil(xs.max())) + 2, w), min(int(np.ceil(ys.max())) + 2, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return image, m
    roi = image[y0:y1, x0:x1]
    small = cv2.resize(roi, (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))), interpolation=cv2.INTER_AREA)
    fx, fy = small.shape[1] / (x1 - x0), small.shape[0] / (y1 - y0)
    # chip <- image is m; image <- small is x = x0 + (u + 0.5) / fx - 0.5 (pixel centres, as
    # cv2.resize maps them), likewise for y.
    back = np.array([[1.0 / fx, 0.0, x0 + 0.5 / fx - 0.5], [0.0, 1.0 / fy, y0 + 0.5 / fy - 0.5], [0.0, 0.0, 1.0]])
    return small, m @ back


_OVERSAMPLE = 2
