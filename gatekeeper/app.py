"""Wires the stages together from a validated config and owns start and orderly stop.

    source --frames--> detect --faces--> crop --chips--> classify --scores--> gate --events--> sinks

The frame loop is :meth:`Pipeline.process`; :class:`App` adds the source, the watchdog that
holds the gate shut when frames stop arriving, the event sinks (the journal and hooks first,
then stdout JSON lines and the live view), and shutdown.

Two ways to end. A finite source that reaches its end stops in order: hooks deliver what is
queued within the shutdown bound, and a relay pulse in progress runs out. SIGINT/SIGTERM stop on
request: the relay goes shut at once (a pulse is cut short), the rest is delivered within the
bound. Either way the gate's health turns bad as soon as the frames end (:meth:`App.trouble`).

Operator actions (:mod:`gatekeeper.actions`) wait on ``App.controls``' queue; the frame loop
applies them before each frame and on every idle poll of a live source, so they go through the
gate's rules and the journal like every other event. The service state of the last run is read
back from the journal at start: a gate taken out of service stays out of service.

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
from typing import IO, TYPE_CHECKING, Any, Protocol

import numpy as np

from .actions import Controls
from .capture import FileSource, Frame, LiveSource
from .classify import SmileClassifier
from .config import Config
from .crop import face_chip
from .detect import Face, FaceDetector, resolve_face_model
from .gate import Event, FaceScore, Gate
from .redact import redact_text

if TYPE_CHECKING:
    from .hooks.dispatch import Dispatcher

__all__ = ["App", "Pipeline", "StdoutSink", "build_pipeline"]

log = logging.getLogger(__name__)

STAGES = ("decode", "detect", "crop", "classify", "gate")


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...

    def close(self) -> None: ...


class StdoutSink:
    """One JSON object per line, flushed as written: consumers read the stream live.

    Stdout is one sink among others: when it cannot be written (the reader went away, as in
    ``gatekeeper ... | head -1``), that is logged once on stderr and the sink falls silent; the
    gate, the journal and the hooks go on.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.failed: str | None = None  # why the stream cannot be written; nothing more is tried

    def emit(self, event: Event) -> None:
        if self.failed is not None:
            return
        try:
            self.stream.write(json.dumps(event.to_dict(), separators=(", ", ": ")) + "\n")
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
    """detect -> crop -> classify -> gate for one frame at a time."""

    detector: FaceDetector
    classifier: SmileClassifier
    gate: Gate
    times: StageTimes = field(default_factory=StageTimes)
    last_faces: list[FaceScore] = field(default_factory=list)

    def score_faces(self, image: np.ndarray, faces: list[Face]) -> list[FaceScore]:
        """Crop and classify all faces of one image in one model call."""
        if not faces:
            return []
        t0 = time.perf_counter()
        chips = np.stack([face_chip(image, f) for f in faces])
        t1 = time.perf_counter()
        probs = self.classifier.predict(chips)
        self.times.add("crop", t1 - t0)
        self.times.add("classify", time.perf_counter() - t1)
        return [FaceScore(f.box, float(p)) for f, p in zip(faces, probs, strict=True)]

    def process(self, frame: Frame) -> list[Event]:
        self.times.add("decode", frame.decode_s)  # measured by the source, reported with the rest
        t0 = time.perf_counter()
        faces = self.detector.detect(frame.image, frame.t)
        self.times.add("detect", time.perf_counter() - t0)
        self.last_faces = self.score_faces(frame.image, faces)
        t1 = time.perf_counter()
        height, width = frame.image.shape[:2]
        events = self.gate.update(frame.index, frame.t, self.last_faces, (width, height))  # the size places gate.zone
        self.times.add("gate", time.perf_counter() - t1)
        return events

    def close(self) -> None:
        self.detector.close()


