"""``gatekeeper train``: prepare chips with the run-time crop, fit, calibrate, export.

One run in four steps over a :class:`~gatekeeper.training.options.TrainOptions`:
:func:`prepare_run` (the chips of every set, their splits, weights and targets, the teachers),
:func:`fit_model` (Keras: the two phases around label cleaning, resumable after every epoch),
:func:`~gatekeeper.training.finish.calibrate` (on class-balanced validation) and
:func:`~gatekeeper.training.finish.export` (the TFLite files and the card, and with
``write_logits`` the teacher's logits file). What a run carries between the steps is in
:mod:`gatekeeper.training.run`. TensorFlow is imported only inside :mod:`gatekeeper.training`
(at module level by :mod:`~gatekeeper.training.models` alone, elsewhere inside the functions that
need it), after :func:`prepare_run` has made every check it can.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..detect import resolve_face_model
from ..errors import TrainingError
from .augment import train_dataset
from .data import EXPRESSIONS, card_split_seed, gather, prepare
from .ensemble import check_members, ensemble_logit_model
from .finish import calibrate, export, teach
from .fitting import STATE_NAME, StateSaver, fit_callbacks, link_table, load_state, validation_auc
from .metrics import PLATT_KIND, sigmoid
from .options import HARD_NEGATIVES, TrainOptions, parse_policy
from .recipe import (
    _weights,
    calibrated_suspects,
    expression_weights,
    linked_logits,
    mine_hard,
    mine_missed,
    soft_targets,
)
from .run import Fitted, Run
from .teacher import TeacherLogits, parse_teacher, softmax, teacher_logits

log = logging.getLogger(__name__)


def _teachers(opts: TrainOptions) -> tuple[list[tuple[str, str | None, Path, Any]], TeacherLogits | None]:
    """The exported-model teachers (spec, dataset or None, path, classifier) and the logits file, if any."""
    from ..classify import SmileClassifier

    models, logits = [], None
    for spec in opts.teacher:
        only, path = parse_teacher(spec)
        if not path.is_file():
            raise TrainingError(f"--teacher {spec!r}: {str(path)!r} does not exist; expected a .tflite exported by 'gatekeeper train', its model.json beside it, "
                                "or a logits file written by 'gatekeeper train --write-logits'")
        if path.suffix == ".npz":
            if logits is not None or only is not None:
                raise TrainingError(f"--teacher {spec!r}: one logits file teaches every set; give it once, without a DATASET: prefix")
            logits = TeacherLogits.read(path)
        else:
            models.append((spec, only, path, SmileClassifier(path)))
    if logits is not None and models:
        raise TrainingError("--teacher: a logits file and exported models cannot teach one run together; give one or the other")
    return models, logits


def _check_splits(opts: TrainOptions, init_training: dict[str, Any] | None, models: list, logits: TeacherLogits | None, members: list[dict[str, Any]]) -> None:
    """A model trained on other splits has seen this run's validation and test faces: starting
    from it, or learning from it, would leak them into training."""
    known = [(f"--init {opts.init!r}", {"training": init_training})] if init_training is not None else []
    known += [(f"--teacher {spec!r}", clf.card) for spec, _, _, clf in models] + [(f"--ensemble {m['path']!r}", m) for m in members]
    if logits is not None:
        known.append((f"--teacher {str(logits.path)!r}", {"training": {"split_seed": logits.meta.get("split_seed")}}))
    for what, card in known:
        if (seed := card_split_seed(card)) != opts.split_seed:
            raise TrainingError(f"{what} was trained on the splits of seed {seed}, so it has seen faces that --split-seed {opts.split_seed} holds out; pass --split-seed {seed}")


def prepare_run(opts: TrainOptions) -> Run:
    """Everything fitting needs, checked before the minutes of chip preparation where it can be."""
    try:
        policy = [parse_policy(opts.policy)[0]] if opts.policy else []
    except ValueError as exc:
        raise TrainingError(f"--policy: {exc}") from None
    if policy and opts.threshold == "val":
        raise TrainingError("--policy pins the calibration at the card's threshold, which --threshold val would then move; give --threshold a probability")
    members = check_members(opts)  # an --ensemble is refused here, before the chips
    models, logits = _teachers(opts)
    init_training = _previous_training(opts.init)
    _check_splits(opts, init_training, models, logits, members)
    sets = prepare(opts.data, resolve_face_model(opts.face_model), Path(opts.cache), opts.split_seed)
    names = [p.name for p in sets]
    for option, named in (("--mine-smiles-sources", opts.mine_smiles_sources or ()), ("--teacher", [only for _, only, _, _ in models if only]), ("--policy", policy)):
        if unknown := sorted(set(named) - set(names)):
            raise TrainingError(f"{option} names {', '.join(map(repr, unknown))}, not among the training data ({', '.join(names)})")
    x_tr, y_tr, s_tr, g_tr = gather(sets, "train")
    x_va, y_va, s_va, _ = gather(sets, "val")
    e_tr = np.concatenate([p.expressions[p.splits["train"]] for p in sets])
    keep = np.random.default_rng(opts.seed).permutation(len(x_tr))[: opts.limit] if opts.limit else np.arange(len(x_tr))
    x_tr, y_tr, s_tr, g_tr, e_tr = x_tr[keep], y_tr[keep], s_tr[keep], g_tr[keep], e_tr[keep]
    targets, soft, distillation = _targets(opts, sets, x_tr, y_tr, s_tr, keep, models, logits)
    log.info("train %d chips (%.1f%% smiling), val %d", len(x_tr), 100 * y_tr.mean(), len(x_va))
    return Run(
        opts=opts,
        sets=sets,
        x_tr=x_tr,
        y_tr=y_tr,
        s_tr=s_tr,
        g_tr=g_tr,
        e_tr=e_tr,
        w_tr=_weights(y_tr, s_tr, g_tr, by_size=opts.source_weight == "size", hard_weight=opts.hard_weight),
        ew_tr=expression_weights(e_tr) if opts.expression_weight > 0 else np.zeros(len(e_tr), np.float32),
        targets=targets,
        soft_expressions=soft,
        x_va4=x_va[..., None].astype(np.float32),
        y_va=y_va,
        s_va=s_va,
        # Validation (checkpoints, calibration, threshold) is class-balanced only: it should
        # measure the world, not our emphasis.
        w_va=_weights(y_va, s_va),
        distillation=distillation,
        init_training=init_training, ensemble=members,
    )


def _targets(opts, sets, x_tr, y_tr, s_tr, keep, models, logits) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any] | None]:
    """The smile targets (the labels, or with teachers a blend), the teacher's expression
    probabilities (with ``distill_expression_weight``) and the card's account of the teachers."""
    names = [p.name for p in sets]
    if not models and logits is None:
        if opts.distill_expression_weight > 0:
            raise TrainingError("--distill-expression-weight needs a --teacher logits file with expression logits")
        return y_tr.astype(np.float32), None, None
    soft = None
    if logits is not None:
        z_all, expr_all = logits.for_split(sets, "train")
        z_t = z_all[keep]
        if opts.distill_expression_weight > 0:
            if expr_all is None:
                raise TrainingError(f"--teacher {str(logits.path)!r} holds no expression logits for every set; --distill-expression-weight needs them")
            soft = softmax(expr_all[keep])
        teachers = [{"path": str(logits.path), "sha256": hashlib.sha256(logits.path.read_bytes()).hexdigest(), "datasets": names, "provenance": logits.meta}]
    else:
        z_t = teacher_logits([(only, clf.predict_in_batches) for _, only, _, clf in models], names, x_tr, s_tr)
        teachers = [{"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "datasets": [only] if only else names} for _, only, path, _ in models]
    agree = float(((z_t > 0) == (y_tr == 1)).mean())
    log.info("distillation: %d teachers, weight %.2f; the teachers agree with %.1f%% of the training labels", len(teachers), opts.distill_weight, 100 * agree)
    distillation = {"weight": opts.distill_weight, "teachers": teachers, "teacher_agrees_with_labels": round(agree, 4)}
    if soft is not None:
        distillation["expression_weight"] = opts.distill_expression_weight
    return soft_targets(y_tr, z_t, opts.distill_weight), soft, distillation


def build_models(run: Run) -> Fitted:
    """The network (from ``--init`` or new), its smile-logit view and the model to fit."""
    import keras

    from .models import build, smile_model, training_model

    opts = run.opts
    if opts.ensemble:
        net = ensemble_logit_model(opts.ensemble)
    elif opts.init:
        # Fine-tune (or, with --epochs 0, only re-calibrate and re-export) an existing model.
        net = _network(keras.models.load_model(opts.init, compile=False))
    else:
        heads = len(EXPRESSIONS) if opts.expression_weight > 0 or opts.distill_expression_weight > 0 else 0
        net = build(opts.arch, width=opts.width, expressions=heads)
    model = training_model(net, len(run.sets), opts.link) if opts.joint else net
    return Fitted(net=net, logit=smile_model(net), model=model, history={})


def fit_model(run: Run, fitted: Fitted) -> Fitted:
    """Fit in two phases around label cleaning (and hard-example mining), resumable after every
    epoch; returns the best checkpoint's network."""
    import keras

    from .models import JointLoss, smile_model

    opts = run.opts
    if opts.epochs <= 0:
        return fitted
    out_dir = Path(opts.out)
    steps = opts.epochs * (len(run.x_tr) // opts.batch)
    lr = keras.optimizers.schedules.CosineDecay(opts.lr, decay_steps=max(steps, 1), alpha=0.05)
    # With --ema, the weights validated, checkpointed and exported are an exponential moving
    # average of the trained ones (Polyak averaging): the epoch-to-epoch wobble averages out.
    # Batch-norm statistics are not averaged (Keras averages trainable weights only).
    loss = JointLoss(opts.expression_weight, opts.distill_expression_weight) if opts.joint else keras.losses.BinaryCrossentropy(from_logits=True)
    # No metric in the step: validation AUC is computed once per epoch by ValidationAUC.
    fitted.model.compile(optimizer=keras.optimizers.Adam(lr, use_ema=opts.ema > 0, ema_momentum=opts.ema), loss=loss)
    fitted.model.summary(print_fn=log.info)
    state = load_state(out_dir / STATE_NAME, fitted.model, opts.recipe()) if opts.resume else {"epochs_done": 0, "history": {}, "extra": {}}
    saver = StateSaver(out_dir / STATE_NAME, opts.recipe(), state["history"], dict(state["extra"]))
    done = state["epochs_done"]
    if done:
        log.info("resuming after epoch %d of %d", done, opts.epochs)
    weights = saver.extra.get("weights", run.w_tr)
    fitted.cleaning, fitted.mining = saver.extra.get("cleaning"), saver.extra.get("mining")
    clean_at = opts.clean_after if 0 < opts.clean_after < opts.epochs else opts.epochs
    if done < clean_at:
        _fit_phase(run, fitted, saver, weights, done, clean_at)
        done = clean_at
        if clean_at < opts.epochs:
            weights, fitted.cleaning, fitted.mining = clean_and_mine(run, fitted, clean_at)
            saver.extra.update(weights=weights, cleaning=fitted.cleaning, mining=fitted.mining)
    if done < opts.epochs:
        _fit_phase(run, fitted, saver, weights, done, opts.epochs)
    fitted.history = saver.history
    fitted.model = keras.models.load_model(out_dir / f"{opts.arch}.best.keras", compile=False)
    fitted.net = _network(fitted.model)
    fitted.logit = smile_model(fitted.net)
    return fitted


def _fit_phase(run: Run, fitted: Fitted, saver: StateSaver, weights: np.ndarray, first: int, last: int) -> None:
    """Epochs ``first`` to ``last`` with these sample weights. Checkpoints are chosen on the
    class-balanced validation AUC: accuracy at a fixed threshold swings with the prior from epoch
    to epoch, the ranking does not."""
    opts = run.opts
    extra = {"sources": run.s_tr, "expressions": run.e_tr, "expression_weights": run.ew_tr, "soft_expressions": run.soft_expressions} if opts.joint else {}
    # A phase that starts later (after cleaning, or on resume) draws another data order.
    data = train_dataset(run.x_tr, run.targets, weights, batch=opts.batch, seed=opts.seed + first, augment=opts.augment, occlusion_rate=opts.occlusion_rate,
                         glasses_rate=opts.glasses_rate, lowres_rate=opts.lowres_rate, lighting_rate=opts.lighting_rate, **extra)
    history = saver.history.get("val_auc", [])
    validation = validation_auc(run.x_va4, run.y_va, run.w_va, fitted.logit if opts.joint else None)
    best = Path(opts.out) / f"{opts.arch}.best.keras"
    callbacks = [saver.snapshot(), *fit_callbacks(best, opts.patience, max(history) if history else None, ema=opts.ema > 0, validation=validation), saver.writer()]
    # shuffle=False: the dataset reshuffles itself each epoch (Keras would only warn).
    fitted.model.fit(data, initial_epoch=first, epochs=last, shuffle=False, callbacks=callbacks, verbose=1 if opts.progress else 2)


def clean_and_mine(run: Run, fitted: Fitted, at_epoch: int) -> tuple[np.ndarray, dict[str, Any], dict[str, Any] | None]:
    """Drop the labels the part-trained model contradicts, in the named sources only (FER's
    confident "mistakes" are mostly real hard negatives: screams and cries), and weigh the hard
    examples it finds; returns the sample weights of the second phase and the card's accounts."""
    opts, names = run.opts, run.names
    smiling_confidence = opts.clean_confidence if opts.clean_smiling_confidence is None else opts.clean_smiling_confidence
    in_scope = np.isin(run.s_tr, [i for i, n in enumerate(names) if n in opts.clean_sources])
    # A float copy of the training chips only here (about 1 GB): training gathers uint8 batches.
    z_tr = fitted.logit.predict(run.x_tr[..., None].astype(np.float32), batch_size=512, verbose=0).reshape(-1)
    z_va = fitted.logit.predict(run.x_va4, batch_size=512, verbose=0).reshape(-1)
    # With a per-source link, a set's labels are judged through its own link.
    linked = linked_logits(z_tr, run.s_tr, link_table(fitted.model, names), names)
    suspect, (ca, cb) = calibrated_suspects(linked, run.y_tr, z_va, run.y_va, run.w_va, opts.clean_confidence,
                                            calibrate=opts.clean_logits == "calibrated", smiling_confidence=smiling_confidence)
    suspect &= in_scope
    cleaning = {
        "after_epoch": at_epoch,
        "sources": sorted(set(opts.clean_sources) & set(names)),
        "confidence": opts.clean_confidence,
        "smiling_confidence": smiling_confidence,
        "judged_on": opts.clean_logits,
        "calibration": {"kind": PLATT_KIND, "a": round(ca, 5), "b": round(cb, 5)},
        "dropped_not_smiling": int((suspect & (run.y_tr == 0)).sum()),
        "dropped_smiling": int((suspect & (run.y_tr == 1)).sum()),
        "of": int(in_scope.sum()),
    }
    log.info("label cleaning: %s", cleaning)
    boost, mining = None, None
    if opts.mine_weight != 1.0 or opts.mine_smiles_weight != 1.0:
        # Calibrated on validation whatever cleaning read (ca, cb are fitted on the unlinked
        # validation logits either way): "called smiling" must mean the same in every run.
        boost, mining = _mine(run, sigmoid(ca * z_tr + cb), suspect, at_epoch)
    weights = _weights(run.y_tr, run.s_tr, run.g_tr, keep=~suspect, by_size=opts.source_weight == "size", hard_weight=opts.hard_weight, boost=boost)
    return weights, cleaning, mining


def _mine(run: Run, p_tr: np.ndarray, suspect: np.ndarray, at_epoch: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The hard non-smiles and the missed smiles (:func:`mine_hard`, :func:`mine_missed`) and their weights."""
    opts, names, y, g, s = run.opts, run.names, run.y_tr, run.g_tr, run.s_tr
    mined = mine_hard(p_tr, y, g, opts.mine_threshold) & ~suspect
    smiles_in = names if opts.mine_smiles_sources is None else opts.mine_smiles_sources
    missed = mine_missed(p_tr, y, opts.mine_threshold) & ~suspect & np.isin(s, [names.index(n) for n in smiles_in])
    boost = np.where(mined, opts.mine_weight, 1.0) * np.where(missed, opts.mine_smiles_weight, 1.0)
    mining = {
        "after_epoch": at_epoch,
        "threshold": opts.mine_threshold,
        "weight": opts.mine_weight,
        "mined": int(mined.sum()),
        "of_hard": int(((y == 0) & np.isin(g, list(HARD_NEGATIVES))).sum()),
        "by_class": {str(c): int(n) for c, n in zip(*np.unique(g[mined], return_counts=True), strict=True)},
        "smiles_weight": opts.mine_smiles_weight,
        "smiles_sources": sorted(smiles_in),
        "smiles_mined": int(missed.sum()),
        "of_smiles": int((y == 1).sum()),
        "smiles_by_source": {names[i]: int(n) for i, n in zip(*np.unique(s[missed], return_counts=True), strict=True)},
    }
    log.info("hard examples mined: %s", mining)
    return boost, mining


def train(opts: TrainOptions) -> dict[str, Any]:
    """One training run (module docstring); returns the model card."""
    t_start = time.monotonic()
    Path(opts.out).mkdir(parents=True, exist_ok=True)
    run = prepare_run(opts)  # every check it can make, before TensorFlow's seconds of import
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(opts.seed)
    tf.config.threading.set_intra_op_parallelism_threads(opts.threads)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    fitted = fit_model(run, build_models(run))
    card = export(run, fitted, calibrate(run, fitted), time.monotonic() - t_start)
    if opts.write_logits:
        teach(run, fitted, card, Path(opts.write_logits))
    return card


def _network(loaded):
    """The network inside a loaded model: a checkpoint of a joint training model holds it as its one inner model."""
    import keras

    inner = [layer for layer in loaded.layers if isinstance(layer, keras.Model)]
    return inner[0] if len(inner) == 1 and loaded.name == "trained" else loaded


def _previous_training(init: str | None) -> dict[str, Any] | None:
    card = Path(init).with_name("model.json") if init else None
    if card is None or not card.is_file():
        return None
    return json.loads(card.read_text(encoding="utf-8")).get("training")


__all__ = ["build_models", "clean_and_mine", "fit_model", "prepare_run", "train"]
