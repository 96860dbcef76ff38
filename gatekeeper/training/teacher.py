"""Teachers: models whose opinion of each training chip becomes part of the student's target.

Two kinds. Exported models (``.tflite`` with their card), run on the chips at the start of
training (:func:`teacher_logits`). Or a **logits file** (``.npz``), written once by the run that
trained a large teacher (``gatekeeper train --write-logits FILE``) with the teacher's smile logit
(through its per-source link, when it had one) and expression logits for every chip of every set,
and the provenance of each: the command, the code revision, and the SHA-256 of the chips and labels
of each set. A student reads the file like a dataset; a set whose chips changed since is refused.
"""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TrainingError
from .data import Prepared

LOGITS_KIND = "gatekeeper teacher logits v1"


def parse_teacher(spec: str) -> tuple[str | None, Path]:
    """``PATH`` (a teacher for every dataset) or ``DATASET:PATH`` (for that dataset's faces only)."""
    name, sep, rest = spec.partition(":")
    if sep and name and "/" not in name and "\\" not in name and not Path(spec).exists():
        return name, Path(rest)
    return None, Path(spec)


def teacher_logits(
    teachers: list[tuple[str | None, Callable[[np.ndarray], np.ndarray]]], names: list[str], chips: np.ndarray, sources: np.ndarray
) -> np.ndarray:
    """The teachers' mean logit for each chip, over the teachers that apply to its dataset.

    ``teachers``: (dataset name or None for all, ``predict``), ``predict`` mapping chips to
    calibrated probabilities (an exported model). Averaging in logit space keeps a sure teacher
    sure; every dataset needs at least one teacher.
    """
    total = np.zeros(len(chips), dtype=np.float64)
    count = np.zeros(len(chips), dtype=np.float64)
    for only, predict in teachers:
        mask = np.ones(len(chips), bool) if only is None else sources == names.index(only)
        if not mask.any():
            continue
        p = np.clip(np.asarray(predict(chips[mask]), dtype=np.float64), 1e-6, 1.0 - 1e-6)
        total[mask] += np.log(p / (1.0 - p))
        count[mask] += 1
    missing = sorted({names[i] for i in np.unique(sources[count == 0])})
    if missing:
        raise ValueError(f"no teacher applies to dataset(s) {', '.join(missing)}; give a teacher PATH for all, or DATASET:PATH for each")
    return total / count



def code_revision() -> str:
    """The git commit of the code that runs (``+dirty`` when it has uncommitted changes), or
    ``unknown`` outside a checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "gatekeeper"], cwd=root, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def write_logits(path: Path, sets: list[Prepared], smile: dict[str, np.ndarray], expression: dict[str, np.ndarray] | None, about: dict[str, Any]) -> dict[str, Any]:
    """Write a logits file: per set, the smile logit of every chip (``smile[name]``, shape (N,))
    and the expression logits (``expression[name]``, (N, classes)), with the provenance.
    Written aside and renamed, so a stopped run leaves no half file. Returns the provenance."""
    meta = {
        "kind": LOGITS_KIND,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "code_revision": code_revision(),
        "sets": {p.name: {"count": len(p.chips), "data_sha256": p.fingerprint()} for p in sets},
        **about,
    }
    arrays = {f"smile/{p.name}": np.asarray(smile[p.name], np.float32) for p in sets}
    if expression is not None:
        arrays.update({f"expression/{p.name}": np.asarray(expression[p.name], np.float32) for p in sets})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
    partial.replace(path)
    return meta


@dataclass
class TeacherLogits:
    """A logits file, read: its provenance and, per set, the smile and expression logits."""

    path: Path
    meta: dict[str, Any]
    smile: dict[str, np.ndarray]
    expression: dict[str, np.ndarray]

    @classmethod
    def read(cls, path: Path) -> TeacherLogits:
        path = Path(path)
        try:
            with np.load(path) as z:
                meta = json.loads(str(z["meta"]))
                smile = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("smile/")}
                expression = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("expression/")}
        except (OSError, ValueError, KeyError) as exc:
            raise TrainingError(f"--teacher {str(path)!r}: not a logits file written by 'gatekeeper train --write-logits' ({exc})") from None
        if meta.get("kind") != LOGITS_KIND:
            raise TrainingError(f"--teacher {str(path)!r}: expected a file of kind {LOGITS_KIND!r}, got {meta.get('kind')!r}")
        return cls(path, meta, smile, expression)

    def for_split(self, sets: list[Prepared], split: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The smile logits (and expression logits, if every set has them) of one split of every
        set, in the order :func:`~gatekeeper.training.data.gather` lays the chips out."""
        smile, expression = [], []
        for p in sets:
            known = self.meta["sets"].get(p.name)
            if known is None or p.name not in self.smile:
                raise TrainingError(f"--teacher {str(self.path)!r} holds no logits for dataset {p.name!r} (it has {', '.join(sorted(self.meta['sets']))})")
            if known["data_sha256"] != p.fingerprint():
                raise TrainingError(f"--teacher {str(self.path)!r}: the chips or labels of {p.name!r} differ from those its logits were computed on; write the logits again")
            idx = p.splits[split]
            smile.append(self.smile[p.name][idx])
            if p.name in self.expression:
                expression.append(self.expression[p.name][idx])
        both = len(expression) == len(sets)
        return np.concatenate(smile), (np.concatenate(expression) if both else None)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


__all__ = ["LOGITS_KIND", "TeacherLogits", "code_revision", "parse_teacher", "softmax", "teacher_logits", "write_logits"]
