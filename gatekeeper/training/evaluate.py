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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..classify import SmileClassifier
from ..detect import FaceDetector, resolve_face_model
from ..errors import GatekeeperError
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


@dataclass
class EvalOptions:
    """One ``gatekeeper eval``: the fields of its options (``--help`` says what each does)."""

    data: str
    face_widths: list[int] = field(default_factory=lambda: [24, 32, 48])
    lighting: list[str] = field(default_factory=lambda: list(LIGHTINGS))
    model: str | None = None
    split: str = "all"
    split_seed: int | None = None
    threshold: float | None = None
    out: str = "artifacts/eval"
    cache: str = field(default_factory=lambda: str(default_cache_dir()))
    face_model: str | None = None
    group_table: bool = False


def _by_variant(clf: SmileClassifier, variants: dict[str, np.ndarray], labels: np.ndarray, groups: np.ndarray, threshold: float) -> dict[str, dict[str, Any]]:
    """Metrics of the same faces shown another way (smaller, darker...): one row per variant."""
    rows = {}
    for name, chips in variants.items():
        probs = clf.predict_in_batches(chips)
        m = binary_metrics(probs, labels, threshold)
        row = {k: m[k] for k in ("accuracy", "balanced_accuracy", "roc_auc")}
        if len(set(groups)) > 2:
            row["smile_rate_by_class"] = smile_rate_by_class(probs, groups, threshold)
        rows[name] = row
    return rows


def run_eval(opts: EvalOptions) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """Score the model on the set; write ``metrics.json``, ``eval.png`` (and ``groups.md``) into
    ``opts.out``; returns the metrics, the summary line's fields and the group table (or None)."""
    clf = SmileClassifier(opts.model)
    threshold = opts.threshold if opts.threshold is not None else float(clf.card.get("threshold", 0.5))
    ds = load_dataset(opts.data)
    if opts.group_table and not ds.attributes:
        raise GatekeeperError(f"--group-table: {ds.name} records no attribute per face; expected a set that does (mtfl:PATH)")
    with FaceDetector(resolve_face_model(opts.face_model), video=False, min_confidence=0.5) as det:
        chips, detected = prepare_chips(ds, det, Path(opts.cache))
    split_seed = card_split_seed(clf.card, opts.split_seed)
    splits = dataset_splits(ds, split_seed)
    idx = np.arange(len(ds)) if opts.split == "all" else splits[opts.split]
    probs = clf.predict_in_batches(chips[idx])
    labels = ds.labels[idx]
    metrics = evaluate(probs, labels, threshold)
    if opts.split != "all":
        # The model is calibrated for a half-smiling world; also score it at this set's own prior,
        # taken from the training split (never from the split being measured).
        metrics["at_own_prior"] = at_own_prior(probs, labels, float(ds.labels[splits["train"]].mean()))
    metrics.update(dataset=ds.name, split=opts.split, split_seed=split_seed, model=str(clf.path), detector_found=round(float(detected[idx].mean()), 4))
    groups = np.array(ds.groups)[idx]
    if len(set(groups)) > 2:
        metrics["smile_rate_by_class"] = smile_rate_by_class(probs, groups, threshold)
    # Small faces: the same chips as faces of these widths would give them; bad light: the same
    # chips underexposed or backlit (gatekeeper/training/lighting.py).
    metrics["by_face_width"] = _by_variant(clf, {str(w): resample_chips(chips[idx], w) for w in opts.face_widths}, labels, groups, threshold)
    metrics["balanced_accuracy_by_face_width"] = {w: r["balanced_accuracy"] for w, r in metrics["by_face_width"].items()}
    metrics["by_lighting"] = _by_variant(clf, {light: relight(chips[idx], light, seed=i) for i, light in enumerate(opts.lighting)}, labels, groups, threshold)
    metrics["balanced_accuracy_by_lighting"] = {k: r["balanced_accuracy"] for k, r in metrics["by_lighting"].items()}
    table = None
    if ds.attributes:
        metrics["by_group"] = group_metrics(probs, labels, {k: v[idx] for k, v in ds.attributes.items()}, threshold)
        metrics["accuracy_gap_by_group"] = {k: v["accuracy_gap"] for k, v in metrics["by_group"].items()}
        table = group_table(metrics["by_group"])
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    if table is not None:
        (out / "groups.md").write_text(table, encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot(out / "eval.png", f"{ds.name} ({opts.split}, n={len(idx)}) - {clf.path.name}", probs, labels, metrics)
    summary = {k: metrics[k] for k in ("dataset", "split", "n", "threshold", "accuracy", "balanced_accuracy", "roc_auc", "confusion")}
    summary.update({k: metrics[k] for k in ("smile_rate_by_class", "balanced_accuracy_by_face_width", "balanced_accuracy_by_lighting", "accuracy_gap_by_group") if k in metrics})
    log.info("wrote %s and %s", out / "metrics.json", out / "eval.png")
    return metrics, summary, table


__all__ = ["EvalOptions", "evaluate", "plot", "run_eval"]
