"""Runs the gate: every camera of the config, or the one a run names, with what the run asks for.

    cfg = load_config(path)
    serve(cfg, RunOptions(video="clip.mp4", http="127.0.0.1:8080"))

:func:`serve` builds the :class:`~gatekeeper.app.Service` from the validated config and the
run's options (:class:`RunOptions`: the source, the live view, the report, a dry run), runs it
until its sources end or SIGINT/SIGTERM, and stops in order. The command line
(``gatekeeper --video ...``) and ``gatekeeper demo`` both run the gate through it; it knows
nothing of either (no arguments parsed here, no exit codes).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .actions import Controls
from .app import EventSink, Service, StdoutSink
from .capture import LiveSource
from .errors import ConfigError

if TYPE_CHECKING:
    from .app import Pipeline
    from .capture import Frame
    from .config import CameraConfig, Config

__all__ = ["RunOptions", "cameras_to_run", "serve"]

log = logging.getLogger("gatekeeper")


@dataclass(frozen=True)
class RunOptions:
    """What one run asks for beside the config (the command line's options).

    At most one of ``camera``, ``url`` and ``video``, and none with ``cameras:`` in the config.
    ``open_video(path, realtime=...)`` stands in for :class:`~gatekeeper.capture.FileSource`
    with ``video`` (``gatekeeper demo`` plays its clip in a loop).
    """

    camera: int | None = None
    url: str | None = None
    video: str | Path | None = None
    realtime: bool = False
    http: str | None = None  # HOST:PORT of the live view, /healthz, /status and /metrics
    hold_open: float = 0.0  # with http: keep serving this long after the sources end
    report: Path | None = None  # plot the score, thresholds and events here after the run
    dry_run: bool = False  # no hooks, the journal in memory
    open_video: Callable[..., Any] | None = None


def serve(cfg: Config, options: RunOptions) -> None:
    """Build the service, run it until its sources end or a stop is requested, stop in order
    (the report, ``hold_open`` more seconds of the live view, the hooks, the web server)."""
    cameras = cameras_to_run(cfg, options)
    # Open the sources first: a bad path should not wait for model loading.
    sources: dict[str, Any] = {}
    try:
        for cam in cameras:
            sources[cam.name] = _open_source(cfg, cam, options)
    except BaseException:
        for src in sources.values():
            src.close()
        raise
    # Made first, so the page takes actions from the moment it is up; they wait in each camera's
    # queue until its loop starts.
    controls = {cam.name: Controls(cfg.actions, token=cfg.http.token) for cam in cameras}
    stdout = StdoutSink()
    sinks: dict[str, list[EventSink]] = {name: [stdout] for name in sources}
    on_frame: dict[str, list[Callable[[Frame, Pipeline], None]]] = {name: [] for name in sources}
    server = None
    views: dict[str, Any] = {}
    if options.http is not None:
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
            server = WebServer(views, *parse_listen(options.http), name=cfg.name)
            server.start()
        except BaseException:
            for src in sources.values():
                src.close()
            raise
    recorders: dict[str, Any] = {}
    if options.report is not None:
        from .report import ReplayRecorder

        for name, src in sources.items():
            recorders[name] = ReplayRecorder(live=isinstance(src, LiveSource))
            sinks[name].append(recorders[name])
            on_frame[name].append(recorders[name].on_frame)
    try:
        try:
            # The models once for every camera, and the one journal: every event is recorded
            # before any hook sees it.
            service = Service(cfg, dry_run=options.dry_run)
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
            if options.report is not None:
                from .report import write_report

                for cam in cameras:
                    rec = recorders[cam.name]
                    path = options.report if len(cameras) == 1 else options.report.with_name(f"{options.report.stem}-{cam.name}{options.report.suffix}")
                    write_report(path, rec.rows, rec.events, cam.gate, title=_source_title(cam, options, single=len(cameras) == 1), live=rec.live)
                    log.info("report written to %s", path)
            if server is not None and options.hold_open > 0 and not service.stopping.is_set():
                log.info("source ended; live view stays up for %g s (Ctrl-C ends it); operator actions still apply", options.hold_open)
                service.serve_actions(options.hold_open)
        finally:
            service.close()
        for name, camera in service.cameras.items():
            st = sources[name].status
            who = "" if len(cameras) == 1 else f"camera {name}: "
            log.info("%sdone: %d frames, events %s, source %s", who, camera.frames, json.dumps(camera.events), json.dumps({"read": st.read, "dropped": st.dropped, "skipped": st.skipped, "not_decoded": getattr(st, "not_decoded", 0), "decoded": camera.pipeline.decoded, "reconnects": st.reconnects}))
            motion = getattr(camera.pipeline, "motion", None)
            if motion is not None:
                log.info("%sthe face detector ran on %d frames and skipped %d (nothing changed, or nobody in view: motion:)", who, motion.detected, motion.skipped)
    finally:
        if server is not None:
            server.stop()


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


def cameras_to_run(cfg: Config, options: RunOptions) -> tuple[CameraConfig, ...]:
    """The cameras to run: those of ``cameras:``, or one from --camera, --url or --video."""
    flag = next((f"--{k}" for k in ("camera", "url", "video") if getattr(options, k) is not None), None)
    if cfg.cameras and flag is not None:
        raise ConfigError(f"{flag}: the config names its cameras (cameras: {', '.join(c.name for c in cfg.cameras)}); expected no --camera, --url or --video with it, or a config without cameras:")
    return cfg.camera_list()


def _open_source(cfg: Config, cam: CameraConfig, options: RunOptions) -> Any:
    """The source of one camera: its own (``cameras:``), else the command line's."""
    from .capture import FileSource, LiveSource

    video = cam.video if cfg.cameras else options.video
    realtime = options.realtime or cfg.source.realtime
    if video is not None:
        return (options.open_video if options.open_video is not None and not cfg.cameras else FileSource)(video, realtime=realtime)
    target = cam.target if cfg.cameras else (options.camera if options.camera is not None else options.url)
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


def _source_title(cam: CameraConfig, options: RunOptions, *, single: bool) -> str:
    """The report's title: the file's name or the stream, and the camera's name when there are several."""
    if single and cam.target is None and cam.video is None:
        what = Path(options.video).name if options.video is not None else str(options.url if options.camera is None else f"camera {options.camera}")
        return what
    what = Path(cam.video).name if cam.video is not None else str(cam.url if cam.camera is None else f"camera {cam.camera}")
    return f"{cam.name}: {what}"


