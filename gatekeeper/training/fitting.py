"""Fitting with Keras: validation once per epoch, the best checkpoint, early stopping, and the
state that lets a stopped run resume (``gatekeeper train --resume``).

A run saves its state at the end of every epoch, before anything swaps in averaged weights: the
raw weights (batch-norm statistics included), the optimiser's variables (its step count, so the
learning-rate schedule goes on where it was, its moments, its weight averages), the epochs done,
the history so far, and what the run decided on the way (the sample weights after label
cleaning). ``--resume`` rebuilds the same model, restores all of it and goes on from the next
epoch; the state records the recipe, and a resume with another recipe is refused. Early
stopping's patience counts again from the resume; the data order of the remaining epochs is
drawn anew (a seed derived from the epoch), so a resumed run is the same recipe, not the same
bits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TrainingError
from .recipe import weighted_auc

STATE_NAME = "train-state.npz"


def _validation_callback():
    import keras

    class ValidationAUC(keras.callbacks.Callback):
        """``val_auc`` in the epoch's logs: the class-balanced ROC AUC of the model's logits on
        validation, computed once per epoch in NumPy (the AUC metric in the step cost every batch).

        It must run after SwapEMAWeights and before the checkpoint, so that what is validated,
        checkpointed and exported are the same weights (see :func:`fit_callbacks`).
        """

        def __init__(self, x: np.ndarray, y: np.ndarray, w: np.ndarray, predictor=None) -> None:
            super().__init__()
            self.x, self.y, self.w = x, y, w
            # The chip-to-logit model (shares its weights with the model being fitted, which may
            # take more inputs or give more outputs); the fitted model itself when None.
            self.predictor = predictor

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            z = (self.predictor or self.model).predict(self.x, batch_size=512, verbose=0).reshape(-1)
            if logs is not None:
                logs["val_auc"] = weighted_auc(z, self.y, self.w)

    return ValidationAUC


def validation_auc(x: np.ndarray, y: np.ndarray, w: np.ndarray, predictor=None):
    """A ValidationAUC callback (the class is made on first use: Keras loads only when training)."""
    return _validation_callback()(x, y, w, predictor)


def fit_callbacks(best: Path, patience: int, best_so_far: float | None, ema: bool, validation=None) -> list:
    """Checkpoint and early stopping on validation AUC (``val_auc``), resumable from ``best_so_far``.

    With ``ema`` (an optimiser with ``use_ema``), SwapEMAWeights goes first: validation, the
    checkpoint and early stopping all see the averaged weights, and training goes on with the raw
    ones. In any other order the checkpoint would hold weights other than those validated.
    ``validation``: a :func:`validation_auc` callback that writes ``val_auc`` (else Keras' own validation
    with an ``auc`` metric must).
    """
    import keras

    swap = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema else []
    return [
        *swap,
        *([validation] if validation is not None else []),
        keras.callbacks.ModelCheckpoint(best, monitor="val_auc", mode="max", save_best_only=True, initial_value_threshold=best_so_far),
        keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=patience, baseline=best_so_far, restore_best_weights=True),
    ]


def link_table(model, names: list[str]) -> dict[str, dict[str, float]] | None:
    """The learned per-source link (scale a and offset b) of a fitted training model, or None."""
    try:
        layer = model.get_layer("source_link")
    except ValueError:
        return None
    log_a, b = (np.asarray(v) for v in layer.get_weights())
    return {n: {"a": round(float(np.exp(log_a[i])), 4), "b": round(float(b[i]), 4)} for i, n in enumerate(names)}



def save_state(path: Path, weights: list[np.ndarray], optimizer: list[np.ndarray], epochs_done: int, history: dict[str, list[float]], recipe: dict[str, Any], extra: dict[str, Any]) -> None:
    """Write the resume state (module docstring) aside and rename it over the last one."""
    arrays = {f"w{i}": np.asarray(w) for i, w in enumerate(weights)}
    arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(optimizer)})
    arrays.update({f"x_{k}": np.asarray(v) for k, v in extra.items() if isinstance(v, np.ndarray)})
    meta = {
        "epochs_done": epochs_done,
        "history": history,
        "recipe": recipe,
        "extra": {k: v for k, v in extra.items() if not isinstance(v, np.ndarray)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    partial.replace(path)


def load_state(path: Path, model, recipe: dict[str, Any]) -> dict[str, Any]:
    """Restore a compiled ``model`` (weights and optimiser) from ``path``; returns the state's
    ``epochs_done``, ``history`` and ``extra`` (its arrays included)."""
    if not path.is_file():
        raise TrainingError(f"--resume: no state to resume at {str(path)!r}; expected the {STATE_NAME} a run with the same --out writes after each epoch")
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        weights = [z[f"w{i}"] for i in range(sum(k.startswith("w") for k in z.files))]
        opt = [z[f"o{i}"] for i in range(sum(k.startswith("o") for k in z.files))]
        arrays = {k[2:]: z[k] for k in z.files if k.startswith("x_")}
    then = meta["recipe"]
    changed = sorted(k for k in set(recipe) | set(then) if _plain(recipe.get(k)) != _plain(then.get(k)))
    if changed:
        what = ", ".join(f"{k}: {then.get(k)!r} then, {recipe.get(k)!r} now" for k in changed)
        raise TrainingError(f"--resume: the saved run used another recipe ({what}); resume with the same options or start again")
    model.set_weights(weights)
    model.optimizer.build(model.trainable_variables)
    variables = model.optimizer.variables
    if len(variables) != len(opt):
        raise TrainingError(f"--resume: the saved optimiser holds {len(opt)} variables, this model's {len(variables)}; start again")
    for v, value in zip(variables, opt, strict=True):
        v.assign(value)
    return {"epochs_done": meta["epochs_done"], "history": meta["history"], "extra": {**meta["extra"], **arrays}}


def _plain(value: Any) -> Any:
    """A value as JSON gives it back (tuples become lists), for comparing recipes."""
    return json.loads(json.dumps(value))


class StateSaver:
    """Saves the resume state after every epoch, through two callbacks: :meth:`snapshot` goes
    first in the callbacks (before SwapEMAWeights swaps the averages in: it copies the raw
    weights and the optimiser), :meth:`writer` last (after validation has written ``val_auc``
    into the epoch's logs: it writes the file). ``extra``: what the run decided on the way
    (arrays and JSON values), saved with each state; the run may change it between phases."""

    def __init__(self, path: Path, recipe: dict[str, Any], history: dict[str, list[float]], extra: dict[str, Any]) -> None:
        self.path, self.recipe, self.extra = path, recipe, extra
        self.history = {k: list(v) for k, v in history.items()}
        self._raw: tuple[list[np.ndarray], list[np.ndarray]] | None = None

    def snapshot(self):
        import keras

        saver = self

        class Snapshot(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                saver._raw = (self.model.get_weights(), [np.asarray(v) for v in self.model.optimizer.variables])

        return Snapshot()

    def writer(self):
        import keras

        saver = self

        class Write(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                for k, v in (logs or {}).items():
                    saver.history.setdefault(k, []).append(float(v))
                if saver._raw is not None:
                    save_state(saver.path, *saver._raw, epoch + 1, saver.history, saver.recipe, saver.extra)

        return Write()
