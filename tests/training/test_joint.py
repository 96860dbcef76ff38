"""The redesigned recipe's parts: the per-source link of the one smile logit, the expression head's
loss and weights, and the packed batches that feed them."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from gatekeeper.training.augment import train_dataset  # noqa: E402
from gatekeeper.training.fitting import link_table  # noqa: E402
from gatekeeper.training.models import JointLoss, SourceLink, build_gate, smile_model, training_model  # noqa: E402
from gatekeeper.training.recipe import expression_weights, linked_logits  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def test_expression_weights_skip_unlabelled_chips_and_lift_rare_classes() -> None:
    e = np.array([-1, 3, 3, 3, 3, 2, -1, 6, 6])
    w = expression_weights(e)
    assert (w[e == -1] == 0).all()
    assert w[e >= 0].mean() == pytest.approx(1.0)
    assert w[5] == pytest.approx(2 * w[1])  # fear: a quarter as many chips as happy, twice the weight
    assert (expression_weights(np.full(4, -1)) == 0).all()


def test_the_link_scales_and_shifts_the_logit_per_source() -> None:
    link = SourceLink(3)
    z = keras.ops.convert_to_tensor(np.array([[1.0], [2.0], [-1.0]], np.float32))
    source = keras.ops.convert_to_tensor(np.array([[0], [1], [2]], np.int32))
    link(z, source)  # builds the weights
    link.set_weights([np.log(np.array([1.0, 2.0, 0.5], np.float32)), np.array([0.0, -1.0, 3.0], np.float32)])
    out = keras.ops.convert_to_numpy(link(z, source)).reshape(-1)
    assert out == pytest.approx([1.0, 3.0, 2.5], abs=1e-6)


def test_the_joint_loss_is_the_weighted_sum_of_both_cross_entropies() -> None:
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(5, 8)).astype(np.float32)
    y = np.array([[1, 0.5, 3, 2.0], [0, 1.0, -1, 0.0], [1, 2.0, 0, 0.5], [0, 1.0, 6, 1.0], [0.3, 1.0, 2, 1.0]], np.float32)
    p = 1 / (1 + np.exp(-pred[:, 0]))
    bce = -(y[:, 0] * np.log(p) + (1 - y[:, 0]) * np.log(1 - p))
    logits = pred[:, 1:]
    logsoft = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    ce = -logsoft[np.arange(5), np.maximum(y[:, 2], 0).astype(int)]
    expected = np.mean(y[:, 1] * bce + 0.7 * y[:, 3] * ce)
    assert float(JointLoss(0.7)(y, pred)) == pytest.approx(expected, rel=1e-5)
    # Without the head's weight, only the smile counts (the expression columns may be absent).
    assert float(JointLoss(0.0)(y, pred[:, :1])) == pytest.approx(np.mean(y[:, 1] * bce), rel=1e-5)


def test_a_joint_model_trains_one_step_and_exports_the_smile_logit_alone() -> None:
    keras.utils.set_random_seed(3)
    net = build_gate(expressions=7)
    model = training_model(net, sources=2, link=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=JointLoss(0.5))
    n = 64
    rng = np.random.default_rng(1)
    chips = rng.integers(0, 255, (n, 64, 64), dtype=np.uint8)
    y = (rng.random(n) < 0.5).astype(np.float32)
    src = np.arange(n) % 2
    expr = np.where(src == 0, rng.integers(0, 7, n), -1)
    ds = train_dataset(chips, y, np.ones(n, np.float32), batch=32, seed=0, augment=False,
                       sources=src, expressions=expr, expression_weights=expression_weights(expr))
    inputs, packed = next(iter(ds))
    packed = packed.numpy()
    # The packed columns are the gathered chip's own target, weight and expression.
    chip = inputs["chip"].numpy()[..., 0].astype(np.uint8)
    index = [int(np.flatnonzero((chips == c).all(axis=(1, 2)))[0]) for c in chip]
    assert (packed[:, 0] == y[index]).all() and (packed[:, 2] == expr[index]).all()
    assert (inputs["source"].numpy().reshape(-1) == src[index]).all()
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all()
    logit = smile_model(net)
    assert logit.output_shape == (None, 1)
    table = link_table(model, ["a", "b"])
    assert set(table) == {"a", "b"} and all(v["a"] > 0 for v in table.values())
    z = np.array([0.5, 0.5])
    assert linked_logits(z, np.array([0, 1]), table, ["a", "b"]) == pytest.approx([table["a"]["a"] * 0.5 + table["a"]["b"], table["b"]["a"] * 0.5 + table["b"]["b"]])
    assert linked_logits(z, np.array([0, 1]), None, ["a", "b"]) is z
