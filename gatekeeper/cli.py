"""The ``gatekeeper`` command.

    gatekeeper --camera 0                 run a live gate
    gatekeeper --video clip.mp4           replay a recording through the same pipeline
    gatekeeper --url rtsp://...           a network stream
    gatekeeper --check-config             validate the config and print the effective values (secrets masked)
    gatekeeper ... --http 127.0.0.1:8080  live view, /healthz, /status, /metrics (pip install '.[web]')
    gatekeeper --video clip.mp4 --report out.png   plot of the score and events (pip install '.[report]')
    gatekeeper --video clip.mp4 --dry-run  no hooks run, the journal in memory (a replay on a production box)
    gatekeeper demo [--no-http]           replay a clip shipped with gatekeeper, with the live view
    gatekeeper score PHOTO|DIR ...        smile score of the largest face of each photo
    gatekeeper train / eval               training and evaluation (pip install '.[train]')
    gatekeeper events                     recent events and their delivery state
    gatekeeper park                       one page, one journal and actions for every gate on a broker
    gatekeeper users add NAME --role ROLE the users-file line of one operator (the secret read from stdin, never argv)

Events go to stdout, one JSON object per line; logs go to stderr. Bad input (a missing video,
an invalid config, a missing model) prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING

from ._native import route_native_stderr
from .command_line import CLI_NAME, EXIT_BAD_INPUT, ArgumentParser
from .command_line import default_config_path as _default_config_path
from .command_line import setup_logging as _setup_logging  # a module attribute: tests wrap it
from .errors import ConfigError, GatekeeperError

if TYPE_CHECKING:
    from .config import Config

__all__ = ["main"]

log = logging.getLogger("gatekeeper")

SUBCOMMANDS = ("demo", "train", "eval", "score", "events", "park")


def _camera_index(text: str) -> int:
    """``--camera``: a camera index OpenCV takes as one (0 to 99), checked before it reaches OpenCV."""
    from .capture_open import check_camera_index  # here: OpenCV is imported only when a camera is named
    from .schema import MAX_CAMERA_INDEX

    try:
        return check_camera_index(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}; expected a camera index from 0 to {MAX_CAMERA_INDEX}") from None
    except GatekeeperError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _stream_url(text: str) -> str:
    """``--url``: a well-formed network address, checked as ``cameras.NAME.url`` is (see
    :func:`gatekeeper.schema.check_url`), before the config check or the start."""
    from .schema import check_url

    try:
        return check_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog=CLI_NAME, description="A camera gate that opens for a held smile.", epilog="subcommands: " + ", ".join(SUBCOMMANDS) + " (gatekeeper SUBCOMMAND --help)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--camera", type=_camera_index, metavar="INDEX", help="camera index, 0 to 99 (0 is the first camera)")
    src.add_argument("--video", metavar="PATH", help="replay a video file frame by frame")
    src.add_argument("--url", type=_stream_url, metavar="URL", help="a network stream (rtsp://, http://...)")
    ap.add_argument("--config", metavar="PATH", help="config file (default: ./config.yaml if present, else built-in defaults)")
    ap.add_argument("--realtime", action="store_true", help="replay files at their own frame rate")
    ap.add_argument("--check-config", action="store_true", help="validate the config, print the effective values (secrets masked), exit")
    ap.add_argument("--http", metavar="HOST:PORT", help="serve the live view, /healthz, /status and /metrics (PORT alone: 127.0.0.1:PORT)")
    ap.add_argument("--hold-open", type=float, default=0.0, metavar="SECONDS", help="with --http: keep serving this long after the source ends (SIGINT/SIGTERM end it sooner)")
    ap.add_argument("--report", metavar="PATH", help="after the run, plot the score, thresholds and events to PATH (.png or .html)")
    ap.add_argument("--dry-run", action="store_true", help="run no hooks (no relay, webhook, MQTT or command) and keep the journal in memory: a replay on a production box leaves no trace")
    ap.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return ap


def require_extra(extra: str, option: str, modules: tuple[str, ...]) -> None:
    """Fail with one line naming the extra when an option's optional packages are not installed."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise GatekeeperError(f"{option} needs the '{extra}' extra ({name} is not installed); install it with: pip install 'gatekeeper[{extra}]'") from None


def _run(argv: list[str]) -> int:
    """The gate itself: the options checked, then :func:`gatekeeper.serve.serve`."""
    args = run_parser().parse_args(argv)
    _setup_logging(args.log_level)
    from .config_load import load_config

    cfg = load_config(_default_config_path(args.config))
    if args.camera is None and args.video is None and args.url is None and not cfg.cameras and not args.check_config:
        raise GatekeeperError("no source given; expected one of --camera INDEX, --video PATH or --url URL, or cameras: in the config")
    if args.hold_open < 0 or (args.hold_open and not args.http):
        raise ConfigError("--hold-open: expected a number of seconds >= 0, used together with --http")
    # Optional parts are checked before anything starts: a missing extra is one line, not a traceback.
    report_path = None
    if args.report is not None:
        from .report import check_report_path

        report_path = check_report_path(args.report)
        require_extra("report", "--report", ("matplotlib",))
    if args.http is not None:
        require_extra("web", "--http", ("aiohttp", "prometheus_client"))
    if args.check_config:
        return _check_config(cfg, args)

    from .serve import RunOptions, serve

    serve(cfg, RunOptions(camera=args.camera, url=args.url, video=args.video, realtime=args.realtime, http=args.http, hold_open=args.hold_open, report=report_path, dry_run=args.dry_run))
    return 0


