"""The door's contact on a GPIO input (``gate.sensor``): read with gpiozero, applied by the frame loop.

gpiozero calls :meth:`DoorContact._edge` on its own thread at every change of the pin; the edge
is only queued there, with the time it came (``time.monotonic()``). The camera's frame loop
calls :meth:`DoorContact.apply` before each frame and on every idle poll, as it does for the
operator actions: the edges that have settled (:func:`~gatekeeper.door.settle`: held for
``bounce_s``) go to the gate's door (:attr:`Gate.door <gatekeeper.gate.Gate.door>`) with the
frame loop's time, then the time itself (held open, an OPEN's passage window), and the events
that come of it go journal first, hooks after, like every other event. The contact is an input
of the gate, never a side channel around it.

Debouncing is done here, the same on every pin driver (gpiozero's mock has none, and a driver
that drops the edges within its bounce time may miss the last one); gpiozero's own
``bounce_time`` is left off. FORCED_OPEN and HELD_OPEN are alarms: each is also a WARNING in
the log.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .door import DoorConfig, DoorState, settle
from .events import Event, EventType

if TYPE_CHECKING:
    from .gate import Gate

__all__ = ["ALARMS", "DoorContact"]

log = logging.getLogger(__name__)

#: Door events that are alarms (a WARNING each): what a door controller would sound for.
ALARMS = (EventType.FORCED_OPEN, EventType.HELD_OPEN)
#: Edges kept between two turns of the frame loop; a contact chattering faster loses its oldest (the last level is what counts).
MAX_EDGES = 1024


class DoorContact:
    """The contact of ``config`` (its ``pin`` set) on gpiozero's ``DigitalInputDevice``.

    Raises :class:`~gatekeeper.errors.HookError` when the pin cannot be used (one line naming
    ``gate.sensor.pin``). ``name``: the camera's, for the log.
    """

    def __init__(self, config: DoorConfig, *, name: str = "gate", clock: Callable[[], float] = time.monotonic) -> None:
        if config.pin is None:
            raise ValueError("DoorContact needs gate.sensor.pin")
        self.config = config
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._edges: collections.deque[tuple[bool, float]] = collections.deque(maxlen=MAX_EDGES)
        self.edges = 0  # edges gpiozero reported, bounce included
        self.bounces = 0  # edges dropped as bounce
        self.device = _contact_device(config)
        self.device.when_activated = lambda: self._edge(True)
        self.device.when_deactivated = lambda: self._edge(False)
        self.initial = self.door_open(bool(self.device.is_active))  # the level found at start (True: open), for the hooks

    def door_open(self, contact_closed: bool) -> bool:
        """Whether the door is open when the contact is closed (``contact_closed``) or not."""
        return contact_closed if self.config.open_when == "contact_closed" else not contact_closed

    # -- gpiozero's thread -------------------------------------------------------------------
    def _edge(self, contact_closed: bool) -> None:
        now = self._clock()
        with self._lock:
            self.edges += 1
            self._edges.append((self.door_open(contact_closed), now))

    # -- the frame loop ----------------------------------------------------------------------
    def apply(self, gate: Gate, frame: int, t: float, emit: Callable[[list[Event]], Any]) -> None:
        """The settled levels to ``gate.door``, then the time ``t``; the events to ``emit``."""
        door = gate.door
        first = None
        with self._lock:
            if door.state is DoorState.UNKNOWN:  # the first turn: the level now, whatever came before it
                first = self.door_open(bool(self.device.is_active))
                self._edges.clear()
            edges = list(self._edges)
            self._edges.clear()
        levels, pending = settle(edges, self._clock(), self.config.bounce_s) if edges else ([], [])
        if pending:
            with self._lock:
                self._edges.extendleft(reversed(pending))  # before any edge that came meanwhile
        self.bounces += len(edges) - len(levels) - len(pending)
        events = door.sense(first, frame, t) if first is not None else []  # the state only: no event
        for level in levels:
            events += door.sense(level, frame, t)
        events += door.tick(frame, t)
        if not events:
            return
        for e in events:
            if e.event in ALARMS:
                log.warning("camera %s: door %s: %s", self.name, e.event.value.lower().replace("_", " "), e.reason)
            else:
                log.debug("camera %s: door %s: %s", self.name, e.event.value, e.reason)
        emit(events)

    def close(self) -> None:
        self.device.close()


def _contact_device(config: DoorConfig) -> Any:
    """gpiozero's ``DigitalInputDevice`` of ``config`` (imported here: a gate without a door sensor never loads gpiozero)."""
    from gpiozero import DigitalInputDevice

    from .pins import gpio_input

    return gpio_input(DigitalInputDevice, config, bounce_time=None, name="gate.sensor.pin", what="the door's contact")
