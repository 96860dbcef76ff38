#!/usr/bin/env python3
"""How the smile model's decision holds up when the test faces are disturbed.

    python scripts/robustness.py [--model model/smile.tflite] [--out artifacts/robustness.json]

Each perturbation is applied to the 64x64 test chips of SMILEsmileD and FER2013 (the fixed-seed
test splits, never trained on), and the model is scored at the card's threshold:

* image quality: sharpening (a crisper camera than the training photos), blur, sensor noise,
  light from one side;
* occlusion by a flat patch (a hand, a sleeve, a microphone): over the mouth, over the eyes, over
  the whole lower face; and dark glasses.

A gate must fail closed: with the mouth covered, "smiling" should become rare (the camera cannot
see a smile), not more common. The numbers are the share of faces called smiling among the
labelled smiling (TP rate) and not smiling (FP rate), with ROC AUC and balanced accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.classify import SmileClassifier
from gatekeeper.detect import resolve_face_model
from gatekeeper.training.augment import EYES_HALF_APART, EYES_ROW, MOUTH
from gatekeeper.training.data import card_split_seed, default_cache_dir, prepare
from gatekeeper.training.metrics import binary_metrics
from gatekeeper.training.options import DEFAULT_DATA, shared_dir

#: The training augmentation's mouth box, 2 pixels wider on every side.
MOUTH_COVER = (slice(int(MOUTH[0]) - 2, int(MOUTH[1]) + 2), slice(int(MOUTH[2]) - 2, int(MOUTH[3]) + 2))


def _sharpen(chip: np.ndarray, amount: float) -> np.ndarray:
    blurred = cv2.GaussianBlur(chip, (0, 0), 1.0)
    return chip + amount * (chip - blurred)


def _patch(rows: slice, cols: slice) -> Callable[[np.ndarray], np.ndarray]:
    def apply(chip: np.ndarray) -> np.ndarray:
        out = chip.copy()
        out[rows, cols] = chip.mean()
        return out

    return apply


def _dark_glasses(chip: np.ndarray) -> np.ndarray:
    """Two dark, round-cornered rectangular lenses and a bridge over the training augmentation's
    eye positions (which draws ellipses)."""
    out = chip.copy()
    row, apart = int(EYES_ROW), int(EYES_HALF_APART)
    for cx in (32 - apart, 32 + apart):
        cv2.rectangle(out, (cx - 11, row - 5), (cx + 11, row + 6), 25.0, thickness=-1, lineType=cv2.LINE_AA)
    cv2.line(out, (27, row - 3), (37, row - 3), 25.0, thickness=2)
    return out


def _side_light(rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """Light from one side (the sun low beside the queue): brightness falls linearly across the
    face to 30% on the far side, the side drawn at random."""

    def apply(chip: np.ndarray) -> np.ndarray:
        ramp = np.linspace(1.0, 0.3, chip.shape[1])
        return chip * (ramp if rng.random() < 0.5 else ramp[::-1])[None, :]

    return apply


def perturbations(seed: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        "none": lambda c: c,
        "sharpen": lambda c: _sharpen(c, 1.0),
        "blur": lambda c: cv2.GaussianBlur(c, (0, 0), 1.0),
        "noise": lambda c: c + rng.normal(0.0, 8.0, c.shape),
        "side light": _side_light(rng),
        "mouth covered": _patch(*MOUTH_COVER),
        "eyes covered": _patch(slice(int(EYES_ROW) - 6, int(EYES_ROW) + 10), slice(4, 60)),
        "dark glasses": _dark_glasses,
        "lower face covered": _patch(slice(40, 64), slice(0, 64)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="smile .tflite (default: the shipped model)")
    ap.add_argument("--data", nargs="+", default=[d.format(shared=shared_dir()) for d in DEFAULT_DATA])
    ap.add_argument("--seed", type=int, default=1234, help="seed of the random perturbations (noise, light)")
    ap.add_argument("--split-seed", type=int, default=None, help="seed of the fixed splits (default: the one on the model's card)")
    ap.add_argument("--split", choices=("val", "test"), default="test", help="which fixed-seed split (compare candidate models on val)")
    ap.add_argument("--cache", default=str(default_cache_dir()), help="where prepared chips are cached (default: $XDG_CACHE_HOME/gatekeeper)")
    ap.add_argument("--out", default="artifacts/robustness.json")
    args = ap.parse_args()

    clf = SmileClassifier(args.model)
    threshold = float(clf.card.get("threshold", 0.5))
    split_seed = card_split_seed(clf.card, args.split_seed)
    report: dict = {"model": str(clf.path), "threshold": threshold, "split": args.split, "split_seed": split_seed}
    print(f"{'dataset':12s} {'perturbation':20s} {'AUC':>6s} {'bal acc':>8s} {'TP rate':>8s} {'FP rate':>8s}")
    for p in prepare(args.data, resolve_face_model(None), Path(args.cache), split_seed):
        idx = p.splits[args.split]
        x, y = p.chips[idx].astype(np.float32), p.labels[idx]
        report[p.name] = {}
        for name, f in perturbations(args.seed).items():
            probs = clf.predict_in_batches(np.clip(np.stack([f(c) for c in x]), 0, 255).astype(np.float32))
            m = binary_metrics(probs, y, threshold)
            row = {"roc_auc": m["roc_auc"], "balanced_accuracy": m["balanced_accuracy"], "tp_rate": m["recall_smile"], "fp_rate": round(1 - m["specificity"], 4)}
            report[p.name][name] = row
            print(f"{p.name:12s} {name:20s} {row['roc_auc']:6.3f} {row['balanced_accuracy']:8.3f} {row['tp_rate']:8.3f} {row['fp_rate']:8.3f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
