"""The gate: a pure state machine from per-frame smile scores to events.

No I/O and no clock of its own: the caller passes the frame index and time ``t`` (seconds) of
every frame. Every rule about when the gate opens lives here and only here:

* **people, not frames**: each face comes with a track id that lasts while it stays in view (a
  few missed detections included), given by the tracking stage before the gate
  (:class:`~gatekeeper.track.Tracker`; :meth:`Gate.decide`). :meth:`Gate.update` is the same for
  faces that have no track yet: the gate runs a tracker of its own first. A **visit** is a track
  that has been the deciding face at least once; OPEN, DENY and FACE_LOST are about visits and
  carry the track id.
* **deciding face**: the largest face whose centre lies inside ``zone`` (relative [x0, y0, x1,
  y1], by default the whole frame). Faces outside it never decide; smaller faces behind the
  person in front do not either. When another track starts to decide, the smile hold starts
  again, so two people cannot add up one smile.
* **a steady hold, then hysteresis**: a smile starts when the score reaches ``enter_threshold``.
  Until it opens, every frame must stay at or above ``hold_threshold`` (by default the enter
  threshold itself): a talking mouth, a grimace or a wink flickers across the line, and each dip
  starts the hold again (``hold_threshold: 0.4`` with the default exit threshold gives the
  hysteresis of earlier versions, from the first frame). OPEN fires once a smile has lasted
  ``hold_seconds`` (0.5 s; so the frame rate does not change behaviour), or ``hold_frames`` frames
  when ``hold_seconds`` is null. 6 frames (0.2-0.24 s, the default before) let a wink with a
  grimace and a concerned talking face open; from 0.4 s none of the labelled clips does. After OPEN the smile goes
  on while the score stays at or above ``exit_threshold``.
* **one OPEN per visit** (``reopen: per_visit``): a person who talks and smiles on and off in
  front of the camera opens once. With ``reopen: cooldown`` the same visit may open again once
  its smile has ended and ``cooldown_s`` has passed since its last OPEN. Either way the next
  person (another track) gets their own decision at once: the cooldown guards the same visit,
  not the queue behind it.
* **onset** (``require_onset``): a track's smile counts only after the same track was seen not
  smiling (below ``exit_threshold``) for ``onset_s``. A photo or a screen showing a smile never
  shows that onset; a person who walks up smiling must relax for a moment first.
* **DENY** once per visit, when a track has been deciding for ``deny_after_s`` (counted from the
  first frame it decided) without an OPEN. A DENY does not lock the person out: a held smile
  later still opens.
* **FACE_LOST** when a visit's track ends: its face has not been seen for ``lost_after_s``.
  Single missed detections inside that window do not end a visit.
* **operator actions** (:meth:`Gate.act`, values of :class:`~gatekeeper.actions.Action`): ``open``
  is an OPEN now, whatever the smile (``reason: "manual"``, ``by``, ``via``; ``override: true``
  when the gate is held shut, out of service or faulted), at most one per
  ``manual_open_interval_s``; ``out_of_service`` (OUT_OF_SERVICE) holds the gate shut, no OPEN or
  DENY from smiles, until ``in_service`` (IN_SERVICE). A refused action returns no event and
  leaves the reason in :attr:`Gate.refusal`.
* **FAULT / RECOVERED**: :meth:`Gate.fault` shuts the gate (no OPEN or DENY while faulted, any
  smile hold is dropped) and says why; :meth:`Gate.recover` ends it. Tracks live on through a
  fault while frames keep coming, so a visit that opened does not open again after it; a track
  whose face was not seen for longer than ``lost_after_s`` when the fault ends is lost.

>>> gate = Gate(GateConfig(hold_seconds=None, hold_frames=2))
>>> [e.event.value for e in gate.update(0, 0.00, [FaceScore((0, 0, 100, 100), 0.9)])]
[]
>>> [(e.event.value, e.track) for e in gate.update(1, 0.03, [FaceScore((0, 0, 100, 100), 0.9)])]
[('OPEN', 1)]
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .schema import check_bounds, opt
from .track import Box, Tracker

if TYPE_CHECKING:
    from .actions import Action

__all__ = ["Event", "EventType", "FaceScore", "Gate", "GateConfig", "GateState", "TrackedFace"]

WHOLE_FRAME = (0.0, 0.0, 1.0, 1.0)


class EventType(str, enum.Enum):
    OPEN = "OPEN"
    DENY = "DENY"
    FACE_LOST = "FACE_LOST"
    FAULT = "FAULT"
    RECOVERED = "RECOVERED"
    OUT_OF_SERVICE = "OUT_OF_SERVICE"  # an operator took the gate out of service: no OPEN from smiles
    IN_SERVICE = "IN_SERVICE"  # back in service

    def __str__(self) -> str:
        return self.value


class GateState(str, enum.Enum):
    IDLE = "idle"  # nobody in front of the camera
    PRESENT = "present"  # a face is there, no smile being held
    SMILING = "smiling"  # a smile is being held, not yet long enough
    OPENED = "opened"  # OPEN fired for the current smile; waiting for it to end
    FAULT = "fault"  # the pipeline is not seeing the world; held shut
    OUT_OF_SERVICE = "out_of_service"  # taken out of service by an operator; held shut


@dataclass(frozen=True, slots=True)
class FaceScore:
    """A face's box (x, y, w, h in pixels), its smile probability and, once tracked, its track id."""

    box: Box
    score: float
    track: int | None = None  # the tracking stage's id (Gate.decide); None before tracking (Gate.update)


