"""Binary classification metrics in plain numpy (no TensorFlow, no scikit-learn)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["binary_metrics", "choose_threshold", "fit_platt", "group_metrics", "group_table", "policy_shift", "reliability", "roc_auc", "roc_curve"]


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds), thresholds descending."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order].astype(np.float64)
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    p, n = max(y.sum(), 1e-12), max(len(y) - y.sum(), 1e-12)
    return np.r_[0.0, fps / n], np.r_[0.0, tps / p], np.r_[np.inf, s[distinct]]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties counted half), via the rank statistic."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    s = np.asarray(scores)[order]
    # average ranks of ties
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, balanced accuracy, ROC AUC, confusion matrix at ``threshold``."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    pred = (probs >= threshold).astype(int)
    tp = int(((pred == 1) & (labels == 1)).sum())
    tn = int(((pred == 0) & (labels == 0)).sum())
    fp = int(((pred == 1) & (labels == 0)).sum())
    fn = int(((pred == 0) & (labels == 1)).sum())
    tpr = tp / max(tp + fn, 1)
    tnr = tn / max(tn + fp, 1)
    return {
        "n": len(labels),
        "positives": int(labels.sum()),
        "threshold": round(float(threshold), 4),
        "accuracy": round((tp + tn) / max(len(labels), 1), 4),
        "balanced_accuracy": round((tpr + tnr) / 2, 4),
        "roc_auc": round(roc_auc(probs, labels), 4),
        "recall_smile": round(tpr, 4),
        "specificity": round(tnr, 4),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def smile_rate_by_class(probs: np.ndarray, groups: np.ndarray, threshold: float) -> dict[str, float]:
    """Share of each group (e.g. FER expression) scored at or above ``threshold``."""
    probs, groups = np.asarray(probs), np.asarray(groups)
    return {str(g): round(float((probs[groups == g] >= threshold).mean()), 4) for g in sorted(set(groups.tolist()))}


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (``z`` = 1.96): honest for small groups and
    for proportions near 0 or 1, where the normal approximation is not."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(max(0.0, float(centre - half)), 4), round(min(1.0, float(centre + half)), 4))


def _rate(hits: int, n: int) -> float | None:
    return round(hits / n, 4) if n else None


def group_metrics(probs: np.ndarray, labels: np.ndarray, attributes: dict[str, Any], threshold: float) -> dict[str, dict[str, dict[str, Any]]]:
    """How the model does for each group of faces, at ``threshold``.

    ``attributes`` maps an attribute name to one group name per face, aligned with ``probs`` and
    ``labels`` (MTFL's ``LabelledSet.attributes`` indexed by the split:
    ``{k: v[idx] for k, v in ds.attributes.items()}``). For each attribute and group (sorted by
    name): ``n``, ``smiling`` (faces labelled smiling), ``accuracy`` with its 95% interval
    (``accuracy_95``, Wilson), ``smiles_found`` (share of the smiling faces scored smiling) and
    ``non_smiling_called_smiling`` (share of the others scored smiling); a rate over no face is
    None. Each attribute also gets ``accuracy_gap``: the best group's accuracy minus the worst's.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    called = probs >= threshold
    out: dict[str, dict[str, Any]] = {}
    for name, values in attributes.items():
        values = np.asarray(values)
        if values.shape != labels.shape:
            raise ValueError(f"group_metrics: attribute {name!r} has {values.size} values for {labels.size} faces; expected one per face")
        rows: dict[str, Any] = {}
        for group in sorted(set(values.tolist())):
            m = values == group
            y, c = labels[m], called[m]
            correct, smiling = int((c == (y == 1)).sum()), int(y.sum())
            rows[str(group)] = {
                "n": int(m.sum()),
                "smiling": smiling,
                "accuracy": _rate(correct, int(m.sum())),
                "accuracy_95": list(wilson_interval(correct, int(m.sum()))),
                "smiles_found": _rate(int((c & (y == 1)).sum()), smiling),
                "non_smiling_called_smiling": _rate(int((c & (y == 0)).sum()), int(m.sum()) - smiling),
            }
        accuracies = [r["accuracy"] for r in rows.values()]
        out[name] = {"groups": rows, "accuracy_gap": round(max(accuracies) - min(accuracies), 4) if accuracies else None}
    return out


