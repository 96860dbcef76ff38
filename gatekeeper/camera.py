"""One camera of a service: its source, tracks, gate, hook dispatcher and live state.

    source (its own thread) --newest frame--> Camera loop (its own thread) --> gate --> journal, hooks
                                                 |  detect, classify
                                                 v
                                   FairScheduler (one worker for every camera)

A :class:`Camera` runs its frame loop on a thread of its own: it takes the newest frame of its
source, has the shared models score it, and feeds its own :class:`~gatekeeper.gate.Gate`; the
events go to its own dispatcher (the service's one journal first, then the camera's hooks) and
sinks, each stamped with the camera's name. Detection and classification are not the camera's:
the service gives every camera a :class:`Lane` of one :class:`FairScheduler`, whose one worker
runs the models for the cameras in turn.

Why a scheduler and not a shared queue. Each lane holds at most one job, the camera's current
frame (a camera waits for its result before it takes its next frame, and a live source keeps only
the newest one meanwhile, counting the drops). The worker serves the lanes round-robin, so a
camera that floods (a file replayed as fast as it decodes, a stream at 60 fps) gets one turn per
round like every other, and a camera that freezes or hangs up simply has no job: the others'
frames never wait behind its backlog, as they would in one FIFO shared by all. A camera's wait
for its turn is bounded by one job of each other camera.

Faults stay per camera: a source that stops delivering holds only its own gate shut (FAULT after
``source.watchdog_s``), and its loop goes on polling while the others run.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .actions import Controls
from .capture import FileSource, Frame, LiveSource
from .errors import FrameError
from .gate import Event
from .redact import redact_text

if TYPE_CHECKING:
    import numpy as np

    from .app import Pipeline
    from .classify import SmileClassifier
    from .config import Config
    from .detect import Face, FaceDetector
    from .hooks.dispatch import Dispatcher

__all__ = ["Camera", "FairScheduler", "Lane", "SharedClassifier", "SharedDetector"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...

    def close(self) -> None: ...


# -- the shared models --------------------------------------------------------------------------


class SchedulerClosedError(RuntimeError):
    """The scheduler stopped before it ran the job (the service is shutting down)."""


class Lane:
    """One camera's place at the :class:`FairScheduler`: a slot for one job at a time."""

    def __init__(self, scheduler: FairScheduler, name: str) -> None:
        self.scheduler = scheduler
        self.name = name
        self.jobs = 0  # jobs run for this lane (only grows)
        self.waited_s = 0.0  # seconds its jobs waited for their turn, all together
        self._job: Callable[[], Any] | None = None  # waiting for its turn
        self._busy = False  # a job of this lane is waiting or running
        self._queued_at = 0.0
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the scheduler's worker, in this lane's turn, and return what it returns.

        Only the lane's camera calls it, one job at a time; it blocks until the job has run.
        """
        sched = self.scheduler
        with sched._cond:
            if sched._closing:
                raise SchedulerClosedError("the model scheduler is closed")
            if self._busy:
                raise RuntimeError(f"lane {self.name!r} already has a job; one caller per lane")
            self._done.clear()
            self._job, self._busy, self._queued_at = fn, True, time.perf_counter()
            sched._cond.notify()
        self._done.wait()
        error, result = self._error, self._result
        self._error = self._result = None
        if error is not None:
            raise error
        return result  # type: ignore[no-any-return]


class FairScheduler:
    """One worker thread that runs the shared models' jobs of every lane, round-robin.

    >>> sched = FairScheduler()
    >>> lane = sched.lane("lane1")
    >>> lane.call(lambda: 6 * 7)
    42
    >>> sched.close()
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._lanes: list[Lane] = []
        self._next = 0  # where the next round-robin search starts
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="models", daemon=True)
        self._thread.start()

    def lane(self, name: str) -> Lane:
        with self._cond:
            lane = Lane(self, name)
            self._lanes.append(lane)
            return lane

    def _take(self) -> Lane | None:
        """The next lane with a job, after the last one served (hold ``_cond``)."""
        n = len(self._lanes)
        for k in range(n):
            lane = self._lanes[(self._next + k) % n]
            if lane._job is not None:
                self._next = (self._next + k + 1) % n
                return lane
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                lane = self._take()
                while lane is None and not self._closing:
                    self._cond.wait()
                    lane = self._take()
                if lane is None:
                    return
                job, lane._job = lane._job, None
                lane.waited_s += time.perf_counter() - lane._queued_at
            assert job is not None
            try:
                lane._result = job()
            except BaseException as exc:  # handed to the camera's thread, which raises it there
                lane._error = exc
            with self._cond:
                lane._busy = False
                lane.jobs += 1
            lane._done.set()

    def close(self, timeout: float = 5.0) -> None:
        """Run no new job; jobs already taken finish, waiting ones fail with :class:`SchedulerClosedError`."""
        with self._cond:
            self._closing = True
            for lane in self._lanes:
                if lane._job is not None:
                    lane._job, lane._busy = None, False
                    lane._error = SchedulerClosedError("the model scheduler closed before this job ran")
                    lane._done.set()
            self._cond.notify_all()
        self._thread.join(timeout)


