"""Dataset loaders on the real shared layouts, fixed-seed splits, and chip preparation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from gatekeeper.detect import FaceDetector
from gatekeeper.training.data import (
    SPLIT_SEED,
    card_split_seed,
    load_class_folders,
    load_dataset,
    load_fer2013,
    load_smilesmiled,
    prepare_chips,
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
    [("smilesmiled:{s}/data/smilesmiled", "smilesmiled"), ("{s}/data/fer2013", "fer2013"), ("fer2013:{s}/data/fer2013", "fer2013")],
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
