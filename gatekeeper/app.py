"""Wires the stages together from a validated config and owns start and orderly stop.

    source --frames--> detect --faces--> crop --chips--> classify --scores--> gate --events--> sinks

The frame loop is :meth:`Pipeline.process`; :class:`App` adds the source, the watchdog that
holds the gate shut when frames stop arriving, the event sinks (stdout JSON lines, journal and
hooks), and shutdown on SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import numpy as np

from .capture import FileSource, Frame, LiveSource
from .classify import SmileClassifier
from .config import Config
from .crop import face_chip
from .detect import Face, FaceDetector, resolve_face_model
from .gate import Event, FaceScore, Gate

__all__ = ["App", "Pipeline", "StdoutSink", "build_pipeline"]

log = logging.getLogger(__name__)

STAGES = ("decode", "detect", "crop", "classify", "gate")


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...

    def close(self) -> None: ...


class StdoutSink:
    """One JSON object per line, flushed as written: consumers read the stream live."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def emit(self, event: Event) -> None:
        self.stream.write(json.dumps(event.to_dict(), separators=(", ", ": ")) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


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
    model = resolve_face_model(cfg.detector.model_path, download=cfg.detector.download)
    detector = FaceDetector(model, video=video, min_confidence=cfg.detector.min_confidence, min_face_px=cfg.detector.min_face_px)
    try:
        classifier = SmileClassifier(cfg.classifier.model_path, threads=cfg.classifier.threads)
    except BaseException:
        detector.close()
        raise
    return Pipeline(detector, classifier, Gate(cfg.gate))


class App:
    """A running gate: one source, one pipeline, some sinks.

    >>> app = App(cfg, pipeline, [StdoutSink()])  # doctest: +SKIP
    >>> app.run(FileSource("clip.mp4"))           # doctest: +SKIP
    """

    def __init__(self, cfg: Config, pipeline: Pipeline, sinks: Iterable[EventSink], on_frame: Callable[[Frame, Pipeline], None] | None = None) -> None:
        self.cfg = cfg
        self.pipeline = pipeline
        self.sinks = list(sinks)
        self.stopping = threading.Event()
        self.on_frame = on_frame
        self.frames = 0
        self.events: dict[str, int] = {}

    def emit(self, events: list[Event]) -> None:
        for e in events:
            self.events[e.event.value] = self.events.get(e.event.value, 0) + 1
            for sink in self.sinks:
                sink.emit(e)

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM ask for an orderly stop (the loop ends, sinks drain, exit 0)."""

        def handler(signum: int, _frame: Any) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            self.stopping.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)

    def _step(self, frame: Frame) -> None:
        self.emit(self.pipeline.process(frame))
        self.frames += 1
        if self.on_frame is not None:
            self.on_frame(frame, self.pipeline)

    def run(self, source: FileSource | LiveSource) -> None:
        """Process frames until the source ends or a stop is requested.

        An unexpected error in a stage fails closed: a FAULT event says why (so the relay is
        forced off and receivers know), then the error propagates and the process exits.
        """
        try:
            if isinstance(source, FileSource):
                for frame in source:
                    if self.stopping.is_set():
                        break
                    self._step(frame)
            else:
                self._run_live(source)
        except Exception as exc:
            gate = self.pipeline.gate
            self.emit(gate.fault(self.frames, time.time(), f"internal error: {type(exc).__name__}: {exc}"))
            raise
        finally:
            source.close()

    def _run_live(self, source: LiveSource) -> None:
        gate = self.pipeline.gate
        last_arrival = time.monotonic()
        last_index = -1
        for frame in source.frames(poll_s=min(0.1, self.cfg.source.watchdog_s / 4)):
            if self.stopping.is_set():
                break
            now = time.monotonic()
            if frame is None:
                # Watchdog: no frame for watchdog_s holds the gate shut and says why.
                if now - last_arrival >= self.cfg.source.watchdog_s and not gate.faulted:
                    reason = source.status.fault or f"no frame for {self.cfg.source.watchdog_s:g} s"
                    self.emit(gate.fault(max(last_index, 0), time.time(), reason))
                continue
            last_arrival, last_index = now, frame.index
            if gate.faulted:
                self.emit(gate.recover(frame.index, frame.t))
            self._step(frame)
        if source.status.ended and not gate.faulted:
            self.emit(gate.fault(max(last_index, 0), time.time(), source.status.fault or "source ended"))

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.pipeline.close()
