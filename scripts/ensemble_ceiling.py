#!/usr/bin/env python3
"""How far more models of the same kind would go: exported models and their mean-logit ensemble.

    python scripts/ensemble_ceiling.py --model model/smile.tflite RUN1/smile.tflite RUN2/smile.tflite ...

Each model is an exported ``.tflite`` with its card beside it, all trained on the same splits
(independent training seeds, say). The script scores the validation and test splits of every
training dataset through LiteRT and the run-time crop, and reports for each model, and for the
ensemble of all of them, the test accuracy and balanced accuracy at 0.5, ROC AUC, and the
accuracy at the set's own prior. The ensemble averages the models' logits and is calibrated as
``gatekeeper train`` calibrates a model: Platt scaling on the class-balanced validation split of
all datasets together, so that 0.5 is its balanced decision. Nothing is fitted on test.

An ensemble of N models costs N times the gate's budget per face; it is a measurement, not a
candidate for the gate. If N independent models together barely beat one, what holds the
numbers back is the data, not the optimiser's luck or the number of weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.classify import SmileClassifier
from gatekeeper.detect import resolve_face_model
from gatekeeper.errors import GatekeeperError
from gatekeeper.training.data import default_cache_dir, gather, prepare, shared_split_seed
from gatekeeper.training.metrics import at_own_prior, binary_metrics, fit_platt, sigmoid
from gatekeeper.training.options import DEFAULT_DATA, shared_dir
from gatekeeper.training.recipe import _weights


def mean_logit(probs: list[np.ndarray]) -> np.ndarray:
    """The mean of the models' logits, read back from their calibrated probabilities."""
    eps = 1e-7
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p / (1.0 - p)).mean(axis=0)


def calibrate(logits_va: np.ndarray, labels_va: np.ndarray, sources_va: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Probabilities from ``logits``, Platt-calibrated on class-balanced validation (as training does)."""
    a, b = fit_platt(logits_va, labels_va, _weights(labels_va, sources_va))
    return sigmoid(a * logits + b)


def main() -> int:
    shared = shared_dir()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", required=True, help="exported smile .tflite files, their model.json beside each")
    ap.add_argument("--data", nargs="+", default=[d.format(shared=shared) for d in DEFAULT_DATA])
    ap.add_argument("--cache", default=str(default_cache_dir()), help="where prepared chips are cached (default: $XDG_CACHE_HOME/gatekeeper)")
    ap.add_argument("--face-model", default=None)
    ap.add_argument("--out", default=None, help="also write the numbers as JSON here")
    args = ap.parse_args()

    if len({Path(m).resolve() for m in args.model}) != len(args.model):
        raise SystemExit("ensemble_ceiling: a model is named twice in --model; expected each exported model once (a repeat would weigh it double)")
    try:
        models = [SmileClassifier(m) for m in args.model]
        split_seed = shared_split_seed([m.card for m in models])
    except GatekeeperError as exc:  # a missing file, a model without its card, models of other splits
        raise SystemExit(f"ensemble_ceiling: {exc}") from None
    sets = prepare(args.data, resolve_face_model(args.face_model), Path(args.cache), split_seed)

    x_va, y_va, s_va, _ = gather(sets, "val")
    x_te, y_te, s_te, _ = gather(sets, "test")
    probs_va = [m.predict_in_batches(x_va) for m in models]
    probs_te = [m.predict_in_batches(x_te) for m in models]
    rows = {str(path): p for path, p in zip(args.model, probs_te, strict=True)}
    rows[f"ensemble of {len(models)}"] = calibrate(mean_logit(probs_va), y_va, s_va, mean_logit(probs_te))

    report: dict[str, dict] = {}
    for name, probs in rows.items():
        report[name] = {}
        cells = []
        for i, p in enumerate(sets):
            here = s_te == i
            m = binary_metrics(probs[here], y_te[here], 0.5)
            own = at_own_prior(probs[here], y_te[here], float(p.labels[p.splits["train"]].mean()))
            report[name][p.name] = {"accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"], "roc_auc": m["roc_auc"], "accuracy_at_own_prior": own["accuracy"]}
            cells.append(f"{p.name} {100 * m['accuracy']:.1f} / {100 * m['balanced_accuracy']:.1f} / {m['roc_auc']:.3f} / {100 * own['accuracy']:.1f}")
        print(f"{name}: " + " | ".join(cells))
    print("(test split: accuracy / balanced accuracy at 0.5 / ROC AUC / accuracy at the set's own prior)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
