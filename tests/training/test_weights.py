"""Training sample weights: class and source balance, hard negatives, dropped labels."""

from __future__ import annotations

import numpy as np

from gatekeeper.training.train import HARD_WEIGHT, _weights, suspect_labels


def cell_sums(w, labels, sources):
    return {(s, c): float(w[(sources == s) & (labels == c)].sum()) for s in np.unique(sources) for c in (0, 1)}


def test_weights_balance_every_source_and_class() -> None:
    labels = np.array([1, 0, 0, 0, 1, 1, 0, 0, 0, 0])
    sources = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    w = _weights(labels, sources)
    sums = cell_sums(w, labels, sources)
    assert np.allclose(list(sums.values()), len(labels) / 4)


def test_hard_negatives_weigh_more_within_their_cell() -> None:
    labels = np.array([1, 0, 0, 0])
    sources = np.zeros(4, dtype=int)
    groups = np.array(["happy", "sad", "neutral", "neutral"])
    w = _weights(labels, sources, groups)
    assert w[1] / w[2] == np.float32(HARD_WEIGHT)
    assert w[1] + w[2] + w[3] == np.float32(2.0)  # the negative cell still weighs half


def test_dropped_labels_weigh_nothing_and_the_rest_rebalance() -> None:
    labels = np.array([1, 1, 0, 0, 0, 0])
    sources = np.zeros(6, dtype=int)
    keep = np.array([True, True, False, True, True, True])
    w = _weights(labels, sources, keep=keep)
    assert w[2] == 0
    assert np.isclose(w[labels == 0].sum(), 3.0) and np.isclose(w[labels == 1].sum(), 3.0)


def test_suspect_labels_are_confident_contradictions_only() -> None:
    probs = np.array([0.95, 0.85, 0.05, 0.15, 0.95, 0.05])
    labels = np.array([0, 0, 1, 1, 1, 0])
    assert suspect_labels(probs, labels, 0.9).tolist() == [True, False, True, False, False, False]
