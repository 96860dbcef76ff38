#!/usr/bin/env python3
"""The smile model against SMILEsmileD's labels and against labels given by eye.

    python scripts/relabel_check.py [--model model/smile.tflite ...] [--out artifacts/relabel.json]

``scripts/relabel/smilesmiled_test_240.csv`` holds 240 faces drawn at random (fixed seeds) from
the fixed-seed SMILEsmileD test split, each judged by eye from the original 64x64 picture
(shown at 2x, numbered, without its label or any model score) as smiling, not smiling, or
ambiguous (a faint or closed-lip smile, talking with teeth showing, too blurred to tell). One
person judged them, on 2026-11-24; treat the by-eye labels as a second opinion, not as truth.

For each model the script prints, on the faces judged clearly either way: how often the dataset
label and the judgment by eye disagree, and the model's accuracy against each, at the card's
threshold and at the set's own prior (threshold 0.72).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.classify import SmileClassifier
from gatekeeper.detect import FaceDetector, resolve_face_model
from gatekeeper.training.data import LabelledSet, prepare_chips
from gatekeeper.training.options import shared_dir

RELABEL = Path(__file__).resolve().parent / "relabel" / "smilesmiled_test_240.csv"
CODES = {"smiling": 1, "not_smiling": 0, "ambiguous": -1}
OWN_PRIOR_THRESHOLD = 0.72  # 1 - the SMILEsmileD training prior (0.28), as in the model card


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", default=["model/smile.tflite"])
    ap.add_argument("--data", default=None, help="SMILEsmileD root (default: $GATEKEEPER_SHARED/data/smilesmiled/SMILEs)")
    ap.add_argument("--face-model", default=None)
    ap.add_argument("--out", default=None, help="also write the numbers as JSON here")
    args = ap.parse_args()

    root = Path(args.data) if args.data else shared_dir() / "data" / "smilesmiled" / "SMILEs"
    with RELABEL.open(newline="") as f:
        rows = list(csv.DictReader(f))
    paths = [root / r["path"] for r in rows]
    dataset = np.array([CODES[r["dataset_label"]] for r in rows])
    by_eye = np.array([CODES[r["by_eye"]] for r in rows])
    clear = by_eye >= 0

    with FaceDetector(resolve_face_model(args.face_model), video=False, min_confidence=0.5) as det:
        chips, detected = prepare_chips(LabelledSet("relabel", paths, dataset, ["x"] * len(paths)), det, None, progress=False)

    report: dict[str, object] = {
        "faces": len(rows),
        "detector_found": round(float(detected.mean()), 4),
        "ambiguous": int((~clear).sum()),
        "ambiguous_labelled_smiling": int(dataset[~clear].sum()),
        "clear": int(clear.sum()),
        "labels_disagree_with_eye": int((dataset[clear] != by_eye[clear]).sum()),
        "labelled_not_smiling_but_smiling_by_eye": int(((dataset == 0) & (by_eye == 1)).sum()),
        "labelled_smiling_but_not_by_eye": int(((dataset == 1) & (by_eye == 0)).sum()),
        "models": {},
    }
    for model in args.model:
        clf = SmileClassifier(model)
        probs = clf.predict_in_batches(chips)[clear]
        out = {}
        for name, thr in (("card", float(clf.card.get("threshold", 0.5))), ("own_prior", OWN_PRIOR_THRESHOLD)):
            pred = (probs >= thr).astype(int)
            out[name] = {
                "threshold": thr,
                "accuracy_vs_dataset_labels": round(float((pred == dataset[clear]).mean()), 4),
                "accuracy_vs_by_eye": round(float((pred == by_eye[clear]).mean()), 4),
            }
        report["models"][model] = out  # type: ignore[index]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