def _check_config(cfg: Config, args: argparse.Namespace) -> int:
    """``--check-config``: the effective values on stdout (secrets masked), then every check
    start-up runs (models, hooks, journal; and the --video file and --http address when given),
    without opening a camera or stream or starting a hook. Each problem is one line on stderr;
    any problem exits 2."""
    import yaml

    from .config_values import config_to_dict
    from .preflight import check

    sys.stdout.write(yaml.safe_dump(config_to_dict(cfg, redact=True), sort_keys=False))
    sys.stdout.flush()
    problems = check(cfg)
    try:
        from .capture_file import FileSource
        from .serve import RunOptions, cameras_to_run

        cameras_to_run(cfg, RunOptions(camera=args.camera, url=args.url, video=args.video))  # cameras: and a source on the command line do not go together
        if args.video is not None:
            FileSource(args.video).close()
        for cam in cfg.cameras:
            if cam.video is not None:
                try:
                    FileSource(cam.video).close()
                except GatekeeperError as exc:
                    problems.append(f"cameras.{cam.name}.video: {exc}")
        if args.http is not None:
            from .web import check_exposure, parse_listen

            check_exposure(*parse_listen(args.http), cfg.http.token or cfg.http.users)  # the address and token rules, nothing bound
    except GatekeeperError as exc:
        problems.append(str(exc))
    for problem in problems:
        print(f"{CLI_NAME}: error: {problem}", file=sys.stderr)
    return EXIT_BAD_INPUT if problems else 0


def _quiet_opencv() -> None:
    # OpenCV and its FFmpeg backend print their own warnings (a camera that cannot be opened,
    # "moov atom not found") straight to stderr; gatekeeper reports those failures itself, in
    # one line. Set before cv2 is imported; an operator can still override both variables.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def _silence_missing_stdout() -> None:
    """Started with stdout closed (``gatekeeper ... >&-``: fd 1 not open, ``sys.stdout`` None), the
    events fall silent with one warning, as when the reader of a pipe goes away, and the gate goes
    on. /dev/null takes fd 1 first, so that no file opened later (the journal, a camera's socket)
    is given fd 1, where a library printing to stdout would write into it."""
    if sys.stdout is not None:
        return
    try:
        os.fstat(1)
    except OSError:
        null = os.open(os.devnull, os.O_WRONLY)
        if null != 1:  # fd 0 closed as well took it; 1 is still free
            os.dup2(null, 1)
            os.close(null)
    sys.stdout = open(os.devnull, "w", encoding="utf-8")  # stdout, for the life of the process
    print(f"{CLI_NAME}: warning: stdout is not open; events go to the journal and the hooks, not to stdout", file=sys.stderr)


def _users(argv: list[str]) -> int:
    """``gatekeeper users add NAME --role ROLE [--expires DATE]``: print the line of the users file
    (``http.users``) for one person. The secret is read from the terminal (asked twice) or, piped,
    from the first line of stdin; never from the command line, where ps and the shell history see it."""
    import getpass

    from .users import MIN_SECRET, ROLES, entry_line

    ap = ArgumentParser(prog=f"{CLI_NAME} users", description="Named operators: print the users-file line of one person (docs/operating.md, Operators and roles).")
    sub = ap.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="print NAME: {role, hash} for the users file; the secret is read from the terminal or stdin")
    add.add_argument("name", metavar="NAME", help="the person's name: what the journal's by says, and their MQTT user name for per-user commands")
    add.add_argument("--role", required=True, choices=ROLES, help="viewer: page, streams, /status, /metrics; operator: and the actions; admin: everything")
    add.add_argument("--expires", metavar="DATE", help="refuse the credential from this date (2027-03-31) or time (2027-03-31T18:00:00+01:00; UTC unless it says)")
    args = ap.parse_args(argv)
    if sys.stdin is not None and sys.stdin.isatty():
        secret = getpass.getpass(f"secret for {args.name} ({MIN_SECRET}+ characters): ")
        if getpass.getpass("the same again: ") != secret:
            raise ConfigError("the two secrets differ; nothing printed")
    else:
        secret = (sys.stdin.readline() if sys.stdin is not None else "").rstrip("\r\n")
    try:
        print(entry_line(args.name, args.role, secret, args.expires))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command. Run as a program (``argv`` None), it keeps stderr to its own log: what native
    libraries write to fd 2 goes to the ``gatekeeper.native`` logger (see ``gatekeeper._native``)."""
    _silence_missing_stdout()  # before anything opens a file that could be given fd 1
    restore_stderr = route_native_stderr() if argv is None else None
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_opencv()
    try:
        if argv and argv[0] == "users":
            return _users(argv[1:])
        if argv and argv[0] == "train":
            from .train_command import train

            return train(argv[1:])
        if argv and argv[0] in SUBCOMMANDS:
            from . import commands

            return getattr(commands, argv[0])(argv[1:])
        return _run(argv)
    except GatekeeperError as exc:
        print(f"{CLI_NAME}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    finally:
        if restore_stderr is not None:
            restore_stderr()


if __name__ == "__main__":
    sys.exit(main())
