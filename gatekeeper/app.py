"""Wires the stages together from a validated config and owns start and orderly stop.

    source --frames--> detect --faces--> crop --chips--> classify --scores--> track --tracks--> gate --events--> sinks

The frame loop is :meth:`Pipeline.process <gatekeeper.pipeline.Pipeline.process>`; a
:class:`~gatekeeper.camera.Camera` adds the source, the watchdog that holds the gate shut when
frames stop arriving, the event sinks (the journal and hooks first, then stdout JSON lines and
the live view), and shutdown. :class:`Service` runs every camera of a config in one process, with
the models (:mod:`gatekeeper.scheduler`) and the journal shared (``cameras:`` in the config);
:func:`open_journal` and :func:`open_dispatcher` make the journal and a camera's hooks from it.

Two ways to end. A finite source that reaches its end stops in order: hooks deliver what is
queued within the shutdown bound, and a relay pulse in progress runs out. SIGINT/SIGTERM stop on
request: the relay goes shut at once (a pulse is cut short), the rest is delivered within the
bound. Either way the gate's health turns bad as soon as the frames end (:meth:`Camera.trouble
<gatekeeper.camera.Camera.trouble>`).

Operator actions (:mod:`gatekeeper.actions`) wait on each camera's ``controls`` queue; the
camera's loop applies them before each frame and on every idle poll of a live source, so they
go through the gate's rules and the journal like every other event. Each camera's service state
of the last run is read back from the journal at start: a gate taken out of service stays out.

A journal that cannot write is a fault like a lost camera: under ``journal.on_error:
fail_closed`` the gate is held shut (FAULT) until a probe write succeeds (RECOVERED).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any, Literal

from .actions import Controls
from .camera import Camera, EventSink
from .capture import Frame
from .capture_file import FileSource
from .capture_live import LiveSource
from .config import CameraConfig, Config
from .errors import JournalError
from .events import Event
from .gate import Gate
from .hooks import build_hooks, hook_name
from .hooks.dispatch import Dispatcher
from .journal import Journal
from .pipeline import Pipeline, StageTimes, detect_schedule, load_models
from .scheduler import FairScheduler, SharedClassifier, SharedDetector
from .worker import Worker

if TYPE_CHECKING:
    from .classify import SmileClassifier
    from .detect import FaceDetector

__all__ = ["Service", "StdoutSink", "install_signal_handlers", "model_workers", "open_dispatcher", "open_journal"]

log = logging.getLogger(__name__)


class StdoutSink:
    """One JSON object per line, flushed as written: consumers read the stream live.

    Stdout is one sink among others: when it cannot be written (the reader went away, as in
    ``gatekeeper ... | head -1``), that is logged once on stderr and the sink falls silent; the
    gate, the journal and the hooks go on.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.failed: str | None = None  # why the stream cannot be written; nothing more is tried
        self._lock = threading.Lock()  # one sink for every camera: a line is written whole

    def emit(self, event: Event) -> None:
        if self.failed is not None:
            return
        line = json.dumps(event.to_dict(), separators=(", ", ": ")) + "\n"
        with self._lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError) as exc:  # BrokenPipeError; ValueError: the stream was closed
                self._fail(exc)

    def close(self) -> None:
        if self.failed is not None:
            return
        try:
            self.stream.flush()
        except (OSError, ValueError) as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.failed = f"{type(exc).__name__}: {exc}"
        log.error("stdout cannot be written (%s); events still go to the journal and the hooks, no longer to stdout", self.failed)
        if self.stream is sys.__stdout__:
            # What is left in the stream's buffer would fail again when the interpreter flushes
            # stdout at exit (a second traceback, exit status 120): let it go to /dev/null.
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, self.stream.fileno())
                os.close(null)
            except (OSError, ValueError):
                pass


def install_signal_handlers(stopping: threading.Event) -> None:
    """SIGINT/SIGTERM set ``stopping``: an orderly stop (the loops end, sinks drain, exit 0)."""

    def handler(signum: int, _frame: Any) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


