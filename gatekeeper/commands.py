"""Subcommands of ``gatekeeper``: demo, score, eval, events, park (train is in :mod:`gatekeeper.train_command`). Each takes argv and returns a status.

This is the command layer, with :mod:`gatekeeper.cli` above it: it imports the library (capture,
detect, gate, journal, hooks, ...), and nothing in the library imports it or the CLI. The helpers
every command shares (the parser, logging set-up, the default config file) are in
:mod:`gatekeeper.command_line`, below this module, ``cli`` and ``demo`` alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
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
