"""The gate: a pure state machine from per-frame smile scores to events.

No I/O and no clock of its own: the caller passes the frame index and time ``t`` (seconds) of
every frame. Every rule about when the gate opens lives here and only here:

* **deciding face**: with several faces, the largest decides. If the deciding face jumps (its
  centre moves by more than its own width between frames) it is treated as another person and
  its smile hold starts again, so two people cannot add up one smile.
* **a steady hold, then hysteresis**: a smile starts when the score reaches ``enter_threshold``.
  Until it opens, every frame must stay at or above ``hold_threshold`` (by default the enter
  threshold itself): a talking mouth, a grimace or a wink flickers across the line, and each dip
  starts the hold again (``hold_threshold: 0.4`` with the default exit threshold gives the
  hysteresis of earlier versions, from the first frame). OPEN fires once a smile has lasted ``hold_frames`` frames, or
  ``hold_seconds`` when that is set (so the frame rate does not change behaviour). After OPEN the
  smile goes on while the score stays at or above ``exit_threshold``, so one smile opens once.
* **one OPEN per smile, then cooldown**: after an OPEN the smile must end (score below
  ``exit_threshold`` or face gone) and ``cooldown_s`` must pass before another OPEN.
* **DENY** once per visit, when a face has been present for ``deny_after_s`` without an OPEN.
  A DENY does not lock the person out: a held smile later still opens.
* **FACE_LOST** when no face has been seen for ``lost_after_s`` (a visit ends). Single missed
  detections inside that window do not end a visit.
* **FAULT / RECOVERED**: :meth:`Gate.fault` shuts the gate (no OPEN while faulted, any smile
  hold is dropped) and says why; :meth:`Gate.recover` ends it.

>>> gate = Gate(GateConfig(hold_frames=2))
>>> [e.event.value for e in gate.update(0, 0.00, [FaceScore((0, 0, 100, 100), 0.9)])]
[]
>>> [e.event.value for e in gate.update(1, 0.03, [FaceScore((0, 0, 100, 100), 0.9)])]
['OPEN']
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .schema import check_bounds, opt

__all__ = ["Event", "EventType", "FaceScore", "Gate", "GateConfig", "GateState"]


class EventType(str, enum.Enum):
    OPEN = "OPEN"
    DENY = "DENY"
    FACE_LOST = "FACE_LOST"
    FAULT = "FAULT"
    RECOVERED = "RECOVERED"

    def __str__(self) -> str:
        return self.value


class GateState(str, enum.Enum):
    IDLE = "idle"  # nobody in front of the camera
    PRESENT = "present"  # a face is there, no smile being held
    SMILING = "smiling"  # a smile is being held, not yet long enough
    OPENED = "opened"  # OPEN fired for the current smile; waiting for it to end / cooldown
    FAULT = "fault"  # the pipeline is not seeing the world; held shut


@dataclass(frozen=True, slots=True)
class FaceScore:
    """A face's box (x, y, w, h in pixels) and its smile probability."""

    box: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True, slots=True)
class Event:
    """Something the gate decided. ``to_dict`` is the stable JSON shape of the event stream."""

    event: EventType
    frame: int
    t: float
    score: float | None
    id: str
    box: tuple[float, float, float, float] | None = None
    faces: int = 0
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event.value,
            "frame": self.frame,
            "t": round(self.t, 4),
            "score": None if self.score is None else round(self.score, 4),
            "id": self.id,
            "box": None if self.box is None else [round(v, 1) for v in self.box],
            "faces": self.faces,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class GateConfig:
    """Gate timing and thresholds (the ``gate:`` section of ``config.yaml``)."""

    enter_threshold: float = opt(0.6, "a smile starts when the deciding face's probability reaches this", ge=0, le=1)
    exit_threshold: float = opt(0.4, "after OPEN, the smile goes on while the probability stays at or above this (hysteresis)", ge=0, le=1)
    hold_threshold: float | None = opt(
        None,
        "before OPEN, every frame of the hold must reach this or the hold starts again; null: enter_threshold (between exit and enter)",
        ge=0,
        le=1,
    )
    hold_frames: int = opt(6, "frames a smile must be held before OPEN", ge=1)
    hold_seconds: float | None = opt(None, "if set, seconds a smile must be held instead of hold_frames (frame-rate independent)", gt=0)
    cooldown_s: float = opt(3.0, "no second OPEN within this many seconds of the last", ge=0)
    deny_after_s: float = opt(6.0, "DENY once per visit when a face stays this long without a held smile", gt=0)
    lost_after_s: float = opt(0.3, "FACE_LOST after no face has been seen for this long", ge=0)

    def __post_init__(self) -> None:
        check_bounds(self)
        if not 0.0 <= self.exit_threshold <= self.enter_threshold <= 1.0:
            raise ValueError(
                f"thresholds must satisfy 0 <= exit_threshold <= enter_threshold <= 1, "
                f"got exit_threshold={self.exit_threshold}, enter_threshold={self.enter_threshold}"
            )
        if self.hold_threshold is not None and not self.exit_threshold <= self.hold_threshold <= self.enter_threshold:
            raise ValueError(
                f"hold_threshold must lie between exit_threshold and enter_threshold, "
                f"got exit_threshold={self.exit_threshold}, hold_threshold={self.hold_threshold}, enter_threshold={self.enter_threshold}"
            )
        if self.hold_frames < 1:
            raise ValueError(f"hold_frames must be >= 1, got {self.hold_frames}")


def new_event_id() -> str:
    return uuid.uuid4().hex