class Service:
    """Every camera of a config in one process: the shared models, one journal, the cameras.

    >>> service = Service(cfg)                                         # doctest: +SKIP
    >>> service.add_camera(cam_cfg, LiveSource(url), [StdoutSink()])   # doctest: +SKIP
    >>> service.run()                                                  # doctest: +SKIP
    >>> service.close()                                                # doctest: +SKIP

    The face detector and the smile classifier are loaded once and shared: a
    :class:`~gatekeeper.scheduler.FairScheduler` runs them for the cameras in turn. Each camera has
    its own thread, tracks, gate and hooks (see :mod:`gatekeeper.camera`); every event is
    written to the one journal, with its camera, before that camera's hooks see it.
    """

    def __init__(self, cfg: Config, *, dry_run: bool = False, env: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.dry_run = dry_run
        self.env = env
        self.stopping = threading.Event()
        self.cameras: dict[str, Camera] = {}
        self.detectors: list[FaceDetector] = []
        self.classifiers: list[SmileClassifier] = []
        try:
            for _ in range(model_workers(cfg)):
                detector, classifier = load_models(cfg)
                self.detectors.append(detector)
                self.classifiers.append(classifier)
            self.journal = open_journal(cfg, dry_run=dry_run)
        except BaseException:
            self._close_models()
            raise
        self.scheduler = FairScheduler(workers=len(self.detectors))

    def add_camera(
        self,
        camera: CameraConfig,
        source: FileSource | LiveSource | Iterable[Frame],
        sinks: Iterable[EventSink] = (),
        on_frame: Callable[[Frame, Pipeline], None] | None = None,
        *,
        times: StageTimes | None = None,
        controls: Controls | None = None,
    ) -> Camera:
        """Build one camera on ``source`` under its own config (``cfg.for_camera``): its gate (its
        service state read back from the journal), its operator controls (MQTT commands on its
        own topic; the staff button), its hooks (started now: a restart resumes what this camera
        left undelivered), its lane of the shared models. Raises what building its hooks raises
        (a missing secret, no GPIO)."""
        if camera.name in self.cameras:
            raise ValueError(f"camera {camera.name!r} is already in the service")
        cfg = self.cfg.for_camera(camera)
        lane = self.scheduler.lane(camera.name)
        # The motion check runs on the camera's own thread: a frame where nothing changed never
        # waits for the shared detector.
        pipeline = Pipeline(SharedDetector(self.detectors, lane), SharedClassifier(self.classifiers, lane), Gate(cfg.gate), motion=detect_schedule(cfg))  # type: ignore[arg-type]
        if times is not None:
            pipeline.times = times
        dispatcher = open_dispatcher(cfg, env=self.env, dry_run=self.dry_run, journal=self.journal, camera=camera.name)
        try:
            # Built before the hooks start: it reads the camera's service state back from the journal.
            cam = Camera(camera.name, cfg, pipeline, sinks, on_frame, dispatcher=dispatcher, source=source, stopping=self.stopping, controls=controls)
            out = pipeline.gate.out_of_service
            cam.controls.attach(dispatcher.hooks, in_service=out is None, via=None if out is None else out.via)  # MQTT commands
            if not self.dry_run:  # a dry run beside a running gate must not claim its button's pin
                cam.controls.start_button()
                cam.start_door()  # the door's contact (gate.sensor), before the hooks start: MQTT shows its level
        except BaseException:
            dispatcher.close(0.5, close_journal=False)
            raise
        dispatcher.start()
        self.cameras[camera.name] = cam
        return cam

    def install_signal_handlers(self) -> None:
        install_signal_handlers(self.stopping)

    def run(self, poll_s: float = 0.2) -> None:
        """Run every camera on its own thread until all have ended (finite sources) or a stop is requested.

        A camera whose loop fails stops alone (its gate faulted, its FAULT journaled); once the
        others have ended too, the first such error is raised.
        """
        for cam in self.cameras.values():
            cam.start()
        while not all(cam.join(poll_s) for cam in self.cameras.values()):
            pass
        errors = [cam.error for cam in self.cameras.values() if cam.error is not None]
        if errors:
            raise errors[0]

    def close_sinks(self) -> None:
        """Every camera's sinks: the frames have ended (the page and ``/healthz`` say so)."""
        for cam in self.cameras.values():
            cam.close_sinks()

    def serve_actions(self, seconds: float) -> None:
        """After the frames have ended (``--hold-open``): every camera keeps applying its operator
        actions for ``seconds`` or until a stop is requested."""
        workers = [Worker(cam.serve_actions, f"actions-{name}", args=(seconds,), stopping=self.stopping) for name, cam in self.cameras.items()]
        for w in workers:
            w.start()
        for w in workers:
            w.finish()

    def trouble(self) -> str | None:
        """Why the service is not healthy: the first camera in trouble, named."""
        for name, cam in self.cameras.items():
            why = cam.trouble()
            if why is not None:
                return f"camera {name}: {why}"
        return None

    def _close_models(self) -> None:
        for detector in self.detectors:
            detector.close()

    def close(self, timeout: float = 5.0) -> None:
        """Close every camera (sinks, then hooks) within ``timeout`` in all, then the models and the journal."""
        deadline = time.monotonic() + timeout
        try:
            for cam in self.cameras.values():
                cam.close(max(0.5, deadline - time.monotonic()), close_journal=False)
        finally:
            self.scheduler.close()
            self._close_models()
            if self.journal is not None:
                self.journal.close()


def model_workers(cfg: Config) -> int:
    """How many copies of the models a service runs (``model_workers``; null: one per CPU core, at
    most 2, never more than the cameras: one camera's frames are scored one at a time anyway)."""
    cameras = max(1, len(cfg.camera_list()))
    if cfg.model_workers is not None:
        return min(cfg.model_workers, cameras)
    return min(2, os.cpu_count() or 1, cameras)


def open_journal(config: Config, *, dry_run: bool = False) -> Journal | None:
    """The journal of a validated config, old events pruned (None with ``journal.enabled: false``);
    an in-memory one for a dry run. Raises :class:`~gatekeeper.errors.JournalError`."""
    if dry_run:
        return Journal(":memory:")
    if not config.journal.enabled:
        return None
    journal = Journal(config.journal.resolved_path(), legacy_camera=config.name)
    try:
        journal.prune(time.time() - config.journal.keep_days * 86400)
    except JournalError:
        journal.close()
        raise
    return journal


def open_dispatcher(
    config: Config,
    *,
    env: dict[str, str] | None = None,
    dry_run: bool = False,
    journal: Journal | Literal["open"] | None = "open",
    camera: str | None = None,
) -> Dispatcher:
    """The journal (when enabled, with old events pruned) and the hooks of a validated config.

    ``dry_run``: no hook is built (a relay pin is not even claimed, so a dry run beside the
    running gate cannot touch its relay), and the journal is an in-memory one that vanishes at
    the end, so the gate's own journal never sees the run.

    Raises :class:`~gatekeeper.errors.ConfigError` (a secret's environment variable is missing),
    :class:`~gatekeeper.errors.HookError` (no GPIO) or :class:`~gatekeeper.errors.JournalError`.

    ``journal``: a journal several cameras share (see :func:`open_journal`), instead of opening
    the config's own; ``camera``: the camera this dispatcher serves (see :class:`Dispatcher`).
    """
    on_error = config.journal.on_error
    if dry_run:
        names = [hook_name(h, i) for i, h in enumerate(config.hooks)]
        log.info("dry run: hooks not run (%s); journal in memory", ", ".join(names) or "none configured")
        shared = Journal(":memory:") if journal == "open" else journal
        return Dispatcher(shared if isinstance(shared, Journal) else None, [], on_error=on_error, camera=camera)
    hooks = build_hooks(config.hooks, gate=config.name, env=env)
    if journal == "open":
        try:
            journal = open_journal(config)
        except JournalError:
            for hook in hooks:
                hook.release()  # the relay pin and the MQTT client were already claimed
            raise
    return Dispatcher(journal, hooks, on_error=on_error, camera=camera)
