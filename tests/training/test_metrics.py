"""The numpy metrics used for checkpoints, calibration and the model card."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gatekeeper.training.metrics import (
    at_own_prior,
    binary_metrics,
    choose_threshold,
    fit_platt,
    policy_shift,
    reliability,
    roc_auc,
    roc_curve,
    smile_rate_by_class,
)


def brute_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_pairwise_definition_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60) + 0.3 * labels, 1)  # rounding makes ties
    assert roc_auc(scores, labels) == pytest.approx(brute_auc(scores, labels))


@pytest.mark.parametrize(
    ("scores", "labels", "expected"),
    [
        ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),
        ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0),
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),
    ],
)
def test_roc_auc_known_cases(scores, labels, expected) -> None:
    assert roc_auc(np.array(scores), np.array(labels)) == pytest.approx(expected)


def test_roc_curve_ends_at_corners() -> None:
    fpr, tpr, _ = roc_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_binary_metrics_confusion_and_balanced_accuracy() -> None:
    m = binary_metrics(np.array([0.9, 0.8, 0.3, 0.7, 0.1, 0.2]), np.array([1, 1, 1, 0, 0, 0]), 0.5)
    assert m["confusion"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 2}
    assert m["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2, abs=1e-4)


def test_fit_platt_recovers_known_calibration() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    p = 1 / (1 + np.exp(-(0.7 * z - 0.4)))
    y = (rng.random(len(z)) < p).astype(int)
    a, b = fit_platt(z, y)
    assert a == pytest.approx(0.7, abs=0.05) and b == pytest.approx(-0.4, abs=0.05)


def test_fit_platt_with_balanced_weights_centres_an_imbalanced_set() -> None:
    """With class-balanced weights, p=0.5 falls where the two classes' densities cross."""
    rng = np.random.default_rng(1)
    z = np.r_[rng.normal(-1, 1, 9000), rng.normal(1, 1, 1000)]
    y = np.r_[np.zeros(9000), np.ones(1000)]
    w = np.where(y == 1, 9.0, 1.0)
    a, b = fit_platt(z, y, w)
    assert -b / a == pytest.approx(0.0, abs=0.1)  # the symmetric crossing point
    a_raw, b_raw = fit_platt(z, y)
    assert -b_raw / a_raw > 0.8  # unweighted, the 10% prior pushes the boundary far to the right


def test_fit_platt_converges_from_far_off_logits() -> None:
    """Logits three units too high, as a part-trained model gives: plain Newton steps from (1, 0)
    diverged here (to a = -12,000 in five steps)."""
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.3).astype(int)
    z = np.where(y == 1, 2.0, -2.0) + rng.normal(0.0, 1.0, len(y)) + 3.0
    a, b = fit_platt(z, y, np.where(y == 1, (1 - y.mean()) / y.mean(), 1.0))
    # The two classes are unit normals 4 apart, equally weighted: the log-odds are 4 (z - 3), up
    # to the sampling noise of 2000 faces (200,000 give a = 3.98-4.03).
    assert a == pytest.approx(4.0, abs=1.0) and -b / a == pytest.approx(3.0, abs=0.15)


def test_choose_threshold_separable() -> None:
    probs = np.array([0.1, 0.2, 0.3, 0.62, 0.7, 0.9])
    t = choose_threshold(probs, np.array([0, 0, 0, 1, 1, 1]))
    assert 0.3 < t <= 0.62


def test_reliability_bins_count_everything() -> None:
    rng = np.random.default_rng(2)
    probs = rng.random(1000)
    rel = reliability(probs, (rng.random(1000) < probs).astype(int))
    assert sum(rel["count"]) == 1000
    filled = [i for i, c in enumerate(rel["count"]) if c > 50]
    assert all(abs(rel["mean_prob"][i] - rel["frac_smiling"][i]) < 0.15 for i in filled)


