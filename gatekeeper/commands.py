"""Subcommands of ``gatekeeper``: demo, score, train, eval, events. Each takes argv and returns a status.

This is the command layer, with :mod:`gatekeeper.cli` above it: it imports the library (capture,
detect, gate, journal, hooks, ...), and nothing in the library imports it or the CLI. The helpers
every command shares (the default config file; logging, from :mod:`gatekeeper.logs`) are found
here, so ``cli`` imports them from here and never the other way round.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .errors import ArgumentParser, GatekeeperError
from .logs import setup_logging  # re-exported: cli imports it from here

if TYPE_CHECKING:
    from .journal import JournalEntry

log = logging.getLogger(__name__)


def default_config_path(given: str | None) -> Path | None:
    """``--config``: the path given, else ``./config.yaml`` when present, else None (built-in defaults)."""
    if given:
        return Path(given)
    local = Path("config.yaml")
    return local if local.is_file() else None


def _logging(level: str = "info") -> None:
    setup_logging(level)


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
    _logging(args.log_level)
    import cv2

    from .app import Pipeline
    from .classify import SmileClassifier
    from .config import load_config
    from .detect import FaceDetector, resolve_face_model
    from .gate import Gate
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
    from .training.train import add_arguments

    add_arguments(ap)
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args(argv)
    _logging(args.log_level)
    try:
        import tensorflow  # noqa: F401
    except ModuleNotFoundError:
        raise GatekeeperError("training needs TensorFlow; install the training extra: pip install '.[train]'") from None
    from .training.train import train as run_training

    card = run_training(args)
    print(json.dumps({"model": str(Path(args.out) / "smile.tflite"), "metrics": card["metrics"]}, indent=2))
    return 0


def eval(argv: list[str]) -> int:
    from .training.evaluate import main as eval_main

    return eval_main(argv)


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
    from .journal import DeliveryState

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
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already printed
        return int(exc.code or 0)

    # Imported here: the config module pulls in YAML and every stage's declarations.
    from .config import load_config
    from .journal import Journal, iso_time

    try:
        cfg = None if args.journal else load_config(default_config_path(args.config))
        path = args.journal if cfg is None else cfg.journal.resolved_path()
        since = None if args.since is None else parse_since(args.since, time.time())
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit: expected an integer >= 1, got {args.limit}")
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
    for entry in entries:
        print(json.dumps(entry.to_dict()) if args.json else _text_line(entry), file=out)
    if not args.json and not entries:
        print("no events" + (f" since {iso_time(since)}" if since is not None else ""), file=err)
    return 0
