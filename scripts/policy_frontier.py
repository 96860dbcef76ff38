#!/usr/bin/env python3
"""Can one threshold meet the calm-face targets together? A threshold sweep on validation.

    python scripts/policy_frontier.py --model model/smile_int8.tflite RUN/smile.tflite ...

The gate decides with one threshold, but the datasets put a faint smile on different sides of it:
SMILEsmileD calls it "not smiling", MTFL and muxspace often "smiling". Issue 30's targets ask for
both at once: at most 10% of SMILEsmileD's non-smiles called smiling with at least 92% of its
smiles found, MTFL accuracy at least 87%, RAF-DB happy faces found at least 92%, and muxspace
happiness against neutral (balanced) at least 94%. For each exported model this script scores the
chosen split (validation by default: choose there, report test) through LiteRT and the run-time
crop, sweeps the threshold from 0.01 to 0.99, and prints all five measures at the card's 0.5, at
SMILEsmileD's 10% point and where MTFL's accuracy and muxspace's balanced accuracy are best; then
the thresholds, if any, where every target is met. A model's ranking (its ROC AUC) bounds what any threshold can do; this
shows where the conventions, not the ranking, stand in the way.
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
from gatekeeper.training.data import default_cache_dir, prepare, shared_split_seed
from gatekeeper.training.metrics import roc_auc
from gatekeeper.training.options import DEFAULT_DATA, shared_dir

# Issue 30's targets on these measures: (measure, at least or at most, the bound).
TARGETS = {
    "smilesmiled_called": ("at most", 0.10),
    "smilesmiled_found": ("at least", 0.92),
    "mtfl_accuracy": ("at least", 0.87),
    "rafdb_happy_found": ("at least", 0.92),
    "muxspace_happy_vs_neutral": ("at least", 0.94),
}
SETS = ("smilesmiled", "mtfl", "rafdb", "muxspace")
# The measures that have a best threshold (the others only grow or shrink with it).
ACCURACIES = ("mtfl_accuracy", "muxspace_happy_vs_neutral")


def measures(scored: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], threshold: float) -> dict[str, float]:
    """The five measures at ``threshold``; ``scored`` maps a set's name to (probabilities, labels, classes)."""
    p, y, _ = scored["smilesmiled"]
    out = {"smilesmiled_called": float((p[y == 0] >= threshold).mean()), "smilesmiled_found": float((p[y == 1] >= threshold).mean())}
    p, y, _ = scored["mtfl"]
    out["mtfl_accuracy"] = float(((p >= threshold) == (y == 1)).mean())
    p, y, _ = scored["rafdb"]
    out["rafdb_happy_found"] = float((p[y == 1] >= threshold).mean())
    p, _, g = scored["muxspace"]
    out["muxspace_happy_vs_neutral"] = float(0.5 * ((p[g == "happy"] >= threshold).mean() + (p[g == "neutral"] < threshold).mean()))
    return out


def meets(values: dict[str, float]) -> bool:
    """Whether every target of :data:`TARGETS` holds."""
    return all(values[k] <= bound if way == "at most" else values[k] >= bound for k, (way, bound) in TARGETS.items())


def rate_point(negatives: np.ndarray, rate: float) -> float:
    """The lowest threshold at which at most ``rate`` of ``negatives`` score at or above it.

    Not :func:`~gatekeeper.training.metrics.policy_shift` read back through the sigmoid: that
    gives a logit offset halfway between two faces, for the export; this is a threshold on the
    scores as served, in their own float32 precision (an int8 model's come in steps of 1/256)."""
    s = np.sort(np.asarray(negatives))[::-1]
    allowed = int(np.floor(rate * len(s)))  # this many may be called smiling
    if allowed >= len(s):
        return 0.0
    # The next number up in the scores' own precision: compared with float32 scores, a float64
    # step would round back onto the score it means to exclude.
    return float(np.nextafter(s[allowed], np.array(np.inf, dtype=s.dtype)))


