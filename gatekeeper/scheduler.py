"""The shared models: one worker thread runs detection and classification for every camera, in turn.

    camera loops (one thread each) --one job per lane--> FairScheduler (one worker) --> detector, classifier

The service gives every camera a :class:`Lane` of one :class:`FairScheduler`;
:class:`SharedDetector` and :class:`SharedClassifier` are a camera's view of the one detector and
the one classifier, each call waiting for the camera's turn.

Why a scheduler and not a shared queue. Each lane holds at most one job, the camera's current
frame (a camera waits for its result before it takes its next frame, and a live source keeps only
the newest one meanwhile, counting the drops). The worker serves the lanes round-robin, so a
camera that floods (a file replayed as fast as it decodes, a stream at 60 fps) gets one turn per
round like every other, and a camera that freezes or hangs up simply has no job: the others'
frames never wait behind its backlog, as they would in one FIFO shared by all. A camera's wait
for its turn is bounded by one job of each other camera.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .worker import Worker

if TYPE_CHECKING:
    import numpy as np

    from .classify import SmileClassifier
    from .detect import Face, FaceDetector

__all__ = ["FairScheduler", "Lane", "SchedulerClosedError", "SharedClassifier", "SharedDetector"]

T = TypeVar("T")


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
        self._worker = Worker(self._work, "models")
        self._worker.start()

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
        self._worker.finish(timeout)


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
