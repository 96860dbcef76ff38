"""Wires the stages together from a validated config and owns start and orderly stop.

    source --frames--> detect --faces--> track --tracks--> crop --chips--> classify --scores--> gate --events--> sinks

The frame loop is :meth:`Pipeline.process`; a :class:`~gatekeeper.camera.Camera` adds the
source, the watchdog that holds the gate shut when frames stop arriving, the event sinks (the
journal and hooks first, then stdout JSON lines and the live view), and shutdown. :class:`App`
is the one-camera form; :class:`Service` runs every camera of a config in one process, with the
models and the journal shared (``cameras:`` in the config).

Two ways to end. A finite source that reaches its end stops in order: hooks deliver what is
queued within the shutdown bound, and a relay pulse in progress runs out. SIGINT/SIGTERM stop on
request: the relay goes shut at once (a pulse is cut short), the rest is delivered within the
bound. Either way the gate's health turns bad as soon as the frames end (:meth:`App.trouble`).

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
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .actions import Controls
from .camera import Camera, EventSink, FairScheduler, SharedClassifier, SharedDetector
from .capture import FileSource, Frame, LiveSource
from .classify import SmileClassifier
from .config import CameraConfig, Config
from .crop import face_chip
from .detect import Face, FaceDetector, resolve_face_model
from .gate import Event, FaceScore, Gate
from .motion import DetectSchedule
from .track import Tracker

if TYPE_CHECKING:
    from .hooks.dispatch import Dispatcher

__all__ = ["App", "Pipeline", "Service", "StdoutSink", "build_pipeline", "load_models"]

log = logging.getLogger(__name__)

STAGES = ("decode", "detect", "crop", "classify", "gate")


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


@dataclass
class StageTimes:
    """Per-stage wall time of the last frames (seconds), for benchmarks and metrics.

    ``keep`` > 0 keeps that many samples per stage; ``observer(stage, seconds)``, when set, is
    called with every sample (the web view feeds its Prometheus histograms from it).
    """

    keep: int = 0
    samples: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    observer: Callable[[str, float], None] | None = None

    def add(self, stage: str, seconds: float) -> None:
        if self.observer is not None:
            self.observer(stage, seconds)
        if self.keep:
            s = self.samples[stage]
            s.append(seconds)
            if len(s) > self.keep:
                del s[: len(s) - self.keep]


@dataclass
class Pipeline:
    """detect -> track -> crop -> classify -> gate for one frame at a time.

    The tracker is its own stage: it gives each face its track id, and the gate decides on the
    tracked faces (:meth:`Gate.decide`); its time counts in the ``gate`` stage metric, as it did
    while the gate ran it. With ``motion``, a frame where nothing changed since the last
    detection skips detect, crop and classify: the faces and scores of the last detection stand
    for it (see :mod:`gatekeeper.motion`); only frames the detector ran on count in ``detect``.
    """

    detector: FaceDetector
    classifier: SmileClassifier
    gate: Gate
    times: StageTimes = field(default_factory=StageTimes)
    last_faces: list[FaceScore] = field(default_factory=list)
    tracker: Tracker | None = None  # None: one made from the gate's config (lost_after_s)
    motion: DetectSchedule | None = None  # None: the detector runs on every frame
    decoded: int = 0  # frames whose whole picture was decoded (a live MJPEG frame only when detected)
    _detected: list[FaceScore] = field(default_factory=list, init=False, repr=False)  # what the last detection found and scored

    def __post_init__(self) -> None:
        if self.tracker is None:
            self.tracker = Tracker(self.gate.config.lost_after_s)

    @property
    def _tracker(self) -> Tracker:
        assert self.tracker is not None  # set in __post_init__
        return self.tracker

    def score_faces(self, image: np.ndarray, faces: list[Face], tracks: list[int] | None = None) -> list[FaceScore]:
        """Crop and classify all faces of one image in one model call (``tracks``: their ids)."""
        if not faces:
            return []
        t0 = time.perf_counter()
        chips = np.stack([face_chip(image, f) for f in faces])
        t1 = time.perf_counter()
        probs = self.classifier.predict(chips)
        self.times.add("crop", t1 - t0)
        self.times.add("classify", time.perf_counter() - t1)
        ids: list[int | None] = list(tracks) if tracks is not None else [None] * len(faces)
        return [FaceScore(f.box, float(p), track) for f, p, track in zip(faces, probs, ids, strict=True)]

    def process(self, frame: Frame) -> list[Event]:
        """The events of one frame. A live MJPEG frame is decoded only if the detector runs on it
        (:mod:`gatekeeper.motion`); raises :class:`~gatekeeper.errors.FrameError` when it
        cannot be, before any stage has seen it."""
        t0, decode0 = time.perf_counter(), frame.decode_s
        detect = self.motion is None or self.motion.due(frame, [f.box for f in self._detected])
        faces = self.detector.detect(frame.image, frame.t) if detect else []
        t1 = time.perf_counter()
        if detect:
            self.times.add("detect", t1 - t0 - (frame.decode_s - decode0))  # decoding a JPEG frame here is its own stage
        tracker = self._tracker
        boxes = [f.box for f in faces] if detect else [f.box for f in self._detected]
        tracks = [tr.id for tr in tracker.update(boxes, frame.t)]
        lost = [tr.id for tr in tracker.lost]
        track_s = time.perf_counter() - t1
        if detect:
            self.last_faces = self._detected = self.score_faces(frame.image, faces, tracks)
        else:
            self.last_faces = [FaceScore(f.box, f.score, track) for f, track in zip(self._detected, tracks, strict=True)]
        t2 = time.perf_counter()
        events = self.gate.decide(frame.index, frame.t, self.last_faces, lost, frame.size)  # the size places gate.zone
        self.times.add("gate", track_s + time.perf_counter() - t2)
        self.times.add("decode", frame.decode_s)  # by the source, or here for a JPEG frame (its look and its decode)
        self.decoded += frame.decoded
        return events

    def next_look(self) -> float | None:
        """The frame time before which the next frames would be skipped unseen (nobody in view,
        no track alive: ``motion.idle_fps``), so a live source need not decode them; None when
        every frame is looked at."""
        if self.motion is None or self._detected or self._tracker.tracks:
            return None
        return self.motion.next_look()

    def recover(self, frame: int, t: float, reason: str) -> list[Event]:
        """End a fault: the tracks not seen for ``lost_after_s`` by ``t`` end (FACE_LOST)."""
        if not self.gate.faulted:
            return []
        return self.gate.recover(frame, t, reason, lost=[tr.id for tr in self._tracker.expire(t)])

    def close(self) -> None:
        self.detector.close()


def detect_schedule(cfg: Config) -> DetectSchedule | None:
    """The pipeline's ``motion`` for ``cfg`` (None with ``motion.enabled: false``)."""
    return DetectSchedule(cfg.motion) if cfg.motion.enabled else None


