"""The chain from a frame to the gate's events, one frame at a time, and the models it runs.

    frame --> detect --faces--> crop --chips--> classify --scores--> track --tracks--> gate --> events

:class:`Pipeline` runs the stages for one camera (:meth:`Pipeline.process`); its last two,
track then gate, are :class:`TrackedGate`: the one path from scored faces to events, which the
gate's tests, the test stand-ins and the scripts drive as production does. :func:`build_pipeline`
and :func:`load_models` make them from a validated config; :class:`StageTimes` keeps each stage's
time for benchmarks and metrics (:data:`STAGES`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .classify import SmileClassifier
from .crop import face_chip
from .detect import Face, FaceDetector, resolve_face_model
from .events import Event, FaceScore
from .gate import Gate
from .motion import DetectSchedule
from .track import Tracker

if TYPE_CHECKING:
    from .capture import Frame
    from .config import Config

__all__ = ["STAGES", "Pipeline", "StageTimes", "TrackedGate", "build_pipeline", "detect_schedule", "load_models"]

#: The stages whose time is measured, in the order a frame meets them (the ``stage`` label of
#: ``gatekeeper_stage_seconds``); tracking counts in ``gate``.
STAGES = ("decode", "detect", "crop", "classify", "gate")


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


class TrackedGate:
    """The tracker, then the gate: scored faces of one frame in, the gate's events out.

    >>> from gatekeeper.gate import GateConfig
    >>> tg = TrackedGate(Gate(GateConfig(hold_seconds=None, hold_frames=2, lost_after_s=0.1)))
    >>> face = FaceScore((0, 0, 100, 100), 0.9)
    >>> [e.event.value for t in (0.0, 0.04, 0.08) for e in tg.step(round(t / 0.04), t, [face])]
    ['OPEN']
    >>> [(e.event.value, e.track) for e in tg.step(3, 0.2, [])]
    [('FACE_LOST', 1)]

    The tracker gives each face its track id and names the tracks that ended
    (:class:`~gatekeeper.track.Tracker`); the gate decides on them (:meth:`Gate.decide
    <gatekeeper.gate.Gate.decide>`). A fault's end goes through here too (:meth:`recover`), so
    the tracks of faces unseen through a long pause end with it. ``tracker``: by default one
    made from the gate's config (``lost_after_s``).
    """

    def __init__(self, gate: Gate, tracker: Tracker | None = None) -> None:
        self.gate = gate
        self.tracker = tracker if tracker is not None else Tracker(gate.config.lost_after_s)
        self.faces: list[FaceScore] = []  # the faces of the last step, with their track ids

    def step(self, frame: int, t: float, faces: Sequence[FaceScore], size: tuple[int, int] | None = None) -> list[Event]:
        """The events of frame ``frame`` at ``t`` with its scored ``faces`` (any order, track ids
        unset); ``size`` (width, height) places ``gate.zone``."""
        tracks = self.tracker.update([f.box for f in faces], t)
        self.faces = [dataclasses.replace(f, track=tr.id) for f, tr in zip(faces, tracks, strict=True)]
        return self.gate.decide(frame, t, self.faces, [tr.id for tr in self.tracker.lost], size)

    def recover(self, frame: int, t: float, reason: str, *, cause: str = "pipeline") -> list[Event]:
        """``cause`` of a fault is over (see :meth:`Gate.recover <gatekeeper.gate.Gate.recover>`);
        when it was the last, the tracks unseen for ``lost_after_s`` by ``t`` end (FACE_LOST)."""
        if not self.gate.ends_fault(cause):
            return self.gate.recover(frame, t, reason, cause=cause)
        return self.gate.recover(frame, t, reason, cause=cause, lost=[tr.id for tr in self.tracker.expire(t)])


@dataclass
class Pipeline:
    """detect -> crop -> classify -> track -> gate for one frame at a time.

    The tracker is its own stage: it gives each face its track id, and the gate decides on the
    tracked faces (:class:`TrackedGate`); its time counts in the ``gate`` stage metric. With
    ``motion``, a frame where nothing changed since the last detection skips detect, crop and
    classify: the faces and scores of the last detection stand for it (see
    :mod:`gatekeeper.motion`); only frames the detector ran on count in ``detect``.
    """

    detector: FaceDetector
    classifier: SmileClassifier
    gate: Gate
    times: StageTimes = field(default_factory=StageTimes)
    tracker: Tracker | None = None  # None: one made from the gate's config (lost_after_s)
    motion: DetectSchedule | None = None  # None: the detector runs on every frame
    decoded: int = 0  # frames whose whole picture was decoded (a live MJPEG frame only when detected)
    _detected: list[FaceScore] = field(default_factory=list, init=False, repr=False)  # what the last detection found and scored

    def __post_init__(self) -> None:
        self.tracked = TrackedGate(self.gate, self.tracker)
        self.tracker = self.tracked.tracker

    @property
    def last_faces(self) -> list[FaceScore]:
        """The faces of the last frame, scored and tracked."""
        return self.tracked.faces

    def score_faces(self, image: np.ndarray, faces: list[Face]) -> list[FaceScore]:
        """Crop and classify all faces of one image in one model call (not tracked)."""
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
        """The events of one frame. A live MJPEG frame is decoded only if the detector runs on it
        (:mod:`gatekeeper.motion`); raises :class:`~gatekeeper.errors.FrameError` when it
        cannot be, before any stage has seen it."""
        t0, decode0 = time.perf_counter(), frame.decode_s
        if self.motion is None or self.motion.due(frame, [f.box for f in self._detected]):
            faces = self.detector.detect(frame.image, frame.t)
            self.times.add("detect", time.perf_counter() - t0 - (frame.decode_s - decode0))  # decoding a JPEG frame here is its own stage
            self._detected = self.score_faces(frame.image, faces)
        t1 = time.perf_counter()
        events = self.tracked.step(frame.index, frame.t, self._detected, frame.size)  # the size places gate.zone
        self.times.add("gate", time.perf_counter() - t1)
        self.times.add("decode", frame.decode_s)  # by the source, or here for a JPEG frame (its look and its decode)
        self.decoded += frame.decoded
        return events

    def next_look(self) -> float | None:
        """The frame time before which the next frames would be skipped unseen (nobody in view,
        no track alive: ``motion.idle_fps``), so a live source need not decode them; None when
        every frame is looked at."""
        if self.motion is None or self._detected or self.tracked.tracker.tracks:
            return None
        return self.motion.next_look()

    def recover(self, frame: int, t: float, reason: str, *, cause: str = "pipeline") -> list[Event]:
        """End ``cause`` of a fault (see :meth:`TrackedGate.recover`)."""
        return self.tracked.recover(frame, t, reason, cause=cause)

    def close(self) -> None:
        self.detector.close()


def detect_schedule(cfg: Config) -> DetectSchedule | None:
    """The pipeline's ``motion`` for ``cfg`` (None with ``motion.enabled: false``)."""
    return DetectSchedule(cfg.motion) if cfg.motion.enabled else None


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


def build_pipeline(cfg: Config, *, video: bool = True) -> Pipeline:
    """Load the models named by ``cfg`` (raises :class:`~gatekeeper.errors.ModelError`)."""
    detector, classifier = load_models(cfg, video=video)
    return Pipeline(detector, classifier, Gate(cfg.gate), motion=detect_schedule(cfg))
