"""Faces in still photos of any size (gatekeeper.stills), with the real MediaPipe detector.

The photos are real: dataset crops from ../shared/data and a frame of the shared clip
single_face.mp4, shrunk and placed on a large noisy canvas to stand for a big photo with a small
face in it.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from gatekeeper.detect import Face, FaceDetector
from gatekeeper.stills import (
    MAX_PHOTO_PIXELS,
    PhotoError,
    View,
    detect_still,
    image_size,
    padded_view,
    read_photo,
    tile_views,
    views,
)


@pytest.fixture(scope="module")
def detector(face_model_path: Path) -> Iterator[FaceDetector]:
    with FaceDetector(face_model_path, video=False, min_confidence=0.5) as det:
        yield det


@pytest.fixture(scope="module")
def frame(smiling_frame_bgr: np.ndarray) -> np.ndarray:
    """The shared clip's smiling frame, RGB: one face about 174 px wide."""
    return cv2.cvtColor(smiling_frame_bgr, cv2.COLOR_BGR2RGB)


def on_canvas(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, tuple[int, int]]:
    """``image`` near the bottom-right corner of a noisy grey canvas; returns it and the offset."""
    canvas = np.random.default_rng(0).integers(90, 150, (height, width, 1), dtype=np.uint8).repeat(3, axis=2)
    y0, x0 = height - image.shape[0] - 37, width - image.shape[1] - 41
    canvas[y0 : y0 + image.shape[0], x0 : x0 + image.shape[1]] = image
    return canvas, (x0, y0)


# -- views ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "scale", "side"), [(64, 3.0, 384), (48, 3.0, 288), (100, 1.92, 384), (600, 1.0, 1200)])
def test_padded_view_pads_by_half_and_upscales_small_images(size: int, scale: float, side: int) -> None:
    view = padded_view(np.zeros((size, size), np.uint8))
    assert view.scale == pytest.approx(scale)
    assert view.image.shape[:2] == (side, side)
    assert view.offset == (size // 2, size // 2)


def test_a_face_in_a_view_maps_back_to_the_original_pixels() -> None:
    view = View("padded", np.zeros((10, 10), np.uint8), 3.0, (32.0, 16.0))
    kps = np.array([[120.0, 90.0]] * 6, dtype=np.float32)
    face = view.to_original(Face((96.0, 48.0, 30.0, 60.0), kps, 0.9))
    assert face.box == pytest.approx((0.0, 0.0, 10.0, 20.0))
    assert face.keypoints[0] == pytest.approx([8.0, 14.0])
    assert face.score == 0.9


@pytest.mark.parametrize("n", [2, 3, 4])
def test_tiles_overlap_and_cover_the_whole_image(n: int) -> None:
    h, w = 1100, 1700
    covered = np.zeros((h, w), np.int32)
    tiles = list(tile_views(np.zeros((h, w), np.uint8), n))
    assert len(tiles) == n * n
    for t in tiles:
        x0, y0 = -int(t.offset[0]), -int(t.offset[1])
        covered[y0 : y0 + t.image.shape[0], x0 : x0 + t.image.shape[1]] += 1
    assert covered.min() >= 1
    assert covered.max() >= 2  # neighbours overlap, so a face on a seam is whole in one tile


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((64, 64), ["padded", "as_is", "padded_mean"]),
        ((480, 640), ["as_is", "padded", "padded_mean"]),
        ((600, 800), ["as_is", "padded", "padded_mean", "tile2"]),
        ((1080, 1920), ["as_is", "padded", "padded_mean", "tile2", "tile3", "tile4"]),
    ],
)
def test_order_of_views(shape: tuple[int, int], expected: list[str]) -> None:
    assert [group[0].name for group in views(np.zeros((*shape, 3), np.uint8))] == expected


# -- the real detector on real pictures -----------------------------------------------------------