@dataclass(frozen=True, slots=True)
class TrackedFace:
    """A face of the last frame as the gate saw it: its track id, whether its centre is inside
    ``zone``, and whether it is the face that decides (see :attr:`Gate.faces`)."""

    box: Box
    score: float
    track: int
    in_zone: bool
    decides: bool


@dataclass(frozen=True, slots=True)
class Event:
    """Something the gate decided. ``to_dict`` is the stable JSON shape of the event stream."""

    event: EventType
    frame: int
    t: float
    score: float | None
    id: str
    box: Box | None = None
    faces: int = 0
    reason: str | None = None
    track: int | None = None  # the visit's track id (OPEN, DENY, FACE_LOST); None for FAULT, RECOVERED
    by: str | None = None  # operator actions: who (a manual OPEN, OUT_OF_SERVICE, IN_SERVICE); None otherwise
    via: str | None = None  # operator actions: http, mqtt, button or page
    override: bool | None = None  # a manual OPEN: True when the gate was held shut (out of service, fault)
    note: str | None = None  # operator actions: the operator's own words, if any
    camera: str | None = None  # the camera it is about (set by the camera that emits it); None from a bare Gate

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
            "track": self.track,
            "by": self.by,
            "via": self.via,
            "override": self.override,
            "note": self.note,
            "camera": self.camera,
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
    hold_frames: int = opt(6, "frames a smile must be held before OPEN, when hold_seconds is null", ge=1)
    hold_seconds: float | None = opt(0.5, "seconds a smile must be held before OPEN (frame-rate independent); null: count hold_frames instead", gt=0)
    reopen: Literal["per_visit", "cooldown"] = opt(
        "per_visit", "per_visit: one OPEN per person in view (a track, until FACE_LOST); cooldown: the same person opens again after cooldown_s"
    )
    cooldown_s: float = opt(3.0, "with reopen: cooldown, no second OPEN for the same person within this many seconds; the next person never waits", ge=0)
    deny_after_s: float = opt(6.0, "DENY once per visit when a person has been the deciding face this long without an OPEN", gt=0)
    lost_after_s: float = opt(0.3, "a person's track ends (FACE_LOST) when their face has not been seen for this long", ge=0)
    zone: tuple[float, ...] = opt(
        WHOLE_FRAME, "region of interest [x0, y0, x1, y1], relative to the frame (0..1): only a face whose centre is inside decides"
    )
    require_onset: bool = opt(
        False, "a smile counts only after the same person was seen not smiling for onset_s: refuses photos, also people who walk up smiling"
    )
    onset_s: float = opt(0.3, "with require_onset: how long a person must be seen below exit_threshold before their smile counts", gt=0)
    manual_open_interval_s: float = opt(
        1.0, "operator opens (page, HTTP, MQTT, button) closer together than this are refused: above the relay's pulse_ms, a script cannot hold the gate open", ge=0
    )

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
        if self.reopen not in ("per_visit", "cooldown"):
            raise ValueError(f"reopen: expected one of 'per_visit', 'cooldown', got {self.reopen!r}")
        zone = tuple(self.zone)
        ok = len(zone) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in zone)
        if not ok or zone[0] >= zone[2] or zone[1] >= zone[3]:
            raise ValueError(f"zone: expected [x0, y0, x1, y1] with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got {list(self.zone)!r}")
        object.__setattr__(self, "zone", tuple(float(v) for v in zone))


