"""Light a face badly, as an entrance outdoors does: underexposed, or dark against a bright sky.

Both act on aligned 64x64 chips (the run-time crop: eyes on row 16, the face in the middle) and
are deterministic for a seed. :func:`underexposed` darkens the scene by ``stops`` in linear light
(a gamma-2.2 sensor), adds the read noise a high-gain sensor shows, and re-encodes the chip as a
cheap camera's JPEG. :func:`backlit` does the same to the face and puts it against a bright
background (the sky, a lit doorway) that blends in over a soft edge around the face: the camera
exposes for the background, so the face sinks into the dark end of the range. ``gatekeeper eval``
and the card measure both beside the face widths; training can draw them as augmentation.
"""

from __future__ import annotations

import numpy as np

#: The lighting axis of the evaluation: name, then what it does to a chip.
LIGHTINGS = ("dark", "backlit")

#: The face region of a chip for :func:`backlit`: an ellipse (centre row, centre column, half
#: height, half width): the chip is a tight crop, so the sky shows in its corners and above the head.
FACE_ELLIPSE = (38.0, 32.0, 36.0, 29.0)


def _jpeg(chip: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(".jpg", chip, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else chip


def _darken(chips: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Chips (N, 64, 64) in [0, 255] darkened by ``stops`` (N,) in linear light, as floats."""
    linear = (np.asarray(chips, np.float64) / 255.0) ** 2.2
    return 255.0 * (linear * (2.0 ** -stops)[:, None, None]) ** (1 / 2.2)


def _face_mask() -> np.ndarray:
    import cv2

    rows, cols = np.mgrid[0:64, 0:64].astype(np.float64)
    cy, cx, ry, rx = FACE_ELLIPSE
    inside = (((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1.0).astype(np.float64)
    return cv2.GaussianBlur(inside, (0, 0), 4.0)


def underexposed(chips: np.ndarray, seed: int = 0, stops: tuple[float, float] = (2.0, 3.0), noise: float = 5.0, quality: tuple[int, int] = (40, 70)) -> np.ndarray:
    """uint8 chips darkened by ``stops`` (drawn per chip), with sensor noise of standard
    deviation ``noise`` grey levels and JPEG at a quality drawn from ``quality``."""
    rng = np.random.default_rng(seed)
    n = len(chips)
    dark = _darken(chips, rng.uniform(*stops, n)) + rng.normal(0.0, noise, (n, 64, 64))
    out = np.clip(np.rint(dark), 0, 255).astype(np.uint8)
    return np.stack([_jpeg(c, q) for c, q in zip(out, rng.integers(quality[0], quality[1] + 1, n), strict=True)]) if n else out


def backlit(chips: np.ndarray, seed: int = 0, stops: tuple[float, float] = (1.5, 2.5), sky: tuple[float, float] = (215.0, 250.0), noise: float = 4.0, quality: tuple[int, int] = (50, 80)) -> np.ndarray:
    """uint8 chips with the face darkened by ``stops`` against a bright background of a grey
    level drawn from ``sky`` (with a gentle vertical gradient), noise and JPEG as :func:`underexposed`."""
    rng = np.random.default_rng(seed)
    n = len(chips)
    face = _darken(chips, rng.uniform(*stops, n))
    level = rng.uniform(*sky, n)[:, None, None] - np.linspace(0.0, 20.0, 64)[None, :, None] * rng.uniform(0.0, 1.0, n)[:, None, None]
    mask = _face_mask()[None]
    lit = mask * face + (1.0 - mask) * level + rng.normal(0.0, noise, (n, 64, 64))
    out = np.clip(np.rint(lit), 0, 255).astype(np.uint8)
    return np.stack([_jpeg(c, q) for c, q in zip(out, rng.integers(quality[0], quality[1] + 1, n), strict=True)]) if n else out


def underexposed_frame(frame: np.ndarray, rng: np.random.Generator, stops: float = 2.5, noise: float = 6.0, quality: int = 50) -> np.ndarray:
    """A whole camera frame (BGR or grey uint8) as :func:`underexposed` treats a chip: ``stops``
    darker in linear light, read noise of ``noise`` grey levels on every sensor pixel, then the
    camera's JPEG at ``quality``. For replaying labelled footage as a dark entrance would film it."""
    import cv2

    dark = _darken(frame[None], np.array([float(stops)]))[0] + rng.normal(0.0, noise, frame.shape)
    out = np.clip(np.rint(dark), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else out


def relight(chips: np.ndarray, lighting: str, seed: int = 0) -> np.ndarray:
    """The chips under one of :data:`LIGHTINGS`."""
    if lighting == "dark":
        return underexposed(chips, seed)
    if lighting == "backlit":
        return backlit(chips, seed)
    raise ValueError(f"unknown lighting {lighting!r}; expected one of {', '.join(LIGHTINGS)}")


def relight_batch(chips: np.ndarray, rng: np.random.Generator, rate: float) -> np.ndarray:
    """Training augmentation: a share ``rate`` of a uint8 batch underexposed or backlit (half
    each), the rest untouched; a new array."""
    out = np.array(chips, copy=True)
    pick = np.flatnonzero(rng.random(len(out)) < rate)
    if len(pick):
        kind = rng.random(len(pick)) < 0.5
        seed = int(rng.integers(2**31))
        if kind.any():
            out[pick[kind]] = underexposed(out[pick[kind]], seed)
        if (~kind).any():
            out[pick[~kind]] = backlit(out[pick[~kind]], seed + 1)
    return out


__all__ = ["FACE_ELLIPSE", "LIGHTINGS", "backlit", "relight", "relight_batch", "underexposed", "underexposed_frame"]
