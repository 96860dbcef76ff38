"""The ``gatekeeper`` command.

    gatekeeper --camera 0                 run a live gate
    gatekeeper --video clip.mp4           replay a recording through the same pipeline
    gatekeeper --url rtsp://...           a network stream
    gatekeeper --check-config             validate the config and print the effective values
    gatekeeper score PHOTO|DIR ...        smile score of the largest face of each photo
    gatekeeper train / eval               training and evaluation (pip install '.[train]')
    gatekeeper events                     recent events and their delivery state

Events go to stdout, one JSON object per line; logs go to stderr. Bad input (a missing video,
an invalid config, a missing model) prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .errors import GatekeeperError

__all__ = ["main"]

log = logging.getLogger("gatekeeper")

SUBCOMMANDS = ("train", "eval", "score", "events")
EXIT_BAD_INPUT = 2


def _setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # MediaPipe and LiteRT log through glog/absl to stderr; keep them to warnings and worse.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _default_config_path(given: str | None) -> Path | None:
    if given:
        return Path(given)
    local = Path("config.yaml")
    return local if local.is_file() else None


def run_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gatekeeper", description="A camera gate that opens for a held smile.", epilog="subcommands: " + ", ".join(SUBCOMMANDS) + " (gatekeeper SUBCOMMAND --help)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, metavar="INDEX", help="camera index (0 is the first camera)")
    src.add_argument("--video", metavar="PATH", help="replay a video file frame by frame")
    src.add_argument("--url", metavar="URL", help="a network stream (rtsp://, http://...)")
    ap.add_argument("--config", metavar="PATH", help="config file (default: ./config.yaml if present, else built-in defaults)")
    ap.add_argument("--realtime", action="store_true", help="replay files at their own frame rate")
    ap.add_argument("--check-config", action="store_true", help="validate the config, print the effective values, exit")
    ap.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return ap


def _run(argv: list[str]) -> int:
    args = run_parser().parse_args(argv)
    _setup_logging(args.log_level)
    from .config import config_to_dict, load_config

    cfg = load_config(_default_config_path(args.config))
    if args.check_config:
        import yaml

        sys.stdout.write(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        return 0
    if args.camera is None and args.video is None and args.url is None:
        raise GatekeeperError("no source given; expected one of --camera INDEX, --video PATH or --url URL")

    from .app import App, StdoutSink, build_pipeline
    from .capture import FileSource, LiveSource
    from .hooks import open_dispatcher

    # Open the source first: a bad path should not wait for model loading.
    if args.video is not None:
        source: FileSource | LiveSource = FileSource(args.video, realtime=args.realtime or cfg.source.realtime)
    else:
        s = cfg.source
        source = LiveSource(args.camera if args.camera is not None else args.url, width=s.width, height=s.height, reconnect_initial_s=s.reconnect_initial_s, reconnect_max_s=s.reconnect_max_s, max_reconnects=s.max_reconnects)
    try:
        pipeline = build_pipeline(cfg)
    except BaseException:
        source.close()
        raise
    try:
        # Journal first, then hooks: every event is recorded before any hook sees it. Start
        # resumes what an earlier run left undelivered (or marks it expired).
        dispatcher = open_dispatcher(cfg)
    except BaseException:
        source.close()
        pipeline.close()
        raise
    dispatcher.start()
    app = App(cfg, pipeline, [StdoutSink(), dispatcher])
    app.install_signal_handlers()
    try:
        app.run(source)
    finally:
        app.close()
    log.info("done: %d frames, events %s", app.frames, json.dumps(app.events))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            from . import commands

            return getattr(commands, argv[0])(argv[1:])
        return _run(argv)
    except GatekeeperError as exc:
        print(f"gatekeeper: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
