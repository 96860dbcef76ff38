"""The augmentations: a covered mouth is "not smiling", any other patch (and dark glasses) keep the
label; the fused warp, the batch JPEG and the input pipeline do what the recipe says."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from gatekeeper.training.augment import (
    EYES_HALF_APART,
    EYES_ROW,
    MOUTH,
    ROTATION_TURNS,
    SHIFT,
    ZOOM,
    batch_augment,
    jpeg_batch,
    occlude,
    sunglasses,
    train_dataset,
    warp,
    warp_matrices,
)


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
    tf.random.set_seed(11)
    n = 400
    # Bright, flat chips: flips, shifts, blur and exposure keep them well above 100; a lens
    # (5-70) or a patch (40-220) over an eye is what makes that eye dark.
    x = tf.constant(np.full((n, 64, 64, 1), 200.0, dtype=np.float32))
    y = tf.ones(n)
    w = tf.ones(n)
    row, left, right = int(EYES_ROW), int(32 - EYES_HALF_APART), int(32 + EYES_HALF_APART)

    def eyes_dark(occlusion_rate: float, glasses_rate: float) -> np.ndarray:
        out, y2, _ = batch_augment(x, y, w, occlusion_rate, glasses_rate)
        assert out.shape == x.shape and y2.shape == y.shape
        out = out.numpy()[..., 0]
        return (out[:, row, left] < 100) & (out[:, row, right] < 100)

    assert not eyes_dark(0.0, 0.0).any()
    assert eyes_dark(0.0, 1.0).all()
    assert 0.2 < eyes_dark(0.0, 0.4).mean() < 0.6


def test_the_warp_is_a_mirror_rotation_zoom_and_shift_within_the_recipe_ranges() -> None:
    tf.random.set_seed(3)
    for flip_rate, sign in ((0.0, 1.0), (1.0, -1.0)):
        m = warp_matrices(2000, flip_rate).numpy()
        det = m[:, 0] * m[:, 4] - m[:, 1] * m[:, 3]
        assert (np.sign(det) == sign).all()  # a mirror reverses orientation, nothing else does
        scale = np.sqrt(np.abs(det))
        assert scale.min() >= 1 - ZOOM - 1e-5 and scale.max() <= 1 + ZOOM + 1e-5
        assert scale.min() < 1 - ZOOM / 2 and scale.max() > 1 + ZOOM / 2  # the range is used
        angle = np.arctan2(m[:, 3], m[:, 4])
        assert np.abs(angle).max() <= 2 * np.pi * ROTATION_TURNS + 1e-5
        # The chip's centre goes to within the shift of the centre.
        cx = m[:, 0] * 31.5 + m[:, 1] * 31.5 + m[:, 2]
        cy = m[:, 3] * 31.5 + m[:, 4] * 31.5 + m[:, 5]
        assert np.abs(cx - 31.5).max() <= SHIFT * 64 + 1e-3 and np.abs(cy - 31.5).max() <= SHIFT * 64 + 1e-3
        assert (m[:, 6:] == 0).all()


def test_a_mirrored_warp_of_a_gradient_runs_the_other_way() -> None:
    tf.random.set_seed(5)
    ramp = np.tile(np.arange(64, dtype=np.float32), (64, 1))[None, :, :, None].repeat(200, axis=0)
    for flip_rate, rising in ((0.0, True), (1.0, False)):
        out = warp(tf.constant(ramp), flip_rate).numpy()[:, 32, 20:44, 0]
        slope = out[:, -1] - out[:, 0]
        assert ((slope > 0) == rising).all()


def test_batch_jpeg_touches_the_share_it_is_given_and_stays_close() -> None:
    rng = np.random.default_rng(1)
    chips = (rng.random((400, 64, 64)) * 60 + np.linspace(60, 180, 64)[None, None, :]).astype(np.uint8)
    assert (jpeg_batch(chips, np.random.default_rng(2), rate=0.0) == chips).all()
    out = jpeg_batch(chips, np.random.default_rng(2), rate=0.3)
    changed = (out != chips).any(axis=(1, 2))
    assert 0.2 < changed.mean() < 0.4
    assert np.abs(out.astype(int) - chips).mean(axis=(1, 2))[changed].max() < 25  # artefacts, not another picture
    assert (jpeg_batch(chips, np.random.default_rng(2), rate=0.3) == out).all()  # seeded


def test_an_epoch_is_a_permutation_cut_into_full_batches() -> None:
    n, batch = 100, 16
    chips = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 64, axis=1).repeat(64, axis=2)
    targets = np.arange(n, dtype=np.float32)
    ds = train_dataset(chips, targets, targets + 1000.0, batch=batch, seed=0, augment=False)
    epochs = []
    for _ in range(2):
        seen = []
        for x, y, w in ds:
            assert x.shape == (batch, 64, 64, 1) and x.dtype == tf.float32
            assert (x.numpy()[:, 0, 0, 0] == y.numpy()).all() and (w.numpy() == y.numpy() + 1000.0).all()  # chip, target and weight stay together
            seen += y.numpy().astype(int).tolist()
        assert len(seen) == len(set(seen)) == (n // batch) * batch
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # reshuffled every epoch
