"""The last steps of ``gatekeeper train``, after fitting: :func:`calibrate` (Platt scaling on
class-balanced validation, pinned to ``--policy``), :func:`export` (the TFLite files and the card,
through :func:`~gatekeeper.training.export.export_all`) and :func:`teach` (the teacher's logits
file, with ``--write-logits``)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .data import EXPRESSIONS, Prepared
from .fitting import link_table
from .metrics import choose_threshold, fit_platt, policy_shift, sigmoid
from .options import HARD_NEGATIVES, parse_policy
from .recipe import linked_logits
from .run import Fitted, Run
from .teacher import write_logits

log = logging.getLogger(__name__)


def calibrate(run: Run, fitted: Fitted) -> tuple[float, float, float, float, dict[str, Any] | None]:
    """Platt scaling of the exported logit on class-balanced validation, shifted to ``--policy``
    if given; returns (a, b, the card's threshold, the balanced-accuracy arg-max on validation,
    what the policy did or None).

    Calibrated on class-balanced validation, 0.5 already is the balanced decision. The arg-max is
    reported, not used by default: the curve is flat at its top and its arg-max wandered from
    0.39 to 0.53 between three runs of equal AUC."""
    from .models import exported_logits

    logits_va = exported_logits(fitted.logit, run.x_va4, run.opts.flip_average)
    a, b = fit_platt(logits_va, run.y_va, run.w_va)
    policy = None
    if run.opts.policy:
        # Pinned at the card's fixed threshold (prepare_run refuses --policy with --threshold val).
        name, rate = parse_policy(run.opts.policy)
        at = float(run.opts.threshold)
        negatives = (run.s_va == run.names.index(name)) & (run.y_va == 0)
        shift = policy_shift(a * logits_va[negatives] + b - np.log(at / (1 - at)), rate)
        policy = {"set": name, "rate": rate, "shift": round(shift, 5), "non_smiles": int(negatives.sum())}
        log.info("policy: %s validation non-smiles called smiling at most %.3f at %g; calibration offset %+.3f", name, rate, at, shift)
        b += shift
    val_best = choose_threshold(sigmoid(a * logits_va + b), run.y_va, run.w_va)
    threshold = val_best if run.opts.threshold == "val" else float(run.opts.threshold)
    log.info("calibration a=%.3f b=%.3f; threshold %.3f (balanced-accuracy arg-max on val: %.3f)", a, b, threshold, val_best)
    return a, b, threshold, val_best, policy


def export(run: Run, fitted: Fitted, calibration: tuple[float, float, float, float, dict[str, Any] | None], seconds: float) -> dict[str, Any]:
    """The TFLite files and the card (:func:`~gatekeeper.training.export.export_all`)."""
    from .export import export_all
    from .models import with_calibration

    opts = run.opts
    a, b, threshold, val_best, policy = calibration
    link = link_table(fitted.model, run.names)
    expression_head = _expression_report(fitted.net, run.sets, opts.expression_weight) if len(fitted.net.outputs) > 1 else None
    if link:
        log.info("per-source link: %s", link)
    if expression_head:
        log.info("expression head: %s", expression_head["accuracy"])
    training = {
        "datasets": [{"name": p.name, "count": len(p.ds), "smiling": int(p.labels.sum()), "detector_found": round(float(p.detected.mean()), 4),
                      "splits": {k: len(v) for k, v in p.splits.items()}} for p in run.sets],
        "seed": opts.seed,
        "split_seed": opts.split_seed,
        "init": str(opts.init) if opts.init else None,
        # The path may be a scratch file; the hash says which weights it held.
        "init_sha256": hashlib.sha256(Path(opts.init).read_bytes()).hexdigest() if opts.init else None,
        # The training that produced an --init model, when its card is beside it.
        "init_training": run.init_training,
        "epochs_run": len(fitted.history.get("loss", [])),
        "epochs_max": opts.epochs,
        "batch": opts.batch,
        "width": opts.width,
        "augment": bool(opts.augment),
        "occlusion_rate": opts.occlusion_rate if opts.augment else None,
        "glasses_rate": opts.glasses_rate if opts.augment else None,
        "lowres_rate": opts.lowres_rate if opts.augment else None,
        "lighting_rate": opts.lighting_rate if opts.augment else None,
        "hard_weight": opts.hard_weight,
        "hard_negatives": sorted(HARD_NEGATIVES),
        "source_weight": opts.source_weight,
        "flip_average": bool(opts.flip_average),
        "ema_momentum": opts.ema if opts.ema > 0 and opts.epochs > 0 else None,
        "label_cleaning": fitted.cleaning,
        "hard_mining": fitted.mining,
        "distillation": run.distillation,
        "source_link": link,
        "expression_head": expression_head,
        "resumed": bool(opts.resume),
        "policy": policy,
        "ensemble": run.ensemble or None,
        "threshold_rule": "balanced-accuracy arg-max on validation" if opts.threshold == "val" else f"fixed {threshold:g} on the balanced calibration",
        "val_best_threshold": round(float(val_best), 4),
        "best_val_auc": round(float(max(fitted.history["val_auc"])), 4) if fitted.history.get("val_auc") else None,
        "train_seconds": round(seconds, 1),
        "history": {k: [round(float(v), 4) for v in vs] for k, vs in fitted.history.items()},
    }
    return export_all(
        model=with_calibration(fitted.logit, a, b, opts.flip_average),
        logit_model=fitted.logit,
        out_dir=Path(opts.out),
        arch="ensemble" if opts.ensemble else opts.arch,
        calibration={"a": a, "b": b},
        threshold=threshold,
        sets=run.sets,
        representative=run.x_tr[np.random.default_rng(opts.seed).permutation(len(run.x_tr))[:500]],
        training=training,
        serve=opts.serve,
    )


def teach(run: Run, fitted: Fitted, card: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write the logits file (:mod:`gatekeeper.training.teacher`): the network's smile logit
    through each set's link, and its expression logits, for every chip of every set."""
    link = link_table(fitted.model, run.names)
    smile, expression = {}, ({} if len(fitted.net.outputs) > 1 else None)
    for i, p in enumerate(run.sets):
        out = fitted.net.predict(p.chips[..., None].astype(np.float32), batch_size=512, verbose=0)
        z = (out[0] if expression is not None else out).reshape(-1)
        smile[p.name] = linked_logits(z, np.full(len(z), i), link, run.names)
        if expression is not None:
            expression[p.name] = out[1]
    about = {"split_seed": run.opts.split_seed, "arch": run.opts.arch, "width": run.opts.width, "params": int(fitted.net.count_params()),
             "smile": "the smile logit through the per-source link" if link else "the smile logit", "source_link": link,
             "expressions": list(EXPRESSIONS) if expression is not None else None, "model_card": str(Path(run.opts.out) / "model.json"),
             "best_val_auc": card["training"]["best_val_auc"]}
    meta = write_logits(path, run.sets, smile, expression, about)
    log.info("teacher logits of %d chips written to %s", sum(len(p.chips) for p in run.sets), path)
    return meta


def _expression_report(net, sets: list[Prepared], weight: float) -> dict[str, Any]:
    """The expression head's accuracy (and balanced accuracy) on each labelled set's val and test faces."""
    accuracy: dict[str, dict[str, dict[str, float]]] = {}
    for p in sets:
        e = p.expressions
        if (e < 0).all():
            continue
        for split in ("val", "test"):
            idx = p.splits[split][e[p.splits[split]] >= 0]
            if not len(idx):
                continue
            pred = np.argmax(net.predict(p.chips[idx][..., None].astype(np.float32), batch_size=512, verbose=0)[1], axis=1)
            truth = e[idx]
            recalls = [float((pred[truth == c] == c).mean()) for c in np.unique(truth)]
            accuracy.setdefault(p.name, {})[split] = {"accuracy": round(float((pred == truth).mean()), 4), "balanced": round(float(np.mean(recalls)), 4), "n": len(idx)}
    return {"weight": weight, "classes": list(EXPRESSIONS), "exported": False, "accuracy": accuracy}


__all__ = ["calibrate", "export", "teach"]
