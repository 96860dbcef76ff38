"""The arithmetic behind scripts/ensemble_ceiling.py: logits read back from probabilities,
averaged, and calibrated on class-balanced validation as training calibrates a model."""

from __future__ import annotations

import numpy as np
from repo_scripts import load_script

from gatekeeper.training.metrics import roc_auc, sigmoid


def test_mean_logit_reads_the_models_logits_back_and_averages_them() -> None:
    ens = load_script("ensemble_ceiling")
    z1 = np.array([-4.0, -0.5, 0.0, 2.0, 6.0])
    z2 = np.array([-2.0, 1.5, 1.0, 0.0, 2.0])
    p1, p2 = sigmoid(z1).astype(np.float32), sigmoid(z2).astype(np.float32)
    np.testing.assert_allclose(ens.mean_logit([p1]), z1, atol=1e-5)
    np.testing.assert_allclose(ens.mean_logit([p1, p2]), (z1 + z2) / 2, atol=1e-5)
    # A saturated probability gives a large finite logit, not infinity.
    assert np.isfinite(ens.mean_logit([np.array([0.0, 1.0], dtype=np.float32)])).all()


def test_calibration_removes_an_offset_and_balances_the_classes() -> None:
    ens = load_script("ensemble_ceiling")
    rng = np.random.default_rng(0)
    # Two sources, a quarter of each smiling, logits off centre by +3.
    labels = np.concatenate([np.repeat([0, 1], [3000, 1000]), np.repeat([0, 1], [1500, 500])])
    sources = np.repeat([0, 1], [4000, 2000])
    z = np.where(labels == 1, 2.0, -2.0) + rng.normal(size=len(labels)) + 3.0
    probs = ens.calibrate(z, labels, sources, z)
    # Raw, 0.5 calls most negatives smiling; calibrated, it is the balanced decision.
    assert ((sigmoid(z) >= 0.5) & (labels == 0)).sum() / (labels == 0).sum() > 0.5
    recall = ((probs >= 0.5) & (labels == 1)).sum() / (labels == 1).sum()
    specificity = ((probs < 0.5) & (labels == 0)).sum() / (labels == 0).sum()
    assert recall > 0.95 and specificity > 0.95
    assert abs(recall - specificity) < 0.02
    # Calibration is monotone: the ranking, and so the ROC AUC, is the logits'.
    assert roc_auc(probs, labels) == roc_auc(z, labels)
