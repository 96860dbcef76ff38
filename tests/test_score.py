"""``gatekeeper score``: photos of any size through detector -> crop -> classifier, one JSON
line per image, run as a real command on real pictures (dataset crops from ../shared, a frame
of the shared clip placed small in a large photo)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_cli import ENV_FACE_MODEL, run_gatekeeper
from test_stills import flat_png

from gatekeeper.classify import SmileClassifier
from gatekeeper.detect import FaceDetector
from gatekeeper.training.data import LabelledSet, prepare_chips


def sample(shared_dir: Path, pattern: str, n: int, seed: int = 5) -> list[Path]:
    return random.Random(seed).sample(sorted((shared_dir / "data").glob(pattern)), n)


def score(paths: list[Path], cwd: Path, face_model_path: Path, *extra: str) -> list[dict]:
    proc = run_gatekeeper(["score", *map(str, paths), *extra], cwd, {ENV_FACE_MODEL: str(face_model_path)})
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def big_photo(tmp_path_factory: pytest.TempPathFactory, smiling_frame_bgr: np.ndarray) -> Path:
    """A 1600x1200 photo with one face about 87 px wide near its corner."""
    small = cv2.resize(smiling_frame_bgr, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    photo = np.random.default_rng(0).integers(90, 150, (1200, 1600, 1), dtype=np.uint8).repeat(3, axis=2)
    photo[1200 - small.shape[0] - 30 :, 1600 - small.shape[1] - 40 : -40][: small.shape[0]] = small
    path = tmp_path_factory.mktemp("photos") / "big.jpg"
    cv2.imwrite(str(path), photo, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def test_one_line_per_image_in_order(tmp_path: Path, shared_dir: Path, face_model_path: Path, big_photo: Path) -> None:
    crops = sample(shared_dir, "smilesmiled/SMILEs/positives/positives7/*.jpg", 3) + sample(shared_dir, "fer2013/happy/*.png", 2)
    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture\n" * 10)
    paths = [*crops, big_photo, noise, broken]

    rows = score(paths, tmp_path, face_model_path)

    assert [r["path"] for r in rows] == [str(p) for p in paths]
    for r in rows[: len(crops) + 1]:  # tight crops and the big photo: one face each, scored
        assert r["faces"] == 1, r
        assert 0.0 <= r["score"] <= 1.0 and r["smiling"] == (r["score"] >= 0.5)
    assert rows[-2] == {"path": str(noise), "faces": 0, "score": None, "smiling": None}
    assert rows[-1]["error"] == "unreadable image: not a JPEG, PNG, WebP, BMP, GIF, TIFF or PNM file" and rows[-1]["score"] is None


def test_the_big_photo_scores_like_the_frame_it_came_from(tmp_path: Path, smiling_frame_bgr: np.ndarray, face_model_path: Path, big_photo: Path) -> None:
    """Found by a tile and looked at again closer up, the small face gets nearly the score of
    the same face at twice the size in the original frame."""
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), smiling_frame_bgr)
    big, original = score([big_photo, frame], tmp_path, face_model_path)
    assert original["faces"] == 1 and original["smiling"] is True
    assert big["smiling"] is True
    assert abs(big["score"] - original["score"]) < 0.05


def test_scores_equal_the_training_path_on_dataset_crops(tmp_path: Path, shared_dir: Path, face_model_path: Path) -> None:
    """``score`` and training prepare chips through the same stills code: on dataset crops the
    scores agree with the model run on the training chips of the same images."""
    paths = sample(shared_dir, "smilesmiled/SMILEs/*/*/*.jpg", 25) + sample(shared_dir, "fer2013/*/*.png", 25)
    rows = score(paths, tmp_path, face_model_path)
    with FaceDetector(face_model_path, video=False, min_confidence=0.5) as det:
        chips, detected = prepare_chips(LabelledSet("sample", paths, np.zeros(len(paths), np.int64), ["x"] * len(paths)), det, None, progress=False)
    probs = SmileClassifier().predict(chips)  # the shipped model, as `score` runs it
    assert detected.mean() >= 0.9
    for row, found, p in zip(rows, detected, probs, strict=True):
        assert (row["faces"] > 0) == found, row
        if found:
            assert row["score"] == pytest.approx(float(p), abs=2e-3), row


def test_tight_crops_need_the_padded_view(tmp_path: Path, shared_dir: Path, face_model_path: Path) -> None:
    """What the still views are for: SMILEsmileD's 64x64 crops at the gate's own detector
    confidence (0.7) and without padding are mostly missed."""
    paths = sample(shared_dir, "smilesmiled/SMILEs/*/*/*.jpg", 40, seed=11)
    rows = score(paths, tmp_path, face_model_path)
    assert sum(r["faces"] > 0 for r in rows) >= 36
    with FaceDetector(face_model_path, video=False, min_confidence=0.7) as det:
        plain = sum(bool(det.detect(cv2.imread(str(p)))) for p in paths)
    assert plain <= 30


def test_huge_photos_are_one_error_line_each_and_the_batch_goes_on(tmp_path: Path, smiling_frame_bgr: np.ndarray, face_model_path: Path) -> None:
    """A 20000x20000 PNG ran out of memory and a 60000x60000 one raised inside cv2, losing the rest
    of the batch. Each is now refused from its header in one line, and the photo after them is
    scored. (Valid PNGs of one flat colour: 50 KB and 0.4 MB.)"""
    paths = [flat_png(tmp_path / "big.png", 20000, 20000), flat_png(tmp_path / "bigger.png", 60000, 60000), tmp_path / "face.jpg"]
    cv2.imwrite(str(paths[2]), smiling_frame_bgr)
    big, bigger, face = score(paths, tmp_path, face_model_path)
    assert big == {"path": str(paths[0]), "faces": 0, "score": None, "smiling": None, "error": "image too large: 20000x20000, expected at most 50 megapixels"}
    assert bigger["error"] == "image too large: 60000x60000, expected at most 50 megapixels"
    assert face["faces"] == 1 and face["smiling"] is True


@pytest.mark.parametrize("kind", ["an empty folder", "a folder without photos"])
def test_no_photos_found_is_an_error(tmp_path: Path, face_model_path: Path, kind: str) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    if kind == "a folder without photos":
        (folder / "notes.txt").write_text("not a photo\n")
        (folder / "sub").mkdir()
    proc = run_gatekeeper(["score", str(folder)], tmp_path, {ENV_FACE_MODEL: str(face_model_path)})
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith(f"gatekeeper: error: no photos found in {str(folder)!r}; expected image files or folders holding them (.bmp .gif "), proc.stderr
    assert len(proc.stderr.splitlines()) == 1


@pytest.mark.parametrize("value", ["1.5", "1", "0", "-0.2", "nan"])
def test_a_threshold_outside_0_and_1_is_one_error_line(tmp_path: Path, face_model_path: Path, value: str) -> None:
    proc = run_gatekeeper(["score", str(tmp_path), "--threshold", value], tmp_path, {ENV_FACE_MODEL: str(face_model_path)})
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"gatekeeper: error: gatekeeper score: argument --threshold: expected a threshold between 0 and 1, got {float(value)} (see gatekeeper score --help)\n"


@pytest.mark.parametrize("value", ["0", "1.5", "abc"])
def test_bad_min_confidence_is_one_error_line(tmp_path: Path, shared_dir: Path, face_model_path: Path, value: str) -> None:
    proc = run_gatekeeper(["score", str(sample(shared_dir, "fer2013/happy/*.png", 1)[0]), "--min-confidence", value], tmp_path, {ENV_FACE_MODEL: str(face_model_path)})
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "min-confidence" in lines[0], proc.stderr
    assert proc.stdout == ""


def test_a_path_that_does_not_exist(tmp_path: Path, face_model_path: Path) -> None:
    proc = run_gatekeeper(["score", str(tmp_path / "nope.jpg")], tmp_path, {ENV_FACE_MODEL: str(face_model_path)})
    assert proc.returncode == 2
    assert "nope.jpg" in proc.stderr and "does not exist" in proc.stderr


def test_a_folder_is_scanned_for_every_photo_format(tmp_path: Path, smiling_frame_bgr: np.ndarray, face_model_path: Path) -> None:
    """A folder of photos as people keep them: JPEG under several names and cases, PNG, TIFF,
    WebP, BMP and GIF are all scored (and score alike); other files are left out."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    face = cv2.resize(smiling_frame_bgr, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    names = ["a.JPG", "b.jpeg", "c.jfif", "d.png", "e.tif", "f.webp", "g.bmp", "h.gif", "sub/i.jpg"]
    for name in names:
        suffix = Path(name).suffix.lower()
        ok, data = cv2.imencode(".jpg" if suffix in {".jpg", ".jpeg", ".jfif"} else suffix, face)
        assert ok, name
        (folder / name).write_bytes(data.tobytes())
    (folder / "notes.txt").write_text("not a photo\n")
    (folder / "clip.mp4").write_bytes(b"\x00" * 64)

    rows = score([folder], tmp_path, face_model_path)

    assert sorted(Path(r["path"]).name for r in rows) == sorted(Path(n).name for n in names)
    assert all(r["faces"] == 1 and r["smiling"] is True for r in rows), rows
    # GIF holds 256 colours, the others the picture itself (JPEG-compressed for the JPEG names).
    assert max(r["score"] for r in rows) - min(r["score"] for r in rows) < 0.05, rows
