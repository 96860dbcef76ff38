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

Events go to stdout, one JSON object per line; logs go to stderr. Bad input (a missing video,
an invalid config, a missing model) prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._native import route_native_stderr
from .commands import default_config_path as _default_config_path
from .commands import setup_logging as _setup_logging  # a module attribute: tests wrap it
from .errors import CLI_NAME, ArgumentParser, ConfigError, GatekeeperError

if TYPE_CHECKING:
    from .app import Pipeline
    from .capture import Frame
    from .config import CameraConfig, Config

__all__ = ["main"]

log = logging.getLogger("gatekeeper")

SUBCOMMANDS = ("demo", "train", "eval", "score", "events")
EXIT_BAD_INPUT = 2


def _camera_index(text: str) -> int:
    """``--camera``: a camera index OpenCV takes as one (0 to 99), checked before it reaches OpenCV."""
    from .capture import MAX_CAMERA_INDEX, check_camera_index  # here: OpenCV is imported only when a camera is named

    try:
        return check_camera_index(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}; expected a camera index from 0 to {MAX_CAMERA_INDEX}") from None
    except GatekeeperError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog=CLI_NAME, description="A camera gate that opens for a held smile.", epilog="subcommands: " + ", ".join(SUBCOMMANDS) + " (gatekeeper SUBCOMMAND --help)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--camera", type=_camera_index, metavar="INDEX", help="camera index, 0 to 99 (0 is the first camera)")
    src.add_argument("--video", metavar="PATH", help="replay a video file frame by frame")
    src.add_argument("--url", metavar="URL", help="a network stream (rtsp://, http://...)")
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


def _fan_out(callbacks: list[Callable[[Frame, Pipeline], None]]) -> Callable[[Frame, Pipeline], None] | None:
    """One ``on_frame`` for the App that calls each of ``callbacks`` (None when there are none)."""
    if not callbacks:
        return None
    if len(callbacks) == 1:
        return callbacks[0]

    def on_frame(frame: Frame, pipeline: Pipeline) -> None:
        for cb in callbacks:
            cb(frame, pipeline)

    return on_frame


def _run(argv: list[str], *, open_video: Callable[..., Any] | None = None) -> int:
    """The gate itself. ``open_video(path, realtime=...)`` stands in for :class:`FileSource` with
    ``--video`` (``gatekeeper demo`` plays its clip in a loop)."""
    args = run_parser().parse_args(argv)
    _setup_logging(args.log_level)
    from .config import load_config

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

    from .app import EventSink, Service, StdoutSink
    from .capture import LiveSource

    cameras = _cameras(cfg, args)
    # Open the sources first: a bad path should not wait for model loading.
    sources: dict[str, Any] = {}
    try:
        for cam in cameras:
            sources[cam.name] = _open_source(cfg, cam, args, open_video)
    except BaseException:
        for src in sources.values():
            src.close()
        raise
    from .actions import Controls

    # Made first, so the page takes actions from the moment it is up; they wait in each camera's
    # queue until its loop starts.
    controls = {cam.name: Controls(cfg.actions, token=cfg.http.token) for cam in cameras}
    stdout = StdoutSink()
    sinks: dict[str, list[EventSink]] = {name: [stdout] for name in sources}
    on_frame: dict[str, list[Callable[[Frame, Pipeline], None]]] = {name: [] for name in sources}
    server = None
    views: dict[str, Any] = {}
    if args.http is not None:
        from .web import LiveView, Metrics, WebServer, parse_listen

        # The server starts before the models load, so the page is up as early as possible.
        metrics = Metrics()
        for cam in cameras:
            src = sources[cam.name]
            view = LiveView(cfg.for_camera(cam), source_status=src.status, live=isinstance(src, LiveSource), metrics=metrics)
            view.controls = controls[cam.name]
            views[cam.name] = view
            sinks[cam.name].append(view)
            on_frame[cam.name].append(view.on_frame)
        try:
            server = WebServer(views, *parse_listen(args.http), name=cfg.name)
            server.start()
        except BaseException:
            for src in sources.values():
                src.close()
            raise
    recorders: dict[str, Any] = {}
    if report_path is not None:
        from .report import ReplayRecorder

        for name, src in sources.items():
            recorders[name] = ReplayRecorder(live=isinstance(src, LiveSource))
            sinks[name].append(recorders[name])
            on_frame[name].append(recorders[name].on_frame)
    try:
        try:
            # The models once for every camera, and the one journal: every event is recorded
            # before any hook sees it.
            service = Service(cfg, dry_run=args.dry_run)
        except BaseException:
            for src in sources.values():
                src.close()
            raise
        try:
            for cam in cameras:
                # Each camera's hooks start here, resuming what an earlier run left undelivered.
                camera = service.add_camera(cam, sources[cam.name], sinks[cam.name], _fan_out(on_frame[cam.name]), controls=controls[cam.name])
                view = views.get(cam.name)
                if view is not None:
                    camera.pipeline.times.observer = view.observe_stage
                    view.hooks = camera.dispatcher.hooks if camera.dispatcher is not None else ()
                    view.app = camera  # /healthz: the source ended, the journal cannot write
        except BaseException:
            for name, src in sources.items():
                if name not in service.cameras:
                    src.close()
            service.close()
            raise
        service.install_signal_handlers()
        try:
            service.run()
            service.close_sinks()  # the frames have ended: the page and /healthz say so from now on
            if report_path is not None:
                from .report import write_report

                for cam in cameras:
                    rec = recorders[cam.name]
                    path = report_path if len(cameras) == 1 else report_path.with_name(f"{report_path.stem}-{cam.name}{report_path.suffix}")
                    write_report(path, rec.rows, rec.events, cam.gate, title=_source_title(cam, args, single=len(cameras) == 1), live=rec.live)
                    log.info("report written to %s", path)
            if server is not None and args.hold_open > 0 and not service.stopping.is_set():
                log.info("source ended; live view stays up for %g s (Ctrl-C ends it); operator actions still apply", args.hold_open)
                service.serve_actions(args.hold_open)
        finally:
            service.close()
        for name, camera in service.cameras.items():
            st = sources[name].status
            who = "" if len(cameras) == 1 else f"camera {name}: "
            log.info("%sdone: %d frames, events %s, source %s", who, camera.frames, json.dumps(camera.events), json.dumps({"read": st.read, "dropped": st.dropped, "skipped": st.skipped, "reconnects": st.reconnects}))
    finally:
        if server is not None:
            server.stop()
    return 0


