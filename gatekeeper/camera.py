"""One camera of a service: its source, tracks, gate, hook dispatcher and live state.

    source (its own thread) --newest frame--> Camera loop (its own thread) --> gate --> journal, hooks
                                                 |  detect, classify
                                                 v
                                   FairScheduler (model workers shared by every camera)

A :class:`Camera` runs its frame loop on a thread of its own: it takes the newest frame of its
source, has the shared models score it (a lane of the service's
:class:`~gatekeeper.scheduler.FairScheduler`), and feeds its own pipeline's tracker and gate
(:class:`~gatekeeper.pipeline.Pipeline`); the events go to its own dispatcher (the service's
one journal first, then the camera's hooks) and sinks, each stamped with the camera's name.

Faults stay per camera: a source that stops delivering holds only its own gate shut (FAULT after
``source.watchdog_s``), and its loop goes on polling while the others run. What holds a gate
shut, and for how many causes at once, is the gate's own bookkeeping (:meth:`Gate.fault
<gatekeeper.gate.Gate.fault>`); the camera only says which cause began or ended.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from .actions import Controls
from .capture import Frame
from .capture_file import FileSource
from .capture_live import LiveSource
from .contact import DoorContact
from .errors import FrameError
from .events import Event
from .hours import SCHEDULE, HoursClock
from .redact import redact_text
from .users import shared_users
from .worker import Threaded, Worker

if TYPE_CHECKING:
    from .config import Config
    from .gate import Gate
    from .hooks.dispatch import Dispatcher
    from .pipeline import Pipeline

__all__ = ["Camera", "EventSink"]

log = logging.getLogger(__name__)


class EventSink(Protocol):
    """Where a camera's events go after the journal and the hooks (stdout, the live view, a report)."""

    def emit(self, event: Event) -> None: ...

    def close(self) -> None: ...