def build_pipeline(cfg: Config, *, video: bool = True) -> Pipeline:
    """Load the models named by ``cfg`` (raises :class:`~gatekeeper.errors.ModelError`)."""
    detector, classifier = load_models(cfg, video=video)
    return Pipeline(detector, classifier, Gate(cfg.gate), motion=detect_schedule(cfg))


class App(Camera):
    """A running gate on one camera, named by the config's ``name``: the one-camera form of :class:`Camera`.

    >>> app = App(cfg, pipeline, [StdoutSink()], dispatcher=dispatcher)  # doctest: +SKIP
    >>> app.run(FileSource("clip.mp4"))                                  # doctest: +SKIP
    >>> app.close()                                                      # doctest: +SKIP

    Each event goes to the ``dispatcher`` (journal, then hooks) before any sink sees it.
    """

    def __init__(
        self,
        cfg: Config,
        pipeline: Pipeline,
        sinks: Iterable[EventSink],
        on_frame: Callable[[Frame, Pipeline], None] | None = None,
        *,
        dispatcher: Dispatcher | None = None,
        controls: Controls | None = None,
    ) -> None:
        super().__init__(cfg.name, cfg, pipeline, sinks, on_frame, dispatcher=dispatcher, controls=controls)

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM ask for an orderly stop (the loop ends, sinks drain, exit 0)."""
        install_signal_handlers(self.stopping)


def install_signal_handlers(stopping: threading.Event) -> None:
    """SIGINT/SIGTERM set ``stopping``: an orderly stop (the loops end, sinks drain, exit 0)."""

    def handler(signum: int, _frame: Any) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def load_models(cfg: Config, *, video: bool = True) -> tuple[FaceDetector, SmileClassifier]:
    """The face detector and smile classifier named by ``cfg`` (raises :class:`~gatekeeper.errors.ModelError`)."""
    model = resolve_face_model(cfg.detector.model_path)
    detector = FaceDetector(model, video=video, min_confidence=cfg.detector.min_confidence, min_face_px=cfg.detector.min_face_px)
    try:
        classifier = SmileClassifier(cfg.classifier.model_path, threads=cfg.classifier.threads)
    except BaseException:
        detector.close()
        raise
    return detector, classifier


class Service:
    """Every camera of a config in one process: the shared models, one journal, the cameras.

    >>> service = Service(cfg)                                         # doctest: +SKIP
    >>> service.add_camera(cam_cfg, LiveSource(url), [StdoutSink()])   # doctest: +SKIP
    >>> service.run()                                                  # doctest: +SKIP
    >>> service.close()                                                # doctest: +SKIP

    The face detector and the smile classifier are loaded once and shared: a
    :class:`~gatekeeper.camera.FairScheduler` runs them for the cameras in turn. Each camera has
    its own thread, tracks, gate and hooks (see :mod:`gatekeeper.camera`); every event is
    written to the one journal, with its camera, before that camera's hooks see it.
    """

    def __init__(self, cfg: Config, *, dry_run: bool = False, env: dict[str, str] | None = None) -> None:
        from .hooks.dispatch import open_journal

        self.cfg = cfg
        self.dry_run = dry_run
        self.env = env
        self.stopping = threading.Event()
        self.cameras: dict[str, Camera] = {}
        self.detector, self.classifier = load_models(cfg)
        try:
            self.journal = open_journal(cfg, dry_run=dry_run)
        except BaseException:
            self.detector.close()
            raise
        self.scheduler = FairScheduler()

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
        from .hooks.dispatch import open_dispatcher

        if camera.name in self.cameras:
            raise ValueError(f"camera {camera.name!r} is already in the service")
        cfg = self.cfg.for_camera(camera)
        lane = self.scheduler.lane(camera.name)
        # The motion check runs on the camera's own thread: a frame where nothing changed never
        # waits for the shared detector.
        pipeline = Pipeline(SharedDetector(self.detector, lane), SharedClassifier(self.classifier, lane), Gate(cfg.gate), motion=detect_schedule(cfg))  # type: ignore[arg-type]
        if times is not None:
            pipeline.times = times
        dispatcher = open_dispatcher(cfg, env=self.env, dry_run=self.dry_run, journal=self.journal, camera=camera.name)
        try:
            # Built before the hooks start: it reads the camera's service state back from the journal.
            cam = Camera(camera.name, cfg, pipeline, sinks, on_frame, dispatcher=dispatcher, source=source, stopping=self.stopping, controls=controls)
            cam.controls.attach(dispatcher.hooks, in_service=pipeline.gate.in_service)  # MQTT commands
            if not self.dry_run:  # a dry run beside a running gate must not claim its button's pin
                cam.controls.start_button()
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
        threads = [threading.Thread(target=cam.serve_actions, args=(seconds,), name=f"actions-{name}", daemon=True) for name, cam in self.cameras.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def trouble(self) -> str | None:
        """Why the service is not healthy: the first camera in trouble, named."""
        for name, cam in self.cameras.items():
            why = cam.trouble()
            if why is not None:
                return f"camera {name}: {why}"
        return None

    def close(self, timeout: float = 5.0) -> None:
        """Close every camera (sinks, then hooks) within ``timeout`` in all, then the models and the journal."""
        deadline = time.monotonic() + timeout
        try:
            for cam in self.cameras.values():
                cam.close(max(0.5, deadline - time.monotonic()), close_journal=False)
        finally:
            self.scheduler.close()
            self.detector.close()
            if self.journal is not None:
                self.journal.close()
