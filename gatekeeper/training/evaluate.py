"""``gatekeeper eval``: metrics of an exported model on any labelled set, as JSON and figures.

Runs the exported ``.tflite`` through LiteRT (what the gate runs) on chips prepared with the
run-time crop. Prints a summary, writes ``metrics.json`` and ``eval.png`` (ROC curve,
reliability diagram, score histograms, confusion matrix) into ``--out``.

On a set that records attributes per face (MTFL: gender, glasses, head pose) ``metrics.json``
also holds ``by_group`` (:func:`~gatekeeper.training.metrics.group_metrics`) and ``--out`` a
``groups.md`` table; ``--group-table`` prints that table instead of the JSON summary.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..classify import SmileClassifier
from ..detect import FaceDetector, resolve_face_model
from ..errors import ArgumentParser, GatekeeperError
from ..logs import setup_logging
from .data import card_split_seed, dataset_splits, default_cache_dir, load_dataset, prepare_chips
from .lighting import LIGHTINGS, relight
from .metrics import (
    at_own_prior,
    binary_metrics,
    choose_threshold,
    group_metrics,
    group_table,
    reliability,
    resample_chips,
    roc_curve,
    smile_rate_by_class,
)

log = logging.getLogger(__name__)


def evaluate(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    out = binary_metrics(probs, labels, threshold)
    out["best_balanced_threshold"] = choose_threshold(probs, labels)
    out["reliability"] = reliability(probs, labels)
    return out


def plot(path: Path, title: str, probs: np.ndarray, labels: np.ndarray, metrics: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(18, 4.4))
    fpr, tpr, _ = roc_curve(probs, labels)
    ax[0].plot(fpr, tpr, lw=2)
    ax[0].plot([0, 1], [0, 1], "k:", lw=1)
    ax[0].set(title=f"ROC (AUC {metrics['roc_auc']:.3f})", xlabel="false positive rate", ylabel="true positive rate")
    rel = metrics["reliability"]
    ax[1].plot([0, 1], [0, 1], "k:", lw=1)
    ax[1].plot(rel["mean_prob"], rel["frac_smiling"], "o-")
    ax[1].set(title="reliability", xlabel="predicted probability", ylabel="fraction smiling", xlim=(0, 1), ylim=(0, 1))
    bins = np.linspace(0, 1, 41)
    ax[2].hist(probs[labels == 0], bins=bins, alpha=0.6, label="not smiling")
    ax[2].hist(probs[labels == 1], bins=bins, alpha=0.6, label="smiling")
    ax[2].axvline(metrics["threshold"], color="k", ls="--", label=f"threshold {metrics['threshold']:.2f}")
    ax[2].set(title="scores", xlabel="probability", ylabel="faces")
    ax[2].legend()
    c = metrics["confusion"]
    mat = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    ax[3].imshow(mat, cmap="Blues")
    for (i, j), v in np.ndenumerate(mat):
        ax[3].text(j, i, str(v), ha="center", va="center", fontsize=14)
    ax[3].set(title=f"confusion (acc {metrics['accuracy']:.3f}, bal {metrics['balanced_accuracy']:.3f})", xticks=[0, 1], yticks=[0, 1], xticklabels=["pred no", "pred smile"], yticklabels=["not smiling", "smiling"])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str]) -> int:
    ap = ArgumentParser(prog="gatekeeper eval", description="Evaluate the exported smile model on a labelled set.")
    ap.add_argument("--data", required=True, help="smilesmiled:PATH, fer2013:PATH, rafdb:PATH, mtfl:PATH, ckplus:PATH, muxspace:PATH or folders:PATH (class folders: smile/ and others)")
    ap.add_argument(
        "--face-widths",
        type=int,
        nargs="*",
        default=[24, 32, 48],
        help="also score the chips as faces this many pixels wide would give them (default 24 32 48; the option with no widths skips them)",
    )
    ap.add_argument(
        "--lighting",
        nargs="*",
        choices=LIGHTINGS,
        default=list(LIGHTINGS),
        help="also score the chips underexposed (dark: 2-3 stops, sensor noise, JPEG) and backlit (the face dark against a bright sky) "
        "(default: both; the option with none skips them)",
    )
    ap.add_argument("--model", default=None, help="smile .tflite (default: the shipped model)")
    ap.add_argument("--split", choices=("all", "train", "val", "test"), default="all", help="which fixed-seed split to score (default: every image)")
    ap.add_argument("--split-seed", "--seed", dest="split_seed", type=int, default=None, help="seed of the fixed splits (default: the one on the model's card)")
    ap.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the model card's)")
    ap.add_argument("--out", default="artifacts/eval", help="folder for metrics.json and eval.png")
    ap.add_argument("--cache", default=str(default_cache_dir()), help="where prepared chips are cached (default: $XDG_CACHE_HOME/gatekeeper)")
    ap.add_argument("--face-model", default=None)
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--group-table", action="store_true", help="print the accuracy by group (gender, glasses, pose: MTFL) as a Markdown table instead of the JSON summary")
    args = ap.parse_args(argv)
    setup_logging(args.log_level)

    clf = SmileClassifier(args.model)
    threshold = args.threshold if args.threshold is not None else float(clf.card.get("threshold", 0.5))
    ds = load_dataset(args.data)
    if args.group_table and not ds.attributes:
        raise GatekeeperError(f"--group-table: {ds.name} records no attribute per face; expected a set that does (mtfl:PATH)")
    with FaceDetector(resolve_face_model(args.face_model), video=False, min_confidence=0.5) as det:
        chips, detected = prepare_chips(ds, det, Path(args.cache))
    split_seed = card_split_seed(clf.card, args.split_seed)
    splits = dataset_splits(ds, split_seed)
    idx = np.arange(len(ds)) if args.split == "all" else splits[args.split]
    probs = clf.predict_in_batches(chips[idx])
    labels = ds.labels[idx]
    metrics = evaluate(probs, labels, threshold)
    if args.split != "all":
        # The model is calibrated for a half-smiling world; also score it at this set's own prior,
        # taken from the training split (never from the split being measured).
        metrics["at_own_prior"] = at_own_prior(probs, labels, float(ds.labels[splits["train"]].mean()))
    metrics.update(dataset=ds.name, split=args.split, split_seed=split_seed, model=str(clf.path), detector_found=round(float(detected[idx].mean()), 4))
    groups = np.array(ds.groups)[idx]
    if len(set(groups)) > 2:
        metrics["smile_rate_by_class"] = smile_rate_by_class(probs, groups, threshold)
    # Small faces: the same chips as faces FACE_WIDTHS pixels wide would give them.
    metrics["by_face_width"] = {}
    for width in args.face_widths:
        small = clf.predict_in_batches(resample_chips(chips[idx], width))
        m = binary_metrics(small, labels, threshold)
        row = {k: m[k] for k in ("accuracy", "balanced_accuracy", "roc_auc")}
        if len(set(groups)) > 2:
            row["smile_rate_by_class"] = smile_rate_by_class(small, groups, threshold)
        metrics["by_face_width"][str(width)] = row
    metrics["balanced_accuracy_by_face_width"] = {w: r["balanced_accuracy"] for w, r in metrics["by_face_width"].items()}
    # Bad light: the same chips underexposed or backlit (gatekeeper/training/lighting.py).
    metrics["by_lighting"] = {}
    for i, light in enumerate(args.lighting):
        lit = clf.predict_in_batches(relight(chips[idx], light, seed=i))
        m = binary_metrics(lit, labels, threshold)
        row = {k: m[k] for k in ("accuracy", "balanced_accuracy", "roc_auc")}
        if len(set(groups)) > 2:
            row["smile_rate_by_class"] = smile_rate_by_class(lit, groups, threshold)
        metrics["by_lighting"][light] = row
    metrics["balanced_accuracy_by_lighting"] = {k: r["balanced_accuracy"] for k, r in metrics["by_lighting"].items()}
    table = None
    if ds.attributes:
        metrics["by_group"] = group_metrics(probs, labels, {k: v[idx] for k, v in ds.attributes.items()}, threshold)
        metrics["accuracy_gap_by_group"] = {k: v["accuracy_gap"] for k, v in metrics["by_group"].items()}
        table = group_table(metrics["by_group"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if table is not None:
        (out / "groups.md").write_text(table, encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot(out / "eval.png", f"{ds.name} ({args.split}, n={len(idx)}) - {clf.path.name}", probs, labels, metrics)
    summary = {k: metrics[k] for k in ("dataset", "split", "n", "threshold", "accuracy", "balanced_accuracy", "roc_auc", "confusion")}
    summary.update({k: metrics[k] for k in ("smile_rate_by_class", "balanced_accuracy_by_face_width", "balanced_accuracy_by_lighting", "accuracy_gap_by_group") if k in metrics})
    if args.group_table and table is not None:
        print(table, end="")
    else:
        print(json.dumps(summary))
    log.info("wrote %s and %s", out / "metrics.json", out / "eval.png")
    return 0
