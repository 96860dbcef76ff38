"""Subcommands of ``gatekeeper``: demo, score, train, eval, events. Each takes argv and returns a status."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from .errors import ArgumentParser, GatekeeperError

log = logging.getLogger(__name__)


def _logging(level: str = "info") -> None:
    from .cli import _setup_logging

    _setup_logging(level)


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
    from .cli import _default_config_path
    from .config import load_config
    from .detect import FaceDetector, resolve_face_model
    from .gate import Gate
    from .stills import PhotoError, detect_still, read_photo

    cfg = load_config(_default_config_path(args.config))
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


def events(argv: list[str]) -> int:
    from .journal import events_command

    return events_command(argv)
