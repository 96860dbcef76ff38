"""Weight averaging (--ema): what is validated is what is checkpointed, and it is the average; the
training options it came with are parsed strictly."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from gatekeeper.train_command import add_train_arguments as add_arguments  # noqa: E402
from gatekeeper.training.fitting import fit_callbacks  # noqa: E402

# Keras saves weights through an __array__ that NumPy 2 warns about (third-party code).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def _data(seed: int, n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=1.0, size=n) > 0).astype(np.float32)
    return x, y


def _fit(tmp_path: Path, ema: float) -> tuple[dict, Path]:
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    opt = keras.optimizers.Adam(0.05, use_ema=True, ema_momentum=ema) if ema else keras.optimizers.Adam(0.05)
    model.compile(optimizer=opt, loss=keras.losses.BinaryCrossentropy(from_logits=True), metrics=[keras.metrics.AUC(name="auc", from_logits=True)])
    best = tmp_path / "best.keras"
    train = tf.data.Dataset.from_tensor_slices(_data(0)).batch(16)
    val = tf.data.Dataset.from_tensor_slices(_data(1)).batch(64)
    history = model.fit(train, validation_data=val, epochs=4, shuffle=False, verbose=0, callbacks=fit_callbacks(best, 10, None, ema=bool(ema)))
    return history.history, best


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_the_checkpoint_holds_the_weights_that_were_validated(tmp_path: Path, ema: float) -> None:
    history, best = _fit(tmp_path, ema)
    at = int(np.argmax(history["val_auc"]))
    saved = keras.models.load_model(best)
    x_va, y_va = _data(1)
    loss = float(keras.losses.BinaryCrossentropy(from_logits=True)(y_va, saved.predict(tf.data.Dataset.from_tensor_slices(x_va).batch(64), verbose=0)))
    assert loss == pytest.approx(history["val_loss"][at], abs=1e-5)


def test_averaged_weights_differ_from_the_raw_ones(tmp_path: Path) -> None:
    # The same seed and data: the averaged run must validate on other weights than the plain run.
    plain, _ = _fit(tmp_path / "plain", 0.0)
    averaged, _ = _fit(tmp_path / "ema", 0.9)
    assert plain["loss"] == pytest.approx(averaged["loss"], rel=1e-5)  # training itself is unchanged
    assert not np.allclose(plain["val_loss"], averaged["val_loss"], rtol=1e-3)


@pytest.mark.parametrize("value", ["1", "1.5", "-0.1", "nan", "x"])
def test_a_momentum_outside_0_to_1_is_refused_naming_the_option(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    ap = argparse.ArgumentParser(prog="gatekeeper train")
    add_arguments(ap)
    with pytest.raises(SystemExit) as exc:
        ap.parse_args(["--ema", value])
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--ema" in err and "momentum" in err and repr(value) in err


def test_the_default_is_off_and_a_momentum_is_read() -> None:
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    assert ap.parse_args([]).ema == 0.0
    assert ap.parse_args(["--ema", "0.995"]).ema == 0.995


@pytest.mark.parametrize("option", ["--clean-confidence", "--clean-smiling-confidence"])
def test_a_cleaning_confidence_outside_0_to_1_is_refused(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    ap = argparse.ArgumentParser(prog="gatekeeper train")
    add_arguments(ap)
    with pytest.raises(SystemExit):
        ap.parse_args([option, "1.5"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert option in err and "between 0 and 1" in err
