"""The gate: a pure state machine from per-frame smile scores to events.

No I/O and no clock of its own: the caller passes the frame index and time ``t`` (seconds) of
every frame. Every rule about when the gate opens lives here and only here:

* **people, not frames**: each face comes with a track id that lasts while it stays in view (a
  few missed detections included), given by the tracking stage before the gate
  (:class:`~gatekeeper.track.Tracker`), which also names the tracks that ended; the gate decides
  on tracks only (:meth:`Gate.decide`). A **visit** is a track that has been the deciding face at
  least once; OPEN, DENY and FACE_LOST are about visits and carry the track id.
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
* **operator actions** (:meth:`Gate.act`, values of :class:`~gatekeeper.events.Action`): ``open``
  is an OPEN now, whatever the smile (``reason: "manual"``, ``by``, ``via``; ``override: true``
  when the gate is held shut, out of service or faulted), at most one per
  ``manual_open_interval_s``; ``out_of_service`` (OUT_OF_SERVICE) holds the gate shut, no OPEN or
  DENY from smiles, until ``in_service`` (IN_SERVICE). A refused action returns no event and
  leaves the reason in :attr:`Gate.refusal`.
* **opening hours** (:meth:`Gate.schedule`, from :mod:`gatekeeper.hours`): at each boundary the
  schedule takes over: closing makes an OUT_OF_SERVICE (``by``/``via: schedule``), opening an
  IN_SERVICE; staff may override by hand in between, until the next boundary.
* **FAULT / RECOVERED**: :meth:`Gate.fault` shuts the gate (no OPEN or DENY while faulted, any
  smile hold is dropped) and says why; :meth:`Gate.recover` ends it. Several causes may hold the
  gate shut at once (the camera lost, the journal unwritable): one FAULT when the first begins,
  one RECOVERED when the last ends. Tracks live on through a fault while frames keep coming, so a
  visit that opened does not open again after it; the tracks the tracking stage ends when the
  fault ends (their faces unseen for ``lost_after_s``) get their FACE_LOST with the RECOVERED.
* **callbacks**: ``when_opened`` and ``when_denied`` (gpiozero style) are called by
  :meth:`Gate.announce` once an event has happened, that is once the journal holds it (the camera
  calls it); :meth:`decide` and :meth:`act` only return the events.
* **the door's contact** (``sensor``): :attr:`Gate.door` keeps the door's own rules
  (:mod:`gatekeeper.door`: PASSAGE, FORCED_OPEN, HELD_OPEN, CLOSED); every OPEN that happened
  (:meth:`announce`) lets the door open for one PASSAGE.

>>> gate = Gate(GateConfig(hold_seconds=None, hold_frames=2))
>>> [e.event.value for e in gate.decide(0, 0.00, [FaceScore((0, 0, 100, 100), 0.9, track=1)])]
[]
>>> [(e.event.value, e.track) for e in gate.decide(1, 0.03, [FaceScore((0, 0, 100, 100), 0.9, track=1)])]
[('OPEN', 1)]
>>> [e.event.value for e in gate.decide(2, 0.06, [], lost=[1])]
['FACE_LOST']
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .door import Door, DoorConfig
from .events import Action, Event, EventType, FaceScore, new_event_id
from .hours import SCHEDULE
from .schema import check_bounds, opt
from .track import Box

__all__ = ["WHOLE_FRAME", "Gate", "GateConfig", "GateState", "TrackedFace"]

WHOLE_FRAME = (0.0, 0.0, 1.0, 1.0)


class GateState(str, enum.Enum):
    IDLE = "idle"  # nobody in front of the camera
    PRESENT = "present"  # a face is there, no smile being held
    SMILING = "smiling"  # a smile is being held, not yet long enough
    OPENED = "opened"  # OPEN fired for the current smile; waiting for it to end
    FAULT = "fault"  # the pipeline is not seeing the world; held shut
    OUT_OF_SERVICE = "out_of_service"  # taken out of service by an operator; held shut


@dataclass(frozen=True, slots=True)
class TrackedFace:
    """A face of the last frame as the gate saw it: its track id, whether its centre is inside
    ``zone``, and whether it is the face that decides (see :attr:`Gate.faces`)."""

    box: Box
    score: float
    track: int
    in_zone: bool
    decides: bool


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
    sensor: DoorConfig = opt(DoorConfig(), "the door's or turnstile's own position contact: PASSAGE, FORCED_OPEN, HELD_OPEN, CLOSED (gatekeeper.door)")

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
    """Feed it one :meth:`decide` per processed frame, with the tracked faces of that frame and
    the tracks that ended at it; it returns the events of that frame.

    The tracking stage (:class:`~gatekeeper.track.Tracker`) gives the faces their track ids;
    :class:`~gatekeeper.pipeline.TrackedGate` runs the two together, as the pipeline does.

    ``when_opened`` and ``when_denied`` are called with an OPEN or a DENY by :meth:`announce`,
    once it has happened (the journal holds it), in the style of gpiozero.
    """

    config: GateConfig = field(default_factory=GateConfig)
    id_factory: Callable[[], str] = new_event_id
    when_opened: Callable[[Event], None] | None = None
    when_denied: Callable[[Event], None] | None = None

    def __post_init__(self) -> None:
        self._people: dict[int, _Person] = {}
        self._decider: int | None = None  # the track that decided last, while it lives
        self._hold: _Hold | None = None
        self._faults: dict[str, str] = {}  # what holds the gate shut: cause ("source", "journal") -> reason
        self._out: Event | None = None  # the OUT_OF_SERVICE in force; None: in service
        self._scheduled: bool | None = None  # the opening hours' last say (open or not); None: not yet
        self._last_manual_open: float | None = None
        self.refusal: tuple[str, str] | None = None  # (code, message) of the last refused action
        self.faces: tuple[TrackedFace, ...] = ()  # the faces of the last frame, with their tracks
        self.door = Door(self.config.sensor, id_factory=self.id_factory)  # the door's contact (gate.sensor): its rules
        self.last_score: float | None = None  # the deciding face's score in the last frame

    # -- queries -------------------------------------------------------------------------------
    @property
    def state(self) -> GateState:
        if self._faults:
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
        return bool(self._faults)

    @property
    def faults(self) -> dict[str, str]:
        """What holds the gate shut now: each cause (``source``, ``journal``, ...) and its reason."""
        return dict(self._faults)

    @property
    def in_service(self) -> bool:
        return self._out is None

    @property
    def out_of_service(self) -> Event | None:
        """The OUT_OF_SERVICE event in force (who, when, why), or None while in service."""
        return self._out

    # -- transitions ---------------------------------------------------------------------------
    def decide(self, frame: int, t: float, faces: Sequence[FaceScore], lost: Sequence[int] = (), size: tuple[int, int] | None = None) -> list[Event]:
        """Advance by one frame with its tracked faces (each with its ``track``, any order) and
        the ids of the tracks that ended at this frame (``lost``).

        ``size`` is the frame's (width, height) in pixels; it is needed when ``zone`` is set.
        """
        cfg = self.config
        if any(f.track is None for f in faces):
            raise ValueError("Gate.decide() takes tracked faces: expected FaceScore.track set by the tracking stage (gatekeeper.track.Tracker), got None")
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
            return events

        face, track = faces[best], tracks[best]
        person = self._people[track]
        if person.decided_t is None:
            person.decided_t = t
        self._decider = track
        if self._hold is not None and self._hold.track != track:
            self._hold = None  # another person decides now: their smile is held from its start
        if self._faults or self._out is not None:
            self._hold = None  # held shut: no OPEN and no DENY from smiles
            return events

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
        return events

    def fault(self, frame: int, t: float, reason: str, *, cause: str = "pipeline") -> list[Event]:
        """Shut the gate because ``cause`` says the pipeline cannot be trusted; one FAULT per
        fault episode, however many causes overlap (a cause already in force only gets its
        ``reason`` renewed)."""
        self._hold = None
        first = not self._faults
        self._faults[cause] = reason
        if not first:
            return []
        return [self._event(EventType.FAULT, frame, t, None, None, 0, reason, None)]

    def recover(self, frame: int, t: float, reason: str = "frames arriving again", *, cause: str = "pipeline", lost: Sequence[int] = ()) -> list[Event]:
        """``cause`` is over; RECOVERED once nothing else holds the gate shut, and the next smile
        must be held in full again. ``lost``: the tracks the tracking stage ended as the fault
        ended (``Tracker.expire``: their faces unseen for ``lost_after_s`` by ``t``), so a face seen
        before a long pause in the frames is not taken for the one after it; they get FACE_LOST.
        See :meth:`ends_fault` for whether a recovery ends the episode."""
        if self._faults.pop(cause, None) is None or self._faults:
            return []
        events = [self._event(EventType.RECOVERED, frame, t, None, None, 0, reason, None)]
        events += [self._event(EventType.FACE_LOST, frame, t, None, None, 0, None, track) for track in self._end(lost)]
        return events

    def ends_fault(self, cause: str) -> bool:
        """Whether :meth:`recover` of ``cause`` would end the fault episode (it is the one cause left)."""
        return list(self._faults) == [cause]

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
            held_shut = self._out is not None or bool(self._faults)
            return [self._service_event(EventType.OPEN, frame, t, "manual", by, via, held_shut, note, action.claimed_by)]
        if action.kind == "out_of_service":
            if self._out is not None:
                return self._refuse("no_change", f"already out of service (by {self._out.by} via {self._out.via}); expected in_service first")
            self._hold = None
            self._out = self._service_event(EventType.OUT_OF_SERVICE, frame, t, note, by, via, None, note, action.claimed_by)
            return [self._out]
        if action.kind == "in_service":
            if self._out is None:
                return self._refuse("no_change", "already in service; expected out_of_service first")
            self._resume(t)
            return [self._service_event(EventType.IN_SERVICE, frame, t, note, by, via, None, note, action.claimed_by)]
        raise ValueError(f"unknown action kind {action.kind!r}")  # Action checks its kind; a bug if reached

    def schedule(self, open_: bool, frame: int, t: float, reason: str) -> list[Event]:
        """The opening hours say ``open_`` at ``t``: its events (``by`` and ``via: schedule``).

        Only a change of what they say (a boundary, or the first say) acts, so an operator's
        override between two boundaries stands. Closing: OUT_OF_SERVICE, unless the schedule
        already holds the gate out (one an operator made hands over to the schedule); opening:
        IN_SERVICE when the gate is out, whoever took it out.
        """
        if open_ is self._scheduled:
            return []
        self._scheduled = open_
        if not open_ and (self._out is None or self._out.via != SCHEDULE):
            self._hold = None
            self._out = self._service_event(EventType.OUT_OF_SERVICE, frame, t, reason, SCHEDULE, SCHEDULE)
            return [self._out]
        if open_ and self._out is not None:
            self._resume(t)
            return [self._service_event(EventType.IN_SERVICE, frame, t, reason, SCHEDULE, SCHEDULE)]
        return []

    def _service_event(self, kind: EventType, frame: int, t: float, reason: str | None, by: str, via: str, override: bool | None = None, note: str | None = None, claimed_by: str | None = None) -> Event:
        """An event of the gate's service (a manual OPEN, OUT_OF_SERVICE, IN_SERVICE): who and how,
        no score, box or track; ``faces`` is how many are in front now."""
        return Event(kind, frame, t, None, self.id_factory(), None, len(self.faces), reason, None, by, via, override, note, claimed_by=claimed_by)

    def announce(self, event: Event) -> None:
        """``event`` has happened (the journal holds it): call ``when_opened`` for an OPEN,
        ``when_denied`` for a DENY. Whoever records the events calls it, after the journal. An
        OPEN that happened lets the door open for one PASSAGE (:meth:`Door.granted <gatekeeper.door.Door.granted>`)."""
        if event.event is EventType.OPEN:
            self.door.granted(event.t, event.track)
        callback = self.when_opened if event.event is EventType.OPEN else self.when_denied if event.event is EventType.DENY else None
        if callback is not None:
            callback(event)

    def restore_service(self, last: Event | None, *, scheduled: bool | None = None) -> None:
        """Start from the service state of the last OUT_OF_SERVICE/IN_SERVICE event of an earlier
        run (read back from the journal): a gate taken out of service stays out across a restart.
        ``scheduled``: what the opening hours said when ``last`` was made, if no boundary has
        passed since (an operator's override stands until the next one); None: the first
        :meth:`schedule` acts."""
        self._out = last if last is not None and last.event is EventType.OUT_OF_SERVICE else None
        self._scheduled = scheduled

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
            raise ValueError("gate.zone is set: Gate.decide() needs the frame size (width, height)")
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

    def _resume(self, t: float) -> None:
        """Back in service at ``t``: deny_after_s counts from now, not from before the pause."""
        self._out = None
        for person in self._people.values():
            if person.decided_t is not None:
                person.decided_t = t

    def _refuse(self, code: str, message: str) -> list[Event]:
        self.refusal = (code, message)
        return []

    def _event(self, kind: EventType, frame: int, t: float, score: float | None, box: Box | None, n: int, reason: str | None, track: int | None) -> Event:
        return Event(kind, frame, t, score, self.id_factory(), box, n, reason, track)
