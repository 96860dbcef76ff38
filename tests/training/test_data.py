"""Dataset loaders on the real shared layouts, fixed-seed splits, and chip preparation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from gatekeeper.detect import FaceDetector
from gatekeeper.errors import TrainingError
from gatekeeper.training.data import (
    SPLIT_SEED,
    card_split_seed,
    dataset_splits,
    find_keypoints,
    load_ckplus,
    load_class_folders,
    load_dataset,
    load_fer2013,
    load_mtfl,
    load_rafdb,
    load_smilesmiled,
    prepare_chips,
    shared_split_seed,
    split_indices,
)


def test_smilesmiled_layout(shared_dir: Path) -> None:
    ds = load_smilesmiled(shared_dir / "data" / "smilesmiled")
    assert len(ds) == 3690 + 9475
    assert int(ds.labels.sum()) == 3690
    assert all(p.suffix == ".jpg" for p in ds.paths[:10])


def test_fer2013_layout_happy_is_the_only_smile(shared_dir: Path) -> None:
    ds = load_fer2013(shared_dir / "data" / "fer2013")
    assert len(ds) == 35887
    groups = np.array(ds.groups)
    assert set(groups) == {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
    assert np.array_equal(ds.labels == 1, groups == "happy")


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("smilesmiled:{s}/data/smilesmiled", "smilesmiled"),
        ("{s}/data/fer2013", "fer2013"),
        ("fer2013:{s}/data/fer2013", "fer2013"),
        ("rafdb:{s}/data/rafdb", "rafdb"),
        ("{s}/data/rafdb", "rafdb"),
        ("mtfl:{s}/data/mtfl", "mtfl"),
        ("{s}/data/mtfl", "mtfl"),
        ("ckplus:{s}/data/ckplus48", "ckplus"),
    ],
)
def test_load_dataset_specs(shared_dir: Path, spec: str, name: str) -> None:
    assert load_dataset(spec.format(s=shared_dir)).name == name


def test_class_folders_for_a_parks_own_faces(tmp_path: Path, shared_dir: Path) -> None:
    src = sorted((shared_dir / "data" / "fer2013" / "happy").glob("*.png"))[:3]
    for cls, files in (("Smile", src[:2]), ("neutral", src[2:])):
        (tmp_path / cls).mkdir()
        for f in files:
            shutil.copy(f, tmp_path / cls / f.name)
    ds = load_class_folders(tmp_path)
    assert sorted(zip(ds.groups, ds.labels.tolist(), strict=True)) == [("Smile", 1), ("Smile", 1), ("neutral", 0)]  # case-insensitive


@pytest.mark.parametrize("folders", [[], ["neutral"], ["neutral", "sad"]])
def test_class_folders_without_a_smile_class_is_an_error(tmp_path: Path, folders: list[str]) -> None:
    for f in folders:
        (tmp_path / f).mkdir()
    with pytest.raises(FileNotFoundError, match="smile/happy/positive"):
        load_class_folders(tmp_path)


def test_splits_are_fixed_stratified_and_disjoint() -> None:
    labels = np.r_[np.zeros(900, int), np.ones(100, int)]
    a, b = split_indices(labels, 7), split_indices(labels, 7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    allidx = np.concatenate(list(a.values()))
    assert len(allidx) == 1000 and len(np.unique(allidx)) == 1000
    assert labels[a["test"]].sum() == 10 and len(a["test"]) == 100
    assert not np.array_equal(split_indices(labels, 8)["test"], a["test"])


def test_the_split_seed_is_read_from_the_card() -> None:
    assert card_split_seed({"training": {"seed": 5, "split_seed": 99}}) == 99
    # Cards written before split_seed was recorded split by their training seed.
    assert card_split_seed({"training": {"seed": 77}}) == 77
    assert card_split_seed({}) == card_split_seed({"training": None}) == SPLIT_SEED == 1234
    assert card_split_seed({"training": {"split_seed": 99}}, 7) == 7  # --split-seed wins


def test_models_compared_on_one_split_share_its_seed() -> None:
    assert shared_split_seed([{"training": {"split_seed": 99}}, {"training": {"seed": 99}}]) == 99
    with pytest.raises(TrainingError, match=r"different splits \(split seeds \[7, 99\]\)"):
        shared_split_seed([{"training": {"split_seed": 99}}, {"training": {"split_seed": 7}}])


def test_prepare_chips_runs_the_detector_and_caches(tmp_path: Path, shared_dir: Path, face_model_path: Path) -> None:
    root = tmp_path / "faces"
    for cls, src in (("smile", "happy"), ("neutral", "neutral")):
        (root / cls).mkdir(parents=True)
        for f in sorted((shared_dir / "data" / "fer2013" / src).glob("*.png"))[:10]:
            shutil.copy(f, root / cls / f.name)
    ds = load_class_folders(root)
    with FaceDetector(face_model_path, video=False, min_confidence=0.5) as det:
        chips, detected = prepare_chips(ds, det, tmp_path / "cache", progress=False)
        assert chips.shape == (20, 64, 64) and chips.dtype == np.uint8
        assert detected.mean() >= 0.8  # 96% on the full set
        assert chips.std() > 20  # real faces, not border fill
        cached, _ = prepare_chips(ds, det, tmp_path / "cache", progress=False)
    assert np.array_equal(cached, chips)
    assert len(list((tmp_path / "cache").glob("chips-*.npz"))) == 1


def test_rafdb_keeps_its_own_test_split(shared_dir: Path) -> None:
    ds = load_rafdb(shared_dir / "data" / "rafdb")
    assert len(ds) == 15339
    groups = np.array(ds.groups)
    assert set(groups) == {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}  # FER's spelling
    assert np.array_equal(ds.labels == 1, groups == "happy")
    # The folder's class agrees with the dataset's own label file, for every test image.
    csv = dict(line.split(",") for line in (shared_dir / "data" / "rafdb" / "test_labels.csv").read_text().split()[1:])
    test = [(p, g) for p, g, s in zip(ds.paths, groups, ds.fixed_split, strict=True) if s == "test"]
    assert len(test) == 3068
    names = {4: "happy", 2: "fear", 6: "angry", 5: "sad", 3: "disgust", 1: "surprise", 7: "neutral"}
    assert all(names[int(csv[p.name])] == g for p, g in test)
    splits = dataset_splits(ds, SPLIT_SEED)
    assert sorted(splits["test"].tolist()) == sorted(np.flatnonzero(ds.fixed_split == "test").tolist())
    # Validation comes out of the training part, about a tenth of the whole, stratified.
    assert not set(splits["val"]) & set(splits["test"]) and not set(splits["val"]) & set(splits["train"])
    assert abs(len(splits["val"]) - len(ds) // 10) < 20
    assert abs(ds.labels[splits["val"]].mean() - ds.labels[splits["train"]].mean()) < 0.01
    assert len(splits["train"]) + len(splits["val"]) + len(splits["test"]) == len(ds)


def test_mtfl_reads_the_smile_attribute_and_landmarks(shared_dir: Path) -> None:
    ds = load_mtfl(shared_dir / "data" / "mtfl")
    assert len(ds) == 12995 and (ds.fixed_split == "test").sum() == 2995
    assert all(p.is_file() for p in ds.paths[:20] + ds.paths[-20:])  # Windows separators mapped
    first = (shared_dir / "data" / "mtfl" / "training.txt").read_text().split("\n")[0].split()
    # The first two lines end "1 2 2 3" and "1 1 2 3": gender, smile, glasses, pose (mtfl/readme.txt).
    # Both are men (gender 1): the first does not smile, the second does.
    assert first[11:] == ["1", "2", "2", "3"]
    assert ds.labels[:2].tolist() == [0, 1] and ds.groups[:2] == ["not_smiling", "smiling"]
    k = ds.landmarks[0]
    assert np.allclose(k[0], [float(first[1]), float(first[6])])  # the eye on the picture's left is BlazeFace's right eye
    assert np.allclose(k[1], [float(first[2]), float(first[7])])
    assert np.allclose(k[3], [(float(first[4]) + float(first[5])) / 2, (float(first[9]) + float(first[10])) / 2])  # mouth: between the corners
    assert np.isnan(k[4:]).all()


def test_ckplus_keeps_each_subject_in_one_split(shared_dir: Path) -> None:
    ds = load_ckplus(shared_dir / "data" / "ckplus48")
    assert len(ds) == 981 and set(ds.groups) == {"angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"}
    splits = dataset_splits(ds, SPLIT_SEED)
    subjects = np.array(ds.subjects)
    seen = [set(subjects[splits[k]]) for k in ("train", "val", "test")]
    assert not seen[0] & seen[1] and not seen[0] & seen[2] and not seen[1] & seen[2]
    assert all(len(s) > 0 for s in seen)
    assert sum(len(v) for v in splits.values()) == len(ds)


def test_landmarks_pick_the_labelled_face_among_several(shared_dir: Path, face_model_path: Path, smiling_frame_bgr: np.ndarray) -> None:
    import cv2

    # Two copies of a real face side by side: the landmarks name the right-hand one.
    grey = cv2.cvtColor(smiling_frame_bgr, cv2.COLOR_BGR2GRAY)
    pair = np.hstack([grey, grey])
    with FaceDetector(face_model_path, video=False, min_confidence=0.5) as det:
        alone = find_keypoints(det, grey)
        assert alone is not None
        marks = np.full((6, 2), np.nan, np.float32)
        marks[[0, 1, 3]] = alone[[0, 1, 3]] + [grey.shape[1], 0]
        picked = find_keypoints(det, pair, marks)
        assert picked is not None and picked[0, 0] > grey.shape[1]
        # Landmarks where no face is found: no keypoints, the caller cuts at the landmarks.
        marks[[0, 1, 3]] = [[5, 5], [15, 5], [10, 15]]
        assert find_keypoints(det, pair, marks) is None


def test_muxspace_reads_the_legend_once_per_image_and_splits_by_person(shared_dir: Path) -> None:
    from gatekeeper.training.data import EXPRESSIONS, load_muxspace

    ds = load_muxspace(shared_dir / "data" / "muxspace")
    # 13,682 images; one (Avinash_30) is labelled two ways and is left out; double rows read once.
    assert len(ds) == 13681 and len(set(ds.paths)) == len(ds)
    groups = np.array(ds.groups)
    assert int(ds.labels.sum()) == int((groups == "happy").sum()) > 5000
    assert {"angry", "sad", "neutral", "contempt"} <= set(groups)
    # Expression classes index EXPRESSIONS; contempt has no class.
    e = ds.expressions()
    assert (e[groups == "contempt"] == -1).all() and (e[groups != "contempt"] >= 0).all()
    assert (np.array(EXPRESSIONS)[e[groups == "sad"]] == "sad").all()
    splits = dataset_splits(ds, SPLIT_SEED)
    subjects = np.array(ds.subjects)
    people = {k: set(subjects[v]) for k, v in splits.items()}
    assert not people["train"] & people["test"] and not people["val"] & people["test"] and not people["train"] & people["val"]
    assert sum(len(v) for v in splits.values()) == len(ds)
    # A person also in MTFL's training part (LFW) is never in muxspace's test or validation split.
    mtfl = {Path(line.split()[0].replace("\\", "/")).stem.rsplit("_", 1)[0]
            for line in (shared_dir / "data" / "mtfl" / "training.txt").read_text().splitlines() if line.startswith("lfw")}
    assert ds.train_only is not None and ds.train_only.sum() > 0
    assert not people["test"] & mtfl and not people["val"] & mtfl
    assert set(subjects[ds.train_only]) <= people["train"]


def test_sets_without_expression_labels_carry_none(shared_dir: Path) -> None:
    assert (load_smilesmiled(shared_dir / "data" / "smilesmiled").expressions() == -1).all()
    assert (load_mtfl(shared_dir / "data" / "mtfl").expressions() == -1).all()
    ck = load_ckplus(shared_dir / "data" / "ckplus48")
    assert ((ck.expressions() >= 0) == (np.array(ck.groups) != "contempt")).all()


def test_the_default_cache_is_under_the_users_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from gatekeeper.training.data import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "gatekeeper"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "gatekeeper"