@pytest.mark.parametrize(("pattern", "as_is_at_most"), [("smilesmiled/SMILEs/*/*/*.jpg", 0.9), ("fer2013/*/*.png", None)])
def test_tight_dataset_crops_are_found(detector: FaceDetector, shared_dir: Path, pattern: str, as_is_at_most: float | None) -> None:
    """Tight crops need the padded view: measured on 200 random SMILEsmileD crops, 76% are found
    as they are and 97% padded; FER2013 96% either way."""
    files = random.Random(7).sample(sorted((shared_dir / "data").glob(pattern)), 60)
    found = plain = 0
    for f in files:
        grey = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        faces, view = detect_still(detector, grey)
        found += bool(faces)
        plain += bool(detector.detect(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)))
        for face in faces:
            # In the crop's own pixels: the eyes are inside the picture.
            assert 0 <= face.keypoints[0][0] <= grey.shape[1] and 0 <= face.keypoints[0][1] <= grey.shape[0]
        if faces:
            assert view in ("padded", "as_is", "padded_mean")
    assert found / len(files) >= 0.9
    if as_is_at_most is not None:  # FER's 48x48 crops are found about as often as they are
        assert plain / len(files) <= as_is_at_most
    assert found >= plain


#: SMILEsmileD crops that cut the face off at chin and forehead: replicated borders smear them
#: into streaks and neither the crop nor its replicate-padded view shows the detector a face.
CUT_OFF_CROPS = ["positives/positives7/10012.jpg", "positives/positives7/1554.jpg", "positives/positives7/5332.jpg",
                 "positives/positives7/9149.jpg", "negatives/negatives7/11822.jpg", "negatives/negatives7/1944.jpg",
                 "negatives/negatives7/3645.jpg", "negatives/negatives7/5572.jpg", "negatives/negatives7/6781.jpg",
                 "negatives/negatives7/8848.jpg"]


def test_a_face_cut_off_by_its_crop_is_found_in_a_flat_frame(detector: FaceDetector, shared_dir: Path) -> None:
    found = 0
    for name in CUT_OFF_CROPS:
        rgb = cv2.cvtColor(cv2.imread(str(shared_dir / "data" / "smilesmiled" / "SMILEs" / name)), cv2.COLOR_BGR2RGB)
        assert detector.detect(rgb) == [] and detector.detect(padded_view(rgb).image) == [], name
        faces, view = detect_still(detector, rgb)
        if faces:
            found += 1
            assert view == "padded_mean"
            (rx, ry), (lx, ly), _, (mx, my) = faces[0].keypoints[:4]
            # In the crop's own pixels, upright: the eyes side by side in the upper part, the mouth below, between them.
            assert 0 <= rx < mx < lx <= 64 and 0 <= ry < 40 and 0 <= ly < 40 and my > max(ry, ly) + 10, (name, faces[0].keypoints)
    assert found >= 9


def test_the_flat_frame_is_the_mean_grey_and_maps_back() -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = (200, 100, 0)
    view = padded_view(image, "mean")
    assert view.name == "padded_mean" and view.scale == pytest.approx(3.0)
    assert view.image[0, 0].tolist() == [100, 50, 0]
    face = Face((90.0, 60.0, 30.0, 30.0), np.full((6, 2), 90.0, np.float32), 0.9)
    assert view.to_original(face).box == pytest.approx((0.0, 0.0, 10.0, 10.0))
    with pytest.raises(ValueError, match="border"):
        padded_view(image, "reflect")


