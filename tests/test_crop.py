"""The aligned face chip: geometry of the 2x3 matrix and the pixels it cuts, on synthetic faces
whose eyes and mouth are where we drew them."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from gatekeeper.crop import (
    CHIP_SIDE_D,
    CHIP_SIZE,
    CHIP_TOP_D,
    GEOMETRY,
    IOD_TO_D,
    chip_from_keypoints,
    chip_transform,
    face_chip,
)
from gatekeeper.detect import Face

ANCHOR = np.array([CHIP_SIZE / 2, CHIP_TOP_D * CHIP_SIZE / CHIP_SIDE_D])  # where the eye midpoint must land

# A cartoon face in its own frame (x right, y down), origin at the eye midpoint, in units of one
# pixel at scale 1: detector keypoint order eye_right, eye_left, nose, mouth, ear_right, ear_left.
# The subject's right eye is on the image's left.
CANONICAL = np.array([[-32.0, 0.0], [32.0, 0.0], [0.0, 38.0], [0.0, 72.0], [-75.0, 12.0], [75.0, 12.0]])


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) image points through a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ m[:, :2].T + m[:, 2]


def rotation(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def keypoints(centre: tuple[float, float] = (320.0, 240.0), scale: float = 1.0, roll: float = 0.0) -> np.ndarray:
    """CANONICAL scaled, rolled by ``roll`` degrees (clockwise on screen) and moved to ``centre``."""
    return CANONICAL * scale @ rotation(roll).T + np.asarray(centre)


def draw_face(scale: float, roll: float = 0.0, size: tuple[int, int] = (480, 640)) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image (H, W) = ``size`` of a cartoon face with its eye midpoint at the centre.

    Drawn upright at ``scale`` with anti-aliased shapes, then rotated about the eye midpoint by
    ``roll`` degrees; returns the image and the (6, 2) keypoints where the face really is.
    """
    h, w = size
    centre = (w / 2, h / 2)
    img = np.full((h, w, 3), (70, 90, 110), np.uint8)

    def p(x: float, y: float) -> tuple[int, int]:
        # cv2 drawing with shift=4: sub-pixel coordinates in 1/16 px, so both sizes are drawn exactly
        return round((centre[0] + x * scale) * 16), round((centre[1] + y * scale) * 16)

    def r(v: float) -> int:
        return round(v * scale * 16)

    def th(v: float) -> int:  # line thickness is in whole pixels (shift does not apply to it)
        return max(1, round(v * scale))

    aa, sh = cv2.LINE_AA, 4
    cv2.ellipse(img, p(0, 25), (r(80), r(110)), 0, 0, 360, (215, 180, 160), -1, aa, sh)  # face
    for side in (-1, 1):
        cv2.ellipse(img, p(side * 32, 0), (r(12), r(7)), 0, 0, 360, (250, 250, 250), -1, aa, sh)  # eye white
        cv2.circle(img, p(side * 32, 0), r(5), (30, 20, 10), -1, aa, sh)  # iris
        cv2.line(img, p(side * 48, -22), p(side * 16, -26), (60, 40, 30), th(4), aa, sh)  # eyebrow
    cv2.line(img, p(0, 5), p(-6, 38), (150, 110, 100), th(3), aa, sh)  # nose
    cv2.ellipse(img, p(0, 62), (r(30), r(14)), 0, 10, 170, (120, 30, 40), th(5), aa, sh)  # smiling mouth
    kps = keypoints(centre, scale)
    if roll:
        m = cv2.getRotationMatrix2D(centre, -roll, 1.0)  # OpenCV: positive angle = counter-clockwise on screen
        img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        kps = apply(m, kps)
    return img, kps


# -- the matrix ----------------------------------------------------------------------------------

FACES = [
    pytest.param((320.0, 240.0), 1.0, 0.0, id="upright"),
    pytest.param((100.5, 80.25), 0.4, 0.0, id="small, off centre"),
    pytest.param((900.0, 700.0), 3.0, 12.0, id="large, rolled"),
    pytest.param((5.0, 5.0), 1.0, -20.0, id="at the image corner"),
]


@pytest.mark.parametrize(("centre", "scale", "roll"), FACES)
def test_eye_midpoint_lands_at_the_anchor(centre: tuple[float, float], scale: float, roll: float) -> None:
    kps = keypoints(centre, scale, roll)
    m = chip_transform(kps[0], kps[1], kps[3])
    assert m.shape == (2, 3)
    assert apply(m, [(kps[0] + kps[1]) / 2]) == pytest.approx(np.array([ANCHOR]), abs=1e-9)
    assert tuple(ANCHOR) == (32.0, 16.0)


