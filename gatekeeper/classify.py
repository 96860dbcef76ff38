"""Smile probability for face chips, with the exported LiteRT model. Never imports TensorFlow.

A model is a ``.tflite`` file with its model card (``model.json``) beside it. The card says
which crop geometry the model was trained on and carries the file's SHA-256; a model whose card
does not match its file, or whose geometry differs from :data:`gatekeeper.crop.GEOMETRY`, is
refused: a model run on chips cut another way gives confident nonsense.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ._native import captured_stderr
from .crop import CHIP_SIZE, GEOMETRY
from .detect import check_tflite_file
from .errors import ModelError

__all__ = ["SmileClassifier", "default_model_path", "load_model_card"]

log = logging.getLogger(__name__)

# Installed wheels carry the repository's model/ as the package data gatekeeper/_model; a source
# checkout (editable install, tests) reads model/ itself.
_PACKAGE_DIR = Path(__file__).resolve().parent
MODEL_DIRS = (_PACKAGE_DIR / "_model", _PACKAGE_DIR.parent / "model")
DEFAULT_MODEL = "smile.tflite"
CARD_NAME = "model.json"


def default_model_path() -> Path:
    """The model shipped with the package (``model/`` in the repository): the file its card names
    under ``serve`` (``gatekeeper train --serve``), else the float32 ``smile.tflite``."""
    for d in MODEL_DIRS:
        if (d / DEFAULT_MODEL).is_file() or (d / CARD_NAME).is_file():
            return d / _served_name(d)
    return MODEL_DIRS[0] / DEFAULT_MODEL


def _served_name(model_dir: Path) -> str:
    """The file name the card in ``model_dir`` says the gate runs; a missing or unreadable card
    leaves the error to :func:`load_model_card`, which names it."""
    try:
        served = json.loads((model_dir / CARD_NAME).read_text(encoding="utf-8")).get("serve")
    except (OSError, ValueError, AttributeError):
        return DEFAULT_MODEL
    return served if isinstance(served, str) and served and Path(served).name == served else DEFAULT_MODEL


def load_model_card(model_path: Path, data: bytes | None = None) -> dict[str, Any]:
    """Read ``model.json`` beside ``model_path`` and check it describes that very file."""
    card_path = model_path.with_name(CARD_NAME)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"smile model {str(model_path)!r} has no model card {CARD_NAME} beside it; expected the card written by 'gatekeeper train'") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"model card {str(card_path)!r} cannot be read: {exc}") from None
    files = card.get("files", {})
    entry = files.get(model_path.name)
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise ModelError(f"model card {str(card_path)!r} does not list {model_path.name!r}; expected files.{model_path.name}.sha256")
    if data is None:
        data = model_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise ModelError(f"smile model {str(model_path)!r} does not match its model card (sha256 {digest[:12]}..., card says {entry['sha256'][:12]}...); re-export the model or restore the file")
    geometry = card.get("input", {}).get("crop")
    if geometry != GEOMETRY:
        raise ModelError(f"smile model {str(model_path)!r} was trained on another crop geometry ({geometry}); this gatekeeper cuts {GEOMETRY}")
    return card


class SmileClassifier:
    """Smile probabilities for a batch of 64x64 greyscale chips, all in one interpreter call.

    >>> clf = SmileClassifier()  # doctest: +SKIP
    >>> clf.predict(np.stack([chip_a, chip_b]))  # doctest: +SKIP
    array([0.93, 0.08], dtype=float32)
    """

    def __init__(self, model_path: Path | str | None = None, *, threads: int = 1, check_card: bool = True) -> None:
        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            origin = "classifier.model_path" if model_path else f"the shipped model (model/{path.name})"
            raise ModelError(f"smile model {str(path)!r} ({origin}) does not exist; expected a .tflite written by 'gatekeeper train' with its model.json")
        data = check_tflite_file(path, "smile model")
        self.card = load_model_card(path, data) if check_card else {}
        self.path = path
        self.sha256 = hashlib.sha256(data).hexdigest()  # what the service reports as gatekeeper_build_info's model_sha
        from ai_edge_litert.interpreter import Interpreter

        try:
            with captured_stderr():
                self._interp = Interpreter(model_content=data, num_threads=threads)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"smile model {str(path)!r} could not be loaded: {str(exc).splitlines()[0]}") from None
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        if tuple(inp["shape"][1:]) != (CHIP_SIZE, CHIP_SIZE, 1):
            raise ModelError(f"smile model {str(path)!r} takes input shape {tuple(inp['shape'])}; expected (N, 64, 64, 1)")
        self._in, self._out = inp["index"], out["index"]
        self._in_dtype = inp["dtype"]
        self._in_quant = inp.get("quantization", (0.0, 0))
        self._out_quant = out.get("quantization", (0.0, 0))
        self._batch = 0
        with captured_stderr():  # the first invoke finishes set-up; keep that out of frame 0
            self.predict(np.zeros((1, CHIP_SIZE, CHIP_SIZE), dtype=np.uint8))

    def _resize(self, n: int) -> None:
        if n != self._batch:
            # Reallocating rebuilds the XNNPACK delegate, which announces itself on fd 2.
            with captured_stderr():
                self._interp.resize_tensor_input(self._in, [n, CHIP_SIZE, CHIP_SIZE, 1])
                self._interp.allocate_tensors()
            self._batch = n

    def predict(self, chips: np.ndarray) -> np.ndarray:
        """``chips``: (N, 64, 64) or (N, 64, 64, 1) uint8. Returns N float32 probabilities."""
        chips = np.asarray(chips)
        if chips.ndim == 3:
            chips = chips[..., None]
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 1):
            raise ValueError(f"chips must have shape (N, 64, 64) or (N, 64, 64, 1), but got shape {chips.shape}")
        n = chips.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        self._resize(n)
        if self._in_dtype == np.float32:
            x = chips.astype(np.float32)
        else:  # an integer-input model: quantise as its input spec says
            scale, zero = self._in_quant
            x = np.clip(np.round(chips.astype(np.float32) / scale + zero), np.iinfo(self._in_dtype).min, np.iinfo(self._in_dtype).max).astype(self._in_dtype)
        self._interp.set_tensor(self._in, x)
        self._interp.invoke()
        y = self._interp.get_tensor(self._out).reshape(n)
        if y.dtype != np.float32:
            scale, zero = self._out_quant
            y = (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32, copy=False)

    def predict_in_batches(self, chips: np.ndarray, batch: int = 256) -> np.ndarray:
        """:meth:`predict` over many chips (evaluation), ``batch`` at a time."""
        return np.concatenate([self.predict(chips[i : i + batch]) for i in range(0, len(chips), batch)]) if len(chips) else np.zeros(0, np.float32)