def build_pipeline(cfg: Config, *, video: bool = True) -> Pipeline:
    """Load the models named by ``cfg`` (raises :class:`~gatekeeper.errors.ModelError`)."""
    model = resolve_face_model(cfg.detector.model_path)
    detector = FaceDetector(model, video=video, min_confidence=cfg.detector.min_confidence, min_face_px=cfg.detector.min_face_px)
    try:
        classifier = SmileClassifier(cfg.classifier.model_path, threads=cfg.classifier.threads)
    except BaseException:
        detector.close()
        raise
    return Pipeline(detector, classifier, Gate(cfg.gate))


class App:
    """A running gate: one source, one pipeline, the journal and hooks, some sinks.

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
        self.cfg = cfg
        self.pipeline = pipeline
        self.sinks = list(sinks)
        self.dispatcher = dispatcher
        self.stopping = threading.Event()
        self.on_frame = on_frame
        self.frames = 0
        self.events: dict[str, int] = {}
        self.ended: str | None = None  # why the frames ended ("source ended", "stopped"); None while running
        self._faults: dict[str, str] = {}  # what holds the gate shut: "source", "journal" -> reason
        self.controls = controls if controls is not None else Controls(cfg.actions, token=cfg.http.token)
        self._sinks_closed = False
        self._last_t = 0.0  # the time of the last frame (actions after the end are placed after it)
        self._restore_service()

    def _restore_service(self) -> None:
        journal = self.dispatcher.journal if self.dispatcher is not None else None
        last = journal.last_service_event() if journal is not None else None
        self.pipeline.gate.restore_service(last)
        out = self.pipeline.gate.out_of_service
        if out is not None:
            note = f" ({out.note})" if out.note else ""
            log.warning("the gate is out of service since an earlier run (by %s via %s%s); it stays shut until an in_service action", out.by, out.via, note)

    def emit(self, events: list[Event]) -> list[Event]:
        """Journal and hooks first, then the sinks; returns the events that happened (an OPEN the
        journal could not record under ``fail_closed`` does not)."""
        done = []
        for e in events:
            if self.dispatcher is not None and not self.dispatcher.emit(e):
                continue  # an OPEN the journal could not record: it does not happen (fail_closed)
            done.append(e)
            self.events[e.event.value] = self.events.get(e.event.value, 0) + 1
            for sink in self.sinks:
                sink.emit(e)
        return done

    def trouble(self) -> str | None:
        """Why the gate is not healthy beyond what its frames and events show, or None.

        The frames have ended, or the journal cannot write (under ``on_error: deliver`` too,
        where the gate keeps opening). The live view's ``/healthz`` reads it.
        """
        if self.ended is not None:
            return self.ended
        problem = self.dispatcher.journal_fault if self.dispatcher is not None else None
        return None if problem is None else f"journal cannot write: {problem}"

    @property
    def journal_errors(self) -> int:
        """Journal writes that failed since start (``gatekeeper_journal_errors_total``)."""
        return self.dispatcher.journal_errors if self.dispatcher is not None else 0

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM ask for an orderly stop (the loop ends, sinks drain, exit 0)."""

        def handler(signum: int, _frame: Any) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            self.stopping.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)

    # -- faults --------------------------------------------------------------------------------
    def _fault(self, cause: str, frame: int, t: float, reason: str) -> None:
        """Hold the gate shut for ``cause``; one FAULT per episode, however many causes overlap.
        ``reason`` goes out with its secrets masked (a camera URL's password): it reaches the
        journal, the hooks, the page and ``/status``."""
        reason = redact_text(reason)
        self._faults[cause] = reason
        self.emit(self.pipeline.gate.fault(frame, t, reason))

    def _recover(self, cause: str, frame: int, t: float, reason: str) -> None:
        """``cause`` is over; RECOVERED once nothing else holds the gate shut."""
        if self._faults.pop(cause, None) is None:
            return
        if self._faults:
            log.info("%s recovered (%s); the gate stays shut: %s", cause, reason, "; ".join(self._faults.values()))
            return
        self.emit(self.pipeline.gate.recover(frame, t, reason))

    def _watch_journal(self, frame: int, t: float) -> None:
        d = self.dispatcher
        if d is None or d.on_error != "fail_closed":
            return
        problem = d.journal_fault
        if problem is not None and "journal" not in self._faults:
            self._fault("journal", frame, t, f"journal cannot write: {problem}")
        elif problem is None and "journal" in self._faults:
            self._recover("journal", frame, t, "journal writable again")

    # -- the frame loop ------------------------------------------------------------------------
    def _act(self, frame: int, t: float) -> None:
        self.controls.apply(self.pipeline.gate, frame, t, self.emit)

    def serve_actions(self, seconds: float) -> None:
        """After the frames have ended (``--hold-open``): keep applying operator actions for
        ``seconds`` or until a stop is requested, at times running on from the last frame."""
        start = time.monotonic()
        while not self.stopping.wait(0.05):
            elapsed = time.monotonic() - start
            self._act(max(self.frames - 1, 0), self._last_t + elapsed)
            if elapsed >= seconds:
                return

    def _step(self, frame: Frame) -> None:
        self._act(frame.index, frame.t)
        self._last_t = frame.t
        self.emit(self.pipeline.process(frame))
        self._watch_journal(frame.index, frame.t)
        self.frames += 1
        if self.on_frame is not None:
            self.on_frame(frame, self.pipeline)

    def run(self, source: FileSource | LiveSource | Iterable[Frame]) -> None:
        """Process frames until the source ends or a stop is requested.

        ``source``: a :class:`LiveSource`, or any finite iterable of frames (a :class:`FileSource`).
        An unexpected error in a stage fails closed: a FAULT event says why (so the relay is
        forced off and receivers know), then the error propagates and the process exits.
        """
        try:
            if isinstance(source, LiveSource):
                self._run_live(source)
            else:
                for frame in source:
                    if self.stopping.is_set():
                        break
                    self._step(frame)
        except Exception as exc:
            gate = self.pipeline.gate
            self.emit(gate.fault(self.frames, time.time(), redact_text(f"internal error: {type(exc).__name__}: {exc}")))
            raise
        finally:
            self.ended = "stopped" if self.stopping.is_set() else "source ended"
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _run_live(self, source: LiveSource) -> None:
        last_arrival = time.monotonic()
        last_index = -1
        for frame in source.frames(poll_s=min(0.1, self.cfg.source.watchdog_s / 4)):
            if self.stopping.is_set():
                break
            now = time.monotonic()
            if frame is None:
                # Watchdog: no frame for watchdog_s holds the gate shut and says why.
                if now - last_arrival >= self.cfg.source.watchdog_s and "source" not in self._faults:
                    reason = source.status.fault or f"no frame for {self.cfg.source.watchdog_s:g} s"
                    self._fault("source", max(last_index, 0), time.time(), reason)
                self._watch_journal(max(last_index, 0), time.time())
                self._act(max(last_index, 0), time.time())
                continue
            last_arrival, last_index = now, frame.index
            self._recover("source", frame.index, frame.t, "frames arriving again")
            self._step(frame)
        if source.status.ended and "source" not in self._faults:
            self._fault("source", max(last_index, 0), time.time(), source.status.fault or "source ended")

    def close_sinks(self) -> None:
        """Tell the sinks the frames have ended (once; :meth:`close` does it too). Events that
        follow (operator actions during ``--hold-open``) still reach them."""
        if self._sinks_closed:
            return
        self._sinks_closed = True
        for sink in self.sinks:
            sink.close()

    def close(self, timeout: float = 5.0) -> None:
        """Tell the sinks the run is over, then close the journal and hooks within ``timeout``.

        After a stop on request (SIGINT/SIGTERM) the hooks are interrupted: the relay goes shut
        at once. After the end of a finite source they finish in order (a pulse runs out).
        """
        self.controls.stop()
        try:
            self.close_sinks()
        finally:
            try:
                if self.dispatcher is not None:
                    self.dispatcher.close(timeout, interrupt=self.stopping.is_set())
            finally:
                self.pipeline.close()
