"""Training augmentation and the training input pipeline, built to cost little beside the step.

The recipe's augmentation is unchanged in what it does to a chip (a cheap camera's JPEG, a
mirror, a small rotation, zoom and shift, a distant or defocused face, exposure, sensor noise, a
hand over the face, dark glasses); what changed is how it is computed, because on a 2-core
machine every millisecond spent here is taken from the training step (``scripts/train_speed.py``
measures both):

* the chips stay uint8 in one tensor and each batch is gathered by index from a per-epoch
  permutation, instead of a shuffle buffer that copies every float chip once per epoch;
* JPEG artefacts are made by OpenCV on the chips of the batch that get them, in one call per
  batch, instead of one TensorFlow op and one ``tf.cond`` per chip;
* the mirror, the rotation, the zoom and the shift are one affine warp per chip (one bilinear
  resampling, one op for the batch) instead of three Keras layers that resampled three times;
* the low-resolution round trip is computed for the chips that get it only;
* one noise field per batch serves the sensor noise and the texture of patches and lenses.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .lighting import relight_batch

#: Where the mouth lies in a chip (rows, then columns, pixels): below the eyes (row 16) by
#: at most d, centred. Used by the occlusion augmentation.
MOUTH = (42.0, 56.0, 20.0, 44.0)

#: Where the eyes lie in a chip: on row 16 (0.45 d below the top), 16 pixels either side of the
#: centre (the inter-ocular distance is 0.9 d, d = 64 / 1.8 pixels).
EYES_ROW, EYES_HALF_APART = 16.0, 16.0

#: Geometric ranges: rotation up to +-0.03 of a turn (+-10.8 degrees), zoom +-10%, shift +-6% of
#: the side in each direction; the same ranges as the Keras layers of the earlier recipe.
ROTATION_TURNS, ZOOM, SHIFT = 0.03, 0.1, 0.06

#: JPEG artefacts: the share of chips re-encoded, and the quality range.
JPEG_RATE, JPEG_QUALITY = 0.3, (25, 90)


def jpeg_batch(chips: np.ndarray, rng: np.random.Generator, rate: float = JPEG_RATE, quality: tuple[int, int] = JPEG_QUALITY) -> np.ndarray:
    """A share ``rate`` of a batch of uint8 chips (N, 64, 64) re-encoded as JPEG at a quality drawn
    per chip from ``quality`` (inclusive low, exclusive high), the rest untouched; a new array."""
    import cv2

    out = np.array(chips, copy=True)
    for i in np.flatnonzero(rng.random(len(out)) < rate):
        q = int(rng.integers(quality[0], quality[1]))
        ok, buf = cv2.imencode(".jpg", out[i], [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out[i] = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return out


def _chip_grid():
    """Row and column indices of a chip, shaped to broadcast against a (batch, 64, 64, 1) tensor."""
    import tensorflow as tf

    rows = tf.reshape(tf.range(64, dtype=tf.float32), (1, 64, 1, 1))
    cols = tf.reshape(tf.range(64, dtype=tf.float32), (1, 1, 64, 1))
    return rows, cols


def occlude(x, y, rate: float = 0.2, noise=None):
    """Flat patches over a share ``rate`` of a batch of chips; mouth-covered chips become "not smiling".

    ``noise``: a standard normal field of the batch's shape for the patch's texture (drawn here
    when not given).
    """
    import tensorflow as tf

    # A hand, a sleeve or a microphone in front of the face: a flat patch,
    # half of them over the mouth. A smile the camera cannot see must not open the gate, so a
    # chip whose mouth is mostly covered becomes "not smiling"; elsewhere the label stands and
    # the model learns to use what is left (eyes, cheeks).
    b = tf.shape(x)[0]
    shape = (b, 1, 1, 1)
    hh = tf.random.uniform(shape, 10.0, 26.0)
    ww = tf.random.uniform(shape, 12.0, 34.0)
    at_mouth = tf.random.uniform(shape) < 0.5
    # Top-left corner, from a centre drawn in the mouth box or anywhere.
    cy = tf.where(at_mouth, tf.random.uniform(shape, MOUTH[0], MOUTH[1]), tf.random.uniform(shape, 0.0, 64.0)) - hh / 2.0
    cx = tf.where(at_mouth, tf.random.uniform(shape, MOUTH[2], MOUTH[3]), tf.random.uniform(shape, 0.0, 64.0)) - ww / 2.0
    rows, cols = _chip_grid()
    patch = (rows >= cy) & (rows < cy + hh) & (cols >= cx) & (cols < cx + ww)
    patch &= tf.random.uniform(shape) < rate
    if noise is None:
        noise = tf.random.normal(tf.shape(x))
    tone = tf.random.uniform(shape, 40.0, 220.0) + noise * 4.0
    x = tf.where(patch, tone, x)
    in_mouth = (rows >= MOUTH[0]) & (rows < MOUTH[1]) & (cols >= MOUTH[2]) & (cols < MOUTH[3])
    covered = tf.reduce_sum(tf.cast(patch & in_mouth, tf.float32), axis=[1, 2, 3]) / float((MOUTH[1] - MOUTH[0]) * (MOUTH[3] - MOUTH[2]))
    y = tf.where(covered >= 0.6, tf.zeros_like(y), y)
    return x, y


def sunglasses(x, rate: float = 0.08, noise=None):
    """Dark glasses on a share ``rate`` of a batch of chips; the label stands.

    Sunglasses are common in a queue outside: a smile must still be seen from the mouth and
    cheeks, and a straight face must not become a smile because the eyes are hidden. Two dark
    lenses (ellipses, their size, spacing and height drawn at random) and a bridge.
    """
    import tensorflow as tf

    b = tf.shape(x)[0]
    shape = (b, 1, 1, 1)
    cy = EYES_ROW + tf.random.uniform(shape, -2.5, 2.5)
    apart = EYES_HALF_APART + tf.random.uniform(shape, -2.0, 2.0)
    rx, ry = tf.random.uniform(shape, 8.0, 12.0), tf.random.uniform(shape, 5.0, 8.0)
    rows, cols = _chip_grid()

    def lens(cx):
        return tf.square((cols - cx) / rx) + tf.square((rows - cy) / ry) <= 1.0

    bridge = (tf.abs(rows - (cy - 0.4 * ry)) < 1.2) & (tf.abs(cols - 32.0) < apart)
    glasses = (lens(32.0 - apart) | lens(32.0 + apart) | bridge) & (tf.random.uniform(shape) < rate)
    if noise is None:
        noise = tf.random.normal(tf.shape(x))
    tone = tf.random.uniform(shape, 5.0, 70.0) + noise * 3.0
    return tf.where(glasses, tone, x)


def warp_matrices(b, flip_rate: float = 0.5):
    """Per-chip affine maps (output pixel -> input pixel) as the 8 projective parameters that
    ``ImageProjectiveTransformV3`` takes: a mirror on a share ``flip_rate``, then a rotation,
    a zoom and a shift, all about the chip's centre."""
    import tensorflow as tf

    c = 31.5  # the centre of a 64-pixel side, in pixel coordinates
    theta = tf.random.uniform((b,), -2.0 * math.pi * ROTATION_TURNS, 2.0 * math.pi * ROTATION_TURNS)
    # Zoom as the Keras layer drew it: the sampled window is (1 + z) times the chip, z in +-ZOOM.
    s = 1.0 + tf.random.uniform((b,), -ZOOM, ZOOM)
    tx = tf.random.uniform((b,), -SHIFT, SHIFT) * 64.0
    ty = tf.random.uniform((b,), -SHIFT, SHIFT) * 64.0
    m = tf.where(tf.random.uniform((b,)) < flip_rate, -1.0, 1.0)  # mirror: x' = -x about the centre
    cos, sin = tf.cos(theta) * s, tf.sin(theta) * s
    # input = R(theta) * S * (mirror(output - c)) + c + t
    a0, a1 = cos * m, -sin
    b0, b1 = sin * m, cos
    a2 = c + tx - a0 * c - a1 * c
    b2 = c + ty - b0 * c - b1 * c
    zeros = tf.zeros((b,))
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def warp(x, flip_rate: float = 0.5):
    """One bilinear resampling of a (batch, 64, 64, 1) float batch: mirror, rotation, zoom, shift."""
    import tensorflow as tf

    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x,
        transforms=warp_matrices(tf.shape(x)[0], flip_rate),
        output_shape=tf.shape(x)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )


