"""Where the training time goes: chips/s of the bare step, of the input pipeline alone and of the
full recipe, side by side in one run, on the real training chips.

    python scripts/train_speed.py                     # the shipped recipe, width 1.0
    python scripts/train_speed.py --width 1.5 --ema 0.995
    python scripts/train_speed.py --legacy            # also the recipe before issue 21, for docs/measurements.md

* bare step: the network's own training step (forward, loss, gradients, Adam) on batches already
  in memory, no augmentation, no metric;
* input pipeline: the recipe's batches (gather, JPEG, warp, low resolution, exposure, noise,
  occlusion, glasses), drawn as fast as they come, no step;
* full recipe: ``model.fit`` on the recipe's batches with the recipe's optimiser (EMA when asked)
  and callbacks' per-step cost; validation runs once per epoch and is timed on its own.

Rates are measured in the steady state (the first batches of each measurement are not counted:
they trace the graphs and fill the queues). Run it with nothing else on the machine; the last
line is ``full recipe: N chips/s, NN% of the bare step``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.detect import resolve_face_model
from gatekeeper.training.data import default_cache_dir, gather, prepare
from gatekeeper.training.fitting import validation_auc
from gatekeeper.training.options import DEFAULT_DATA, shared_dir
from gatekeeper.training.recipe import _weights

WARM = 8  # batches not counted at the start of each measurement


def load_chips(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if args.synthetic:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (args.synthetic, 64, 64), dtype=np.uint8)
        y = (rng.random(args.synthetic) < 0.3).astype(np.float32)
        return x, y, np.ones(len(y), np.float32), x[:2000], y[:2000], np.ones(2000, np.float32)
    sets = prepare([d.format(shared=shared_dir()) for d in DEFAULT_DATA], resolve_face_model(None), Path(args.cache), 1234)
    x_tr, y_tr, s_tr, g_tr = gather(sets, "train")
    x_va, y_va, s_va, _ = gather(sets, "val")
    return x_tr, y_tr.astype(np.float32), _weights(y_tr, s_tr, g_tr), x_va, y_va, _weights(y_va, s_va)


class BatchClock:
    """Batch end times, wall and this process's CPU (all its threads), for steady-state rates.

    The CPU rate (chips per CPU-second) is what a chip costs whatever else runs on the machine;
    the wall rate is what an idle machine gives only when nothing else runs.
    """

    def __init__(self) -> None:
        self.times: list[tuple[float, float]] = []

    def tick(self) -> None:
        self.times.append((time.perf_counter(), time.process_time()))

    def rate(self, batch: int) -> float:
        t = self.times[WARM:]
        return (len(t) - 1) * batch / (t[-1][0] - t[0][0])

    def cpu_rate(self, batch: int) -> float:
        t = self.times[WARM:]
        return (len(t) - 1) * batch / (t[-1][1] - t[0][1])


def _clock_callback(clock: BatchClock):
    import keras

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            clock.tick()

    return Clock()


def bare_step(args: argparse.Namespace, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> BatchClock:
    import keras
    import tensorflow as tf

    from gatekeeper.training.models import build

    keras.utils.set_random_seed(1)
    model = build(args.arch, width=args.width)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    b = args.batch
    batches = [(x[i * b : (i + 1) * b, :, :, None].astype(np.float32), y[i * b : (i + 1) * b], w[i * b : (i + 1) * b]) for i in range(8)]
    ds = tf.data.Dataset.from_tensor_slices(tuple(np.stack(c) for c in zip(*batches, strict=True))).cache().repeat()
    clock = BatchClock()
    model.fit(ds, steps_per_epoch=args.steps + WARM, epochs=1, verbose=0, callbacks=[_clock_callback(clock)])
    return clock


def input_pipeline(args: argparse.Namespace, make_ds, batches: int) -> BatchClock:
    clock = BatchClock()
    for i, _ in enumerate(make_ds()):
        clock.tick()
        if i + 1 >= batches:
            break
    return clock


def full_recipe(args: argparse.Namespace, make_ds, compile_kwargs: dict, callbacks: list) -> BatchClock:
    import keras

    from gatekeeper.training.models import build

    keras.utils.set_random_seed(1)
    model = build(args.arch, width=args.width)
    model.compile(**compile_kwargs)
    clock = BatchClock()
    model.fit(make_ds(), steps_per_epoch=args.steps + WARM, epochs=1, verbose=0, shuffle=False, callbacks=[_clock_callback(clock), *callbacks])
    return clock


def legacy_dataset(args: argparse.Namespace, x: np.ndarray, y: np.ndarray, w: np.ndarray):
    """The input pipeline of the recipe before issue 21, rebuilt for the before/after comparison:
    float chips in a full-size shuffle buffer, JPEG per chip with a ``tf.cond``, three Keras
    random-geometry layers, the low-resolution round trip on the whole batch, AUTOTUNE."""
    import keras
    import tensorflow as tf

    from gatekeeper.training.augment import occlude, sunglasses

    geo = keras.Sequential(
        [
            keras.layers.RandomRotation(0.03, fill_mode="nearest", seed=1),
            keras.layers.RandomZoom((-0.1, 0.1), fill_mode="nearest", seed=2),
            keras.layers.RandomTranslation(0.06, 0.06, fill_mode="nearest", seed=3),
        ]
    )

    def jpeg(x, y, w):
        q = tf.random.uniform((), 25, 90, dtype=tf.int32)
        xj = tf.image.adjust_jpeg_quality(tf.cast(x, tf.uint8), q)
        return tf.cond(tf.random.uniform(()) < 0.3, lambda: tf.cast(xj, tf.float32), lambda: x), y, w

    def batch_aug(x, y, w):
        b = tf.shape(x)[0]
        x = tf.where(tf.random.uniform((b, 1, 1, 1)) < 0.5, tf.reverse(x, axis=[2]), x)
        x = geo(x, training=True)
        small = tf.random.uniform((), 18, 49, dtype=tf.int32)
        xs = tf.image.resize(tf.image.resize(x, [small, small], antialias=True), [64, 64])
        x = tf.where(tf.random.uniform((b, 1, 1, 1)) < args.lowres_rate, xs, x)
        g = tf.exp(tf.random.normal((b, 1, 1, 1), stddev=0.25))
        x = 255.0 * tf.pow(tf.clip_by_value(x / 255.0, 1e-4, 1.0), g)
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        c = tf.exp(tf.random.normal((b, 1, 1, 1), stddev=0.2))
        x = (x - mean) * c + mean + tf.random.normal((b, 1, 1, 1), stddev=20.0)
        x = x + tf.random.normal(tf.shape(x)) * tf.random.uniform((b, 1, 1, 1), 0.0, 6.0)
        x, y = occlude(x, y, 0.2)
        return tf.clip_by_value(sunglasses(x, 0.08), 0.0, 255.0), y, w

    x4 = x[..., None].astype(np.float32)

    def make():
        ds = tf.data.Dataset.from_tensor_slices((x4, y, w)).shuffle(len(x4), seed=1, reshuffle_each_iteration=True)
        ds = ds.map(jpeg, num_parallel_calls=tf.data.AUTOTUNE).batch(args.batch, drop_remainder=True)
        return ds.map(batch_aug, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    return make


def legacy_metrics() -> list:
    """The per-step metrics of the recipe before issue 21 (side AUC and side accuracy)."""
    import keras

    class SideAUC(keras.metrics.AUC):
        def update_state(self, y_true, y_pred, sample_weight=None):
            return super().update_state(keras.ops.cast(y_true > 0.5, "float32"), y_pred, sample_weight)

    def side_accuracy(y_true, y_pred):
        return keras.ops.cast(keras.ops.equal(keras.ops.reshape(y_true, (-1,)) > 0.5, keras.ops.reshape(y_pred, (-1,)) > 0.0), "float32")

    return [SideAUC(name="auc", from_logits=True), keras.metrics.MeanMetricWrapper(side_accuracy, name="acc")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="gate")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=60, help="batches measured, after the first few")
    ap.add_argument("--ema", type=float, default=0.0, help="the recipe's EMA momentum (0: off)")
    ap.add_argument("--lowres-rate", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--legacy", action="store_true", help="also measure the recipe before issue 21")
    ap.add_argument("--synthetic", type=int, default=0, help="random chips instead of the training set (a quick look)")
    ap.add_argument("--cache", default=str(default_cache_dir()), help="where prepared chips are cached (default: $XDG_CACHE_HOME/gatekeeper)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import keras
    import tensorflow as tf

    from gatekeeper.training.augment import train_dataset

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    x, y, w, x_va, y_va, w_va = load_chips(args)
    print(f"{len(x)} training chips, batch {args.batch}, arch {args.arch} width {args.width:g}, {os.cpu_count()} cores", flush=True)

    def recipe_ds():
        return train_dataset(x, y, w, batch=args.batch, seed=1, lowres_rate=args.lowres_rate)

    adam = keras.optimizers.Adam(1e-3, use_ema=args.ema > 0, ema_momentum=args.ema or 0.99)
    rows: list[tuple[str, BatchClock]] = []

    def measured(name: str, clock: BatchClock) -> None:
        rows.append((name, clock))
        print(f"{name}: {clock.rate(args.batch):.0f} chips/s, {clock.cpu_rate(args.batch):.0f} chips per CPU-second", flush=True)

    measured("bare step", bare_step(args, x, y, w))
    measured("input pipeline alone", input_pipeline(args, recipe_ds, args.steps + WARM))
    if args.legacy:
        legacy = legacy_dataset(args, x, y, w)
        t0 = time.perf_counter()
        next(iter(legacy()))
        print(f"before: first batch of an epoch after {time.perf_counter() - t0:.1f} s (the shuffle buffer fills)", flush=True)
        measured("before: input pipeline alone", input_pipeline(args, legacy, args.steps + WARM))
        legacy_compile = {"optimizer": keras.optimizers.Adam(1e-3), "loss": keras.losses.BinaryCrossentropy(from_logits=True), "weighted_metrics": legacy_metrics()}
        measured("before: full recipe", full_recipe(args, legacy, legacy_compile, []))
    measured("full recipe", full_recipe(args, recipe_ds, {"optimizer": adam, "loss": keras.losses.BinaryCrossentropy(from_logits=True)}, []))
    bare, bare_cpu = rows[0][1].rate(args.batch), rows[0][1].cpu_rate(args.batch)
    full, full_cpu = rows[-1][1].rate(args.batch), rows[-1][1].cpu_rate(args.batch)

    # Validation, once per epoch: what it adds to an epoch of the recipe.
    from gatekeeper.training.models import build

    model = build(args.arch, width=args.width)
    val = validation_auc(x_va[..., None].astype(np.float32), y_va, w_va)
    val.set_model(model)
    val.on_epoch_end(0, {})
    t0 = time.perf_counter()
    val.on_epoch_end(0, {})
    val_s = time.perf_counter() - t0
    epoch_s = len(x) / full + val_s

    print()
    print(f"{'what':<30} {'chips/s':>8} {'of bare':>8} {'per CPU-s':>10} {'of bare':>8}")
    for name, clock in rows:
        rate, cpu = clock.rate(args.batch), clock.cpu_rate(args.batch)
        print(f"{name:<30} {rate:8.0f} {100 * rate / bare:7.0f}% {cpu:10.0f} {100 * cpu / bare_cpu:7.0f}%")
    load = os.getloadavg()[0]
    print(f"load average while measuring: {load:.1f} on {os.cpu_count()} cores{' (the wall rates are not an idle machine)' if load > 1.5 * (os.cpu_count() or 1) / 2 + 0.5 else ''}")
    print(f"validation ({len(x_va)} chips): {val_s:.1f} s per epoch; one epoch of {len(x)} chips: {epoch_s / 60:.1f} min")
    print(f"full recipe: {full:.0f} chips/s, {100 * full / bare:.0f}% of the bare step ({100 * full_cpu / bare_cpu:.0f}% per CPU-second)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
