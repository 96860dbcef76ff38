"""The door's own contact (``gate.sensor``): what the door did after the gate opened it.

Pure rules, no I/O and no clock: the gate owns a :class:`Door` (:attr:`Gate.door
<gatekeeper.gate.Gate.door>`), tells it of every OPEN that happened (:meth:`Door.granted`, from
:meth:`Gate.announce <gatekeeper.gate.Gate.announce>`, once the journal holds the OPEN), and the
frame loop hands it the contact's settled levels (:meth:`Door.sense`) and the passing of time
(:meth:`Door.tick`), each with the time ``t`` of the frame loop. The events it returns go the way
of every event: journal, hooks, sinks.

* **PASSAGE**: the door opened within ``passage_s`` of an OPEN: the guest went through. One
  passage per OPEN; the event carries the OPEN's track.
* **FORCED_OPEN**: the door opened with no OPEN before it, or after the passage window ended,
  or a second time on one OPEN.
* **HELD_OPEN**: the door is still open ``held_open_s`` after it opened; once per opening.
* **CLOSED**: the door closed again.
* an OPEN with no passage within ``passage_s`` (a guest who did not go through) is counted
  (:attr:`Door.unused`), not an event. So is an OPEN that a newer OPEN replaced before its
  door opened.

The first level read (at start) only sets the state: a door found open is timed for
HELD_OPEN from then, and neither forced nor a passage. Until then the state is ``unknown``.

:func:`settle` is the contact's debounce, pure as well: an edge counts once the level has held
for ``bounce_s``; the edges of a chattering contact in between are dropped.

>>> door = Door(DoorConfig(pin="GPIO22", passage_s=5, held_open_s=20), id_factory=iter("abcdef").__next__)
>>> door.sense(False, 0, 0.0)                     # the first reading: closed, no event
[]
>>> door.granted(10.0, track=3)                   # an OPEN for track 3 at t=10
>>> [(e.event.value, e.track) for e in door.sense(True, 40, 11.5)]
[('PASSAGE', 3)]
>>> [e.event.value for e in door.tick(900, 31.5)]  # still open 20 s later
['HELD_OPEN']
>>> [e.event.value for e in door.sense(False, 950, 33.0)] + [e.event.value for e in door.sense(True, 990, 40.0)]
['CLOSED', 'FORCED_OPEN']
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from .events import Event, EventType, new_event_id
from .schema import check_bounds, opt

__all__ = ["DOOR_EVENTS", "Door", "DoorConfig", "DoorState", "settle"]

#: The events a door's contact makes.
DOOR_EVENTS = (EventType.PASSAGE, EventType.FORCED_OPEN, EventType.HELD_OPEN, EventType.CLOSED)


class DoorState(str, enum.Enum):
    UNKNOWN = "unknown"  # no sensor, or not read yet
    OPEN = "open"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class DoorConfig:
    """The door's or turnstile's own position contact (``gate.sensor``)."""

    pin: str | None = opt(None, "gpiozero pin name of the door's contact, e.g. GPIO22 or BOARD15; null: no door sensor (the gate knows only its relay)")
    pull_up: bool = opt(True, "true: the contact connects the pin to ground (internal pull-up); false: to 3.3 V (internal pull-down)")
    open_when: Literal["contact_open", "contact_closed"] = opt(
        "contact_open", "contact_open: the contact is closed while the door is shut (a reed switch and its magnet; a cut wire reads as open); contact_closed: the reverse"
    )
    bounce_s: float = opt(0.05, "a level of the contact counts once it has held this long; shorter changes are contact bounce", ge=0, le=5)
    passage_s: float = opt(10.0, "the door opening within this many seconds of an OPEN is the guest's PASSAGE; later, or with no OPEN, it is FORCED_OPEN", gt=0)
    held_open_s: float = opt(30.0, "HELD_OPEN when the door is still open this many seconds after it opened", gt=0)
    pin_factory: Literal["auto", "mock"] = opt("auto", "auto: the board's own GPIO; mock: gpiozero's MockFactory (tests, demos)")

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.pin is not None and not self.pin.strip():
            raise ValueError("pin: expected a gpiozero pin name such as GPIO22, or null for no door sensor; got an empty string")

    @property
    def enabled(self) -> bool:
        return self.pin is not None


def settle(edges: Sequence[tuple[bool, float]], now: float, bounce_s: float) -> tuple[list[bool], list[tuple[bool, float]]]:
    """The levels among ``edges`` ((level, when), oldest first) that held for ``bounce_s``, in
    order, and the edges still settling at ``now`` (the last one, when it is younger than that).

    >>> settle([(True, 0.0), (False, 0.01), (True, 0.02)], now=0.05, bounce_s=0.05)   # still bouncing
    ([], [(True, 0.02)])
    >>> settle([(True, 0.02)], now=0.08, bounce_s=0.05)
    ([True], [])
    """
    levels = []
    for i, (level, at) in enumerate(edges):
        until = edges[i + 1][1] if i + 1 < len(edges) else now
        if until - at >= bounce_s:
            levels.append(level)
        elif i + 1 == len(edges):
            return levels, [(level, at)]
    return levels, []


class Door:
    """The door's state and its rules; see the module's description. ``unused`` counts the OPENs
    that saw no passage (``gatekeeper_open_without_passage_total``)."""

    def __init__(self, config: DoorConfig | None = None, *, id_factory: Callable[[], str] = new_event_id) -> None:
        self.config = config or DoorConfig()
        self.id_factory = id_factory
        self.state = DoorState.UNKNOWN
        self.since: float | None = None  # t of the last change of state
        self.unused = 0
        self._grant: tuple[float, int | None] | None = None  # (t, track) of the OPEN awaiting its passage
        self._held_reported = False

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    @property
    def held_open(self) -> bool:
        """The door is open and its HELD_OPEN has been said (until it closes)."""
        return self.state is DoorState.OPEN and self._held_reported

    def granted(self, t: float, track: int | None = None) -> None:
        """An OPEN happened at ``t`` (for ``track``): the door may now open for one passage."""
        if not self.enabled:
            return
        if self._grant is not None:
            self.unused += 1  # replaced before its door opened
        self._grant = (t, track)

    def sense(self, is_open: bool, frame: int, t: float) -> list[Event]:
        """The contact's settled level at ``t``: the door is open (True) or shut (False)."""
        new = DoorState.OPEN if is_open else DoorState.CLOSED
        if new is self.state:
            return []
        first, self.state, since, self.since = self.state is DoorState.UNKNOWN, new, self.since, t
        self._held_reported = False
        if first:
            return []
        events = self.tick(frame, t)  # a passage window that ended before this edge
        if new is DoorState.CLOSED:
            event = self._event(EventType.CLOSED, frame, t, f"open for {t - since:.1f} s" if since is not None else None)
        elif self._grant is not None:
            (granted_t, track), self._grant = self._grant, None
            event = self._event(EventType.PASSAGE, frame, t, f"opened {t - granted_t:.1f} s after the OPEN", track)
        else:
            event = self._event(EventType.FORCED_OPEN, frame, t, f"opened with no unused OPEN in the last {self.config.passage_s:g} s (gate.sensor.passage_s)")
        return [*events, event]

    def tick(self, frame: int, t: float) -> list[Event]:
        """Time has passed to ``t``: an OPEN's passage window may end, a door held open says so."""
        if self._grant is not None and t - self._grant[0] > self.config.passage_s:
            self._grant = None
            self.unused += 1
        if self.state is DoorState.OPEN and not self._held_reported and self.since is not None and t - self.since >= self.config.held_open_s:
            self._held_reported = True
            return [self._event(EventType.HELD_OPEN, frame, t, f"open for {t - self.since:.1f} s (gate.sensor.held_open_s={self.config.held_open_s:g})")]
        return []

    def _event(self, kind: EventType, frame: int, t: float, reason: str | None, track: int | None = None) -> Event:
        return Event(kind, frame, t, None, self.id_factory(), None, 0, reason, track)