@dataclass
class _Visit:
    start_t: float
    last_seen_t: float
    denied: bool = False
    opened: bool = False


@dataclass
class Gate:
    """Feed it one :meth:`update` per processed frame; it returns the events of that frame.

    ``when_opened`` (and the other ``when_*`` callbacks) are called with each event, in the
    style of gpiozero; the app uses the returned list instead.
    """

    config: GateConfig = field(default_factory=GateConfig)
    id_factory: Callable[[], str] = new_event_id
    when_opened: Callable[[Event], None] | None = None
    when_denied: Callable[[Event], None] | None = None

    def __post_init__(self) -> None:
        self._visit: _Visit | None = None
        self._smile_start: tuple[int, float] | None = None  # (frame, t) the smile began
        self._smile_frames = 0
        self._opened_for_smile = False
        self._last_open_t: float | None = None
        self._last_box: tuple[float, float, float, float] | None = None
        self._fault: str | None = None
        self.last_score: float | None = None

    # -- queries -------------------------------------------------------------------------------
    @property
    def state(self) -> GateState:
        if self._fault is not None:
            return GateState.FAULT
        if self._visit is None:
            return GateState.IDLE
        if self._opened_for_smile:
            return GateState.OPENED
        if self._smile_frames:
            return GateState.SMILING
        return GateState.PRESENT

    @property
    def faulted(self) -> bool:
        return self._fault is not None

    # -- transitions ---------------------------------------------------------------------------
    def update(self, frame: int, t: float, faces: Sequence[FaceScore]) -> list[Event]:
        """Advance by one frame with the faces found in it (any order)."""
        cfg = self.config
        events: list[Event] = []
        face = max(faces, key=lambda f: f.box[2] * f.box[3]) if faces else None
        self.last_score = face.score if face else None

        if face is None:
            # A missed detection inside lost_after_s is not the face leaving: the visit, the
            # smile in progress (and its "already opened" mark) and the last box all carry over,
            # so a flickering detector can neither end a smile early nor re-arm an OPEN.
            if self._visit is not None and t - self._visit.last_seen_t >= cfg.lost_after_s:
                self._visit = None
                self._end_smile()
                self._last_box = None
                events.append(self._event(EventType.FACE_LOST, frame, t, None, None, 0, None))
            elif self._visit is None:
                self._end_smile()
            return self._dispatch(events)

        if self._visit is None:
            self._visit = _Visit(start_t=t, last_seen_t=t)
        self._visit.last_seen_t = t
        if self._last_box is not None and _jumped(self._last_box, face.box):
            self._end_smile()
        self._last_box = face.box

        if self._fault is not None:
            self._end_smile()
            return self._dispatch(events)

        if not self._smile_frames:
            threshold = cfg.enter_threshold
        else:
            threshold = cfg.exit_threshold if self._opened_for_smile else self._hold_threshold
        if face.score >= threshold:
            if not self._smile_frames:
                self._smile_start = (frame, t)
            self._smile_frames += 1
        else:
            self._end_smile()

        if self._smile_frames and not self._opened_for_smile and self._held(t) and self._cooled(t):
            self._opened_for_smile = True
            self._visit.opened = True
            self._last_open_t = t
            events.append(self._event(EventType.OPEN, frame, t, face.score, face.box, len(faces), None))

        if not self._visit.opened and not self._visit.denied and t - self._visit.start_t >= cfg.deny_after_s:
            self._visit.denied = True
            events.append(self._event(EventType.DENY, frame, t, face.score, face.box, len(faces), f"no smile held within {cfg.deny_after_s:g} s"))
        return self._dispatch(events)

    def fault(self, frame: int, t: float, reason: str) -> list[Event]:
        """Shut the gate because the pipeline cannot be trusted; one FAULT per fault episode."""
        self._end_smile()
        if self._fault is not None:
            return []
        self._fault = reason
        return [self._event(EventType.FAULT, frame, t, None, None, 0, reason)]

    def recover(self, frame: int, t: float, reason: str = "frames arriving again") -> list[Event]:
        """End a fault; the next smile must be held in full again."""
        if self._fault is None:
            return []
        self._fault = None
        self._visit = None
        return [self._event(EventType.RECOVERED, frame, t, None, None, 0, reason)]

    # -- helpers -------------------------------------------------------------------------------
    @property
    def _hold_threshold(self) -> float:
        held = self.config.hold_threshold
        return self.config.enter_threshold if held is None else held

    def _held(self, t: float) -> bool:
        if self.config.hold_seconds is not None:
            assert self._smile_start is not None
            return t - self._smile_start[1] >= self.config.hold_seconds
        return self._smile_frames >= self.config.hold_frames

    def _cooled(self, t: float) -> bool:
        return self._last_open_t is None or t - self._last_open_t >= self.config.cooldown_s

    def _end_smile(self) -> None:
        self._smile_frames = 0
        self._smile_start = None
        self._opened_for_smile = False

    def _event(self, kind: EventType, frame: int, t: float, score: float | None, box: tuple[float, float, float, float] | None, n: int, reason: str | None) -> Event:
        return Event(kind, frame, t, score, self.id_factory(), box, n, reason)

    def _dispatch(self, events: list[Event]) -> list[Event]:
        for e in events:
            cb = self.when_opened if e.event is EventType.OPEN else self.when_denied if e.event is EventType.DENY else None
            if cb is not None:
                cb(e)
        return events


def _jumped(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    ax, ay = a[0] + a[2] / 2, a[1] + a[3] / 2
    bx, by = b[0] + b[2] / 2, b[1] + b[3] / 2
    return ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5 > max(a[2], b[2])