@pytest.mark.parametrize("roll", [-30, -20, -10, -5, 0, 5, 10, 20, 30])
def test_eye_line_is_level_and_mouth_below_for_rolled_faces(roll: float) -> None:
    kps = keypoints(roll=roll, scale=1.5)
    m = chip_transform(kps[0], kps[1], kps[3])
    eye_r, eye_l, mouth = apply(m, kps[[0, 1, 3]])
    assert eye_r[1] == pytest.approx(eye_l[1], abs=1e-9)  # level
    assert eye_r[0] < eye_l[0]  # not mirrored: the subject's right eye stays on the left
    scale = CHIP_SIZE / (CHIP_SIDE_D * 72.0 * 1.5)
    assert mouth == pytest.approx(ANCHOR + np.array([0.0, 72.0 * 1.5 * scale]), abs=1e-9)  # straight below the eyes


@pytest.mark.parametrize(
    ("iod", "emd", "d"),
    [
        pytest.param(60.0, 72.0, 72.0, id="eye-mouth decides (frontal)"),
        pytest.param(90.0, 60.0, 100.0, id="iod/0.9 decides (nodding: mouth close to the eyes)"),
        pytest.param(63.0, 70.0, 70.0, id="both equal"),
        pytest.param(30.0, 80.0, 80.0, id="turned head: eyes close together"),
        pytest.param(0.0, 50.0, 50.0, id="eyes on one point"),
    ],
)
@pytest.mark.parametrize("roll", [0.0, 25.0])
def test_scale_is_64_over_side_times_d(iod: float, emd: float, d: float, roll: float) -> None:
    rot = rotation(roll)
    origin = np.array([200.0, 150.0])
    eye_r, eye_l, mouth = (origin + rot @ np.array(v) for v in ([-iod / 2, 0.0], [iod / 2, 0.0], [0.0, emd]))
    m = chip_transform(eye_r, eye_l, mouth)
    assert d == pytest.approx(max(emd, iod / IOD_TO_D))
    singular = np.linalg.svd(m[:, :2], compute_uv=False)
    assert singular == pytest.approx([CHIP_SIZE / (CHIP_SIDE_D * d)] * 2)  # uniform scale, no shear
    assert np.linalg.det(m[:, :2]) > 0  # a rotation, never a mirror


def test_degenerate_keypoints_give_a_finite_transform() -> None:
    point = np.array([50.0, 50.0])
    m = chip_transform(point, point, point)
    assert np.all(np.isfinite(m))
    chip = chip_from_keypoints(np.full((100, 100), 77, np.uint8), np.tile(point, (6, 1)))
    assert chip.shape == (CHIP_SIZE, CHIP_SIZE)


# -- the pixels ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [pytest.param((480, 640, 3), id="RGB"), pytest.param((480, 640), id="grey"), pytest.param((37, 29, 3), id="tiny RGB")],
)
def test_chip_shape_and_dtype(shape: tuple[int, ...]) -> None:
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    chip = chip_from_keypoints(image, keypoints((shape[1] / 2, shape[0] / 2), scale=0.5))
    assert chip.shape == (CHIP_SIZE, CHIP_SIZE)
    assert chip.dtype == np.uint8


def test_grey_and_rgb_of_the_same_picture_give_the_same_chip() -> None:
    rgb, kps = draw_face(1.0, roll=10.0)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    a = chip_from_keypoints(grey, kps).astype(int)
    b = chip_from_keypoints(np.dstack([grey] * 3), kps).astype(int)
    assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize(
    ("rgb", "luma"),
    [
        pytest.param((255, 0, 0), 76, id="red"),
        pytest.param((0, 255, 0), 150, id="green"),
        pytest.param((0, 0, 255), 29, id="blue"),
    ],
)
def test_rgb_input_is_read_as_rgb_with_601_luma(rgb: tuple[int, int, int], luma: int) -> None:
    image = np.full((200, 200, 3), rgb, np.uint8)
    chip = chip_from_keypoints(image, keypoints((100, 80), scale=0.5))
    assert np.all(np.abs(chip.astype(int) - luma) <= 1)


