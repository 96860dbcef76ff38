#!/usr/bin/env python3
"""Our smile model against a strong general-purpose peer, on the same held-out faces.

    python scripts/peer_compare.py [--model model/smile.tflite] [--out artifacts/peer.json]

The peer is MediaPipe's Face Landmarker (``../shared/models/face_landmarker.task``): its smile
score is the mean of the ``mouthSmileLeft`` and ``mouthSmileRight`` blendshapes. Both see the same
image (the dataset's tight crop, padded and upscaled exactly as training prepares it for the
detector); ours goes through the detector and the run-time crop, as at the gate.

Each model's threshold is chosen on the validation split (class-balanced) and then applied to
the test split, so neither is tuned on what it is measured on. Reported per dataset: accuracy,
balanced accuracy, ROC AUC, and for FER2013 the rate at which each expression is called a smile
(the peer's weakness is the crying, screaming face whose mouth is stretched).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.classify import SmileClassifier
from gatekeeper.detect import FaceDetector, _mediapipe, resolve_face_model
from gatekeeper.training.data import PAD_FRACTION, UPSCALE, load_dataset, prepare_chips, read_grey, split_indices
from gatekeeper.training.metrics import binary_metrics, choose_threshold


class Peer:
    """Face Landmarker blendshapes as a smile score (None where it finds no face)."""

    def __init__(self, model: Path) -> None:
        mp, base_options, vision = _mediapipe()
        options = vision.FaceLandmarkerOptions(
            base_options=base_options(model_asset_path=str(model)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=1,
            output_face_blendshapes=True,
        )
        self._mp = mp
        self._landmarker = vision.FaceLandmarker.create_from_options(options)

    def score(self, grey: np.ndarray) -> float | None:
        h, w = grey.shape[:2]
        py, px = int(PAD_FRACTION * h), int(PAD_FRACTION * w)
        padded = cv2.copyMakeBorder(grey, py, py, px, px, cv2.BORDER_REPLICATE)
        big = cv2.resize(padded, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(cv2.cvtColor(big, cv2.COLOR_GRAY2RGB)))
        result = self._landmarker.detect(image)
        if not result.face_blendshapes:
            return None
        shapes = {c.category_name: c.score for c in result.face_blendshapes[0]}
        return (shapes["mouthSmileLeft"] + shapes["mouthSmileRight"]) / 2.0

    def close(self) -> None:
        self._landmarker.close()


def measure(name: str, probs_va, y_va, probs_te, y_te, groups_te) -> dict:
    # A face the peer does not find counts as "not smiling" (the gate would stay shut).
    probs_va, probs_te = np.nan_to_num(probs_va, nan=0.0), np.nan_to_num(probs_te, nan=0.0)
    threshold = choose_threshold(probs_va, y_va)
    m = binary_metrics(probs_te, y_te, threshold)
    if len(set(groups_te)) > 2:
        m["smile_rate_by_class"] = {g: round(float((probs_te[groups_te == g] >= threshold).mean()), 4) for g in sorted(set(groups_te))}
    return {k: m[k] for k in ("n", "threshold", "accuracy", "balanced_accuracy", "roc_auc", "recall_smile", "specificity")} | (
        {"smile_rate_by_class": m["smile_rate_by_class"]} if "smile_rate_by_class" in m else {}
    )


def main() -> int:
    shared = Path(os.environ.get("GATEKEEPER_SHARED", "../shared"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="our smile .tflite (default: the shipped model)")
    ap.add_argument("--peer", default=str(shared / "models" / "face_landmarker.task"))
    ap.add_argument("--data", nargs="+", default=[f"smilesmiled:{shared}/data/smilesmiled", f"fer2013:{shared}/data/fer2013"])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--cache", default=".cache")
    ap.add_argument("--out", default="artifacts/peer.json")
    args = ap.parse_args()

    ours = SmileClassifier(args.model)
    peer = Peer(Path(args.peer))
    report: dict = {"model": str(ours.path), "peer": args.peer}
    try:
        for spec in args.data:
            ds = load_dataset(spec)
            with FaceDetector(resolve_face_model(None, download=False), video=False, min_confidence=0.5) as det:
                chips, _ = prepare_chips(ds, det, Path(args.cache), progress=False)
            splits = split_indices(ds.labels, args.seed)
            groups = np.array(ds.groups)
            out = {}
            for who in ("ours", "peer"):
                scores = {}
                t0 = time.perf_counter()
                for split in ("val", "test"):
                    idx = splits[split]
                    if who == "ours":
                        scores[split] = ours.predict_in_batches(chips[idx])
                    else:
                        scores[split] = np.array([np.nan if (s := peer.score(read_grey(ds.paths[i]))) is None else s for i in idx], dtype=np.float64)
                m = measure(who, scores["val"], ds.labels[splits["val"]], scores["test"], ds.labels[splits["test"]], groups[splits["test"]])
                if who == "peer":
                    m["no_face_found"] = round(float(np.isnan(scores["test"]).mean()), 4)
                m["seconds"] = round(time.perf_counter() - t0, 1)
                out[who] = m
                print(json.dumps({"dataset": ds.name, "model": who, **m}), flush=True)
            report[ds.name] = out
    finally:
        peer.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
