"""Distillation targets: which teachers apply to which faces, how their logits combine, the blend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gatekeeper.training.recipe import soft_targets
from gatekeeper.training.teacher import parse_teacher, teacher_logits


def constant(p: float):
    """A teacher that gives every chip probability ``p`` and records how many chips it saw."""

    def predict(chips: np.ndarray) -> np.ndarray:
        predict.seen += len(chips)
        return np.full(len(chips), p)

    predict.seen = 0
    return predict


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_teachers_average_in_logit_space_over_those_that_apply() -> None:
    names = ["smilesmiled", "fer2013"]
    sources = np.array([0, 0, 1, 1, 1])
    chips = np.zeros((5, 64, 64), np.uint8)
    everyone, smd_expert, fer_expert = constant(0.9), constant(0.99), constant(0.2)
    z = teacher_logits([(None, everyone), ("smilesmiled", smd_expert), ("fer2013", fer_expert)], names, chips, sources)
    assert z[:2] == pytest.approx((logit(0.9) + logit(0.99)) / 2)
    assert z[2:] == pytest.approx((logit(0.9) + logit(0.2)) / 2)
    # An expert only sees its own dataset's faces.
    assert (everyone.seen, smd_expert.seen, fer_expert.seen) == (5, 2, 3)


def test_a_dataset_without_a_teacher_is_an_error_that_names_it() -> None:
    sources = np.array([0, 1])
    with pytest.raises(ValueError, match="fer2013"):
        teacher_logits([("smilesmiled", constant(0.5))], ["smilesmiled", "fer2013"], np.zeros((2, 64, 64), np.uint8), sources)


def test_sure_teachers_stay_finite() -> None:
    z = teacher_logits([(None, constant(1.0)), (None, constant(0.0))], ["a"], np.zeros((1, 64, 64), np.uint8), np.array([0]))
    assert np.isfinite(z).all()


def test_soft_targets_blend_label_and_teacher() -> None:
    labels = np.array([1, 0, 1, 0])
    z = np.array([logit(0.8), logit(0.8), -50.0, 50.0])
    t = soft_targets(labels, z, 0.5)
    assert t == pytest.approx([0.9, 0.4, 0.5, 0.5], abs=1e-6)
    assert soft_targets(labels, z, 0.0) == pytest.approx(labels)
    # At a weight up to one half the target stays on the label's side (or on the line).
    assert (t[labels == 1] >= 0.5).all() and (t[labels == 0] <= 0.5).all() and t.dtype == np.float32


def test_teacher_spec_may_name_a_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_teacher("runs/a/smile.tflite") == (None, Path("runs/a/smile.tflite"))
    assert parse_teacher("fer2013:runs/b/smile.tflite") == ("fer2013", Path("runs/b/smile.tflite"))
    assert parse_teacher("/abs/c.tflite") == (None, Path("/abs/c.tflite"))
    # A file whose name holds a colon is taken as it is.
    monkeypatch.chdir(tmp_path)
    Path("x:y.tflite").write_bytes(b"")
    assert parse_teacher("x:y.tflite") == (None, Path("x:y.tflite"))


def test_validation_auc_is_the_weighted_share_of_pairs_in_order() -> None:
    from gatekeeper.training.recipe import weighted_auc

    # 2 smiling, 2 not: 3 of the 4 pairs in order.
    assert weighted_auc(np.array([0.9, 0.2, 0.6, 0.7]), np.array([1, 0, 1, 0])) == pytest.approx(3 / 4)
    # A tie counts half; soft targets are read by their side.
    assert weighted_auc(np.array([0.5, 0.5]), np.array([0.9, 0.2])) == pytest.approx(0.5)
    # Weights: each pair weighs w_smiling * w_not; the smiling chip at 0.6 weighs 3.
    got = weighted_auc(np.array([0.9, 0.2, 0.6, 0.7]), np.array([1, 0, 1, 0]), np.array([1.0, 1.0, 3.0, 1.0]))
    assert got == pytest.approx((1 * 1 + 1 * 1 + 3 * 1 + 3 * 0) / (4 * 2))
    # The same as the rank (Mann-Whitney) AUC on random data without weights.
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=300), rng.integers(0, 2, 300)
    pairs = (s[y == 1][:, None] > s[y == 0][None, :]).mean()
    assert weighted_auc(s, y) == pytest.approx(pairs)


def test_a_logits_file_refuses_sets_whose_chips_changed(tmp_path) -> None:
    """A student reads a teacher's logits like a dataset: the chips must be those they were computed on."""
    from types import SimpleNamespace

    from gatekeeper.errors import TrainingError
    from gatekeeper.training.data import Prepared
    from gatekeeper.training.teacher import TeacherLogits, write_logits

    def prepared(name: str, chips: np.ndarray) -> SimpleNamespace:
        p = SimpleNamespace(name=name, chips=chips, labels=np.arange(len(chips)) % 2, splits={"train": np.array([0, 2]), "val": np.array([1])})
        p.fingerprint = lambda: Prepared.fingerprint(p)
        return p

    rng = np.random.default_rng(0)
    a = prepared("a", rng.integers(0, 255, (3, 64, 64), dtype=np.uint8))
    b = prepared("b", rng.integers(0, 255, (3, 64, 64), dtype=np.uint8))
    path = tmp_path / "t.npz"
    write_logits(path, [a, b], {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([-1.0, -2.0, -3.0])}, None, {"split_seed": 1234})
    teacher = TeacherLogits.read(path)
    smile, expression = teacher.for_split([a, b], "train")
    assert smile.tolist() == [1.0, 3.0, -1.0, -3.0] and expression is None
    b.chips = b.chips.copy()
    b.chips[0, 0, 0] ^= 1
    with pytest.raises(TrainingError, match="differ from those its logits were computed on"):
        teacher.for_split([a, b], "train")
    with pytest.raises(TrainingError, match="holds no logits for dataset 'c'"):
        teacher.for_split([prepared("c", a.chips)], "train")