@pytest.mark.parametrize(
    "centre",
    [
        pytest.param((10.0, 10.0), id="top-left corner"),
        pytest.param((630.0, 470.0), id="bottom-right corner"),
        pytest.param((0.0, 240.0), id="on the left edge"),
        pytest.param((-40.0, 500.0), id="partly outside the image"),
    ],
)
def test_pixels_outside_the_image_replicate_the_border(centre: tuple[float, float]) -> None:
    # a bright gradient with no dark pixel: a constant (black) border would show as zeros
    yy, xx = np.mgrid[0:480, 0:640]
    image = (60 + (xx + yy) * 140 // (480 + 640)).astype(np.uint8)
    chip = chip_from_keypoints(np.dstack([image] * 3), keypoints(centre, scale=1.0))
    assert chip.min() >= 60
    assert chip.max() <= 200


def test_the_cut_follows_the_matrix() -> None:
    """A bright dot drawn at the mouth keypoint shows up where the matrix sends the mouth."""
    kps = keypoints((300.0, 200.0), scale=1.2, roll=17.0)
    image = np.zeros((480, 640), np.uint8)
    cv2.circle(image, (round(kps[3][0]), round(kps[3][1])), 3, 255, -1)
    chip = chip_from_keypoints(image, kps)
    y, x = np.unravel_index(np.argmax(chip), chip.shape)
    expected = apply(chip_transform(kps[0], kps[1], kps[3]), [kps[3]])[0]
    assert math.hypot(x - expected[0], y - expected[1]) <= 1.5


def test_face_drawn_at_two_sizes_gives_nearly_the_same_chip() -> None:
    small, kps_small = draw_face(1.0, size=(480, 640))
    large, kps_large = draw_face(2.2, size=(1080, 1440))
    a = chip_from_keypoints(small, kps_small).astype(float)
    b = chip_from_keypoints(large, kps_large).astype(float)
    assert np.abs(a - b).mean() < 3.0
    assert a.std() > 20  # the chip shows the face, not a flat background


@pytest.mark.parametrize("zoom", [3, 6])
def test_a_close_up_is_area_averaged_not_aliased(zoom: int) -> None:
    """A face hundreds of pixels wide, with pixel-level texture (skin, hair, sensor noise): its
    chip must be the chip of the same picture properly shrunk first. A plain bilinear warp picks
    single pixels and lets the texture through: 7.9 and 8.4 grey levels of difference here (10-13
    on a textured frame of the shared clip), against under 4 with the area averaging."""
    base, kps = draw_face(1.0, size=(240, 320))  # the face is then 480 and 960 px wide
    big = cv2.resize(base, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC).astype(np.float32)
    big = np.clip(big + np.random.default_rng(zoom).normal(0.0, 40.0, big.shape), 0, 255).astype(np.uint8)
    shrunk = cv2.resize(big, None, fx=1 / zoom, fy=1 / zoom, interpolation=cv2.INTER_AREA)
    expected = chip_from_keypoints(shrunk, kps).astype(float)
    chip = chip_from_keypoints(big, kps * zoom + (zoom - 1) / 2.0).astype(float)
    assert (chip - expected).std() < 4.0
    assert expected.std() > 20  # the chip shows the face


@pytest.mark.parametrize("roll", [-30, -15, 15, 30])
def test_rolled_face_gives_the_same_chip_as_upright(roll: float) -> None:
    upright, kps0 = draw_face(1.5)
    rolled, kps = draw_face(1.5, roll=roll)
    a = chip_from_keypoints(upright, kps0).astype(float)
    b = chip_from_keypoints(rolled, kps).astype(float)
    assert np.abs(a - b).mean() < 3.0


def test_a_different_face_gives_a_different_chip() -> None:
    """The similarity tests above can fail: a face shifted by a quarter of its size is far off."""
    image, kps = draw_face(1.5)
    a = chip_from_keypoints(image, kps).astype(float)
    b = chip_from_keypoints(image, kps + np.array([0.0, 30.0])).astype(float)
    assert np.abs(a - b).mean() > 10.0


def test_face_chip_uses_eyes_and_mouth_of_the_face() -> None:
    image, kps = draw_face(1.0)
    before = kps.copy()
    moved = kps.copy()
    moved[[2, 4, 5]] += 25.0  # nose and ears do not take part
    face = Face((200.0, 150.0, 240.0, 240.0), moved, 0.9)
    expected = chip_from_keypoints(image, kps)
    assert np.array_equal(face_chip(image, face), expected)
    assert np.array_equal(kps, before)


# -- the model card's description ----------------------------------------------------------------


def test_geometry_describes_the_constants() -> None:
    assert GEOMETRY["size"] == CHIP_SIZE == 64
    assert GEOMETRY["channels"] == 1
    assert (GEOMETRY["side_d"], GEOMETRY["top_d"], GEOMETRY["iod_to_d"]) == (CHIP_SIDE_D, CHIP_TOP_D, IOD_TO_D)
    assert GEOMETRY["border"] == "replicate"
    assert json.loads(json.dumps(GEOMETRY)) == GEOMETRY  # it is written into model.json and compared back
