"""The live state of one camera, as the page, ``/status``, ``/healthz`` and ``/metrics`` show it.

A :class:`LiveView` watches one :class:`~gatekeeper.camera.Camera` it is given when it is made.
The camera's thread calls it (:meth:`LiveView.on_frame`, :meth:`LiveView.emit`,
:meth:`LiveView.observe_stage`) right after the gate has moved, and the view takes what the gate
shows there and then: its state, its faces and the deciding face's score. The state is the
gate's own (:attr:`Gate.state <gatekeeper.gate.Gate.state>`: a fault before out of service before
the rest); the view never works it out again. The server's thread only reads what was taken.

A FAULT clears the faces and the score (:meth:`LiveView.emit`, the one place): from then on
there is no picture to trust, so the page and ``/status`` show no score, no face and no box until
a frame arrives with its own.

Times. ``t`` in the state and the events is the source's own time: the position in a video file,
the wall clock (Unix seconds) for a live source. Each also carries ``elapsed``, seconds since the
start (a file: the same as ``t``; a live source: since the first frame or event the view saw), and
``wall``, the wall clock for a live source (null for a file).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..events import Event, EventType
from ..gate import GateState
from ..hours import SCHEDULE
from ..pipeline import STAGES
from .hub import EventHub
from .metrics import Metrics
from .snapshot import Snapshot

if TYPE_CHECKING:
    from ..camera import Camera
    from ..capture import Frame, SourceStatus
    from ..hooks.base import Hook

__all__ = ["LiveView"]


class LiveView:
    """What one camera shows: the newest frame with its faces, the gate's state, counters, events.

    >>> camera = service.add_camera(cam_cfg, source, [stdout, watchers])       # doctest: +SKIP
    >>> view = LiveView(camera, source_status=source.status, metrics=metrics)  # doctest: +SKIP
    >>> watchers.add(view)  # the camera's events, frames and stage times reach it from now on

    ``source_status``: the counters of the camera's source (zero without). ``live``: the source
    is a camera or stream, whose times are the wall clock (see the module's "Times").
    ``metrics``: the registry the service's cameras share (default: one of the view's own).
    """

    def __init__(
        self,
        camera: Camera,
        *,
        source_status: SourceStatus | None = None,
        live: bool = False,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.camera = camera
        self.name = camera.name
        self.cfg = camera.cfg
        self.controls = camera.controls
        self.source_status = source_status
        self.live = live
        self.hub = EventHub(self.cfg.http.event_queue, self.cfg.http.recent_events)
        self._clock = clock
        self.started_at = clock()
        self.frames_processed = 0
        self.events_by_type: dict[str, int] = {e.value: 0 for e in EventType}
        self.ended = False
        self._lock = threading.Lock()
        # What the camera's thread took from the gate (read under _lock on the server's side).
        self._t0: float | None = None  # a live source's start: the first frame's or event's time
        self._snapshot: Snapshot | None = None
        self._last_frame_at: float | None = None
        self._state: str
        self._faults: dict[str, str]
        self._out: Event | None
        self._door: dict[str, Any] | None  # the door's contact (gate.sensor), None without one
        self._take_state()  # the camera has not started: this thread may read its gate

        self.metrics = Metrics(clock) if metrics is None else metrics
        self.registry = self.metrics.registry
        m = self.metrics
        self._stage_children = {st: m.stage.labels(self.name, st) for st in STAGES}
        self._event_children = {e.value: m.events.labels(self.name, e.value) for e in EventType}  # every type shows, at 0
        self._score = m.score.labels(self.name)
        self._last_open = m.last_open.labels(self.name)  # 0 until the first OPEN
        self._score.set(float("nan"))
        self._state_shown: str | None = None
        self._state_children = {st.value: m.state.labels(self.name, st.value) for st in GateState}
        self._set_state(self._state)
        m.add(self)

    @property
    def hooks(self) -> tuple[Hook, ...]:
        dispatcher = self.camera.dispatcher
        return tuple(dispatcher.hooks) if dispatcher is not None else ()

    @property
    def journal_errors(self) -> int:
        return self.camera.journal_errors

    # -- called on the camera's thread -------------------------------------------------------
    def observe_stage(self, stage: str, seconds: float) -> None:
        """A :class:`~gatekeeper.pipeline.StageTimes` observer: one histogram sample."""
        child = self._stage_children.get(stage)
        if child is not None:
            child.observe(seconds)

    def on_frame(self, frame: Frame, pipeline: Any = None) -> None:
        """Hand the newest frame over (one slot: an unsent older frame is simply replaced), with
        the faces and the score the gate gave it."""
        gate = self.camera.gate
        faces, score = tuple(gate.faces), gate.last_score
        with self._lock:
            if self._t0 is None:
                self._t0 = frame.t
            seq = self._snapshot.seq + 1 if self._snapshot else 0
            self._snapshot = Snapshot(seq, frame, faces, score)
            self._last_frame_at = self._clock()
            self.frames_processed += 1
            self._take_state()
            state = self._state
        self._score.set(float("nan") if score is None else score)
        self._set_state(state)

    def emit(self, event: Event) -> None:
        """Event sink: count it, take the gate's state after it, and queue it for the clients.

        A FAULT clears the faces and the score of the last frame: until a frame arrives with its
        own, there is none to show (the picture stays, without boxes)."""
        kind = event.event.value
        fault = event.event is EventType.FAULT
        with self._lock:
            if self._t0 is None:
                self._t0 = event.t
            self.events_by_type[kind] = self.events_by_type.get(kind, 0) + 1
            self._take_state()
            if fault and self._snapshot is not None:
                snap = self._snapshot
                self._snapshot = dataclasses.replace(snap, seq=snap.seq + 1, faces=(), score=None)
            state = self._state
        child = self._event_children.get(kind)
        (child if child is not None else self.metrics.events.labels(self.name, kind)).inc()
        if event.event is EventType.OPEN:
            self._last_open.set_to_current_time()  # the wall clock, whatever the source's time is
        if fault:
            self._score.set(float("nan"))
        self._set_state(state)
        self.hub.publish({**event.to_dict(), **self.times(event.t)})

    def close(self) -> None:
        """Event sink: the source has ended (the server may stay up; health says so)."""
        self.ended = True

    def _take_state(self) -> None:
        """The gate's state, faults and service state now (hold ``_lock``, on the camera's thread)."""
        gate = self.camera.gate
        self._state, self._faults, self._out = gate.state.value, gate.faults, gate.out_of_service
        door = gate.door
        self._door = None if not door.enabled else {
            "state": door.state.value,
            "since": None if door.since is None else round(door.since, 4),
            "held_open": door.held_open,
            "open_without_passage": door.unused,
        }

    def _set_state(self, state: str) -> None:
        if state == self._state_shown:
            return  # the common case on the frame loop: nothing to touch
        self._state_shown = state
        for value, child in self._state_children.items():
            child.set(1 if value == state else 0)

    def times(self, t: float) -> dict[str, float | None]:
        """``elapsed`` (seconds since the start) and ``wall`` (Unix seconds, live sources only) of source time ``t``."""
        if not self.live:
            return {"elapsed": round(t, 3), "wall": None}
        t0 = t if self._t0 is None else self._t0
        return {"elapsed": round(t - t0, 3), "wall": round(t, 3)}

    # -- read by the server ------------------------------------------------------------------
    def snapshot(self) -> Snapshot | None:
        with self._lock:
            return self._snapshot

    def health(self) -> tuple[bool, str]:
        """(healthy, why): frames arrived within ``source.watchdog_s``, no FAULT is open, and the
        camera has no other trouble (the journal cannot write, the frames have ended)."""
        with self._lock:
            last, faults = self._last_frame_at, self._faults
        if faults:
            return False, "fault: " + "; ".join(faults.values())
        trouble = self.camera.trouble()
        if trouble is not None:
            return False, trouble
        if last is None:
            return False, "no frame yet"
        age = self._clock() - last
        if self.ended or age > self.cfg.source.watchdog_s:  # ended: at once, not after watchdog_s
            return False, f"source ended; last frame {age:.1f} s ago" if self.ended else f"no frame for {age:.1f} s"
        return True, "ok"

    def service(self) -> dict[str, Any]:
        """Whether the gate is in service and, when not, who took it out, how and why (``via:
        schedule``: the opening hours, and ``reason`` theirs)."""
        with self._lock:
            out = self._out
        if out is None:
            return {"in_service": True, "by": None, "via": None, "reason": None, "event": None}
        return {"in_service": False, "by": out.by, "via": out.via, "reason": out.note if out.via != SCHEDULE else out.reason, "event": out.id}

    def hours(self) -> dict[str, Any] | None:
        """With opening hours (``service.hours``): whether they are open now, until when (Unix
        seconds; null: never) and the line the page shows; None without them."""
        clock = getattr(self.camera, "hours", None)
        last = None if clock is None else clock.last
        if last is None:
            return None
        return {"open": last[0], "until": None if math.isinf(last[1]) else round(last[1], 3), "reason": last[2]}

    def door(self) -> dict[str, Any] | None:
        """The door's contact (``gate.sensor``): its state (open, closed, unknown before its first
        reading), since when (source time), whether it is held open past ``held_open_s``, and the
        OPENs with no passage; None without a sensor."""
        with self._lock:
            return self._door

    def live_state(self) -> dict[str, Any]:
        """The small, often-sent part of the status: what the page redraws."""
        with self._lock:
            snap, state, door = self._snapshot, self._state, self._door
        healthy, why = self.health()
        service = self.service()
        return {
            "state": state,
            "score": None if snap is None or snap.score is None else round(snap.score, 4),
            "faces": [] if snap is None else [[round(v, 1) for v in f.box] + [round(f.score, 4)] for f in snap.faces],
            "frame": None if snap is None else snap.frame,
            "t": None if snap is None else round(snap.t, 3),
            **(self.times(snap.t) if snap is not None else {"elapsed": None, "wall": None}),
            "live": self.live,
            "healthy": healthy,
            "health": why,
            "ended": self.ended,
            "in_service": service["in_service"],
            "door": door,
            "service": service,
            "hours": self.hours(),
            # The page shows its controls when the server takes actions at all (a token or users are set);
            # with users, a browser signed in by HTTP Basic acts as its user, with no token.
            "controls": bool(self.cfg.http.token or self.cfg.http.users),
            "named_operators": self.cfg.http.users is not None,
        }

    def status(self) -> dict[str, Any]:
        """Everything ``/status`` reports."""
        st = self.source_status
        with self._lock:
            events = dict(self.events_by_type)
            processed = self.frames_processed
        return {
            "name": self.name,
            **self.live_state(),
            "uptime_s": round(self._clock() - self.started_at, 3),
            "frames": {
                "read": st.read if st else 0,
                "processed": processed,
                "dropped": st.dropped if st else 0,
                "skipped": st.skipped if st else 0,
            },
            "reconnects": st.reconnects if st else 0,
            "source_fault": st.fault if st else None,
            "events": events,
            "hooks": {h.name: dataclasses.asdict(h.stats) for h in self.hooks},
            "thresholds": {"enter": self.cfg.gate.enter_threshold, "exit": self.cfg.gate.exit_threshold},
            "actions": self.controls.stats.snapshot(),
        }
