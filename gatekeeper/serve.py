"""Runs the gate: every camera of the config, or the one a run names, with what the run asks for.

    cfg = load_config(path)
    serve(cfg, RunOptions(video="clip.mp4", http="127.0.0.1:8080"))

:func:`serve` builds the :class:`~gatekeeper.app.Service` from the validated config and the
run's options (:class:`RunOptions`: the source, the live view, the report, a dry run), runs it
until its sources end or SIGINT/SIGTERM, and stops in order. The command line
(``gatekeeper --video ...``) and ``gatekeeper demo`` both run the gate through it; it knows
nothing of either (no arguments parsed here, no exit codes).

The steps, in order: the live view's address is taken (a port in use fails before anything
starts), the sources open (a bad path fails before the models load), the service loads the
models and the journal, each camera is built with its watchers (:class:`Watchers`: the live view
and the report join once the camera exists), the live view starts serving, the cameras run, and
everything stops in order (the report, ``hold_open`` more seconds of the live view, the hooks,
the server).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .app import Service, StdoutSink
from .capture_live import LiveSource
from .errors import ConfigError
from .notify import ServiceNotifier
from .pipeline import StageTimes

if TYPE_CHECKING:
    from .capture import Frame
    from .config import CameraConfig, Config
    from .events import Event
    from .report import ReplayRecorder
    from .web import WebServer

__all__ = ["RunOptions", "Watchers", "cameras_to_run", "serve"]

log = logging.getLogger("gatekeeper")


@dataclass(frozen=True)
class RunOptions:
    """What one run asks for beside the config (the command line's options).

    At most one of ``camera``, ``url`` and ``video``, and none with ``cameras:`` in the config.
    ``open_video(path, realtime=...)`` stands in for :class:`~gatekeeper.capture_file.FileSource`
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


class Watcher(Protocol):
    """What watches a camera: its events (``emit``, ``close``) and its frames (``on_frame``)."""

    def emit(self, event: Event) -> None: ...

    def close(self) -> None: ...

    def on_frame(self, frame: Frame, pipeline: Any) -> None: ...


class Watchers:
    """Whoever watches one camera besides its journal, hooks and stdout: its live view, the
    report's recorder.

    >>> watchers = Watchers()
    >>> camera = service.add_camera(cam, source, [stdout, watchers], watchers.on_frame, times=watchers.times())  # doctest: +SKIP
    >>> watchers.add(LiveView(camera))                                                                     # doctest: +SKIP

    The camera is built with this as one of its sinks, as its ``on_frame`` and as the observer of
    its stage times; each watcher joins (:meth:`add`) once it exists and before the camera starts
    (a live view is made from the camera it shows). A watcher with ``observe_stage(stage,
    seconds)`` gets the stage times too.
    """

    def __init__(self, *watchers: Watcher) -> None:
        self._watchers: list[Watcher] = []
        self._stages: list[Callable[[str, float], None]] = []
        for w in watchers:
            self.add(w)

    def add(self, watcher: Watcher) -> None:
        self._watchers.append(watcher)
        observe = getattr(watcher, "observe_stage", None)
        if observe is not None:
            self._stages.append(observe)

    def times(self) -> StageTimes:
        """The camera's :class:`~gatekeeper.pipeline.StageTimes`, observed by the watchers."""
        return StageTimes(observer=self.observe_stage)

    def emit(self, event: Event) -> None:
        for w in self._watchers:
            w.emit(event)

    def close(self) -> None:
        for w in self._watchers:
            w.close()

    def on_frame(self, frame: Frame, pipeline: Any) -> None:
        for w in self._watchers:
            w.on_frame(frame, pipeline)

    def observe_stage(self, stage: str, seconds: float) -> None:
        for observe in self._stages:
            observe(stage, seconds)


def serve(cfg: Config, options: RunOptions) -> None:
    """Build the service, run it until its sources end or a stop is requested, stop in order
    (the report, ``hold_open`` more seconds of the live view, the hooks, the web server)."""
    cameras = cameras_to_run(cfg, options)
    # systemd (Type=notify): STATUS, READY, WATCHDOG, STOPPING; nothing without $NOTIFY_SOCKET.
    with _listening(cfg, options) as sock, _opened_sources(cfg, cameras, options) as sources, ServiceNotifier.from_environ() as notify:
        notify.status("loading the models")
        service = Service(cfg, dry_run=options.dry_run)  # the models once for every camera, and the one journal
        server = None
        try:
            recorders = _recorders(sources) if options.report is not None else {}
            watchers = _add_cameras(service, cameras, sources, recorders)
            if sock is not None:
                server = _start_web(cfg, service, sources, watchers, sock)
            notify.watch(service.cameras, service.stopping)  # READY once each camera is in
            _run(service)
            if options.report is not None:
                _write_reports(options, cameras, recorders)
            _hold_open(service, options, web=server is not None)
        finally:
            notify.close()  # STOPPING=1 before the hooks drain
            try:
                service.close()
            finally:
                if server is not None:
                    server.stop()
        _log_done(service, sources, single=len(cameras) == 1)


def cameras_to_run(cfg: Config, options: RunOptions) -> tuple[CameraConfig, ...]:
    """The cameras to run: those of ``cameras:``, or one from --camera, --url or --video."""
    flag = next((f"--{k}" for k in ("camera", "url", "video") if getattr(options, k) is not None), None)
    if cfg.cameras and flag is not None:
        raise ConfigError(f"{flag}: the config names its cameras (cameras: {', '.join(c.name for c in cfg.cameras)}); expected no --camera, --url or --video with it, or a config without cameras:")
    return cfg.camera_list()


# -- the steps ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _listening(cfg: Config, options: RunOptions) -> Iterator[socket.socket | None]:
    """The live view's socket, bound first: a port in use or an address beyond loopback without a
    token fails before anything starts; requests wait in its backlog until the page is up."""
    if options.http is None:
        yield None
        return
    from .users import check_http_access
    from .web import check_exposure, listen_socket, parse_listen

    host, port = parse_listen(options.http)
    check_exposure(host, port, cfg.http.token or cfg.http.users)
    check_http_access(cfg.http)  # a users file or certificate that cannot be used: refused before anything starts
    sock = listen_socket(host, port)
    try:
        yield sock
    finally:
        sock.close()


@contextlib.contextmanager
def _opened_sources(cfg: Config, cameras: tuple[CameraConfig, ...], options: RunOptions) -> Iterator[dict[str, Any]]:
    """Every camera's source, opened before the models load (a bad path should not wait for
    them); on the way out each is closed (a camera closes its own at the end of its run)."""
    sources: dict[str, Any] = {}
    try:
        for cam in cameras:
            sources[cam.name] = _open_source(cfg, cam, options)
        yield sources
    finally:
        for src in sources.values():
            src.close()


def _recorders(sources: dict[str, Any]) -> dict[str, ReplayRecorder]:
    """A recorder of scores and events for each camera's report."""
    from .report import ReplayRecorder

    return {name: ReplayRecorder(live=isinstance(src, LiveSource)) for name, src in sources.items()}


def _add_cameras(service: Service, cameras: tuple[CameraConfig, ...], sources: dict[str, Any], recorders: dict[str, ReplayRecorder]) -> dict[str, Watchers]:
    """Each camera built on its source (its hooks start here, resuming what an earlier run left
    undelivered), its events to stdout and to its watchers (its recorder, if any)."""
    stdout = StdoutSink()
    watchers: dict[str, Watchers] = {}
    for cam in cameras:
        w = watchers[cam.name] = Watchers(*([recorders[cam.name]] if cam.name in recorders else []))
        service.add_camera(cam, sources[cam.name], [stdout, w], w.on_frame, times=w.times())
    return watchers


def _start_web(cfg: Config, service: Service, sources: dict[str, Any], watchers: dict[str, Watchers], sock: socket.socket) -> WebServer:
    """Every camera's live view, in one registry of metrics, served on ``sock``."""
    from .web import LiveView, Metrics, WebServer

    metrics = Metrics(model_sha=service.classifiers[0].sha256)  # every worker's copy is the same file
    views = {}
    for name, camera in service.cameras.items():
        src = sources[name]
        views[name] = LiveView(camera, source_status=src.status, live=isinstance(src, LiveSource), metrics=metrics)
        watchers[name].add(views[name])
    server = WebServer(views, *sock.getsockname()[:2], name=cfg.name, sock=sock)
    server.start()
    return server


def _run(service: Service) -> None:
    """Run the cameras to their end or a stop on request (SIGINT, SIGTERM)."""
    service.install_signal_handlers()
    service.run()
    service.close_sinks()  # the frames have ended: the page and /healthz say so from now on


def _hold_open(service: Service, options: RunOptions, *, web: bool) -> None:
    """With the live view, ``hold_open`` more seconds of it, still taking operator actions."""
    if web and options.hold_open > 0 and not service.stopping.is_set():
        log.info("source ended; live view stays up for %g s (Ctrl-C ends it); operator actions still apply", options.hold_open)
        service.serve_actions(options.hold_open)


def _write_reports(options: RunOptions, cameras: tuple[CameraConfig, ...], recorders: dict[str, ReplayRecorder]) -> None:
    """Each camera's report: ``options.report``, or beside it with the camera's name when there are several."""
    from .report import write_report

    assert options.report is not None
    single = len(cameras) == 1
    for cam in cameras:
        rec = recorders[cam.name]
        path = options.report if single else options.report.with_name(f"{options.report.stem}-{cam.name}{options.report.suffix}")
        write_report(path, rec.rows, rec.events, cam.gate, title=_source_title(cam, options, single=single), live=rec.live)
        log.info("report written to %s", path)


def _log_done(service: Service, sources: dict[str, Any], *, single: bool) -> None:
    """One line per camera: its frames, events and source counters; and how often the detector ran."""
    for name, camera in service.cameras.items():
        st = sources[name].status
        who = "" if single else f"camera {name}: "
        counts = {"read": st.read, "dropped": st.dropped, "skipped": st.skipped, "not_decoded": getattr(st, "not_decoded", 0), "decoded": camera.pipeline.decoded, "reconnects": st.reconnects}
        log.info("%sdone: %d frames, events %s, source %s", who, camera.frames, json.dumps(camera.events), json.dumps(counts))
        motion = camera.pipeline.motion
        if motion is not None:
            log.info("%sthe face detector ran on %d frames and skipped %d (nothing changed, or nobody in view: motion:)", who, motion.detected, motion.skipped)


def _open_source(cfg: Config, cam: CameraConfig, options: RunOptions) -> Any:
    """The source of one camera: its own (``cameras:``), else the command line's."""
    from .capture_file import FileSource

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
