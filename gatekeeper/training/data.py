"""Datasets in their real layouts, mapped onto the run-time crop.

The public sets are already tight face crops (SMILEsmileD 64x64, FER2013 48x48), not camera
frames. To give the model exactly what the gate will show it, every image goes through the
run-time path for stills, :func:`gatekeeper.stills.detect_still` (the one ``gatekeeper score``
uses): a small image is first padded by half its size with replicated borders (so the detector
sees a face with some context) and upscaled 3x with bicubic interpolation (BlazeFace wants faces
of at least about 40 px), then tried as it is; the MediaPipe detector runs in IMAGE mode, and
the chip is cut from the original with :func:`gatekeeper.crop.chip_from_keypoints`. This finds
a face in 97.4% of SMILEsmileD and 98.0% of FER2013. For the rest, the median keypoints of the
detected images of the same dataset are used, so no label is thrown away and the geometry stays
the run-time one.

Prepared chips are cached (``.npz``) by dataset, file list and crop geometry version.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..crop import GEOMETRY, chip_from_keypoints
from ..detect import FaceDetector
from ..stills import IMAGE_SUFFIXES, PAD_FRACTION, PADDED_SIDE, detect_still, padded_view

log = logging.getLogger(__name__)

#: Folder names read as "smiling" by the generic class-folder loader (case-insensitive).
POSITIVE_NAMES = {"smile", "smiling", "happy", "positive", "positives", "1"}


@dataclass
class LabelledSet:
    """Image paths with binary labels (1 = smiling) and a per-image group name (e.g. class)."""

    name: str
    paths: list[Path]
    labels: np.ndarray
    groups: list[str]

    def __len__(self) -> int:
        return len(self.paths)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_smilesmiled(root: Path) -> LabelledSet:
    """SMILEsmileD as published: ``SMILEs/positives/positives7/*.jpg`` and ``negatives/negatives7``."""
    root = Path(root)
    if (root / "SMILEs").is_dir():
        root = root / "SMILEs"
    pos = _images(root / "positives" / "positives7")
    neg = _images(root / "negatives" / "negatives7")
    if not pos or not neg:
        raise FileNotFoundError(f"{root} does not look like SMILEsmileD: expected positives/positives7/*.jpg and negatives/negatives7/*.jpg")
    labels = np.array([1] * len(pos) + [0] * len(neg), dtype=np.int64)
    return LabelledSet("smilesmiled", pos + neg, labels, ["smile"] * len(pos) + ["neutral"] * len(neg))


def load_fer2013(root: Path) -> LabelledSet:
    """FER2013 in class folders: ``happy`` is smiling, every other expression is not."""
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if "happy" not in classes:
        raise FileNotFoundError(f"{root} does not look like FER2013: expected class folders such as happy/, sad/, neutral/")
    paths, labels, groups = [], [], []
    for c in classes:
        files = _images(root / c)
        paths += files
        labels += [int(c == "happy")] * len(files)
        groups += [c] * len(files)
    return LabelledSet("fer2013", paths, np.array(labels, dtype=np.int64), groups)


def load_class_folders(root: Path, name: str | None = None) -> LabelledSet:
    """Any folder of class folders; names in :data:`POSITIVE_NAMES` are smiling.

    This is how a park adds its own labelled faces: ``faces/smile/*.jpg``, ``faces/neutral/*.jpg``.
    """
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not any(c.lower() in POSITIVE_NAMES for c in classes) or len(classes) < 2:
        raise FileNotFoundError(f"{root}: expected class folders with one named smile/happy/positive and at least one other")
    paths, labels, groups = [], [], []
    for c in classes:
        files = _images(root / c)
        paths += files
        labels += [int(c.lower() in POSITIVE_NAMES)] * len(files)
        groups += [c] * len(files)
    return LabelledSet(name or root.name, paths, np.array(labels, dtype=np.int64), groups)


def load_dataset(spec: str) -> LabelledSet:
    """``smilesmiled:PATH``, ``fer2013:PATH`` or ``folders:PATH`` (or a bare path: auto-detected)."""
    kind, _, path = spec.partition(":") if ":" in spec and spec.split(":", 1)[0] in {"smilesmiled", "fer2013", "folders"} else ("", "", spec)
    p = Path(path)
    if kind == "smilesmiled" or (not kind and ((p / "SMILEs").is_dir() or (p / "positives").is_dir())):
        return load_smilesmiled(p)
    if kind == "fer2013" or (not kind and (p / "happy").is_dir() and (p / "sad").is_dir()):
        return load_fer2013(p)
    return load_class_folders(p)


#: The split seed of the shipped model. Splits depend on this seed alone, never on the training
#: seed, so models trained with different ``--seed`` values are measured on the same test faces.
SPLIT_SEED = 1234


def card_split_seed(card: dict, override: int | None = None) -> int:
    """The split seed a model was trained with, from its card (cards before ``split_seed``
    was recorded used their training seed for the splits as well); ``override``, when given
    (a ``--split-seed`` option), wins."""
    if override is not None:
        return override
    training = card.get("training") or {}
    seed = training.get("split_seed", training.get("seed", SPLIT_SEED))
    return int(seed)


def split_indices(labels: np.ndarray, seed: int, fractions: tuple[float, float] = (0.1, 0.1)) -> dict[str, np.ndarray]:
    """Stratified train/val/test split by a fixed seed; ``fractions`` are (val, test)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_val, n_test = round(len(idx) * fractions[0]), round(len(idx) * fractions[1])
        out["test"] += idx[:n_test].tolist()
        out["val"] += idx[n_test : n_test + n_val].tolist()
        out["train"] += idx[n_test + n_val :].tolist()
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in out.items()}


def read_grey(path: Path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return img


def detector_view(grey: np.ndarray) -> np.ndarray:
    """A tight face crop as a face model is first shown it (:func:`gatekeeper.stills.padded_view`), RGB."""
    return cv2.cvtColor(padded_view(grey).image, cv2.COLOR_GRAY2RGB)


def find_keypoints(detector: FaceDetector, grey: np.ndarray) -> np.ndarray | None:
    """Keypoints (6, 2) of the largest face in the image's own pixels, or None."""
    faces, _ = detect_still(detector, grey)
    return max(faces, key=lambda f: f.area).keypoints if faces else None


def prepare_chips(dataset: LabelledSet, detector: FaceDetector, cache_dir: Path | None = None, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return (chips uint8 (N,64,64), detected bool (N,)) for every image of ``dataset``."""
    key = hashlib.sha256(json.dumps([GEOMETRY, PAD_FRACTION, PADDED_SIDE, "stills-4", [str(p) for p in dataset.paths]]).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"chips-{dataset.name}-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return z["chips"], z["detected"]
    from tqdm import tqdm

    n = len(dataset)
    kps = np.zeros((n, 6, 2), dtype=np.float32)
    detected = np.zeros(n, dtype=bool)
    images: list[np.ndarray] = []
    for i, path in enumerate(tqdm(dataset.paths, desc=f"detect {dataset.name}", disable=not progress, mininterval=2)):
        img = read_grey(path)
        if img is None:
            raise OSError(f"cannot read image {path}")
        images.append(img)
        # Keypoints are stored relative to the crop size so that sets with mixed sizes share a median.
        k = find_keypoints(detector, img)
        if k is not None:
            kps[i] = k / np.array(img.shape[::-1], dtype=np.float32)
            detected[i] = True
    if not detected.any():
        raise RuntimeError(f"the detector found no face in any image of {dataset.name}")
    median = np.median(kps[detected], axis=0)
    chips = np.empty((n, 64, 64), dtype=np.uint8)
    for i, img in enumerate(images):
        rel = kps[i] if detected[i] else median
        chips[i] = chip_from_keypoints(img, rel * np.array(img.shape[::-1], dtype=np.float32))
    log.info("%s: %d images, face found in %.1f%%", dataset.name, n, 100 * detected.mean())
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, chips=chips, detected=detected)
    return chips, detected
