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

import csv
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..crop import GEOMETRY, chip_from_keypoints
from ..detect import FaceDetector
from ..errors import TrainingError
from ..stills import IMAGE_SUFFIXES, PAD_FRACTION, PADDED_SIDE, detect_still, padded_view

log = logging.getLogger(__name__)

#: Folder names read as "smiling" by the generic class-folder loader (case-insensitive).
POSITIVE_NAMES = {"smile", "smiling", "happy", "positive", "positives", "1"}


#: Expression class names as FER2013 spells them; the other sets' names are mapped onto these so
#: that per-class reports and hard-negative weighting read the same across datasets.
EXPRESSION_NAMES = {
    "anger": "angry",
    "sadness": "sad",
    "happiness": "happy",
}


#: The seven basic expressions, in the order of the expression head's outputs. Contempt (CK+,
#: muxspace) is not among them: such faces train the smile head only.
EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

#: Sets whose class names are expression labels. SMILEsmileD's "neutral" means "not smiling" and
#: MTFL records a smile attribute only: their faces carry no expression label.
EXPRESSION_SETS = {"fer2013", "rafdb", "ckplus", "muxspace"}


def default_cache_dir() -> Path:
    """Where prepared chips are cached: ``$XDG_CACHE_HOME/gatekeeper`` (``~/.cache/gatekeeper``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gatekeeper"


@dataclass
class LabelledSet:
    """Image paths with binary labels (1 = smiling) and a per-image group name (e.g. class).

    ``fixed_split`` holds the dataset's own split ("train" or "test") per image where it has one
    (RAF-DB, MTFL); validation is then carved out of its training part. ``subjects`` names the
    person in each image where a set holds several images of one person (CK+): a subject lies in
    one split only. ``landmarks`` (N, 6, 2), in the image's pixels and in BlazeFace keypoint order
    (NaN where unknown), says which face of a photo the label belongs to (MTFL). ``attributes``
    maps an attribute the set records per face (MTFL: gender, glasses, pose) to one value name
    per image, for measuring the model by group (:func:`~gatekeeper.training.metrics.group_metrics`).
    ``train_only`` marks images whose subject must stay in training (a person who is also in
    another set's training part, so that no test face was seen in training)."""

    name: str
    paths: list[Path]
    labels: np.ndarray
    groups: list[str]
    fixed_split: np.ndarray | None = None
    subjects: list[str] | None = None
    landmarks: np.ndarray | None = None
    attributes: dict[str, np.ndarray] | None = None
    train_only: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def expressions(self) -> np.ndarray:
        """Index into :data:`EXPRESSIONS` per image, -1 where the set has no such label."""
        if self.name not in EXPRESSION_SETS:
            return np.full(len(self), -1, dtype=np.int64)
        index = {e: i for i, e in enumerate(EXPRESSIONS)}
        return np.array([index.get(g, -1) for g in self.groups], dtype=np.int64)


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


#: RAF-DB (basic) label numbers, as its ``*_labels.csv`` and class folders use them.
RAFDB_CLASSES = {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "angry", 7: "neutral"}


def load_rafdb(root: Path) -> LabelledSet:
    """RAF-DB basic: ``train/<n>/*.jpg`` and ``test/<n>/*.jpg``, n = 1..7 (4 = happiness), in the
    dataset's own train/test split. Happiness is smiling, every other expression is not."""
    root = Path(root)
    paths, labels, groups, split = [], [], [], []
    for part in ("train", "test"):
        for number, cls in RAFDB_CLASSES.items():
            files = _images(root / part / str(number))
            paths += files
            labels += [int(cls == "happy")] * len(files)
            groups += [cls] * len(files)
            split += [part] * len(files)
    if not any(s == "train" for s in split) or not any(s == "test" for s in split):
        raise FileNotFoundError(f"{root} does not look like RAF-DB: expected train/1..7/*.jpg and test/1..7/*.jpg")
    return LabelledSet("rafdb", paths, np.array(labels, dtype=np.int64), groups, fixed_split=np.array(split))


def _mtfl_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


#: MTFL's per-face attributes (``mtfl/readme.txt``): the field of a line (0 is the path) and
#: what each code means. Pose is named as the readme names it ("left" as seen in the picture).
MTFL_ATTRIBUTES = {
    "gender": (11, {"1": "male", "2": "female"}),
    "glasses": (13, {"1": "glasses", "2": "no glasses"}),
    "pose": (14, {"1": "1 left profile", "2": "2 left", "3": "3 frontal", "4": "4 right", "5": "5 right profile"}),
}


def load_mtfl(root: Path) -> LabelledSet:
    """MTFL: ``training.txt`` (train and validation) and ``testing.txt`` (test), one face per line:
    ``path x1..x5 y1..y5 gender smile glasses pose``, smile 1 = smiling, 2 = not.

    The five landmarks (left eye, right eye, nose, left and right mouth corner, as seen in the
    picture) become BlazeFace keypoints (the eye on the picture's left is the subject's right eye;
    the mouth is the corners' midpoint), so the face the label belongs to is the one cut out."""
    root = Path(root)
    if not (root / "training.txt").is_file() or not (root / "testing.txt").is_file():
        raise FileNotFoundError(f"{root} does not look like MTFL: expected training.txt and testing.txt beside the image folders")
    paths, labels, split, marks = [], [], [], []
    attributes: dict[str, list[str]] = {name: [] for name in MTFL_ATTRIBUTES}
    for part, file in (("train", "training.txt"), ("test", "testing.txt")):
        for f in _mtfl_lines(root / file):
            if len(f) != 15 or f[12] not in {"1", "2"}:
                raise ValueError(f"{root / file}: expected 'path x1..x5 y1..y5 gender smile glasses pose' with smile 1 or 2, got {' '.join(f)!r}")
            for name, (column, values) in MTFL_ATTRIBUTES.items():
                if f[column] not in values:
                    raise ValueError(f"{root / file}: {name} of {f[0]!r}: expected one of {', '.join(values)}, got {f[column]!r}")
                attributes[name].append(values[f[column]])
            xs, ys = np.array(f[1:6], dtype=np.float32), np.array(f[6:11], dtype=np.float32)
            k = np.full((6, 2), np.nan, dtype=np.float32)
            k[0], k[1], k[2] = (xs[0], ys[0]), (xs[1], ys[1]), (xs[2], ys[2])
            k[3] = ((xs[3] + xs[4]) / 2, (ys[3] + ys[4]) / 2)
            paths.append(root / f[0].replace("\\", "/"))
            labels.append(int(f[12] == "1"))
            split.append(part)
            marks.append(k)
    groups = ["smiling" if y else "not_smiling" for y in labels]
    return LabelledSet(
        "mtfl",
        paths,
        np.array(labels, dtype=np.int64),
        groups,
        fixed_split=np.array(split),
        landmarks=np.stack(marks),
        attributes={name: np.array(values) for name, values in attributes.items()},
    )


def load_ckplus(root: Path) -> LabelledSet:
    """CK+48 in class folders (anger, contempt, disgust, fear, happy, sadness, surprise): happy is
    smiling. Files are named ``S<subject>_<sequence>_<frame>``; several frames of one sequence are
    near-duplicates, so a subject is kept in one split."""
    ds = load_class_folders(root, "ckplus")
    ds.groups = [EXPRESSION_NAMES.get(g, g) for g in ds.groups]
    ds.subjects = [p.name.split("_", 1)[0] for p in ds.paths]
    return ds


#: A muxspace file name is the person's name and a trailing ``_<number>``.
_PERSON = re.compile(r"^(?P<person>.+)_\d+$")


def load_muxspace(root: Path) -> LabelledSet:
    """muxspace facial expressions: ``images/*.jpg`` and ``legend.csv`` (``user.id,image,emotion``).

    happiness is smiling (a generous convention: faint smiles are often happiness), every other
    emotion is not. An image labelled twice alike is read once; one labelled two ways is left out.
    Subjects are people (the name before a trailing ``_<number>``). LFW people are also in MTFL's
    training part: when MTFL lies beside this folder (``../mtfl/training.txt``), they are kept in
    training, so that no test face of either set was seen in training."""
    root = Path(root)
    legend = root / "legend.csv"
    if not legend.is_file() or not (root / "images").is_dir():
        raise FileNotFoundError(f"{root} does not look like muxspace: expected images/*.jpg and legend.csv (user.id,image,emotion)")
    seen: dict[str, set[str]] = {}
    with legend.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            seen.setdefault(row["image"].strip(), set()).add(row["emotion"].strip().lower())
    names = sorted(n for n, e in seen.items() if len(e) == 1 and (root / "images" / n).is_file())
    emotions = [next(iter(seen[n])) for n in names]
    groups = [EXPRESSION_NAMES.get(e, e) for e in emotions]
    subjects = [(m.group("person") if (m := _PERSON.match(Path(n).stem)) else Path(n).stem) for n in names]
    mtfl = root.parent / "mtfl" / "training.txt"
    in_mtfl: set[str] = set()
    if mtfl.is_file():
        for f in _mtfl_lines(mtfl):
            stem = Path(f[0].replace("\\", "/")).stem
            if f[0].startswith("lfw") and (m := _PERSON.match(stem)):
                in_mtfl.add(m.group("person"))
    else:
        log.warning("muxspace: %s not found; LFW people are split without regard to MTFL's training part", mtfl)
    return LabelledSet(
        "muxspace",
        [root / "images" / n for n in names],
        np.array([int(g == "happy") for g in groups], dtype=np.int64),
        groups,
        subjects=subjects,
        train_only=np.array([s in in_mtfl for s in subjects]),
    )


LOADERS = {"smilesmiled": load_smilesmiled, "fer2013": load_fer2013, "rafdb": load_rafdb, "mtfl": load_mtfl, "ckplus": load_ckplus, "muxspace": load_muxspace, "folders": load_class_folders}


def load_dataset(spec: str) -> LabelledSet:
    """``KIND:PATH`` with KIND one of :data:`LOADERS` (or a bare path: auto-detected)."""
    kind, _, path = spec.partition(":") if ":" in spec and spec.split(":", 1)[0] in LOADERS else ("", "", spec)
    p = Path(path)
    if kind and kind not in {"smilesmiled", "fer2013", "folders"}:
        return LOADERS[kind](p)
    if not kind and (p / "train_labels.csv").is_file() and (p / "train").is_dir():
        return load_rafdb(p)
    if not kind and (p / "training.txt").is_file() and (p / "testing.txt").is_file():
        return load_mtfl(p)
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


def shared_split_seed(cards: list[dict]) -> int:
    """The one split seed of several models' cards (:func:`card_split_seed`). Models trained on
    different splits have seen each other's held-out faces, so a script that compares or averages
    them on one split refuses them."""
    seeds = sorted({card_split_seed(card) for card in cards})
    if len(seeds) != 1:
        raise TrainingError(f"the models were trained on different splits (split seeds {seeds}); expected one split seed for all")
    return seeds[0]


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


def dataset_splits(ds: LabelledSet, seed: int, fractions: tuple[float, float] = (0.1, 0.1)) -> dict[str, np.ndarray]:
    """The train/val/test indices of a dataset: its own test split where it has one (validation
    then drawn, stratified, from its training part, the size of ``fractions[0]`` of the whole);
    whole subjects where it names them; otherwise :func:`split_indices`."""
    if ds.fixed_split is not None:
        test = np.flatnonzero(ds.fixed_split == "test")
        pool = np.flatnonzero(ds.fixed_split != "test")
        inner = split_indices(ds.labels[pool], seed, (fractions[0] * len(ds) / max(len(pool), 1), 0.0))
        return {"train": pool[inner["train"]], "val": pool[inner["val"]], "test": test}
    if ds.subjects is not None:
        subjects = np.array(ds.subjects)
        names = np.unique(subjects)
        n_val, n_test = max(1, round(len(names) * fractions[0])), max(1, round(len(names) * fractions[1]))
        pinned = np.unique(subjects[ds.train_only]) if ds.train_only is not None else np.array([], dtype=subjects.dtype)
        free = names[~np.isin(names, pinned)]
        order = np.random.default_rng(seed).permutation(len(free))
        part = {"test": free[order[:n_test]], "val": free[order[n_test : n_test + n_val]], "train": np.concatenate([free[order[n_test + n_val :]], pinned])}
        return {k: np.flatnonzero(np.isin(subjects, v)) for k, v in part.items()}
    return split_indices(ds.labels, seed, fractions)


def read_grey(path: Path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return img


def detector_view(grey: np.ndarray) -> np.ndarray:
    """A tight face crop as a face model is first shown it (:func:`gatekeeper.stills.padded_view`), RGB."""
    return cv2.cvtColor(padded_view(grey).image, cv2.COLOR_GRAY2RGB)


def find_keypoints(detector: FaceDetector, grey: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray | None:
    """Keypoints (6, 2) of the largest face in the image's own pixels, or None.

    With ``landmarks`` (the dataset's own eyes and mouth for the labelled face), the found face
    whose eyes lie nearest them, if they lie within half the eye distance; else None (the
    caller then cuts the chip at the landmarks themselves)."""
    faces, _ = detect_still(detector, grey)
    if landmarks is None or np.isnan(landmarks[[0, 1, 3]]).any():
        return max(faces, key=lambda f: f.area).keypoints if faces else None
    iod = float(np.linalg.norm(landmarks[0] - landmarks[1]))
    dist = [float(np.linalg.norm(f.keypoints[:2] - landmarks[:2], axis=1).mean()) for f in faces]
    if dist and min(dist) <= 0.5 * iod:
        return faces[int(np.argmin(dist))].keypoints
    return None


def prepare_chips(dataset: LabelledSet, detector: FaceDetector, cache_dir: Path | None = None, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return (chips uint8 (N,64,64), detected bool (N,)) for every image of ``dataset``."""
    marks = None if dataset.landmarks is None else hashlib.sha256(np.ascontiguousarray(dataset.landmarks).tobytes()).hexdigest()
    key = hashlib.sha256(json.dumps([GEOMETRY, PAD_FRACTION, PADDED_SIDE, "stills-4", [str(p) for p in dataset.paths], marks]).encode()).hexdigest()[:16]
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
        k = find_keypoints(detector, img, None if dataset.landmarks is None else dataset.landmarks[i])
        if k is not None:
            kps[i] = k / np.array(img.shape[::-1], dtype=np.float32)
            detected[i] = True
    if not detected.any():
        raise RuntimeError(f"the detector found no face in any image of {dataset.name}")
    median = np.median(kps[detected], axis=0)
    chips = np.empty((n, 64, 64), dtype=np.uint8)
    for i, img in enumerate(images):
        size = np.array(img.shape[::-1], dtype=np.float32)
        if detected[i]:
            points = kps[i] * size
        elif dataset.landmarks is not None and not np.isnan(dataset.landmarks[i][[0, 1, 3]]).any():
            # The run-time crop reads only the eyes and the mouth, which the dataset gives.
            points = np.nan_to_num(dataset.landmarks[i])
        else:
            points = median * size
        chips[i] = chip_from_keypoints(img, points)
    log.info("%s: %d images, face found in %.1f%%", dataset.name, n, 100 * detected.mean())
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: a run stopped mid-write leaves no half file under the name.
        partial = cache.with_name(cache.name + ".partial")
        with partial.open("wb") as f:
            np.savez_compressed(f, chips=chips, detected=detected)
        partial.replace(cache)
    return chips, detected


class Prepared:
    """Chips, labels and fixed-seed splits of one dataset."""

    def __init__(self, ds: LabelledSet, chips: np.ndarray, detected: np.ndarray, split_seed: int) -> None:
        self.name = ds.name
        self.ds = ds
        self.chips = chips
        self.labels = ds.labels
        self.detected = detected
        self.groups = np.array(ds.groups)
        self.expressions = ds.expressions()
        self.splits = dataset_splits(ds, split_seed)

    def fingerprint(self) -> str:
        """SHA-256 of the chips and labels: what a teacher's logits file was computed on."""
        h = hashlib.sha256(np.ascontiguousarray(self.chips).tobytes())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        return h.hexdigest()


def prepare(specs: list[str], face_model: Path, cache_dir: Path, split_seed: int) -> list[Prepared]:
    out = []
    with FaceDetector(face_model, video=False, min_confidence=0.5) as det:
        for spec in specs:
            ds = load_dataset(spec)
            chips, detected = prepare_chips(ds, det, cache_dir)
            out.append(Prepared(ds, chips, detected, split_seed))
            log.info("%s: %d faces (%d smiling), detector found %.1f%%", ds.name, len(ds), int(ds.labels.sum()), 100 * detected.mean())
    return out


def gather(sets: list[Prepared], split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One split of every dataset together: chips, labels, the dataset's index, and groups."""
    cat = np.concatenate
    return (
        cat([p.chips[p.splits[split]] for p in sets]),
        cat([p.labels[p.splits[split]] for p in sets]),
        cat([np.full(len(p.splits[split]), i) for i, p in enumerate(sets)]),
        cat([p.groups[p.splits[split]] for p in sets]),
    )

