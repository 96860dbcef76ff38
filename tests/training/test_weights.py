"""Training sample weights: class and source balance, hard negatives, dropped labels."""

from __future__ import annotations

import numpy as np
import pytest

from gatekeeper.training.recipe import HARD_WEIGHT, _weights, calibrated_suspects, suspect_labels


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


def test_smiling_labels_can_be_doubted_at_a_lower_confidence() -> None:
    probs = np.array([0.85, 0.35, 0.45, 0.15, 0.7])
    labels = np.array([0, 1, 1, 1, 0])
    # "not smiling" at >= 0.9 (none here), "smiling" when P(smile) <= 0.4.
    assert suspect_labels(probs, labels, 0.9, smiling_confidence=0.6).tolist() == [False, True, False, True, False]
    # Without it, both classes are doubted at the one confidence.
    assert suspect_labels(probs, labels, 0.6).tolist() == [True, True, False, True, True]


def test_cleaning_calibrates_before_it_judges() -> None:
    # A part-trained model that ranks well but whose logits sit 3 too high: read raw, one
    # negative in nine looks like a "90% sure smile"; calibrated on validation, only the real
    # contradictions do.
    rng = np.random.default_rng(0)

    def logits(labels):
        return np.where(labels == 1, 2.0, -2.0) + rng.normal(0.0, 1.0, len(labels)) + 3.0

    y_va = (rng.random(2000) < 0.3).astype(int)
    z_va = logits(y_va)
    y_tr = (rng.random(5000) < 0.3).astype(int)
    z_tr = logits(y_tr)
    z_tr[:20] = np.where(y_tr[:20] == 1, -6.0, 10.0) + 3.0  # twenty clear contradictions
    w_va = _weights(y_va, np.zeros(len(y_va), dtype=int))

    raw = suspect_labels(1.0 / (1.0 + np.exp(-z_tr)), y_tr, 0.9)
    cal, (_a, b) = calibrated_suspects(z_tr, y_tr, z_va, y_va, w_va, 0.9)
    assert raw[y_tr == 0].mean() > 0.08
    assert cal[:20].all()  # the contradictions are still caught
    assert cal[20:].mean() < 0.02
    assert b < -2.0  # the calibration took the offset out


def test_sources_can_weigh_by_their_size() -> None:
    labels = np.array([1, 0, 0, 0, 1, 0])
    sources = np.array([0, 0, 0, 0, 1, 1])
    sums = cell_sums(_weights(labels, sources, by_size=True), labels, sources)
    # Source 0 holds 4 of the 6 chips and weighs 4 in all, 2 per class; source 1 weighs 2, 1 per class.
    assert np.allclose([sums[(0, 0)], sums[(0, 1)], sums[(1, 0)], sums[(1, 1)]], [2.0, 2.0, 1.0, 1.0])


def test_hard_mining_picks_expressive_non_smiles_called_smiling_and_they_weigh_more() -> None:
    from gatekeeper.training.recipe import mine_hard

    labels = np.array([0, 0, 0, 0, 1, 0])
    groups = np.array(["sad", "fear", "neutral", "sad", "happy", "angry"])
    probs = np.array([0.8, 0.4, 0.9, 0.5, 0.9, 0.95])
    mined = mine_hard(probs, labels, groups, threshold=0.5)
    # A calm face called smiling is not a hard example of this kind, nor is a smile.
    assert mined.tolist() == [True, False, False, True, False, True]
    sources = np.zeros(len(labels), dtype=int)
    plain = _weights(labels, sources, groups, hard_weight=1.0)
    boosted = _weights(labels, sources, groups, hard_weight=1.0, boost=np.where(mined, 3.0, 1.0))
    neg = labels == 0
    # Classes stay balanced: the negatives' total is unchanged, shared out towards the mined ones.
    assert boosted[neg].sum() == pytest.approx(plain[neg].sum())
    assert boosted[0] == pytest.approx(3 * boosted[2])
    assert boosted[4] == pytest.approx(plain[4])


def test_missed_smiles_are_the_smiles_called_not_smiling_whatever_their_class() -> None:
    from gatekeeper.training.recipe import mine_missed

    labels = np.array([1, 1, 1, 0, 0])
    probs = np.array([0.2, 0.5, 0.9, 0.1, 0.9])
    # At the threshold a smile counts as found; non-smiles are never mined as missed smiles.
    assert mine_missed(probs, labels, threshold=0.5).tolist() == [True, False, False, False, False]
    sources = np.zeros(len(labels), dtype=int)
    boosted = _weights(labels, sources, boost=np.where(mine_missed(probs, labels, 0.5), 2.0, 1.0))
    pos = labels == 1
    # The smiles keep their total weight, shared out towards the missed one.
    assert boosted[pos].sum() == pytest.approx(_weights(labels, sources)[pos].sum())
    assert boosted[0] == pytest.approx(2 * boosted[2])
