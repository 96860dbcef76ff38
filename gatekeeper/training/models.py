"""Model topologies. Every model takes a (64, 64, 1) float32 chip in [0, 255] and returns a logit.

* ``seed``: the original project's CNN (zero-pad 3, conv 32 7x7, batch norm, ReLU, max-pool,
  flatten, dense), kept as the baseline.
* ``gate``: the shipped model. Per-image standardisation first (the chip's own mean and
  contrast are removed, so lighting is not a feature), then six convolutions with batch norm (a
  5x5 stride-2 stem, then five 3x3 at 32, 16 and 8 pixels), global average pooling and dropout.
  About 110k parameters (445 KB as float32 TFLite) and about 29 M multiply-adds per face.
* ``resnet``: the teacher. A ResNet-18 (eight basic blocks in four stages) at 64 px with a 3x3
  stride-2 stem and no pooling after it, its channels 24-48-96-192 (``width`` multiplies them):
  about 1.6 M parameters, trained here in minutes per epoch, too slow for the gate's per-face
  budget; its logits on the training chips teach the gate topology (``gatekeeper train --teacher``).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

ARCHS = ("seed", "gate", "resnet")


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


def _with_heads(inp, features, dropout: float, expressions: int, name: str) -> keras.Model:
    """Global average pooling, dropout, the smile logit and, with ``expressions``, the expression logits."""
    x = layers.GlobalAveragePooling2D(name="gap")(features)
    x = layers.Dropout(dropout, name="dropout")(x)
    out = layers.Dense(1, name="logit")(x)
    if not expressions:
        return keras.Model(inp, out, name=name)
    return keras.Model(inp, [out, layers.Dense(expressions, name="expression")(x)], name=name)


def build_gate(dropout: float = 0.3, width: float = 1.0, expressions: int = 0) -> keras.Model:
    """The gate topology; ``width`` multiplies every layer's channels (1.0: 24-32-32-64-64-64).

    With ``expressions``, a second head on the same features scores that many expression
    classes (logits); the model then has two outputs, the smile logit first."""

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
    return _with_heads(inp, x, dropout, expressions, "gate")


def _block(x, filters: int, strides: int, name: str):
    """A basic residual block: two 3x3 convolutions, a 1x1 projection where the shape changes."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=name + "_proj")(x)
        shortcut = layers.BatchNormalization(name=name + "_proj_bn")(shortcut)
    y = _conv(x, filters, name + "_a", strides=strides)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name + "_b")(y)
    y = layers.BatchNormalization(name=name + "_b_bn")(y)
    return layers.ReLU(name=name + "_out")(layers.Add(name=name + "_add")([shortcut, y]))


def build_resnet(dropout: float = 0.3, width: float = 1.0, expressions: int = 0) -> keras.Model:
    """The teacher topology (module docstring); same inputs and outputs as :func:`build_gate`."""
    widths = [max(8, int(c * width / 8.0 + 0.5) * 8) for c in (24, 48, 96, 192)]
    inp = keras.Input((64, 64, 1), name="chip")
    x = Standardize(name="standardize")(inp)
    x = _conv(x, widths[0], "stem", strides=2)  # 32
    for stage, filters in enumerate(widths):
        for block in range(2):
            x = _block(x, filters, 2 if stage > 0 and block == 0 else 1, f"s{stage + 1}b{block + 1}")
    return _with_heads(inp, x, dropout, expressions, "resnet")


def build(arch: str, width: float = 1.0, expressions: int = 0) -> keras.Model:
    if arch == "resnet":
        return build_resnet(width=width, expressions=expressions)
    if arch == "seed":
        if expressions:
            raise ValueError("the seed architecture has no expression head; use --arch gate")
        return build_seed()
    if arch == "gate":
        return build_gate(width=width, expressions=expressions)
    raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHS)}")


