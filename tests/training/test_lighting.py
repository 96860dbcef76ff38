"""The lighting axis: underexposed and backlit faces, for evaluation and augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from gatekeeper.training.lighting import LIGHTINGS, backlit, relight, relight_batch, underexposed, underexposed_frame


@pytest.fixture
def chips() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.clip(rng.normal(140, 30, (6, 64, 64)), 0, 255)
    return base.astype(np.uint8)


def test_underexposed_darkens_by_stops_adds_noise_and_is_repeatable(chips: np.ndarray) -> None:
    dark = underexposed(chips, seed=3)
    assert dark.dtype == np.uint8 and dark.shape == chips.shape
    # 2-3 stops in linear light: 0.39-0.53 of the grey level in gamma space.
    ratio = dark.mean(axis=(1, 2)) / chips.mean(axis=(1, 2))
    assert ((ratio > 0.33) & (ratio < 0.6)).all(), ratio
    assert np.array_equal(dark, underexposed(chips, seed=3))
    assert not np.array_equal(dark, underexposed(chips, seed=4))


def test_backlit_puts_a_dark_face_against_a_bright_sky(chips: np.ndarray) -> None:
    lit = backlit(chips, seed=1)
    corners = np.concatenate([lit[:, :4, :4].reshape(len(lit), -1), lit[:, :4, -4:].reshape(len(lit), -1)], axis=1)
    assert (corners.mean(axis=1) > 190).all()
    centre = lit[:, 28:44, 24:40].mean(axis=(1, 2))
    assert (centre < 0.7 * chips[:, 28:44, 24:40].mean(axis=(1, 2))).all()


def test_relight_names_its_lightings_and_refuses_others(chips: np.ndarray) -> None:
    assert LIGHTINGS == ("dark", "backlit")
    assert np.array_equal(relight(chips, "dark", 2), underexposed(chips, 2))
    assert np.array_equal(relight(chips, "backlit", 2), backlit(chips, 2))
    with pytest.raises(ValueError, match="expected one of dark, backlit"):
        relight(chips, "night", 0)


def test_the_augmentation_relights_about_its_share_and_leaves_the_rest(chips: np.ndarray) -> None:
    many = np.repeat(chips, 200, axis=0)
    out = relight_batch(many, np.random.default_rng(5), 0.25)
    changed = (out != many).any(axis=(1, 2))
    assert 0.18 < changed.mean() < 0.32
    assert np.array_equal(relight_batch(many, np.random.default_rng(5), 0.0), many)


def test_a_whole_frame_is_underexposed_as_a_chip_is_noise_and_jpeg_included() -> None:
    rows, cols = np.mgrid[0:120, 0:160]
    frame = np.stack([100 + rows // 2, 120 + cols // 4, 180 - rows // 3], axis=-1).astype(np.uint8)  # smooth, as a scene is
    dark = underexposed_frame(frame, np.random.default_rng(1), stops=2.5, noise=6.0, quality=50)
    assert dark.dtype == np.uint8 and dark.shape == frame.shape
    # 2.5 stops in linear light: 2 ** (-2.5 / 2.2) = 0.455 of the grey level in gamma space.
    assert abs(dark.mean() / frame.mean() - 0.455) < 0.03
    quiet = underexposed_frame(frame, np.random.default_rng(1), stops=2.5, noise=0.0, quality=50)
    assert 1.0 < (dark.astype(float) - quiet).std() < 6.0  # the read noise, less what JPEG smooths away
    assert np.array_equal(dark, underexposed_frame(frame, np.random.default_rng(1), stops=2.5, noise=6.0, quality=50))
    same = underexposed_frame(frame, np.random.default_rng(1), stops=0.0, noise=0.0, quality=100)
    assert np.abs(same.astype(int) - frame).mean() < 1.0  # no stops, no noise, best JPEG: the frame back