@pytest.mark.parametrize(("width", "view"), [(700, "as_is"), (1200, "tile2"), (2000, "tile4")])
def test_a_small_face_in_a_large_photo_is_found_and_placed_precisely(detector: FaceDetector, frame: np.ndarray, width: int, view: str) -> None:
    small = cv2.resize(frame, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    photo, (x0, y0) = on_canvas(small, width, width * 3 // 4)
    if view != "as_is":
        assert detector.detect(photo) == []  # too small for the detector's 128x128 look at the whole
    faces, found_by = detect_still(detector, photo)
    assert found_by == view
    assert len(faces) == 1  # found in two overlapping tiles, reported once
    reference = detector.detect(frame)[0]
    x, y, w, _ = faces[0].box
    # Looked at again closer up, the face is placed as well as in the frame it came from.
    assert abs(x - (x0 + reference.box[0] / 2)) < 5 and abs(y - (y0 + reference.box[1] / 2)) < 5
    assert w == pytest.approx(reference.box[2] / 2, rel=0.1)
    assert np.abs(faces[0].keypoints - (x0, y0) - reference.keypoints / 2).max() < 5


def test_a_close_up_that_fills_the_frame_is_found(detector: FaceDetector, frame: np.ndarray) -> None:
    face = detector.detect(frame)[0]
    x, y, w, h = (round(v) for v in face.box)
    close_up = cv2.resize(frame[y : y + h, x : x + w], (900, 900), interpolation=cv2.INTER_CUBIC)
    faces, _ = detect_still(detector, close_up)
    assert len(faces) == 1
    # The eyes land where they were, scaled to the close-up.
    expected = (face.keypoints[:2] - (x, y)) * (900 / w)
    assert np.abs(faces[0].keypoints[:2] - expected).max() < 60


def test_a_doubtful_find_does_not_hide_a_sure_face(detector: FaceDetector, shared_dir: Path, frame: np.ndarray) -> None:
    """The title card of no_face.mp4 (frame 91) has blurred lettering the detector takes for a
    136-px face at about 0.6. With the smiling face at half size in a corner, looking at the
    picture as it is finds only the lettering; the search must go on and report the real face."""
    cap = cv2.VideoCapture(str(shared_dir / "videos" / "no_face.mp4"))
    for _ in range(91):
        ok, card = cap.read()
        assert ok
    cap.release()
    card = cv2.cvtColor(card, cv2.COLOR_BGR2RGB)
    doubtful, view = detect_still(detector, card)
    assert view == "as_is" and len(doubtful) == 1 and doubtful[0].score < 0.7  # reported when nothing better exists

    small = cv2.resize(frame, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    card[card.shape[0] - small.shape[0] :, : small.shape[1]] = small
    faces, view = detect_still(detector, card)
    assert view != "as_is"
    assert len(faces) == 1 and faces[0].score >= 0.7
    x, y, _, _ = faces[0].box
    assert x < small.shape[1] and y > card.shape[0] - small.shape[0]  # the face in the corner, not the lettering


def test_no_face_anywhere(detector: FaceDetector) -> None:
    photo = np.random.default_rng(1).integers(0, 255, (1100, 1500, 3), dtype=np.uint8)
    assert detect_still(detector, photo) == ([], None)


# -- reading photos: the size from the header, before anything is decoded -------------------------


def flat_png(path: Path, width: int, height: int) -> Path:
    """A valid black 1-bit greyscale PNG of any size, written without ever holding its pixels:
    60000x60000 takes 0.4 MB and milliseconds. Every scanline is zero bytes (filter 0, black),
    so the zlib stream is one block of K compressed rows, flushed to a byte boundary with the
    dictionary reset, repeated; a zero byte leaves Adler-32's first sum at 1 and adds 1 to the
    second, which makes the checksum of n zero bytes (n mod 65521) << 16 | 1."""
    row = 1 + -(-width // 8)
    rows_per_block = max(1, (1 << 20) // row)

    def deflate(rows: int) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        return c.compress(bytes(rows * row)) + c.flush(zlib.Z_FULL_FLUSH)

    blocks, rest = divmod(height, rows_per_block)
    body = deflate(rows_per_block) * blocks + (deflate(rest) if rest else b"")
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty final block
    idat = b"\x78\xda" + body + end + struct.pack(">I", (height * row % 65521) << 16 | 1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_the_hand_written_png_is_a_real_png(tmp_path: Path) -> None:
    """What the huge-photo tests stand on: a small one decodes to black with OpenCV, and a
    2000x3000 one's stream inflates to exactly its scanlines, checksum included."""
    small = cv2.imread(str(flat_png(tmp_path / "small.png", 301, 7)), cv2.IMREAD_UNCHANGED)
    assert small.shape == (7, 301) and not small.any()
    data = flat_png(tmp_path / "mid.png", 2000, 3000).read_bytes()
    (length,) = struct.unpack(">I", data[33:37])
    raw = zlib.decompress(data[41 : 41 + length])  # checks the Adler-32 too
    assert raw == bytes(3000 * 251)


SIZES = [(".jpg", []), (".png", []), (".bmp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
         (".tif", []), (".tiff", [cv2.IMWRITE_TIFF_COMPRESSION, 1]), (".ppm", []), (".pgm", []), (".gif", [])]  # fmt: skip


@pytest.mark.parametrize(("suffix", "params"), SIZES, ids=[f"{s}{p}" for s, p in SIZES])
def test_image_size_reads_every_photo_format_header(tmp_path: Path, suffix: str, params: list[int]) -> None:
    """Files written by OpenCV itself (WebP lossy and lossless, TIFF with and without
    compression, PNM in colour and grey): the header's size is the decoded size."""
    picture = np.random.default_rng(0).integers(0, 255, (123, 257, 3), dtype=np.uint8)
    path = tmp_path / f"photo{suffix}"
    assert cv2.imwrite(str(path), picture[..., 0] if suffix == ".pgm" else picture, params)
    size = image_size(path)
    assert size is not None and size[1:] == (257, 123)
    assert read_photo(path).shape == (123, 257, 3)


@pytest.mark.parametrize(
    ("content", "error"),
    [
        pytest.param(b"not a picture\n" * 10, "unreadable image: not a JPEG, PNG, WebP, BMP, GIF, TIFF or PNM file", id="text"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00", "unreadable image: not a JPEG", id="a PNG cut in its header"),
        pytest.param(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(7) + b"\xff\xda", "unreadable image: not a JPEG", id="a JPEG without a frame header"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + bytes(8) + bytes(5), "unreadable image: its header says 0x0 pixels", id="a PNG of 0x0"),
        pytest.param(b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x10\x00\x10\x03" + bytes(20), "unreadable image", id="a JPEG with a header and no data"),
    ],
)
def test_a_photo_that_cannot_be_read_is_one_error(tmp_path: Path, content: bytes, error: str) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(PhotoError) as info:
        read_photo(path)
    assert str(info.value).startswith(error)


@pytest.mark.parametrize(("width", "height"), [(20000, 20000), (60000, 60000), (7072, 7072)])
def test_a_photo_above_the_pixel_limit_is_refused_before_decoding(tmp_path: Path, width: int, height: int) -> None:
    """20000x20000 needed 1.2 GB to decode, 60000x60000 raised inside cv2; both are refused from
    their header. (50 megapixels: 7071x7071 is just under, 7072x7072 just over.)"""
    path = flat_png(tmp_path / "huge.png", width, height)
    with pytest.raises(PhotoError) as info:
        read_photo(path)
    assert str(info.value) == f"image too large: {width}x{height}, expected at most 50 megapixels"
    assert MAX_PHOTO_PIXELS == 50_000_000


def test_a_jpeg_above_the_limit_is_decoded_reduced(tmp_path: Path, smiling_frame_bgr: np.ndarray) -> None:
    """libjpeg scales while it decodes, so a JPEG over the limit is read at 1/2, 1/4 or 1/8."""
    path = tmp_path / "frame.jpg"
    cv2.imwrite(str(path), smiling_frame_bgr)  # 640x360: 230400 pixels
    assert read_photo(path).shape == (360, 640, 3)
    assert read_photo(path, max_pixels=60_000).shape == (180, 320, 3)
    assert read_photo(path, max_pixels=15_000).shape == (90, 160, 3)
    assert read_photo(path, max_pixels=3_600).shape == (45, 80, 3)
    with pytest.raises(PhotoError, match=r"^image too large: 640x360, expected at most 0.003 megapixels$"):
        read_photo(path, max_pixels=3_000)
    png = tmp_path / "frame.png"
    cv2.imwrite(str(png), smiling_frame_bgr)
    with pytest.raises(PhotoError, match=r"^image too large: 640x360"):
        read_photo(png, max_pixels=60_000)  # other formats decode whole, or not at all
