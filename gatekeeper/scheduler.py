"""The shared models: worker threads run detection and classification for every camera, in turn.

    camera loops (one thread each) --one job per lane--> FairScheduler (workers) --> each worker's detector, classifier

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

Why more than one worker. The models' calls release the GIL (MediaPipe and LiteRT run in C++),
so with two workers, each holding its own copy of both models, two cameras' jobs run at once on two
cores, and a camera's wait shrinks to one job of every other camera *per worker*. A lane still
holds one job at a time, so one camera's frames are never scored out of order and a single camera
gains nothing from a second worker. A job learns which worker runs it from :meth:`FairScheduler.slot`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
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
    """Worker threads (``workers``, at least one) that run the shared models' jobs of every lane,
    round-robin.

    >>> sched = FairScheduler(workers=2)
    >>> lane = sched.lane("lane1")
    >>> lane.call(lambda: 6 * 7)
    42
    >>> lane.call(sched.slot) in (0, 1)
    True
    >>> sched.close()
    """

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"a scheduler needs at least one worker, got {workers}")
        self._cond = threading.Condition()
        self._lanes: list[Lane] = []
        self._next = 0  # where the next round-robin search starts
        self._closing = False
        self._local = threading.local()  # .slot: the index of the worker thread it is read on
        self._workers = [Worker(self._work, "models" if workers == 1 else f"models-{i}", args=(i,)) for i in range(workers)]
        for worker in self._workers:
            worker.start()

    @property
    def workers(self) -> int:
        return len(self._workers)

    def slot(self) -> int:
        """The index of the worker running the calling job (0 on any other thread): which copy of
        the models the job may use."""
        return getattr(self._local, "slot", 0)

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

    def _work(self, slot: int) -> None:
        self._local.slot = slot
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
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.finish(max(0.0, deadline - time.monotonic()))


class SharedDetector:
    """A camera's view of the shared face detectors (one per worker): each call waits for the
    camera's turn and runs on the detector of the worker that serves it."""

    def __init__(self, detectors: Sequence[FaceDetector], lane: Lane) -> None:
        if len(detectors) != lane.scheduler.workers:
            raise ValueError(f"one detector per worker: {len(detectors)} for {lane.scheduler.workers} workers")
        self.detectors = detectors
        self.lane = lane

    def detect(self, image_rgb: np.ndarray, t: float | None = None) -> list[Face]:
        slot = self.lane.scheduler.slot
        return self.lane.call(lambda: self.detectors[slot()].detect(image_rgb, t))

    def close(self) -> None:
        """Nothing: the service closes the shared detector once every camera has stopped."""


class SharedClassifier:
    """A camera's view of the shared smile classifiers, one per worker (see :class:`SharedDetector`)."""

    def __init__(self, classifiers: Sequence[SmileClassifier], lane: Lane) -> None:
        if len(classifiers) != lane.scheduler.workers:
            raise ValueError(f"one classifier per worker: {len(classifiers)} for {lane.scheduler.workers} workers")
        self.classifiers = classifiers
        self.lane = lane

    def predict(self, chips: np.ndarray) -> np.ndarray:
        slot = self.lane.scheduler.slot
        return self.lane.call(lambda: self.classifiers[slot()].predict(chips))
