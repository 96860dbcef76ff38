"""Export a trained model to ``model/``: float32 and int8 TFLite, the Keras model, and the card.

The card (``model.json``) records the input spec and crop geometry, the calibration and
threshold, the training data and counts, metrics per split measured on the exported TFLite
files through LiteRT (what the gate runs), and each file's SHA-256.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..classify import SmileClassifier
from ..crop import GEOMETRY
from .lighting import LIGHTINGS, relight
from .metrics import PLATT_KIND, at_own_prior, binary_metrics, group_metrics, resample_chips, smile_rate_by_class

log = logging.getLogger(__name__)

FLOAT_NAME = "smile.tflite"
INT8_NAME = "smile_int8.tflite"
KERAS_NAME = "smile.keras"

#: How each dataset's labels become "smiling" / "not smiling" (they differ in kind: an attribute,
#: expression classes, a binary folder).
LABELS = {
    "smilesmiled": "positives7 smiling, negatives7 not",
    "fer2013": "happy smiling; angry, disgust, fear, neutral, sad, surprise not",
    "rafdb": "4 (happiness) smiling; surprise, fear, disgust, sadness, anger, neutral not",
    "mtfl": "smile attribute 1 smiling, 2 not",
    "ckplus": "happy smiling; anger, contempt, disgust, fear, sadness, surprise not",
    "muxspace": "happiness smiling; neutral, anger, contempt, disgust, fear, sadness, surprise not (a generous convention: faint smiles are often happiness)",
    "folders": "a class folder named smile, smiling, happy, positive(s) or 1 smiling; every other folder not",
}

#: The public datasets are for research use under their owners' terms; so are weights learned from them.
TERMS = (
    "Trained on public face datasets (SMILEsmileD, FER2013, RAF-DB, MTFL, CK+, muxspace) that are licensed for research use "
    "under their owners' terms; these weights are for research use too. Retrain on faces you may use before any other use."
)


def _convert(model: Any, representative: np.ndarray | None) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if representative is not None:

        def gen():
            for x in representative:
                yield [x[None, ..., None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = gen
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


#: Face widths (pixels) at which every test split is also measured.
FACE_WIDTHS = (24,)


def evaluate_splits(clf: SmileClassifier, sets: list[Any], threshold: float) -> dict[str, Any]:
    """Metrics of ``clf`` on every split of every prepared dataset (plus FER per class)."""
    out: dict[str, Any] = {}
    for p in sets:
        out[p.name] = {}
        prior = float(p.labels[p.splits["train"]].mean())
        for split, idx in p.splits.items():
            probs = clf.predict_in_batches(p.chips[idx])
            m = binary_metrics(probs, p.labels[idx], threshold)
            # The shipped threshold serves a half-smiling world; this set's own prior differs.
            m["at_own_prior"] = at_own_prior(probs, p.labels[idx], prior)
            if split == "test" and len(set(p.groups)) > 2:
                m["smile_rate_by_class"] = smile_rate_by_class(probs, p.groups[idx], threshold)
            if split == "test" and getattr(p.ds, "attributes", None):
                # MTFL: gender, glasses, head pose. A gate must work alike for everyone.
                m["by_group"] = group_metrics(probs, p.labels[idx], {k: np.asarray(v)[idx] for k, v in p.ds.attributes.items()}, threshold)
            if split == "test":
                # A distant camera: the chips as a face this many pixels wide gives them.
                m["balanced_accuracy_by_face_width"] = {
                    str(w): binary_metrics(clf.predict_in_batches(resample_chips(p.chips[idx], w)), p.labels[idx], threshold)["balanced_accuracy"] for w in FACE_WIDTHS
                }
                # Dark and backlit faces (training/lighting.py): within 2 points of normal light is the target.
                m["balanced_accuracy_by_lighting"] = {
                    light: binary_metrics(clf.predict_in_batches(relight(p.chips[idx], light, seed=i)), p.labels[idx], threshold)["balanced_accuracy"]
                    for i, light in enumerate(LIGHTINGS)
                }
            out[p.name][split] = m
    return out


def export_all(*, model: Any, logit_model: Any, out_dir: Path, arch: str, calibration: dict[str, float], threshold: float, sets: list[Any], representative: np.ndarray, training: dict[str, Any], serve: str = "float32") -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    float_path, int8_path, keras_path = out_dir / FLOAT_NAME, out_dir / INT8_NAME, out_dir / KERAS_NAME
    float_path.write_bytes(_convert(model, None))
    int8_path.write_bytes(_convert(model, representative))
    model.save(keras_path)
    files = {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "bytes": p.stat().st_size} for p in (float_path, int8_path, keras_path)}
    card: dict[str, Any] = {
        "name": "gatekeeper smile model",
        "arch": arch,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "input": {"shape": [None, 64, 64, 1], "dtype": "float32", "range": [0, 255], "crop": GEOMETRY},
        "output": "probability that the face smiles, calibrated for a half-smiling world",
        "labels": LABELS,
        "terms": TERMS,
        "calibration": {"kind": PLATT_KIND, **{k: round(v, 5) for k, v in calibration.items()}},
        "threshold": round(threshold, 4),
        # The file the gate runs when no classifier.model_path is given (gatekeeper.classify.default_model_path).
        "serve": INT8_NAME if serve == "int8" else FLOAT_NAME,
        "params": int(logit_model.count_params()),
        "training": training,
        "files": files,
        "metrics": {},
    }
    _write_card(out_dir, card)
    for name, path in ((FLOAT_NAME, float_path), (INT8_NAME, int8_path)):
        clf = SmileClassifier(path)
        card["metrics"][name] = evaluate_splits(clf, sets, threshold)
    _write_card(out_dir, card)
    return card


def _write_card(out_dir: Path, card: dict[str, Any]) -> None:
    (out_dir / "model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