def test_at_own_prior_is_the_bayes_decision_for_a_calibrated_model() -> None:
    # Scores calibrated for a balanced world: p = sigmoid(z) with z ~ N(+-1, 1) per class.
    rng = np.random.default_rng(3)
    prior = 0.25
    labels = (rng.random(200_000) < prior).astype(int)
    z = rng.normal(np.where(labels == 1, 1.0, -1.0), 1.0)
    # Balanced-world posterior for N(+-1, 1) is sigmoid(2 z).
    probs = 1.0 / (1.0 + np.exp(-2.0 * z))
    r = at_own_prior(probs, labels, prior)
    assert r["threshold"] == pytest.approx(0.75)
    # No other threshold does better on a set drawn at that prior (up to sampling noise).
    best = max(((probs >= t) == (labels == 1)).mean() for t in np.linspace(0.05, 0.95, 91))
    assert r["accuracy"] == pytest.approx(best, abs=0.003)
    assert r["accuracy"] > ((probs >= 0.5) == (labels == 1)).mean() + 0.02


def test_smile_rate_by_class_counts_each_group_at_the_threshold() -> None:
    probs = np.array([0.9, 0.2, 0.5, 0.49, 0.7, 0.1])
    groups = np.array(["happy", "happy", "sad", "sad", "sad", "neutral"])
    assert smile_rate_by_class(probs, groups, 0.5) == {"happy": 0.5, "neutral": 0.0, "sad": round(2 / 3, 4)}


def test_resample_chips_keeps_coarse_detail_and_loses_fine_detail() -> None:
    """A face 24 px wide cannot show what a 64 px chip can: fine stripes wash out, broad ones stay."""
    from gatekeeper.training.metrics import resample_chips

    cols = np.arange(64)
    fine = np.tile(np.where(cols % 2 == 0, 40, 200).astype(np.uint8), (64, 1))  # 1 px stripes
    coarse = np.tile(np.where((cols // 16) % 2 == 0, 40, 200).astype(np.uint8), (64, 1))  # 16 px bands
    chips = np.stack([fine, coarse])
    assert np.array_equal(resample_chips(chips, 64), chips)  # full size: unchanged
    small = resample_chips(chips, 24)
    assert small.shape == chips.shape and small.dtype == np.uint8
    assert small[0].std() < 0.2 * fine.std()
    assert small[1].std() > 0.8 * coarse.std()


def passed(logits: np.ndarray, shift: float) -> int:
    """How many shifted logits reach the card's threshold (0.5 through the sigmoid: logit 0)."""
    return int((logits + shift >= 0).sum())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rate", [0.0, 0.05, 0.1, 0.37])
def test_policy_shift_lets_exactly_the_rate_through_distinct_logits(seed: int, rate: float) -> None:
    z = np.random.default_rng(seed).normal(size=200)
    assert passed(z, policy_shift(z, rate)) == int(np.floor(rate * 200 + 1e-9))


@pytest.mark.parametrize("seed", range(5))
def test_policy_shift_never_lets_more_than_the_rate_through_tied_logits(seed: int) -> None:
    # Scores in steps of 1/8, as a quantised model's: many faces share a value at the cut.
    z = np.round(np.random.default_rng(seed).normal(size=300) * 8) / 8
    for rate in (0.02, 0.1, 0.25):
        allowed = int(np.floor(rate * len(z)))
        n = passed(z, policy_shift(z, rate))
        # At most the rate, and no face held back scores above one let through.
        assert n <= allowed
        assert n == int((z > np.sort(z)[::-1][allowed]).sum())


def test_policy_shift_ends() -> None:
    z = np.array([-1.0, 0.5, 2.0])
    assert passed(z, policy_shift(z, 1.0)) == 3
    assert passed(np.array([4.0, 4.0, 4.0]), policy_shift(np.array([4.0, 4.0, 4.0]), 0.5)) == 0
    with pytest.raises(ValueError, match="non-smiles"):
        policy_shift(np.array([]), 0.1)
