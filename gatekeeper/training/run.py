"""What one training run carries between its steps: :class:`Run` (made by
:func:`~gatekeeper.training.train.prepare_run`) and :class:`Fitted` (made by
:func:`~gatekeeper.training.train.fit_model`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import Prepared
from .options import TrainOptions


@dataclass
class Run:
    """What :func:`prepare_run` hands to fitting: the sets, the training and validation arrays
    (``x_tr`` uint8 chips, ``y_tr`` labels, ``s_tr`` set index, ``g_tr`` class names, ``e_tr``
    expression class or -1), the weights and targets, and what the card says of the teachers."""

    opts: TrainOptions
    sets: list[Prepared]
    x_tr: np.ndarray
    y_tr: np.ndarray
    s_tr: np.ndarray
    g_tr: np.ndarray
    e_tr: np.ndarray
    w_tr: np.ndarray
    ew_tr: np.ndarray
    targets: np.ndarray
    soft_expressions: np.ndarray | None
    x_va4: np.ndarray
    y_va: np.ndarray
    s_va: np.ndarray
    w_va: np.ndarray
    distillation: dict[str, Any] | None
    init_training: dict[str, Any] | None
    ensemble: list[dict[str, Any]]  # the members of an --ensemble, as the card records them

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.sets]


@dataclass
class Fitted:
    """A fitted network: ``net`` (one or two heads), ``logit`` (chip to smile logit), ``model``
    (what was fitted: ``net`` itself, or the joint model around it), and what the fit recorded."""

    net: Any
    logit: Any
    model: Any
    history: dict[str, list[float]]
    cleaning: dict[str, Any] | None = None
    mining: dict[str, Any] | None = None