def _cameras(cfg: Config, args: argparse.Namespace) -> tuple[CameraConfig, ...]:
    """The cameras to run: those of ``cameras:``, or one from --camera, --url or --video."""
    flag = next((f"--{k}" for k in ("camera", "url", "video") if getattr(args, k) is not None), None)
    if cfg.cameras and flag is not None:
        raise ConfigError(f"{flag}: the config names its cameras (cameras: {', '.join(c.name for c in cfg.cameras)}); expected no --camera, --url or --video with it, or a config without cameras:")
    return cfg.camera_list()


def _open_source(cfg: Config, cam: CameraConfig, args: argparse.Namespace, open_video: Callable[..., Any] | None) -> Any:
    """The source of one camera: its own (``cameras:``), else the command line's."""
    from .capture import FileSource, LiveSource

    video = cam.video if cfg.cameras else args.video
    realtime = args.realtime or cfg.source.realtime
    if video is not None:
        return (open_video if open_video is not None and not cfg.cameras else FileSource)(video, realtime=realtime)
    target = cam.target if cfg.cameras else (args.camera if args.camera is not None else args.url)
    s = cfg.source
    return LiveSource(
        target,
        width=s.width,
        height=s.height,
        reconnect_initial_s=s.reconnect_initial_s,
        reconnect_max_s=s.reconnect_max_s,
        max_reconnects=s.max_reconnects,
        # A read blocked longer than the watchdog is a stalled stream: the gate is already
        # faulted, and reconnecting is the cure (FFmpeg alone would wait 30 s).
        read_timeout_s=max(1.0, s.watchdog_s),
        # One camera of cameras: that is down at start holds its own gate shut (FAULT after
        # watchdog_s) and is retried; the others start. A lone camera that is not there is bad input.
        wait_for_source=bool(cfg.cameras),
    )


def _source_title(cam: CameraConfig, args: argparse.Namespace, *, single: bool) -> str:
    """The report's title: the file's name or the stream, and the camera's name when there are several."""
    if single and cam.target is None and cam.video is None:
        what = Path(args.video).name if args.video is not None else str(args.url if args.camera is None else f"camera {args.camera}")
        return what
    what = Path(cam.video).name if cam.video is not None else str(cam.url if cam.camera is None else f"camera {cam.camera}")
    return f"{cam.name}: {what}"


def _check_config(cfg: Config, args: argparse.Namespace) -> int:
    """``--check-config``: the effective values on stdout (secrets masked), then every check
    start-up runs (models, hooks, journal; and the --video file and --http address when given),
    without opening a camera or stream or starting a hook. Each problem is one line on stderr;
    any problem exits 2."""
    import yaml

    from .config import config_to_dict
    from .preflight import check

    sys.stdout.write(yaml.safe_dump(config_to_dict(cfg, redact=True), sort_keys=False))
    sys.stdout.flush()
    problems = check(cfg)
    try:
        from .capture import FileSource

        _cameras(cfg, args)  # cameras: and a source on the command line do not go together
        if args.video is not None:
            FileSource(args.video).close()
        for cam in cfg.cameras:
            if cam.video is not None:
                try:
                    FileSource(cam.video).close()
                except GatekeeperError as exc:
                    problems.append(f"cameras.{cam.name}.video: {exc}")
        if args.http is not None:
            from .web import LiveView, WebServer, parse_listen

            WebServer(LiveView(cfg), *parse_listen(args.http))  # not started: the address and token rules only
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


def main(argv: list[str] | None = None) -> int:
    """The command. Run as a program (``argv`` None), it keeps stderr to its own log: what native
    libraries write to fd 2 goes to the ``gatekeeper.native`` logger (see ``gatekeeper._native``)."""
    restore_stderr = route_native_stderr() if argv is None else None
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_opencv()
    try:
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