def lowres(x, rate: float):
    """A share ``rate`` of the batch taken down to 18-48 px (one size per batch) and back up."""
    import tensorflow as tf

    pick = tf.random.uniform((tf.shape(x)[0],)) < rate
    where = tf.where(pick)
    small = tf.random.uniform((), 18, 49, dtype=tf.int32)
    sub = tf.gather_nd(x, where)
    sub = tf.image.resize(tf.image.resize(sub, [small, small], antialias=True), [64, 64])
    return tf.tensor_scatter_nd_update(x, where, sub)


def batch_augment(x, y, w, occlusion_rate: float, glasses_rate: float, lowres_rate: float = 0.3):
    """Everything but JPEG, on a float (batch, 64, 64, 1) batch in [0, 255]; returns (x, y, w)."""
    import tensorflow as tf

    b = tf.shape(x)[0]
    x = warp(x)
    # A distant or cheap camera (faces 20-30 px wide) and defocus.
    x = lowres(x, lowres_rate)
    # Exposure: gamma, contrast, brightness.
    g = tf.exp(tf.random.normal((b, 1, 1, 1), stddev=0.25))
    x = 255.0 * tf.pow(tf.clip_by_value(x / 255.0, 1e-4, 1.0), g)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    c = tf.exp(tf.random.normal((b, 1, 1, 1), stddev=0.2))
    x = (x - mean) * c + mean + tf.random.normal((b, 1, 1, 1), stddev=20.0)
    # Sensor noise; the same field textures the patches and the lenses (each covers few pixels).
    noise = tf.random.normal(tf.shape(x))
    x = x + noise * tf.random.uniform((b, 1, 1, 1), 0.0, 6.0)
    x, y = occlude(x, y, occlusion_rate, noise=noise)
    x = sunglasses(x, glasses_rate, noise=noise)
    return tf.clip_by_value(x, 0.0, 255.0), y, w


