#!/usr/bin/env python3
"""How the smile model's decision holds up when the test faces are disturbed.

    python scripts/robustness.py [--model model/smile.tflite] [--out artifacts/robustness.json]

Each perturbation is applied to the 64x64 test chips of SMILEsmileD and FER2013 (the fixed-seed
test splits, never trained on), and the model is scored at the card's threshold:

* image quality: sharpening (a crisper camera than the training photos), blur, sensor noise;
* occlusion by a flat patch (a hand, a sleeve, a microphone): over the mouth, over the eyes, over
  the whole lower face.

A gate must fail closed: with the mouth covered, "smiling" should become rare (the camera cannot
see a smile), not more common. The numbers are the share of faces called smiling among the
labelled smiling (TP rate) and not smiling (FP rate), with ROC AUC and balanced accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.classify import SmileClassifier
from gatekeeper.detect import FaceDetector, resolve_face_model
from gatekeeper.training.data import load_dataset, prepare_chips, split_indices
from gatekeeper.training.metrics import binary_metrics

#: Mouth box in a chip (rows, columns), as in the training augmentation.
MOUTH_ROWS, MOUTH_COLS = slice(42, 56), slice(20, 44)


def _sharpen(chip: np.ndarray, amount: float) -> np.ndarray:
    blurred = cv2.GaussianBlur(chip, (0, 0), 1.0)
    return chip + amount * (chip - blurred)


def _patch(rows: slice, cols: slice) -> Callable[[np.ndarray], np.ndarray]:
    def apply(chip: np.ndarray) -> np.ndarray:
        out = chip.copy()
        out[rows, cols] = chip.mean()
        return out

    return apply


def perturbations(seed: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        "none": lambda c: c,
        "sharpen": lambda c: _sharpen(c, 1.0),
        "blur": lambda c: cv2.GaussianBlur(c, (0, 0), 1.0),
        "noise": lambda c: c + rng.normal(0.0, 8.0, c.shape),
        "mouth covered": _patch(slice(40, 58), slice(18, 46)),
        "eyes covered": _patch(slice(10, 26), slice(4, 60)),
        "lower face covered": _patch(slice(40, 64), slice(0, 64)),
    }


def main() -> int:
    shared = Path(os.environ.get("GATEKEEPER_SHARED", "../shared"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="smile .tflite (default: the shipped model)")
    ap.add_argument("--data", nargs="+", default=[f"smilesmiled:{shared}/data/smilesmiled", f"fer2013:{shared}/data/fer2013"])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--cache", default=".cache")
    ap.add_argument("--out", default="artifacts/robustness.json")
    args = ap.parse_args()

    clf = SmileClassifier(args.model)
    threshold = float(clf.card.get("threshold", 0.5))
    report: dict = {"model": str(clf.path), "threshold": threshold}
    print(f"{'dataset':12s} {'perturbation':20s} {'AUC':>6s} {'bal acc':>8s} {'TP rate':>8s} {'FP rate':>8s}")
    for spec in args.data:
        ds = load_dataset(spec)
        with FaceDetector(resolve_face_model(None, download=False), video=False, min_confidence=0.5) as det:
            chips, _ = prepare_chips(ds, det, Path(args.cache), progress=False)
        idx = split_indices(ds.labels, args.seed)["test"]
        x, y = chips[idx].astype(np.float32), ds.labels[idx]
        report[ds.name] = {}
        for name, f in perturbations(args.seed).items():
            probs = clf.predict_in_batches(np.clip(np.stack([f(c) for c in x]), 0, 255).astype(np.float32))
            m = binary_metrics(probs, y, threshold)
            row = {"roc_auc": m["roc_auc"], "balanced_accuracy": m["balanced_accuracy"], "tp_rate": m["recall_smile"], "fp_rate": round(1 - m["specificity"], 4)}
            report[ds.name][name] = row
            print(f"{ds.name:12s} {name:20s} {row['roc_auc']:6.3f} {row['balanced_accuracy']:8.3f} {row['tp_rate']:8.3f} {row['fp_rate']:8.3f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