class Camera(Threaded):
    """A running gate on one source: its pipeline (tracks and gate), dispatcher and sinks.

    >>> cam = Camera("lane1", cfg, pipeline, [StdoutSink()], dispatcher=dispatcher)  # doctest: +SKIP
    >>> cam.run(FileSource("clip.mp4"))                                              # doctest: +SKIP
    >>> cam.close()                                                                  # doctest: +SKIP

    Each event is stamped with the camera's ``name`` and goes to the ``dispatcher`` (journal,
    then hooks) before any sink sees it. ``stopping`` is the service's stop event, shared by
    every camera. :meth:`start` runs :meth:`run` on a thread of the camera's own.

    Operator actions for this camera wait on ``controls``' queue (any thread submits); only the
    camera's own loop applies them, before each frame and on every idle poll of a live source.
    The camera's service state of the last run is read back from the journal at start.
    """

    def __init__(
        self,
        name: str,
        cfg: Config,
        pipeline: Pipeline,
        sinks: Iterable[EventSink] = (),
        on_frame: Callable[[Frame, Any], None] | None = None,
        *,
        dispatcher: Dispatcher | None = None,
        source: FileSource | LiveSource | Iterable[Frame] | None = None,
        stopping: threading.Event | None = None,
        controls: Controls | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.pipeline = pipeline
        self.sinks = list(sinks)
        self.dispatcher = dispatcher
        self.source = source
        self.stopping = stopping if stopping is not None else threading.Event()
        self.on_frame = on_frame
        self.frames = 0
        self.events: dict[str, int] = {}
        self.ended: str | None = None  # why the frames ended ("source ended", "stopped"); None while running
        self.error: BaseException | None = None  # what ended the loop of start() with an error
        # time.monotonic() of the frame loop's last turn (a frame, or an idle poll of a live
        # source); None before it starts. The systemd watchdog reads it (gatekeeper.notify).
        self.turned: float | None = None
        self.controls = controls if controls is not None else Controls(cfg.actions, users=shared_users(cfg.http.users))
        self.door: DoorContact | None = None  # the door's contact (gate.sensor), once start_door() has claimed its pin
        self._sinks_closed = False
        self._last_t = 0.0  # the time of the last frame (actions after the end are placed after it)
        # The opening hours (service.hours), asked at the wall clock ``clock`` on every turn of the loop.
        self._clock = clock
        self.hours = HoursClock(cfg.service.hours) if cfg.service.hours is not None else None
        if self.hours is not None:
            self.hours.at(clock())  # what the page and /status show before the loop's first turn
        self._restore_service()

    def _restore_service(self) -> None:
        journal = self.dispatcher.journal if self.dispatcher is not None else None
        if journal is not None:
            self.controls.remember_ids(journal, self.name)  # a command replayed after a restart is a repeat
        last = journal.last_service(self.name) if journal is not None else None
        scheduled = None
        if self.hours is not None and last is not None and last[0].via != SCHEDULE:
            now = self._clock()
            if last[1] <= now < self.hours.hours.next_boundary(last[1]):
                scheduled = self.hours.at(now)[0]  # an operator's override since the last boundary stands
        self.pipeline.gate.restore_service(None if last is None else last[0], scheduled=scheduled)
        out = self.pipeline.gate.out_of_service
        if out is not None and out.via == SCHEDULE:
            log.info("camera %s: out of service since an earlier run (%s); the opening hours say what comes next", self.name, out.reason)
        elif out is not None:
            note = f" ({out.note})" if out.note else ""
            log.warning("camera %s: the gate is out of service since an earlier run (by %s via %s%s); it stays shut until an in_service action", self.name, out.by, out.via, note)

    @property
    def gate(self) -> Gate:
        return self.pipeline.gate

    def emit(self, events: list[Event]) -> list[Event]:
        """Stamped with the camera's name, to the journal and hooks first, then the gate's
        ``when_*`` callbacks and the sinks; returns the events that happened (an OPEN the journal
        could not record under ``fail_closed`` does not)."""
        done = []
        for e in events:
            if e.camera is None:
                e = dataclasses.replace(e, camera=self.name)
            if self.dispatcher is not None and not self.dispatcher.emit(e):
                continue  # an OPEN the journal could not record: it does not happen (fail_closed)
            done.append(e)
            self.pipeline.gate.announce(e)  # when_opened: the journal holds the event by now
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

    # -- faults --------------------------------------------------------------------------------
    def _fault(self, cause: str, frame: int, t: float, reason: str) -> None:
        """Hold the gate shut for ``cause`` (the gate makes one FAULT per episode, however many
        causes overlap). ``reason`` goes out with its secrets masked (a camera URL's password):
        it reaches the journal, the hooks, the page and ``/status``."""
        self.emit(self.pipeline.gate.fault(frame, t, redact_text(reason), cause=cause))

    def _recover(self, cause: str, frame: int, t: float, reason: str) -> None:
        """``cause`` is over; the gate says RECOVERED once nothing else holds it shut."""
        gate = self.pipeline.gate
        if cause not in gate.faults:
            return
        self.emit(self.pipeline.recover(frame, t, reason, cause=cause))
        if gate.faulted:
            log.info("%s: %s recovered (%s); the gate stays shut: %s", self.name, cause, reason, "; ".join(gate.faults.values()))

    def _watch_journal(self, frame: int, t: float) -> None:
        d = self.dispatcher
        if d is None or d.on_error != "fail_closed":
            return
        problem, faults = d.journal_fault, self.pipeline.gate.faults
        if problem is not None and "journal" not in faults:
            self._fault("journal", frame, t, f"journal cannot write: {problem}")
        elif problem is None and "journal" in faults:
            self._recover("journal", frame, t, "journal writable again")

    # -- the frame loop ------------------------------------------------------------------------
    def _act(self, frame: int, t: float) -> None:
        if self.hours is not None:  # a boundary passed: the schedule's events before the operators'
            open_, _, reason = self.hours.at(self._clock())
            events = self.pipeline.gate.schedule(open_, frame, t, reason)
            if events:
                log.info("camera %s: %s: %s", self.name, reason, ", ".join(e.event.value for e in events))
                self.emit(events)
        self.controls.apply(self.pipeline.gate, frame, t, self.emit)
        if self.door is not None:  # the door's contact: its settled edges, then the time (held open, passage windows)
            self.door.apply(self.pipeline.gate, frame, t, self.emit)

    def start_door(self) -> None:
        """Claim the door's contact of ``gate.sensor`` (nothing when its pin is null) and tell the
        hooks that show the door (MQTT's state topic) the level found; raises
        :class:`~gatekeeper.errors.HookError` for a pin that cannot be used. Call before the hooks start."""
        if not self.cfg.gate.sensor.enabled or self.door is not None:
            return
        self.door = DoorContact(self.cfg.gate.sensor, name=self.name)
        for hook in self.dispatcher.hooks if self.dispatcher is not None else ():
            if hasattr(hook, "set_door"):
                hook.set_door("open" if self.door.initial else "closed")

    def serve_actions(self, seconds: float) -> None:
        """After the frames have ended (``--hold-open``): keep applying operator actions for
        ``seconds`` or until a stop is requested, at times running on from the last frame."""
        start = time.monotonic()
        while not self.stopping.wait(0.05):
            elapsed = time.monotonic() - start
            self._act(max(self.frames - 1, 0), self._last_t + elapsed)
            if elapsed >= seconds:
                return

    def step(self, frame: Frame) -> None:
        """Pending operator actions, then one frame through the pipeline (detect and classify on
        the shared models), then the gate's events out."""
        self._act(frame.index, frame.t)
        self._last_t = frame.t
        self.emit(self.pipeline.process(frame))
        self._watch_journal(frame.index, frame.t)
        self.frames += 1
        if self.on_frame is not None:
            self.on_frame(frame, self.pipeline)

    def run(self, source: FileSource | LiveSource | Iterable[Frame] | None = None) -> None:
        """Process frames until the source ends or a stop is requested (on the calling thread).

        ``source``: a :class:`LiveSource`, or any finite iterable of frames (a :class:`FileSource`);
        by default the camera's own. An unexpected error in a stage fails closed: a FAULT event
        says why (so the relay is forced off and receivers know), then the error propagates.
        """
        source = self.source if source is None else source
        if source is None:
            raise ValueError(f"camera {self.name!r} has no source")
        try:
            self.turned = time.monotonic()
            if isinstance(source, LiveSource):
                self._run_live(source)
            else:
                for frame in source:
                    self.turned = time.monotonic()
                    if self.stopping.is_set():
                        break
                    self.step(frame)
        except Exception as exc:
            self._fault("internal", self.frames, time.time(), f"internal error: {type(exc).__name__}: {exc}")
            raise
        finally:
            self.ended = "stopped" if self.stopping.is_set() else "source ended"
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _run_live(self, source: LiveSource) -> None:
        # The watchdog counts from the last frame that went through: frames that arrive but do
        # not decode (a JPEG header over damaged data) are no frames, and the FAULT says so.
        last_good = time.monotonic()
        last_index = -1
        for frame in source.frames(poll_s=min(0.1, self.cfg.source.watchdog_s / 4)):
            if self.stopping.is_set():
                break
            now = self.turned = time.monotonic()
            if frame is not None:
                last_index = frame.index
                if self._take(source, frame):
                    last_good = now
                    # Nobody in view: the frames before the pipeline's next look need not even be decoded.
                    source.skip_until = self.pipeline.next_look() or 0.0
                    continue
            self._idle(source, now - last_good, max(last_index, 0))
        if source.status.ended and "source" not in self.pipeline.gate.faults:
            self._fault("source", max(last_index, 0), time.time(), source.status.fault or "source ended")

    def _take(self, source: LiveSource, frame: Frame) -> bool:
        """``frame`` through the pipeline, after the recovery from a source fault if there is one;
        False (the frame skipped and counted) when its picture cannot be decoded."""
        try:
            if "source" in self.pipeline.gate.faults:
                frame.image  # noqa: B018  (a recovery needs a frame that decodes; the pipeline reuses the picture)
                self._recover("source", frame.index, frame.t, "frames arriving again")
            self.step(frame)
        except FrameError as exc:  # a JPEG with a sound header and damaged data: the next frame may do
            source.frame_failed(frame, "damaged JPEG data")
            log.debug("camera %s: %s; skipped", self.name, exc)
            return False
        source.frame_decoded()
        return True

    def _idle(self, source: LiveSource, since_good: float, frame: int) -> None:
        """No frame went through: the watchdog (no frame for ``source.watchdog_s`` holds the gate
        shut and says why: what the source knows, or that its data cannot be decoded), the
        journal's health and pending operator actions."""
        watchdog_s = self.cfg.source.watchdog_s
        if since_good >= watchdog_s and "source" not in self.pipeline.gate.faults:
            reason = source.undecodable_fault(watchdog_s) or source.status.fault or f"no frame for {watchdog_s:g} s"
            self._fault("source", frame, time.time(), reason)
        self._watch_journal(frame, time.time())
        self._act(frame, time.time())

    # -- on a thread of its own ----------------------------------------------------------------
    def start(self) -> None:
        """Run :meth:`run` on the camera's own thread; an error ends only this camera (see :attr:`error`)."""

        def loop() -> None:
            try:
                self.run()
            except BaseException as exc:  # kept for the service, which reports it and exits non-zero
                self.error = exc
                log.error("camera %s stopped: %s: %s", self.name, type(exc).__name__, exc)

        self._worker = Worker(loop, f"camera-{self.name}", stopping=self.stopping)
        self._worker.start()

    def close_sinks(self) -> None:
        """Tell the sinks the frames have ended (once; :meth:`close` does it too). Events that
        follow (operator actions during ``--hold-open``) still reach them."""
        if self._sinks_closed:
            return
        self._sinks_closed = True
        for sink in self.sinks:
            sink.close()

    def close(self, timeout: float = 5.0, *, close_journal: bool = True) -> None:
        """Tell the sinks the run is over, then close the hooks (and the journal, unless shared) within ``timeout``.

        After a stop on request (SIGINT/SIGTERM) the hooks are interrupted: the relay goes shut
        at once. After the end of a finite source they finish in order (a pulse runs out).
        """
        self.controls.stop()
        if self.door is not None:
            self.door.close()
        try:
            self.close_sinks()
        finally:
            try:
                if self.dispatcher is not None:
                    self.dispatcher.close(timeout, interrupt=self.stopping.is_set(), close_journal=close_journal)
            finally:
                self.pipeline.close()
