"""The occlusion augmentations: a covered mouth is "not smiling", any other patch (and dark
glasses) keep the label."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from gatekeeper.training.train import EYES_HALF_APART, EYES_ROW, MOUTH, occlude, sunglasses


def test_only_chips_with_a_covered_mouth_are_relabelled() -> None:
    tf.random.set_seed(7)
    n = 4000
    x = np.full((n, 64, 64, 1), 1000.0, dtype=np.float32)  # out of the patch tone range: a changed pixel is patch
    y = np.ones(n, dtype=np.float32)
    x2, y2 = occlude(tf.constant(x), tf.constant(y), rate=0.5)
    patch = x2.numpy()[..., 0] != 1000.0
    y2 = y2.numpy()
    r0, r1, c0, c1 = (int(v) for v in MOUTH)
    covered = patch[:, r0:r1, c0:c1].mean(axis=(1, 2))
    assert set(np.unique(y2)) <= {0.0, 1.0}
    assert np.array_equal(y2 == 0, covered >= 0.6)
    # Both kinds occur often enough to teach something: patched but still smiling, and covered.
    patched = patch.any(axis=(1, 2))
    assert 0.4 < patched.mean() < 0.6
    assert (y2 == 0).sum() > 0.05 * n and ((y2 == 1) & patched).sum() > 0.2 * n


def test_negatives_stay_negative() -> None:
    x = np.zeros((500, 64, 64, 1), dtype=np.float32)
    _, y2 = occlude(tf.constant(x), tf.constant(np.zeros(500, dtype=np.float32)), rate=1.0)
    assert not y2.numpy().any()


def test_sunglasses_cover_both_eyes_and_nothing_below_the_cheeks() -> None:
    tf.random.set_seed(3)
    n = 2000
    x = np.full((n, 64, 64, 1), 1000.0, dtype=np.float32)
    dark = sunglasses(tf.constant(x), rate=0.3).numpy()[..., 0]
    worn = (dark != 1000.0).any(axis=(1, 2))
    assert 0.25 < worn.mean() < 0.35
    row, left, right = int(EYES_ROW), int(32 - EYES_HALF_APART), int(32 + EYES_HALF_APART)
    assert (dark[worn][:, row, left] < 80).all() and (dark[worn][:, row, right] < 80).all()
    assert (dark[:, 28:, :] == 1000.0).all()  # the mouth and the lower cheeks stay visible
    assert (dark[~worn] == 1000.0).all()


def test_the_training_pipeline_applies_the_rates_it_is_given() -> None:
    """`--occlusion-rate` and `--glasses-rate` reach the batch augmentation."""
    from gatekeeper.training.train import _augment_fn

    tf.random.set_seed(11)
    n = 400
    # Bright, flat chips: flips, shifts, blur and exposure keep them well above 100; a lens
    # (5-70) or a patch (40-220) over an eye is what makes that eye dark.
    x = tf.constant(np.full((n, 64, 64, 1), 200.0, dtype=np.float32))
    y = tf.ones(n)
    w = tf.ones(n)
    row, left, right = int(EYES_ROW), int(32 - EYES_HALF_APART), int(32 + EYES_HALF_APART)

    def eyes_dark(occlusion_rate: float, glasses_rate: float) -> np.ndarray:
        _, batch_aug = _augment_fn(5, occlusion_rate, glasses_rate)
        out, y2, _ = batch_aug(x, y, w)
        assert out.shape == x.shape and y2.shape == y.shape
        out = out.numpy()[..., 0]
        return (out[:, row, left] < 100) & (out[:, row, right] < 100)

    assert not eyes_dark(0.0, 0.0).any()
    assert eyes_dark(0.0, 1.0).all()
    assert 0.2 < eyes_dark(0.0, 0.4).mean() < 0.6