def train_dataset(
    chips: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    *,
    batch: int,
    seed: int,
    augment: bool = True,
    occlusion_rate: float = 0.2,
    glasses_rate: float = 0.08,
    lowres_rate: float = 0.3,
    lighting_rate: float = 0.0,
    sources: np.ndarray | None = None,
    expressions: np.ndarray | None = None,
    expression_weights: np.ndarray | None = None,
    soft_expressions: np.ndarray | None = None,
) -> Any:
    """Batches of (float chip (B, 64, 64, 1) in [0, 255], target, weight), reshuffled every epoch.

    With ``sources`` (each chip's dataset index), batches are instead
    ({"chip": chip, "source": (B, 1)}, (B, 4)) for :func:`~gatekeeper.training.models.training_model`:
    the target, the weight, the expression class (-1: none) and the expression's weight, packed
    for :class:`~gatekeeper.training.models.JointLoss` (the augmentation's label changes reach the target),
    then, with ``soft_expressions`` (N, classes), a teacher's probabilities of the expressions.

    ``chips``: uint8 (N, 64, 64). Each epoch is a permutation of the chips cut into full batches
    (the remainder is dropped, as before). JPEG runs in NumPy/OpenCV on the gathered batch (one
    call per batch, off the training threads while the GIL is free), the rest as TensorFlow ops
    on the batch; two batches are prepared ahead of the step.
    """
    import tensorflow as tf

    chips = np.ascontiguousarray(chips, dtype=np.uint8)
    n = len(chips)
    rng = np.random.default_rng(seed)
    targets_t = tf.constant(np.asarray(targets, np.float32))
    weights_t = tf.constant(np.asarray(weights, np.float32))

    def gather(idx: np.ndarray) -> np.ndarray:
        out = chips[idx]
        if augment and lighting_rate > 0:
            # Dark and backlit faces first: their own noise and JPEG, then the batch's.
            out = relight_batch(out, rng, lighting_rate)
        return jpeg_batch(out, rng) if augment else out

    def load(idx):
        x = tf.numpy_function(gather, [idx], tf.uint8, stateful=True)
        x = tf.reshape(tf.cast(x, tf.float32), (batch, 64, 64, 1))
        return x, tf.gather(targets_t, idx), tf.gather(weights_t, idx), idx

    ds = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(batch, drop_remainder=True)
    ds = ds.map(load, num_parallel_calls=1)
    if augment:
        ds = ds.map(lambda x, y, w, idx: (*batch_augment(x, y, w, occlusion_rate, glasses_rate, lowres_rate), idx), num_parallel_calls=1)
    if sources is None:
        ds = ds.map(lambda x, y, w, idx: (x, y, w), num_parallel_calls=1)
    else:
        sources_t = tf.constant(np.asarray(sources, np.int32).reshape(-1, 1))
        expr = np.full(n, -1.0, np.float32) if expressions is None else np.asarray(expressions, np.float32)
        expr_w = np.zeros(n, np.float32) if expression_weights is None else np.asarray(expression_weights, np.float32)
        expr_t, expr_w_t = tf.constant(expr), tf.constant(expr_w)
        soft_t = None if soft_expressions is None else tf.constant(np.asarray(soft_expressions, np.float32))

        def pack(x, y, w, idx):
            packed = tf.stack([y, w, tf.gather(expr_t, idx), tf.gather(expr_w_t, idx)], axis=1)
            if soft_t is not None:
                packed = tf.concat([packed, tf.gather(soft_t, idx)], axis=1)
            return {"chip": x, "source": tf.gather(sources_t, idx)}, packed

        ds = ds.map(pack, num_parallel_calls=1)
    options = tf.data.Options()
    # One thread for the whole input pipeline: the step has the rest; more only fight for 2 cores.
    options.threading.private_threadpool_size = 1
    options.autotune.enabled = False
    return ds.with_options(options).prefetch(2)


__all__ = ["EYES_HALF_APART", "EYES_ROW", "MOUTH", "batch_augment", "jpeg_batch", "lowres", "occlude", "sunglasses", "train_dataset", "warp", "warp_matrices"]
