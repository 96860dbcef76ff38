"""Subcommands of ``gatekeeper``: demo, score, train, eval, events, park. Each takes argv and returns a status.

This is the command layer, with :mod:`gatekeeper.cli` above it: it imports the library (capture,
detect, gate, journal, hooks, ...), and nothing in the library imports it or the CLI. The helpers
every command shares (the parser, logging set-up, the default config file) are in
:mod:`gatekeeper.command_line`, below this module, ``cli`` and ``demo`` alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .command_line import ArgumentParser, default_config_path, setup_logging
from .errors import GatekeeperError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .journal import JournalEntry

log = logging.getLogger(__name__)


def _image_paths(paths: list[str]) -> list[Path]:
    from .stills import IMAGE_SUFFIXES  # here, not at the top: "gatekeeper events" needs no OpenCV

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        elif p.is_file():
            out.append(p)
        else:
            raise GatekeeperError(f"{str(p)!r} does not exist; expected image files or folders of images")
    if not out:
        suffixes = " ".join(sorted(IMAGE_SUFFIXES))
        raise GatekeeperError(f"no photos found in {', '.join(map(repr, paths))}; expected image files or folders holding them ({suffixes})")
    return out


def demo(argv: list[str]) -> int:
    from .demo import main as demo_main

    return demo_main(argv)


def score(argv: list[str]) -> int:
    """Smile score of the largest face in each photo, through the full run-time path."""
    ap = ArgumentParser(prog="gatekeeper score", description="Score photos through detector -> crop -> classifier; one JSON line per image.")
    ap.add_argument("paths", nargs="+", help="image files or folders")
    ap.add_argument("--config", help="config file (detector and classifier settings)")
    ap.add_argument("--threshold", type=float, default=None, help="smiling if score >= this (default: the model card's threshold)")
    ap.add_argument(
        "--min-confidence",
        type=float,
        default=0.5,
        help="detector confidence for photos (default 0.5, as in training; the live gate uses detector.min_confidence from the config)",
    )
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)
    if not 0.0 < args.min_confidence < 1.0:
        ap.error(f"argument --min-confidence: expected a confidence between 0 and 1, got {args.min_confidence}")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        ap.error(f"argument --threshold: expected a threshold between 0 and 1, got {args.threshold}")
    setup_logging(args.log_level)
    import cv2

    from .classify import SmileClassifier
    from .config_load import load_config
    from .detect import FaceDetector, resolve_face_model
    from .gate import Gate
    from .pipeline import Pipeline
    from .stills import PhotoError, detect_still, read_photo

    cfg = load_config(default_config_path(args.config))
    paths = _image_paths(args.paths)
    clf = SmileClassifier(cfg.classifier.model_path, threads=cfg.classifier.threads)
    threshold = args.threshold if args.threshold is not None else float(clf.card.get("threshold", 0.5))
    model = resolve_face_model(cfg.detector.model_path)
    # Photos are unrelated stills: IMAGE mode, no minimum face size, and several views of each
    # photo (padded for tight crops, tiled for large pictures), as in gatekeeper.stills.
    with FaceDetector(model, video=False, min_confidence=args.min_confidence) as det:
        pipe = Pipeline(det, clf, Gate(cfg.gate))
        for p in paths:
            row: dict[str, object] = {"path": str(p), "faces": 0, "score": None, "smiling": None}
            try:
                # The size is read from the header first: a huge photo is one error line, and the batch goes on.
                bgr = read_photo(p)
            except PhotoError as exc:
                row["error"] = str(exc)
            else:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                faces, _ = detect_still(det, rgb)
                scored = pipe.score_faces(rgb, faces)
                if scored:
                    best = max(scored, key=lambda f: f.box[2] * f.box[3])
                    row.update(faces=len(scored), score=round(best.score, 4), smiling=best.score >= threshold)
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
    return 0


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
    ap.add_argument("--arch", choices=("seed", "gate", "resnet"), default="gate", help="gate: the shipped topology; seed: the original project's CNN; resnet: the teacher (1.6M parameters, see --write-logits)")
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


def eval(argv: list[str]) -> int:
    from .training.evaluate import EvalOptions, run_eval
    from .training.lighting import LIGHTINGS

    base = EvalOptions(data="")  # the defaults are the dataclass's

    ap = ArgumentParser(prog="gatekeeper eval", description="Evaluate the exported smile model on a labelled set.")
    ap.add_argument("--data", required=True, help="smilesmiled:PATH, fer2013:PATH, rafdb:PATH, mtfl:PATH, ckplus:PATH, muxspace:PATH or folders:PATH (class folders: smile/ and others)")
    ap.add_argument("--face-widths", type=int, nargs="*", default=base.face_widths,
                    help="also score the chips as faces this many pixels wide would give them (default 24 32 48; the option with no widths skips them)")
    ap.add_argument("--lighting", nargs="*", choices=LIGHTINGS, default=base.lighting,
                    help="also score the chips underexposed (dark: 2-3 stops, sensor noise, JPEG) and backlit (the face dark against a bright sky) (default: both; the option with none skips them)")
    ap.add_argument("--model", default=None, help="smile .tflite (default: the shipped model)")
    ap.add_argument("--split", choices=("all", "train", "val", "test"), default=base.split, help="which fixed-seed split to score (default: every image)")
    ap.add_argument("--split-seed", "--seed", dest="split_seed", type=int, default=None, help="seed of the fixed splits (default: the one on the model's card)")
    ap.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the model card's)")
    ap.add_argument("--out", default=base.out, help="folder for metrics.json and eval.png")
    ap.add_argument("--cache", default=base.cache, help="where prepared chips are cached (default: $XDG_CACHE_HOME/gatekeeper)")
    ap.add_argument("--face-model", default=None)
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--group-table", action="store_true", help="print the accuracy by group (gender, glasses, pose: MTFL) as a Markdown table instead of the JSON summary")
    args = ap.parse_args(argv)
    setup_logging(args.log_level)

    _, summary, table = run_eval(EvalOptions(**{k: v for k, v in vars(args).items() if k != "log_level"}))
    if args.group_table and table is not None:
        print(table, end="")
    else:
        print(json.dumps(summary))
    return 0


# -- gatekeeper events ---------------------------------------------------------------------------

_AGO_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float) -> float:
    """``--since``: seconds ago (``90``, ``15m``, ``2h``, ``1d``) or an ISO 8601 time (local time if no zone)."""
    m = _AGO_RE.match(text)
    if m:
        return now - float(m.group(1)) * _UNIT_S[m.group(2)]
    text = text.strip()
    try:
        # Python 3.10's fromisoformat does not read a "Z" suffix.
        when = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ValueError(
            f"--since: expected seconds ago (90, 15m, 2h, 1d) or an ISO 8601 time (2024-05-01T12:00), got {text!r}"
        ) from None
    return when.timestamp()  # a naive time is taken as local time, like the text output shows


def _text_line(entry: JournalEntry) -> str:
    from .events import DeliveryState

    e = entry.event
    when = dt.datetime.fromtimestamp(entry.created_at).astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    score = "    -" if e.score is None else f"{e.score:.3f}"
    states = " ".join(
        f"{d.hook}={d.state.value}" + (f"({d.attempts} attempts)" if d.attempts != 1 else "") for d in entry.deliveries
    )
    camera = "" if e.camera is None else f"  camera {e.camera}"
    line = f"{when}  {e.event.value:<9}  {e.id}{camera}  frame {e.frame:>6}  score {score}  {states or '(no hooks)'}"
    errors = [
        f"{d.hook}: {d.last_error}" for d in entry.deliveries if d.last_error and d.state is not DeliveryState.DELIVERED
    ]
    if e.reason:
        line += f"\n    reason: {e.reason}"
    if e.by is not None:  # an operator action
        line += f"\n    by {e.by} via {e.via}" + (" (override: the gate was held shut)" if e.override else "") + (f": {e.note}" if e.note and e.note != e.reason else "")
    for err in errors:
        line += f"\n    {err}"
    return line


def events(argv: list[str], *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """``gatekeeper events [--since ...] [--json] [--journal PATH | --config PATH] [--limit N]``.

    Lists recent events, oldest first, with each hook's delivery state. ``--json`` writes one
    JSON object per line (``JournalEntry.to_dict``). Returns the exit status: 0, or 2 with one
    ``error:`` line on stderr when the journal or an option is unusable.
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = ArgumentParser(
        prog="gatekeeper events", description="List recent events and their delivery state."
    )
    parser.add_argument("--since", help="seconds ago (90, 15m, 2h, 1d) or an ISO 8601 time; default: all")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--journal", help="journal file (default: journal.path of --config, else ~/.local/state/gatekeeper/journal.sqlite3)"
    )
    where.add_argument("--config", help="config.yaml whose journal.path to read")
    parser.add_argument("--limit", type=int, default=None, help="at most this many of the newest events")
    parser.add_argument("--camera", metavar="NAME", help="only the events of this camera (a name of cameras:, or the gate's name:)")
    parser.add_argument("--gate", metavar="NAME", help="a park journal (gatekeeper park's journal.path, its default without --journal): only this gate's events")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already printed
        return int(exc.code or 0)
    from .park.journal import is_park_journal

    if args.gate is not None or (args.journal and is_park_journal(args.journal)):
        return _park_events(args, out, err)

    # Imported here: the config module pulls in YAML and every stage's declarations.
    from .config_load import load_config
    from .journal import Journal, iso_time

    try:
        cfg = None if args.journal else load_config(default_config_path(args.config))
        path = args.journal if cfg is None else cfg.journal.resolved_path()
        since = _since_and_limit(args)
        with Journal(path, readonly=True, legacy_camera=cfg.name if cfg is not None else "gate") as journal:
            entries = journal.entries(since=since, limit=args.limit, camera=args.camera)
            if args.camera is not None and not entries:
                # No events: of a camera that had none in the time asked, or of a name that is no camera.
                known = set(journal.cameras()) | ({c.name for c in cfg.camera_list()} if cfg is not None else set())
                if args.camera not in known:
                    where = "the config or the journal" if cfg is not None else "the journal"
                    expected = f"one of {', '.join(sorted(known))}" if known else "a camera's name, but the journal has no events"
                    raise ValueError(f"--camera {args.camera!r}: no camera of that name in {where}; expected {expected}")
    except (GatekeeperError, ValueError) as exc:
        print(f"gatekeeper: error: {exc}", file=err)
        return 2
    return _print_entries(entries, args, _text_line, out, err, "" if since is None else f" since {iso_time(since)}")


