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
(the peer's weakness is the crying, screaming face whose mouth is stretched). Those rates depend
on where each threshold lands, so ours is also reported at equal sensitivity: its threshold set
on validation so that it finds as many of the smiles there as the peer does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.classify import SmileClassifier
from gatekeeper.detect import _mediapipe, resolve_face_model
from gatekeeper.training.data import card_split_seed, default_cache_dir, detector_view, prepare, read_grey
from gatekeeper.training.metrics import binary_metrics, choose_threshold, smile_rate_by_class
from gatekeeper.training.options import DEFAULT_DATA, shared_dir


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
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(detector_view(grey)))
        result = self._landmarker.detect(image)
        if not result.face_blendshapes:
            return None
        shapes = {c.category_name: c.score for c in result.face_blendshapes[0]}
        return (shapes["mouthSmileLeft"] + shapes["mouthSmileRight"]) / 2.0

    def close(self) -> None:
        self._landmarker.close()


def measure(probs_va, y_va, probs_te, y_te, groups_te, threshold: float | None = None) -> dict:
    """Test metrics at ``threshold``, by default the balanced-accuracy arg-max on validation."""
    # A face the peer does not find counts as "not smiling" (the gate would stay shut).
    probs_va, probs_te = np.nan_to_num(probs_va, nan=0.0), np.nan_to_num(probs_te, nan=0.0)
    if threshold is None:
        threshold = choose_threshold(probs_va, y_va)
    m = binary_metrics(probs_te, y_te, threshold)
    out = {k: m[k] for k in ("n", "threshold", "accuracy", "balanced_accuracy", "roc_auc", "recall_smile", "specificity")}
    if len(set(groups_te)) > 2:
        out["smile_rate_by_class"] = smile_rate_by_class(probs_te, groups_te, threshold)
    return out


def main() -> int:
    shared = shared_dir()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="our smile .tflite (default: the shipped model)")
    ap.add_argument("--peer", default=str(shared / "models" / "face_landmarker.task"))
    ap.add_argument("--data", nargs="+", default=[d.format(shared=shared) for d in DEFAULT_DATA])
    ap.add_argument("--split-seed", "--seed", dest="split_seed", type=int, default=None, help="seed of the fixed splits (default: the one on our model's card)")
    ap.add_argument("--cache", default=str(default_cache_dir()), help="where prepared chips are cached (default: $XDG_CACHE_HOME/gatekeeper)")
    ap.add_argument("--out", default="artifacts/peer.json")
    args = ap.parse_args()

    ours = SmileClassifier(args.model)
    peer = Peer(Path(args.peer))
    split_seed = card_split_seed(ours.card, args.split_seed)
    report: dict = {"model": str(ours.path), "peer": args.peer, "split_seed": split_seed}
    try:
        for p in prepare(args.data, resolve_face_model(None), Path(args.cache), split_seed):
            out = {}
            val, test = p.splits["val"], p.splits["test"]
            y_va, y_te = p.labels[val], p.labels[test]
            # The peer goes first: ours is also measured at the peer's validation recall.
            for who in ("peer", "ours"):
                t0 = time.perf_counter()
                if who == "ours":
                    scores = {split: ours.predict_in_batches(p.chips[idx]) for split, idx in (("val", val), ("test", test))}
                else:
                    scores = {split: np.array([np.nan if (s := peer.score(read_grey(p.ds.paths[i]))) is None else s for i in idx], dtype=np.float64) for split, idx in (("val", val), ("test", test))}
                m = measure(scores["val"], y_va, scores["test"], y_te, p.groups[test])
                if who == "peer":
                    m["no_face_found"] = round(float(np.isnan(scores["test"]).mean()), 4)
                    peer_val_recall = float((np.nan_to_num(scores["val"], nan=0.0)[y_va == 1] >= m["threshold"]).mean())
                else:
                    # The thresholds above sit wherever each model's balanced accuracy peaks, so the
                    # per-class rates compare two operating points. Also compare at equal
                    # sensitivity: our threshold set on validation to the peer's validation recall.
                    at = float(np.quantile(scores["val"][y_va == 1], 1.0 - peer_val_recall))
                    out["ours_at_peer_recall"] = measure(scores["val"], y_va, scores["test"], y_te, p.groups[test], threshold=at)
                    print(json.dumps({"dataset": p.name, "model": "ours at the peer's validation recall", **out["ours_at_peer_recall"]}), flush=True)
                m["seconds"] = round(time.perf_counter() - t0, 1)
                out[who] = m
                print(json.dumps({"dataset": p.name, "model": who, **m}), flush=True)
            report[p.name] = out
    finally:
        peer.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
