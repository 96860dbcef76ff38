"""``gatekeeper train``: its options (the fields of :class:`~gatekeeper.training.options.TrainOptions`)
and the command. Part of the command layer, beside :mod:`gatekeeper.commands`; TensorFlow is imported
only when a fit starts."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from .command_line import ArgumentParser, setup_logging
from .errors import GatekeeperError


def train(argv: list[str]) -> int:
    ap = ArgumentParser(prog="gatekeeper train", description="Train, calibrate and export the smile model (needs the train extra).")
    add_train_arguments(ap)
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args(argv)
    setup_logging(args.log_level)
    # Found, not imported: TensorFlow takes seconds to import, and a refused option or teacher
    # should say so at once; the fit imports it when it starts.
    if importlib.util.find_spec("tensorflow") is None:
        raise GatekeeperError("training needs TensorFlow; install the training extra: pip install '.[train]'")
    from .errors import TrainingError
    from .training.options import TrainOptions
    from .training.train import train as run_training

    try:
        card = run_training(TrainOptions.from_mapping(vars(args)))
    except TrainingError as exc:
        print(f"gatekeeper train: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"model": str(Path(args.out) / card.get("serve", "smile.tflite")), "metrics": card["metrics"]}, indent=2))
    return 0


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _unit_arg(text: str) -> float:
    value = _float_or_nan(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def _ema_arg(text: str) -> float:
    value = _float_or_nan(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a momentum from 0 (off) up to but not including 1, such as 0.995, got {text!r}")
    return value


def _threshold_arg(text: str) -> str:
    if text == "val":
        return text
    if not 0.0 < _float_or_nan(text) < 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1 or 'val', got {text!r}")
    return text


def add_train_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``gatekeeper train``: the fields of :class:`~gatekeeper.training.options.TrainOptions`."""
    for group in (_train_run_arguments, _train_augment_arguments, _train_weighting_arguments, _train_cleaning_arguments, _train_teacher_arguments):
        group(ap)


