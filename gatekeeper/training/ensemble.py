"""Several exported smile models as one (``gatekeeper train --ensemble A/smile.keras B/smile.keras
--epochs 0``): the exported score is the mean of the members' calibrated logits, calibrated again
on validation (and pinned to ``--policy``) like any other run's logit, and exported as one file.

Two networks that err on different faces, a small one that keeps talking mouths shut and a wide
one that knows the seven expressions, can together be right where each alone is not; the gate
still runs one model file and one score per face. Each member is an exported model
(``smile.keras``, the calibrated model ``gatekeeper train`` writes, its ``model.json`` beside it)
trained on this run's splits; nothing is trained."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import TrainingError
from .options import TrainOptions


def check_members(opts: TrainOptions) -> list[dict[str, Any]]:
    """Each member's path, hash and the training its card records (whose splits ``prepare_run``
    checks as it does an ``--init`` model's); refuses what cannot be an ensemble before any chip is prepared."""
    if not opts.ensemble:
        return []
    if opts.epochs != 0 or opts.init:
        raise TrainingError("--ensemble combines exported models as they are: give it with --epochs 0 and without --init")
    if len(opts.ensemble) < 2:
        raise TrainingError("--ensemble needs at least two exported models (smile.keras, each with its model.json beside it)")
    members = []
    for name in opts.ensemble:
        path = Path(name)
        card_path = path.with_name("model.json")
        if path.suffix != ".keras" or not path.is_file() or not card_path.is_file():
            raise TrainingError(f"--ensemble {name!r}: expected an exported smile.keras with its model.json beside it")
        card = json.loads(card_path.read_text(encoding="utf-8"))
        members.append({"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "arch": card.get("arch"), "params": card.get("params"),
                        "calibration": card.get("calibration"), "training": card.get("training")})
    return members


def ensemble_logit_model(paths: list[str]) -> Any:
    """Chip to the mean of the members' calibrated logits (each member's input to its sigmoid)."""
    import keras

    from . import models  # noqa: F401  (registers the layers the members are saved with)

    inp = keras.Input((64, 64, 1), name="chip")
    logits = []
    for i, path in enumerate(paths):
        member = keras.models.load_model(path, compile=False)
        calibrated = member.get_layer("calibrated")  # sigmoid(a * z + b) on the member's raw logit z
        raw = keras.Model(member.inputs, calibrated.input, name=f"member{i}")
        linear = keras.layers.Dense(1, name=f"member{i}_calibration")  # a * z + b, without the sigmoid
        logits.append(linear(raw(inp, training=False)))
        linear.set_weights(calibrated.get_weights())
    return keras.Model(inp, keras.layers.Average(name="mean_logit")(logits), name="ensemble")