def smile_model(net: keras.Model) -> keras.Model:
    """The chip-to-smile-logit part of a network (the network itself when it has one output)."""
    if len(net.outputs) == 1:
        return net
    return keras.Model(net.inputs, net.get_layer("logit").output, name=net.name + "_smile")


@keras.saving.register_keras_serializable(package="gatekeeper")
class SourceLink(layers.Layer):
    """Each source's labels read off the one smile scale: ``exp(log_a[s]) * z + b[s]``.

    The sets put the line between "smiling" and "not smiling" in different places (a faint smile
    is "smiling" in a generous set, "not smiling" in a strict one). A scale and an offset per set,
    learned with the network, let each set's labels sit where they sit without pulling the shared
    logit ``z`` apart; only ``z`` is exported, calibrated on validation."""

    def __init__(self, sources: int, **kwargs):
        super().__init__(**kwargs)
        self.sources = sources

    def build(self, input_shape):
        self.log_a = self.add_weight(shape=(self.sources,), initializer="zeros", name="log_a")
        self.b = self.add_weight(shape=(self.sources,), initializer="zeros", name="b")

    def call(self, z, source):
        s = keras.ops.reshape(keras.ops.cast(source, "int32"), (-1,))
        a = keras.ops.exp(keras.ops.take(self.log_a, s))
        return keras.ops.expand_dims(a, 1) * z + keras.ops.expand_dims(keras.ops.take(self.b, s), 1)

    def get_config(self):
        return {**super().get_config(), "sources": self.sources}


def training_model(net: keras.Model, sources: int, link: bool) -> keras.Model:
    """What is fitted: inputs ``chip`` and ``source`` (the chip's dataset index); output the smile
    logit (through :class:`SourceLink` with ``link``) and, for a two-headed ``net``, the expression
    logits after it, in one (batch, 1 + classes) tensor that :class:`JointLoss` reads."""
    chip = keras.Input((64, 64, 1), name="chip")
    source = keras.Input((1,), dtype="int32", name="source")
    outs = net(chip)
    z, expr = (outs, None) if len(net.outputs) == 1 else outs
    if link:
        z = SourceLink(sources, name="source_link")(z, source)
    out = z if expr is None else layers.Concatenate(name="joint")([z, expr])
    return keras.Model({"chip": chip, "source": source}, out, name="trained")


@keras.saving.register_keras_serializable(package="gatekeeper")
class JointLoss(keras.losses.Loss):
    """The smile's binary cross-entropy, the expressions' cross-entropy and, with a teacher, the
    cross-entropy against the teacher's expression probabilities, each weighted per chip.

    ``y_true`` packs (target, smile weight, expression class, expression weight) per chip, then
    the teacher's probability of each expression class when distilling them; a chip with no
    expression label has expression weight 0 (every chip has the teacher's view). ``y_pred``:
    the smile logit, then the expression logits (if any)."""

    def __init__(self, expression_weight: float = 0.0, distill_expression_weight: float = 0.0, name: str = "joint_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.expression_weight = expression_weight
        self.distill_expression_weight = distill_expression_weight

    def call(self, y_true, y_pred):
        ops = keras.ops
        loss = y_true[:, 1] * ops.binary_crossentropy(y_true[:, 0], y_pred[:, 0], from_logits=True)
        if self.expression_weight > 0:
            label = ops.cast(ops.maximum(y_true[:, 2], 0.0), "int32")
            ce = ops.sparse_categorical_crossentropy(label, y_pred[:, 1:], from_logits=True)
            loss = loss + self.expression_weight * y_true[:, 3] * ce
        if self.distill_expression_weight > 0:
            soft = ops.categorical_crossentropy(y_true[:, 4:], y_pred[:, 1:], from_logits=True)
            loss = loss + self.distill_expression_weight * soft
        return loss

    def get_config(self):
        return {**super().get_config(), "expression_weight": self.expression_weight, "distill_expression_weight": self.distill_expression_weight}


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