class SharedDetector:
    """A camera's view of the one shared face detector: each call waits for the camera's turn."""

    def __init__(self, detector: FaceDetector, lane: Lane) -> None:
        self.detector = detector
        self.lane = lane

    def detect(self, image_rgb: np.ndarray, t: float | None = None) -> list[Face]:
        return self.lane.call(lambda: self.detector.detect(image_rgb, t))

    def close(self) -> None:
        """Nothing: the service closes the shared detector once every camera has stopped."""


class SharedClassifier:
    """A camera's view of the one shared smile classifier (see :class:`SharedDetector`)."""

    def __init__(self, classifier: SmileClassifier, lane: Lane) -> None:
        self.classifier = classifier
        self.lane = lane

    def predict(self, chips: np.ndarray) -> np.ndarray:
        return self.lane.call(lambda: self.classifier.predict(chips))


# -- the camera ---------------------------------------------------------------------------------


class Camera:
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
        self._faults: dict[str, str] = {}  # what holds the gate shut: "source", "journal" -> reason
        self._thread: threading.Thread | None = None
        self.controls = controls if controls is not None else Controls(cfg.actions, token=cfg.http.token)
        self._sinks_closed = False
        self._last_t = 0.0  # the time of the last frame (actions after the end are placed after it)
        self._restore_service()

    def _restore_service(self) -> None:
        journal = self.dispatcher.journal if self.dispatcher is not None else None
        if journal is not None:
            self.controls.remember_ids(journal, self.name)  # a command replayed after a restart is a repeat
        last = journal.last_service_event(self.name) if journal is not None else None
        self.pipeline.gate.restore_service(last)
        out = self.pipeline.gate.out_of_service
        if out is not None:
            note = f" ({out.note})" if out.note else ""
            log.warning("camera %s: the gate is out of service since an earlier run (by %s via %s%s); it stays shut until an in_service action", self.name, out.by, out.via, note)

    @property
    def gate(self) -> Any:
        return self.pipeline.gate

    def emit(self, events: list[Event]) -> list[Event]:
        """Stamped with the camera's name, to the journal and hooks first, then the sinks; returns
        the events that happened (an OPEN the journal could not record under ``fail_closed`` does not)."""
        done = []
        for e in events:
            if e.camera is None:
                e = dataclasses.replace(e, camera=self.name)
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
            log.info("%s: %s recovered (%s); the gate stays shut: %s", self.name, cause, reason, "; ".join(self._faults.values()))
            return
        self.emit(self.pipeline.recover(frame, t, reason))

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
            if isinstance(source, LiveSource):
                self._run_live(source)
            else:
                for frame in source:
                    if self.stopping.is_set():
                        break
                    self.step(frame)
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
            try:
                self.step(frame)
            except FrameError as exc:  # a JPEG with a sound header and damaged data: the next frame will do
                source.status.skipped += 1
                log.debug("camera %s: %s; skipped", self.name, exc)
            # Nobody in view: the frames before the pipeline's next look need not even be decoded.
            source.skip_until = self.pipeline.next_look() or 0.0
        if source.status.ended and "source" not in self._faults:
            self._fault("source", max(last_index, 0), time.time(), source.status.fault or "source ended")

    # -- on a thread of its own ----------------------------------------------------------------
    def start(self) -> None:
        """Run :meth:`run` on the camera's own thread; an error ends only this camera (see :attr:`error`)."""

        def loop() -> None:
            try:
                self.run()
            except BaseException as exc:  # kept for the service, which reports it and exits non-zero
                self.error = exc
                log.error("camera %s stopped: %s: %s", self.name, type(exc).__name__, exc)

        self._thread = threading.Thread(target=loop, name=f"camera-{self.name}", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread of :meth:`start`; True once it has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

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
        try:
            self.close_sinks()
        finally:
            try:
                if self.dispatcher is not None:
                    self.dispatcher.close(timeout, interrupt=self.stopping.is_set(), close_journal=close_journal)
            finally:
                self.pipeline.close()