def _print_entries(entries: list[Any], args: argparse.Namespace, describe: Callable[[Any], str], out: TextIO, err: TextIO, since: str = "") -> int:
    """``entries`` on ``out``, as JSON lines with ``--json`` or as ``describe`` has them; "no events" on ``err`` when there are none."""
    for entry in entries:
        print(json.dumps(entry.to_dict()) if args.json else describe(entry), file=out)
    if not args.json and not entries:
        print("no events" + since, file=err)
    return 0


def _since_and_limit(args: argparse.Namespace) -> float | None:
    """``--since`` as a wall-clock time (None: all), once ``--limit`` is checked."""
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit: expected an integer >= 1, got {args.limit}")
    return None if args.since is None else parse_since(args.since, time.time())


def _park_events(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``gatekeeper events`` of a park journal: every gate's events, or ``--gate``'s."""
    from .park.config import ParkJournalConfig
    from .park.journal import ParkJournal, describe_entry

    try:
        if args.config is not None or args.camera is not None:
            raise ValueError(f"{'--config' if args.config is not None else '--camera'}: a park journal is read with --journal PATH and --gate NAME")
        since = _since_and_limit(args)
        with ParkJournal(args.journal or ParkJournalConfig().resolved_path(), readonly=True) as journal:
            entries = journal.entries(since=since, limit=args.limit, gate=args.gate)
            if args.gate is not None and not entries and args.gate not in (known := journal.gates()):
                raise ValueError(f"--gate {args.gate!r}: no gate of that name in the park journal; expected one of {', '.join(known) or '(none: the journal is empty)'}")
    except (GatekeeperError, ValueError) as exc:
        print(f"gatekeeper: error: {exc}", file=err)
        return 2
    return _print_entries(entries, args, describe_entry, out, err)


# -- gatekeeper park -------------------------------------------------------------------------------


def park(argv: list[str]) -> int:
    """``gatekeeper park [--config park.yaml] [--http HOST:PORT] [--check-config]``: the park service."""
    ap = ArgumentParser(prog="gatekeeper park", description="One page, one audit trail and actions for every gate on a broker (docs/operating.md, Park).")
    ap.add_argument("--config", metavar="PATH", help="park config (every key documented in examples/park.yaml; default: the built-in defaults)")
    ap.add_argument("--http", default="127.0.0.1:8090", metavar="HOST:PORT", help="where the page, /status and /metrics listen (default: 127.0.0.1:8090)")
    ap.add_argument("--check-config", action="store_true", help="validate the config, print the effective values (secrets masked), exit")
    ap.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    args = ap.parse_args(argv)
    setup_logging(args.log_level)
    from .park.config import load_park_config

    cfg = load_park_config(args.config)
    try:
        import aiohttp  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError:
        raise GatekeeperError("gatekeeper park needs the 'web' extra (aiohttp, prometheus-client); install it with: pip install 'gatekeeper[web]'") from None
    from .park.service import broker_password, run_park
    from .web.address import check_exposure, parse_listen

    host, port = parse_listen(args.http)
    check_exposure(host, port, cfg.http.token or cfg.http.users)
    password = broker_password(cfg)
    if args.check_config:
        import yaml

        from .config_values import config_to_dict
        from .users import shared_users

        shared_users(cfg.http.users)  # a users file that does not load is a config error too
        sys.stdout.write(yaml.safe_dump(config_to_dict(cfg, redact=True), sort_keys=False))
        return 0
    run_park(cfg, host, port, password=password)
    return 0