def group_table(by_group: dict[str, dict[str, Any]]) -> str:
    """:func:`group_metrics`' result as a Markdown table, one row per group (what docs/model.md shows)."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    lines = [
        "| attribute | group | faces | smiling | accuracy (95% interval) | smiles found | non-smiling called smiling |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, entry in by_group.items():
        for group, r in entry["groups"].items():
            lo, hi = r["accuracy_95"]
            lines.append(f"| {name} | {group} | {r['n']} | {r['smiling']} | {pct(r['accuracy'])} ({100 * lo:.1f}-{100 * hi:.1f}) | {pct(r['smiles_found'])} | {pct(r['non_smiling_called_smiling'])} |")
    return "\n".join(lines) + "\n"


def at_own_prior(probs: np.ndarray, labels: np.ndarray, prior: float) -> dict[str, Any]:
    """Accuracy of a model calibrated for a half-smiling world, on a set whose smiling prior is
    ``prior`` (known beforehand, e.g. from its training split).

    Bayes' rule moves the decision: posterior odds = odds(p) * prior / (1 - prior) >= 1, that is
    p >= 1 - prior. Nothing is fitted on the set being measured.
    """
    threshold = 1.0 - float(prior)
    pred = np.asarray(probs) >= threshold
    return {"prior": round(float(prior), 4), "threshold": round(threshold, 4), "accuracy": round(float((pred == (np.asarray(labels) == 1)).mean()), 4)}


def choose_threshold(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The threshold that maximises (weighted) balanced accuracy; ties go to the middle."""
    grid = np.linspace(0.05, 0.95, 181)
    labels = np.asarray(labels).astype(bool)
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    wp, wn = w[labels].sum(), w[~labels].sum()
    scores = np.array([(w[labels & (probs >= t)].sum() / wp + w[~labels & (probs < t)].sum() / wn) / 2 for t in grid])
    best = np.flatnonzero(scores >= scores.max() - 1e-9)
    return float(grid[best[len(best) // 2]])


def policy_shift(calibrated_logits: np.ndarray, rate: float) -> float:
    """The offset to add to calibrated logits of one set's non-smiles (measured from the card's
    threshold: the logit minus the threshold's) so that at most ``rate`` of them reach it: the gate's policy, what it calls smiling,
    pinned to a strict set's validation false-positive rate. Halfway between the last face let
    through and the first held back, so that the rate is met without hinging on one face. Faces
    tied with the first one held back are held back too: fewer than ``rate`` may then pass, never more.

    >>> policy_shift(np.array([-2.0, -1.0, 0.0, 1.0, 3.0]), 0.2)  # one of five may pass
    -2.0
    >>> policy_shift(np.array([-2.0, -1.0, 1.0, 1.0, 3.0]), 0.4)  # two may pass, but 1.0 is tied
    -2.0
    """
    z = np.sort(np.asarray(calibrated_logits, dtype=np.float64))[::-1]
    if not len(z):
        raise ValueError("the policy needs non-smiles to measure")
    k = int(np.floor(rate * len(z) + 1e-9))  # how many may reach 0.5
    if k >= len(z):
        return float(-z[-1] + 1.0)
    held = z[k]  # the largest that must stay below 0.5, and every face tied with it
    passed = z[:k][z[:k] > held]
    return float(-(held + passed[-1]) / 2) if len(passed) else float(-held - 1e-3)


#: How the exported model and label cleaning are calibrated (written to the model card).
PLATT_KIND = "platt on validation logits, class-balanced"


def sigmoid(t: np.ndarray | float) -> np.ndarray:
    """The logistic function, without overflow for large negative ``t``."""
    return 0.5 + 0.5 * np.tanh(np.asarray(t, dtype=np.float64) / 2.0)


def fit_platt(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None, iters: int = 100) -> tuple[float, float]:
    """Fit p = sigmoid(a*z + b) by weighted logistic regression on one feature (Newton-Raphson,
    each step halved until the loss goes down).

    With class-balanced weights the result is calibrated for a world where half the faces
    smile, which is what a gate sees over a day better than the 26% of the training sets.
    Plain Newton steps from (1, 0) diverge when the logits sit far off centre (a part-trained
    model three logits too high went to a = -12,000 in five steps); the halving keeps every
    step downhill, and the problem is convex, so it ends at the same optimum.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    w = np.ones_like(z) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.mean()

    def loss(a: float, b: float) -> float:
        t = a * z + b
        return float(np.sum(w * (np.logaddexp(0.0, t) - y * t)))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iters):
        p = sigmoid(a * z + b)
        g = np.array([np.sum(w * (p - y) * z), np.sum(w * (p - y))])
        s = w * p * (1 - p)
        h = np.array([[np.sum(s * z * z), np.sum(s * z)], [np.sum(s * z), np.sum(s)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(h, g)
        scale = 1.0
        trial = loss(a - step[0], b - step[1])
        while scale > 1e-6 and trial > current:
            scale /= 2.0
            trial = loss(a - scale * step[0], b - scale * step[1])
        a, b, current = a - scale * step[0], b - scale * step[1], trial
        if np.abs(scale * step).max() < 1e-8:
            break
    return float(a), float(b)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Mean predicted probability vs. observed smile frequency per probability bin."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(probs, edges) - 1, 0, bins - 1)
    out: dict[str, list[float]] = {"bin_center": [], "mean_prob": [], "frac_smiling": [], "count": []}
    for k in range(bins):
        m = idx == k
        out["bin_center"].append(round(float((edges[k] + edges[k + 1]) / 2), 3))
        out["count"].append(int(m.sum()))
        out["mean_prob"].append(round(float(probs[m].mean()), 4) if m.any() else float("nan"))
        out["frac_smiling"].append(round(float(labels[m].mean()), 4) if m.any() else float("nan"))
    return out


def resample_chips(chips: np.ndarray, width: int) -> np.ndarray:
    """Chips as a face ``width`` pixels wide would give them: each 64x64 chip taken down to
    ``width`` pixels (area averaging, as a camera's sensor does) and back up bilinearly (as the
    run-time crop's warp enlarges a small face). The chip's width stands for the face's; the
    detector's own reach at that size is not part of this measure."""
    import cv2

    out = np.empty_like(chips)
    for i, c in enumerate(chips):
        small = cv2.resize(c, (width, width), interpolation=cv2.INTER_AREA)
        out[i] = cv2.resize(small, chips.shape[1:][::-1], interpolation=cv2.INTER_LINEAR)
    return out

