"""Model topologies. Every model takes a (64, 64, 1) float32 chip in [0, 255] and returns a logit.

* ``seed``: the original project's CNN (zero-pad 3, conv 32 7x7, batch norm, ReLU, max-pool,
  flatten, dense), kept as the baseline.
* ``gate``: the shipped model. Per-image standardisation first (the chip's own mean and
  contrast are removed, so lighting is not a feature), then six convolutions with batch norm (a
  5x5 stride-2 stem, then five 3x3 at 32, 16 and 8 pixels), global average pooling and dropout.
  About 110k parameters (445 KB as float32 TFLite) and about 29 M multiply-adds per face.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

ARCHS = ("seed", "gate")


@keras.saving.register_keras_serializable(package="gatekeeper")
class Standardize(layers.Layer):
    """Per-image zero mean, unit variance (with a floor so flat images are not blown up)."""

    def call(self, x):
        mean = keras.ops.mean(x, axis=(1, 2, 3), keepdims=True)
        var = keras.ops.mean(keras.ops.square(x - mean), axis=(1, 2, 3), keepdims=True)
        return (x - mean) / keras.ops.sqrt(keras.ops.maximum(var, 16.0))


def build_seed() -> keras.Model:
    inp = keras.Input((64, 64, 1), name="chip")
    x = layers.Rescaling(1.0 / 255.0)(inp)
    x = layers.ZeroPadding2D(3)(x)
    x = layers.Conv2D(32, 7, name="conv0")(x)
    x = layers.BatchNormalization(axis=3, name="bn0")(x)
    x = layers.Activation("relu")(x)
    x = layers.MaxPooling2D(name="max_pool")(x)
    x = layers.Flatten()(x)
    out = layers.Dense(1, name="logit")(x)
    return keras.Model(inp, out, name="seed")


def _conv(x, filters: int, name: str, kernel: int = 3, strides: int = 1):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=name + "_bn")(x)
    return layers.ReLU(name=name + "_relu")(x)


def build_gate(dropout: float = 0.3, width: float = 1.0) -> keras.Model:
    """The gate topology; ``width`` multiplies every layer's channels (1.0: 24-32-32-64-64-64)."""

    def ch(n: int) -> int:
        return max(8, int(n * width / 8.0 + 0.5) * 8)  # a multiple of 8, rounded half up

    inp = keras.Input((64, 64, 1), name="chip")
    x = Standardize(name="standardize")(inp)
    # A 5x5 stride-2 stem instead of a full-resolution conv and a pool: the same receptive field,
    # no 64x64 activation maps to normalise and store (27% less time per training step, measured).
    x = _conv(x, ch(24), "c1", kernel=5, strides=2)  # 32
    x = _conv(x, ch(32), "c2")
    x = _conv(x, ch(32), "c3")
    x = layers.MaxPooling2D(name="p2")(x)  # 16
    x = _conv(x, ch(64), "c4")
    x = _conv(x, ch(64), "c5")
    x = layers.MaxPooling2D(name="p3")(x)  # 8
    x = _conv(x, ch(64), "c6")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    out = layers.Dense(1, name="logit")(x)
    return keras.Model(inp, out, name="gate")


def build(arch: str, width: float = 1.0) -> keras.Model:
    if arch == "seed":
        return build_seed()
    if arch == "gate":
        return build_gate(width=width)
    raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHS)}")


@keras.saving.register_keras_serializable(package="gatekeeper")
class FlipAverage(layers.Layer):
    """Mean of a model's logits for the chip and its mirror image (a face is left-right symmetric;
    averaging both views steadies the score from frame to frame)."""

    def __init__(self, inner: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, x):
        return (self.inner(x, training=False) + self.inner(keras.ops.flip(x, axis=2), training=False)) / 2.0

    def get_config(self):
        return {**super().get_config(), "inner": keras.saving.serialize_keras_object(self.inner)}

    @classmethod
    def from_config(cls, config):
        config["inner"] = keras.saving.deserialize_keras_object(config["inner"])
        return cls(**config)


def exported_logits(logit_model: keras.Model, x: np.ndarray, flip_average: bool) -> np.ndarray:
    """What the exported model computes before calibration, for fitting the calibration."""
    z = logit_model.predict(x, batch_size=512, verbose=0).reshape(-1)
    if not flip_average:
        return z
    mirrored = logit_model.predict(np.ascontiguousarray(x[:, :, ::-1]), batch_size=512, verbose=0).reshape(-1)
    return (z + mirrored) / 2.0


def with_calibration(logit_model: keras.Model, a: float, b: float, flip_average: bool = False) -> keras.Model:
    """Wrap a logit model into the exported probability model: sigmoid(a * logit + b), the logit
    optionally averaged over the chip and its mirror image."""
    inp = keras.Input((64, 64, 1), name="chip")
    z = FlipAverage(logit_model, name="flip_average")(inp) if flip_average else logit_model(inp, training=False)
    calib = layers.Dense(1, activation="sigmoid", name="calibrated")
    p = calib(z)
    calib.set_weights([keras.ops.convert_to_numpy(keras.ops.full((1, 1), a)), keras.ops.convert_to_numpy(keras.ops.full((1,), b))])
    return keras.Model(inp, p, name=logit_model.name + "_calibrated")
