"""The arithmetic behind scripts/policy_frontier.py: SMILEsmileD's 10% point, the five measures,
and the sweep that says whether one threshold meets every calm-face target."""

from __future__ import annotations

import numpy as np
from repo_scripts import load_script


def _set(neg: np.ndarray, pos: np.ndarray, neg_class: str = "neutral") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.concatenate([neg, pos]).astype(np.float32)
    y = np.concatenate([np.zeros(len(neg), int), np.ones(len(pos), int)])
    g = np.array([neg_class] * len(neg) + ["happy"] * len(pos))
    return p, y, g


def test_the_rate_point_calls_at_most_the_rate_and_no_lower_threshold_does() -> None:
    pf = load_script("policy_frontier")
    neg = np.random.default_rng(0).uniform(0, 1, 1000)
    t = pf.rate_point(neg, 0.10)
    assert (neg >= t).mean() <= 0.10
    below = np.sort(neg)[::-1][100]  # the next negative down: one more face called smiling
    assert (neg >= below).mean() > 0.10
    assert pf.rate_point(neg, 1.0) == 0.0


def test_separable_sets_meet_every_target_around_the_middle() -> None:
    pf = load_script("policy_frontier")
    rng = np.random.default_rng(1)
    low, high = rng.uniform(0.0, 0.2, 400), rng.uniform(0.8, 1.0, 400)
    scored = {name: _set(low, high) for name in pf.SETS}
    result = pf.sweep(scored)
    assert pf.meets(result["at_0.5"])
    met = result["all_targets_met_at"]
    assert 0.5 in met and 0.3 in met and 0.7 in met
    assert 0.1 not in met and 0.9 not in met  # SMILEsmileD's negatives, then its smiles, cross
    assert result["smilesmiled_10pct"]["smilesmiled_called"] <= 0.10


def test_a_faint_smile_that_one_set_calls_smiling_and_another_not_meets_no_threshold() -> None:
    pf = load_script("policy_frontier")
    rng = np.random.default_rng(2)
    calm, faint, clear = rng.uniform(0.0, 0.3, 600), rng.uniform(0.4, 0.6, 300), rng.uniform(0.7, 1.0, 600)
    scored = {
        # strict: a faint smile is not smiling
        "smilesmiled": _set(np.concatenate([calm, faint]), clear),
        # generous: a faint smile is smiling
        "mtfl": _set(calm, np.concatenate([faint, clear])),
        "rafdb": _set(calm, np.concatenate([faint, clear])),
        "muxspace": _set(calm, np.concatenate([faint, clear])),
    }
    result = pf.sweep(scored)
    assert result["all_targets_met_at"] == []
    at_ten = result["smilesmiled_10pct"]
    assert at_ten["smilesmiled_called"] <= 0.10
    assert at_ten["mtfl_accuracy"] < 0.87  # the faint smiles MTFL counts are missed there
    best = result["best"]["mtfl_accuracy"]
    assert best["mtfl_accuracy"] > 0.95 and best["smilesmiled_called"] > 0.10  # and where MTFL is served, SMILEsmileD is not


def test_muxspace_is_happiness_against_neutral_only() -> None:
    pf = load_script("policy_frontier")
    p = np.array([0.9, 0.9, 0.1, 0.9, 0.9], dtype=np.float32)
    y = np.array([1, 1, 0, 0, 0])
    g = np.array(["happy", "happy", "neutral", "fear", "surprise"])  # fear and surprise called smiling: not counted
    scored = {name: _set(np.array([0.1]), np.array([0.9])) for name in pf.SETS}
    scored["muxspace"] = (p, y, g)
    assert pf.measures(scored, 0.5)["muxspace_happy_vs_neutral"] == 1.0