def sweep(scored: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, object]:
    """The measures at 0.5, at SMILEsmileD's 10% point and where MTFL's accuracy and muxspace's
    balanced accuracy are best, and the thresholds of the 0.01 grid (and those two points) where
    every target is met."""
    p, y, _ = scored["smilesmiled"]
    ten = rate_point(p[y == 0], 0.10)
    grid = sorted({round(t, 2) for t in np.arange(0.01, 1.0, 0.01)} | {0.5, ten})
    rows = {t: measures(scored, t) for t in grid}
    best = {}
    for key in ACCURACIES:
        t = max(grid, key=lambda th: (rows[th][key], -abs(th - 0.5)))  # ties: nearest the card's 0.5
        best[key] = {"threshold": t, **rows[t]}
    return {
        "at_0.5": rows[0.5],
        "smilesmiled_10pct": {"threshold": ten, **rows[ten]},
        "best": best,
        "all_targets_met_at": [t for t in grid if meets(rows[t])],
    }


def _line(label: str, threshold: float, m: dict[str, float]) -> str:
    return (f"  {label:<30} {threshold:.3f}  SMILEsmileD called {100 * m['smilesmiled_called']:.1f} found {100 * m['smilesmiled_found']:.1f}"
            f" | MTFL {100 * m['mtfl_accuracy']:.1f} | RAF-DB happy found {100 * m['rafdb_happy_found']:.1f}"
            f" | muxspace happy/neutral {100 * m['muxspace_happy_vs_neutral']:.1f}")


def main() -> int:
    shared = shared_dir()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", required=True, help="exported smile .tflite files, their model.json beside each")
    ap.add_argument("--split", choices=("val", "test"), default="val", help="the split to sweep (default val: choose there, report test)")
    ap.add_argument("--data", nargs="+", default=[d.format(shared=shared) for d in DEFAULT_DATA])
    ap.add_argument("--cache", default=str(default_cache_dir()), help="where prepared chips are cached (default: $XDG_CACHE_HOME/gatekeeper)")
    ap.add_argument("--face-model", default=None)
    ap.add_argument("--out", default=None, help="also write the numbers as JSON here")
    args = ap.parse_args()

    try:
        models = {m: SmileClassifier(m) for m in args.model}
        split_seed = shared_split_seed([m.card for m in models.values()])
    except GatekeeperError as exc:  # a missing file, a model without its card, models of other splits
        raise SystemExit(f"policy_frontier: {exc}") from None
    sets = {p.name: p for p in prepare(args.data, resolve_face_model(args.face_model), Path(args.cache), split_seed)}
    missing = [n for n in SETS if n not in sets]
    if missing:
        raise SystemExit(f"policy_frontier: --data lacks {', '.join(missing)}; expected every set the targets name ({', '.join(SETS)})")

    report = {}
    for path, clf in models.items():
        scored = {}
        for name in SETS:
            idx = sets[name].splits[args.split]
            scored[name] = (clf.predict_in_batches(sets[name].chips[idx]), sets[name].labels[idx], sets[name].groups[idx])
        result = sweep(scored)
        result["roc_auc"] = {n: roc_auc(p, y) for n, (p, y, _) in scored.items()}
        report[path] = result
        print(f"{path} ({args.split} split; ROC AUC " + ", ".join(f"{n} {a:.4f}" for n, a in result["roc_auc"].items()) + ")")
        print(_line("at the card's 0.5", 0.5, result["at_0.5"]))
        print(_line("SMILEsmileD's 10% point", result["smilesmiled_10pct"]["threshold"], result["smilesmiled_10pct"]))
        for key, row in result["best"].items():
            print(_line(f"best {key}", row["threshold"], row))
        met = result["all_targets_met_at"]
        print("  every target met at: " + (", ".join(f"{t:.3f}" for t in met) if met else "no threshold"), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