def _train_run_arguments(ap: argparse.ArgumentParser) -> None:
    """What is trained on, how long, and where it goes."""
    from .training.data import SPLIT_SEED, default_cache_dir
    from .training.options import default_data

    ap.add_argument(
        "--data",
        nargs="+",
        default=default_data(),
        help="datasets: smilesmiled:PATH, fer2013:PATH, rafdb:PATH, mtfl:PATH, ckplus:PATH, muxspace:PATH or folders:PATH (class folders); default: all six from $GATEKEEPER_SHARED/data",
    )
    ap.add_argument("--arch", choices=("seed", "gate", "resnet"), default="gate", help="gate: the small network (run D, the shipped ensemble's first member); seed: the original project's CNN; resnet: the teacher (1.6M parameters, see --write-logits; the second member)")
    ap.add_argument("--width", type=float, default=1.0, help="multiplies the gate topology's channels (1.0: about 110k parameters)")
    ap.add_argument("--out", default="model", help="where the model files and model.json go (default: model/)")
    ap.add_argument("--epochs", type=int, default=18, help="one epoch of the gate topology is 1.5-1.8 min on 2 idle cores; run D, 18 epochs with the chips cut and the export: 34 min")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--patience", type=int, default=6, help="early stopping on validation AUC (the cosine schedule's last epochs gain most: let them run)")
    ap.add_argument("--seed", type=int, default=1234, help="training randomness: initial weights, shuffling, augmentation (the splits do not move with it)")
    ap.add_argument("--split-seed", type=int, default=SPLIT_SEED, help=f"seed of the train/val/test splits (default {SPLIT_SEED}, the shipped model's; eval and the scripts read it from the card)")
    ap.add_argument("--limit", type=int, default=0, help="train on at most this many chips (smoke tests)")
    ap.add_argument("--resume", action="store_true", help="go on with the run whose state (train-state.npz, written after every epoch) is in --out, with the same options")
    ap.add_argument("--write-logits", default=None, metavar="FILE", help="after training, write this network's logits on every chip of every set, with the command, "
        "the code revision and the data's hashes, to FILE (.npz): a teacher for '--teacher FILE'")
    ap.add_argument("--init", default=None, help="start from this logit model (.best.keras); with --epochs 0 only calibrate and export")
    ap.add_argument("--ensemble", nargs="+", default=[], metavar="MODEL", help="with --epochs 0: export the mean of these exported models' calibrated logits "
        "(smile.keras files, each with its model.json beside it), calibrated again on validation (and --policy), as one model file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=str(default_cache_dir()), help="where prepared chips are cached (default: $XDG_CACHE_HOME/gatekeeper)")
    ap.add_argument("--face-model", default=None, help="face detector model (default: $GATEKEEPER_FACE_MODEL)")
    ap.add_argument("--no-progress", dest="progress", action="store_false")


def _train_augment_arguments(ap: argparse.ArgumentParser) -> None:
    """How training chips are varied."""
    ap.add_argument("--no-augment", dest="augment", action="store_false")
    ap.add_argument("--occlusion-rate", type=_unit_arg, default=0.2, help="share of training chips under a flat patch, half of them over the mouth (default 0.2)")
    ap.add_argument("--glasses-rate", type=_unit_arg, default=0.08, help="share of training chips given dark glasses, label unchanged (default 0.08)")
    ap.add_argument("--lowres-rate", type=_unit_arg, default=0.3, help="share of training chips taken down to 18-48 px and back, a distant or cheap camera (default 0.3)")
    ap.add_argument("--lighting-rate", type=_unit_arg, default=0.0, help="share of training chips underexposed or backlit, as gatekeeper eval's lighting axis measures (default 0: the shipped recipe's)")


def _train_weighting_arguments(ap: argparse.ArgumentParser) -> None:
    """How chips weigh (hard negatives, mining, sources) and the card's threshold."""
    from .training.options import HARD_NEGATIVES, HARD_WEIGHT, MINE_WEIGHT

    ap.add_argument(
        "--hard-weight",
        type=float,
        default=HARD_WEIGHT,
        help=f"weight of the expressive non-smiles ({', '.join(sorted(HARD_NEGATIVES))}) among the negatives of their dataset (default {HARD_WEIGHT:g})",
    )
    ap.add_argument(
        "--mine-weight",
        type=float,
        default=MINE_WEIGHT,
        help=f"after --clean-after epochs, the expressive non-smiles the model calls smiling (at --mine-threshold) weigh this much more (1: off; default {MINE_WEIGHT:g})",
    )
    ap.add_argument(
        "--mine-smiles-weight",
        type=float,
        default=1.0,
        help="with the hard non-smiles, the smiles the model calls not smiling (below --mine-threshold) weigh this much more (1: off, the default)",
    )
    ap.add_argument(
        "--mine-smiles-sources",
        nargs="+",
        default=None,
        help="datasets whose missed smiles --mine-smiles-weight weighs, each among --data (default: every set)",
    )
    ap.add_argument("--mine-threshold", type=_unit_arg, default=0.5, help="calibrated probability from which a hard non-smile counts as mined, and below which a smile does (default 0.5)")
    ap.add_argument(
        "--source-weight",
        choices=("equal", "size"),
        default="equal",
        help="how datasets weigh against each other in training (classes are balanced within each): equally, or by their number of faces",
    )
    ap.add_argument(
        "--flip-average",
        action="store_true",
        help="export the mean of the chip's and its mirror's logits (on the shipped weights: +0.1 to +0.7 points of validation balanced "
        "accuracy on each of the five sets, but 2.0 ms per face against 0.79 ms, over the 1.5 ms budget; off by default)",
    )
    ap.add_argument("--threshold", default="0.5", type=_threshold_arg, help="decision threshold written to the card: a probability, or 'val' for the balanced-accuracy arg-max on validation (default 0.5)")
    ap.add_argument("--policy", metavar="SET:RATE", help="calibrate so that at the card's threshold at most RATE of SET's validation non-smiles are called smiling (smilesmiled:0.1)")
    ap.add_argument("--serve", choices=("float32", "int8"), default="float32", help="the exported file the card tells the gate to run by default (int8: a wider network inside the per-face budget)")


def _train_cleaning_arguments(ap: argparse.ArgumentParser) -> None:
    """Label cleaning after the first epochs."""
    ap.add_argument("--clean-after", type=int, default=3, help="after this many epochs, drop training labels the model contradicts (0: never)")
    ap.add_argument("--clean-sources", nargs="+", default=["smilesmiled"], help="datasets whose labels may be dropped (default: smilesmiled)")
    ap.add_argument("--clean-confidence", type=_unit_arg, default=0.9, help="drop a label when the model gives the other class at least this probability")
    ap.add_argument(
        "--clean-smiling-confidence",
        type=_unit_arg,
        default=None,
        help="drop a \"smiling\" label at this probability of \"not smiling\" instead (default: --clean-confidence; "
        "0.6 with calibrated cleaning dropped 134 smiling labels in one run and was no better under occlusion)",
    )
    ap.add_argument(
        "--clean-logits",
        choices=("raw", "calibrated"),
        default="raw",
        help="how cleaning reads the part-trained model: its raw logits (the shipped model's recipe; the counts swing with their offset) "
        "or calibrated on validation first (steady counts; under occlusion, within the spread of raw runs with other training seeds)",
    )


def _train_teacher_arguments(ap: argparse.ArgumentParser) -> None:
    """Teachers, the per-source link, the expression head, weight averaging."""
    ap.add_argument(
        "--teacher",
        nargs="+",
        default=[],
        metavar="[DATASET:]MODEL",
        help="exported models (.tflite with their model.json) whose mean logit becomes part of the training target; DATASET: limits one to that dataset's faces; "
        "or one logits file (.npz) written by --write-logits",
    )
    ap.add_argument("--distill-weight", type=_unit_arg, default=0.5, help="with --teacher: share of the target taken from the teachers (default 0.5)")
    ap.add_argument("--ema", type=_ema_arg, default=0.0, help="validate, checkpoint and export an exponential moving average of the weights with this momentum per step (0: off; "
        "0.995 in one run: steadier validation, level on clean faces and, under occlusion, within the spread of training seeds)")
    ap.add_argument("--link", action="store_true", help="read each dataset's labels through its own learned scale and offset of the one smile logit "
        "(a generous set and a strict set stop pulling the boundary apart; only the shared logit is exported)")
    ap.add_argument("--expression-weight", type=float, default=0.0, help="train a second head on the seven expressions (FER2013, RAF-DB, CK+, muxspace labels), "
        "its loss weighted this much against the smile's (0: no head, the default); the head is not exported, the card reports its accuracy")
    ap.add_argument("--distill-expression-weight", type=float, default=0.0, help="with a --teacher logits file: weight of the cross-entropy between the expression head "
        "and the teacher's expression probabilities, on every chip (0: off, the default)")