def new_event_id() -> str:
    return uuid.uuid4().hex


@dataclass
class _Person:
    """What the gate knows about one track."""

    decided_t: float | None = None  # the first frame it decided: its visit began
    opened: bool = False  # an OPEN in this visit
    last_open_t: float | None = None
    smile_opened: bool = False  # the current smile has opened; it ends below exit_threshold
    denied: bool = False
    calm_since: float | None = None  # first frame of the current run below exit_threshold
    onset_seen: bool = False  # seen not smiling for onset_s (require_onset)


@dataclass
class _Hold:
    """A smile being held by the deciding track, before OPEN."""

    track: int
    start_t: float
    frames: int = 0


@dataclass
class Gate:
    """Feed it one :meth:`update` per processed frame; it returns the events of that frame.

    ``when_opened`` (and the other ``when_*`` callbacks) are called with each event, in the
    style of gpiozero; the app uses the returned list instead.

    The pipeline tracks the faces itself and hands them over with their track ids
    (:meth:`decide`, :meth:`recover` with ``lost``). :meth:`update` takes untracked faces and
    runs the gate's own ``tracker`` first, made from the config (``lost_after_s``) unless given.
    """

    config: GateConfig = field(default_factory=GateConfig)
    id_factory: Callable[[], str] = new_event_id
    when_opened: Callable[[Event], None] | None = None
    when_denied: Callable[[Event], None] | None = None
    tracker: Tracker | None = None

    def __post_init__(self) -> None:
        self._tracker = self.tracker if self.tracker is not None else Tracker(self.config.lost_after_s)
        self._people: dict[int, _Person] = {}
        self._decider: int | None = None  # the track that decided last, while it lives
        self._hold: _Hold | None = None
        self._fault: str | None = None
        self._out: Event | None = None  # the OUT_OF_SERVICE in force; None: in service
        self._last_manual_open: float | None = None
        self.refusal: tuple[str, str] | None = None  # (code, message) of the last refused action
        self.faces: tuple[TrackedFace, ...] = ()  # the faces of the last frame, with their tracks
        self.last_score: float | None = None  # the deciding face's score in the last frame

    # -- queries -------------------------------------------------------------------------------
    @property
    def state(self) -> GateState:
        if self._fault is not None:
            return GateState.FAULT
        if self._out is not None:
            return GateState.OUT_OF_SERVICE
        person = self._people.get(self._decider) if self._decider is not None else None
        if person is None:
            return GateState.PRESENT if any(p.decided_t is not None for p in self._people.values()) else GateState.IDLE
        if person.smile_opened:
            return GateState.OPENED
        if self._hold is not None and self._hold.track == self._decider:
            return GateState.SMILING
        return GateState.PRESENT

    @property
    def faulted(self) -> bool:
        return self._fault is not None

    @property
    def in_service(self) -> bool:
        return self._out is None

    @property
    def out_of_service(self) -> Event | None:
        """The OUT_OF_SERVICE event in force (who, when, why), or None while in service."""
        return self._out

    # -- transitions ---------------------------------------------------------------------------
    def update(self, frame: int, t: float, faces: Sequence[FaceScore], size: tuple[int, int] | None = None) -> list[Event]:
        """Advance by one frame with the untracked faces found in it (any order): the gate's own
        tracker gives them their track ids, then :meth:`decide`.

        ``size`` is the frame's (width, height) in pixels; it is needed when ``zone`` is set.
        """
        tracks = self._tracker.update([f.box for f in faces], t)
        tracked = [FaceScore(f.box, f.score, tr.id) for f, tr in zip(faces, tracks, strict=True)]
        return self.decide(frame, t, tracked, [tr.id for tr in self._tracker.lost], size)

    def decide(self, frame: int, t: float, faces: Sequence[FaceScore], lost: Sequence[int] = (), size: tuple[int, int] | None = None) -> list[Event]:
        """Advance by one frame with its tracked faces (each with its ``track``, any order) and
        the ids of the tracks that ended at this frame (``lost``).

        ``size`` is the frame's (width, height) in pixels; it is needed when ``zone`` is set.
        """
        cfg = self.config
        if any(f.track is None for f in faces):
            raise ValueError("Gate.decide() takes tracked faces (FaceScore.track set); untracked faces go to Gate.update()")
        tracks = [int(f.track) for f in faces]  # type: ignore[arg-type]
        events = [self._event(EventType.FACE_LOST, frame, t, None, None, len(faces), None, track) for track in self._end(lost)]

        inside = [self._in_zone(f.box, size) for f in faces]
        for f, track in zip(faces, tracks, strict=True):
            person = self._people.get(track)
            if person is None:
                person = self._people[track] = _Person()
            self._observe(person, f, t)
        candidates = [i for i, ok in enumerate(inside) if ok]
        best = max(candidates, key=lambda i: faces[i].box[2] * faces[i].box[3]) if candidates else None
        self.faces = tuple(TrackedFace(f.box, f.score, track, ok, i == best) for i, (f, track, ok) in enumerate(zip(faces, tracks, inside, strict=True)))
        self.last_score = None if best is None else faces[best].score

        if best is None:
            # Nobody decides this frame. A missed detection keeps the hold (and the visit) going;
            # its face seen outside the zone ends it.
            if self._hold is not None and any(tf.track == self._hold.track for tf in self.faces):
                self._hold = None
            return self._dispatch(events)

        face, track = faces[best], tracks[best]
        person = self._people[track]
        if person.decided_t is None:
            person.decided_t = t
        self._decider = track
        if self._hold is not None and self._hold.track != track:
            self._hold = None  # another person decides now: their smile is held from its start
        if self._fault is not None or self._out is not None:
            self._hold = None  # held shut: no OPEN and no DENY from smiles
            return self._dispatch(events)

        if not person.smile_opened:  # after OPEN the smile goes on at or above exit_threshold
            threshold = cfg.enter_threshold if self._hold is None else self._hold_threshold
            if face.score >= threshold:
                if self._hold is None:
                    self._hold = _Hold(track, t)
                self._hold.frames += 1
            else:
                self._hold = None
            if self._hold is not None and self._held(self._hold, t) and self._may_open(person, t):
                self._hold = None
                person.opened = person.smile_opened = True
                person.last_open_t = t
                events.append(self._event(EventType.OPEN, frame, t, face.score, face.box, len(faces), None, track))

        if not person.opened and not person.denied and t - person.decided_t >= cfg.deny_after_s:
            person.denied = True
            reason = f"no smile held within {cfg.deny_after_s:g} s"
            events.append(self._event(EventType.DENY, frame, t, face.score, face.box, len(faces), reason, track))
        return self._dispatch(events)

    def fault(self, frame: int, t: float, reason: str) -> list[Event]:
        """Shut the gate because the pipeline cannot be trusted; one FAULT per fault episode."""
        self._hold = None
        if self._fault is not None:
            return []
        self._fault = reason
        return [self._event(EventType.FAULT, frame, t, None, None, 0, reason, None)]

    def recover(self, frame: int, t: float, reason: str = "frames arriving again", lost: Sequence[int] | None = None) -> list[Event]:
        """End a fault; the next smile must be held in full again. Tracks not seen for longer
        than ``lost_after_s`` by ``t`` end here (FACE_LOST), so a face seen before a long pause
        in the frames is not taken for the one after it: ``lost`` names them when the tracking
        stage is the pipeline's (``Tracker.expire``); None asks the gate's own tracker."""
        if self._fault is None:
            return []
        self._fault = None
        if lost is None:
            lost = [tr.id for tr in self._tracker.expire(t)]
        events = [self._event(EventType.RECOVERED, frame, t, None, None, 0, reason, None)]
        events += [self._event(EventType.FACE_LOST, frame, t, None, None, 0, None, track) for track in self._end(lost)]
        return events

    def act(self, action: Action, frame: int, t: float) -> list[Event]:
        """An operator's action at frame ``frame``, time ``t``: its events, or [] when refused
        (then :attr:`refusal` says why: ``rate_limited``, or ``no_change`` for a service state
        that is already so)."""
        self.refusal = None
        by, via, note = action.by, action.via, action.reason
        if action.kind == "open":
            last, interval = self._last_manual_open, self.config.manual_open_interval_s
            if last is not None and 0 <= t - last < interval:
                return self._refuse("rate_limited", f"manual open {t - last:.2f} s after the last one; expected at least gate.manual_open_interval_s={interval:g} s between two")
            self._last_manual_open = t
            person = self._people.get(self._decider) if self._decider is not None else None
            if person is not None:  # whoever is in front has been let through: their smile does not open again
                person.opened = person.smile_opened = True
                person.last_open_t = t
                self._hold = None
            held_shut = self._out is not None or self._fault is not None
            event = Event(EventType.OPEN, frame, t, None, self.id_factory(), None, len(self.faces), "manual", None, by, via, held_shut, note)
            return self._dispatch([event])
        if action.kind == "out_of_service":
            if self._out is not None:
                return self._refuse("no_change", f"already out of service (by {self._out.by} via {self._out.via}); expected in_service first")
            self._hold = None
            self._out = Event(EventType.OUT_OF_SERVICE, frame, t, None, self.id_factory(), None, len(self.faces), note, None, by, via, None, note)
            return [self._out]
        if action.kind == "in_service":
            if self._out is None:
                return self._refuse("no_change", "already in service; expected out_of_service first")
            self._out = None
            for person in self._people.values():
                if person.decided_t is not None:
                    person.decided_t = t  # deny_after_s counts from now, not from before the pause
            return [Event(EventType.IN_SERVICE, frame, t, None, self.id_factory(), None, len(self.faces), note, None, by, via, None, note)]
        raise ValueError(f"unknown action kind {action.kind!r}")  # Action checks its kind; a bug if reached

    def restore_service(self, last: Event | None) -> None:
        """Start from the service state of the last OUT_OF_SERVICE/IN_SERVICE event of an earlier
        run (read back from the journal): a gate taken out of service stays out across a restart."""
        self._out = last if last is not None and last.event is EventType.OUT_OF_SERVICE else None

    # -- helpers -------------------------------------------------------------------------------
    @property
    def _hold_threshold(self) -> float:
        held = self.config.hold_threshold
        return self.config.enter_threshold if held is None else held

    def _observe(self, person: _Person, face: FaceScore, t: float) -> None:
        """What every sighting of a track tells, whether it decides or not."""
        if face.score >= self.config.exit_threshold:
            person.calm_since = None
            return
        person.smile_opened = False
        if person.calm_since is None:
            person.calm_since = t
        if t - person.calm_since >= self.config.onset_s:
            person.onset_seen = True

    def _end(self, lost: Sequence[int]) -> list[int]:
        """Forget the tracks ``lost``; returns those that were visits (they get FACE_LOST)."""
        ended = []
        for track in lost:
            person = self._people.pop(track, None)
            if self._hold is not None and self._hold.track == track:
                self._hold = None
            if self._decider == track:
                self._decider = None
            if person is not None and person.decided_t is not None:
                ended.append(track)
        return ended

    def _in_zone(self, box: Box, size: tuple[int, int] | None) -> bool:
        zone = self.config.zone
        if zone == WHOLE_FRAME:
            return True
        if size is None:
            raise ValueError("gate.zone is set: Gate.update() needs the frame size (width, height)")
        cx, cy = (box[0] + box[2] / 2) / size[0], (box[1] + box[3] / 2) / size[1]
        return zone[0] <= cx <= zone[2] and zone[1] <= cy <= zone[3]

    def _held(self, hold: _Hold, t: float) -> bool:
        if self.config.hold_seconds is not None:
            return t - hold.start_t >= self.config.hold_seconds
        return hold.frames >= self.config.hold_frames

    def _may_open(self, person: _Person, t: float) -> bool:
        cfg = self.config
        if cfg.require_onset and not person.onset_seen:
            return False
        if cfg.reopen == "per_visit":
            return not person.opened
        return person.last_open_t is None or t - person.last_open_t >= cfg.cooldown_s

    def _refuse(self, code: str, message: str) -> list[Event]:
        self.refusal = (code, message)
        return []

    def _event(self, kind: EventType, frame: int, t: float, score: float | None, box: Box | None, n: int, reason: str | None, track: int | None) -> Event:
        return Event(kind, frame, t, score, self.id_factory(), box, n, reason, track)

    def _dispatch(self, events: list[Event]) -> list[Event]:
        for e in events:
            cb = self.when_opened if e.event is EventType.OPEN else self.when_denied if e.event is EventType.DENY else None
            if cb is not None:
                cb(e)
        return events
