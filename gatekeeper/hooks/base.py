"""What every hook shares: a bounded queue, one worker thread, retries, and delivery reports.

:meth:`Hook.publish` only appends to an in-memory queue, so the frame loop never waits for a
receiver. The worker thread takes events in order and calls the subclass's :meth:`Hook.deliver`,
which raises :class:`DeliveryError` to ask for a retry (or not). Whatever happens (a refused
connection, a bug that raises anything at all, a receiver that hangs) stays inside that one
hook's thread: it is counted, logged with the event id, and reported through ``when_settled``.

Subclasses implement ``deliver`` and, if they hold resources, ``release``::

    class PrintHook(Hook):
        kind = "print"

        def deliver(self, delivery, attempt):
            print(delivery.event.to_dict())
"""

from __future__ import annotations

import abc
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ..events import DeliveryState, Event
from ..worker import Threaded, Worker

__all__ = ["Delivery", "DeliveryError", "Hook", "HookStats", "close_hooks"]

log = logging.getLogger("gatekeeper.hooks")


@dataclass(frozen=True, slots=True)
class Delivery:
    """An event waiting for one hook, with the wall-clock time the journal recorded it."""

    event: Event
    created_at: float  # journal time (time.time()); max_age is measured from here, not from event.t
    accepted: float = field(default_factory=time.monotonic)  # when publish() took it


class DeliveryError(Exception):
    """One delivery attempt failed; raised by :meth:`Hook.deliver`.

    ``retry``: whether another attempt may succeed (a 500, a refused connection) or not (a 400,
    a missing executable). ``retry_after``: seconds the receiver asked us to wait (Retry-After).
    """

    def __init__(self, message: str, *, retry: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after


@dataclass
class HookStats:
    """Counters of one hook since it started (read them any time; they only grow)."""

    published: int = 0
    attempts: int = 0
    delivered: int = 0
    failed: int = 0
    expired: int = 0
    dropped: int = 0  # pushed out of a full queue (also counted in failed)
    crashed: int = 0  # deliver() raised something other than DeliveryError (a bug; also a failed attempt)


SettledCallback = Callable[["Hook", Delivery, DeliveryState, "str | None"], None]
AttemptCallback = Callable[["Hook", Delivery], None]


class Hook(Threaded, abc.ABC):
    """A destination for events, behind its own bounded queue and worker thread.

    ``when_attempted(hook, delivery)`` is called before each attempt and ``when_settled(hook,
    delivery, state, error)`` after it: with ``PENDING`` and an error when a retry follows, or
    with the final ``DELIVERED``/``FAILED``/``EXPIRED``. The dispatcher uses them to keep the
    journal; both run on the worker thread.
    """

    kind: ClassVar[str] = "hook"

    def __init__(
        self,
        name: str,
        *,
        events: Iterable[str],
        max_age_s: float,
        queue_size: int,
        max_attempts: int = 1,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.events = frozenset(events)
        self.max_age_s = max_age_s
        self.queue_size = queue_size
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stats = HookStats()
        self.when_attempted: AttemptCallback | None = None
        self.when_settled: SettledCallback | None = None
        self._clock = clock
        self._rng = rng or random.Random()
        self._queue: deque[Delivery] = deque()
        self._dropped: list[Delivery] = []  # reported by the worker, so publish() never writes the journal
        self._cond = threading.Condition()
        self._draining = False  # no new work; the worker leaves once the queue is empty
        self._stopping = threading.Event()  # leave now; undelivered events stay pending in the journal
        self._log = log.getChild(self.kind)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- the caller's side ---------------------------------------------------------------------
    def wants(self, event: Event) -> bool:
        """Whether this hook takes events of this type (the dispatcher journals only these)."""
        return event.event.value in self.events

    def publish(self, event: Event, created_at: float | None = None) -> None:
        """Queue ``event`` for delivery and return at once; a full queue drops its oldest event."""
        delivery = Delivery(event, self._clock() if created_at is None else created_at)
        with self._cond:
            if self._draining:
                self._log.warning("%s: closing; event %s %s left pending", self.name, event.id, event.event.value)
                return
            if len(self._queue) >= self.queue_size:
                # The oldest is the least useful: it is closest to its max_age.
                self._dropped.append(self._queue.popleft())
                self.stats.dropped += 1
            self._queue.append(delivery)
            self.stats.published += 1
            self._cond.notify()

    @property
    def backlog(self) -> int:
        """Events queued and not yet taken by the worker."""
        with self._cond:
            return len(self._queue)

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._worker is not None:
            return
        self._worker = Worker(self._run, f"hook-{self.name}", stopping=self._stopping)
        self._worker.start()

    def drain(self, deadline: float | None = None) -> None:
        """Take no new events; the worker stops once the queued ones are settled.

        ``deadline`` (``time.monotonic()``) is when :meth:`stop` will follow: a hook may use it
        to leave alone work that could not finish by then (the relay does).
        """
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def interrupt(self) -> None:  # optional: only hooks driving hardware override it
        """Shutting down on request (SIGINT/SIGTERM): cut short what is unsafe to finish.

        Called before :meth:`drain`. Most hooks have nothing to cut and still deliver what is
        queued within the bound; the relay goes shut at once.
        """

    def stop(self) -> None:
        """Abandon queued events and waits at once; they stay pending in the journal."""
        with self._cond:
            self._draining = True
            self._stopping.set()
            self._cond.notify_all()

    # -- what subclasses provide ---------------------------------------------------------------
    @abc.abstractmethod
    def deliver(self, delivery: Delivery, attempt: int) -> None:
        """Deliver one event (attempt 1, 2, ...); raise :class:`DeliveryError` on failure."""

    def release(self) -> None:  # optional: only hooks that hold resources override it
        """Free what the hook holds, after its worker stopped or was given up on (idempotent)."""

    def _fail_safe(self) -> None:  # optional: only hooks driving hardware override it
        """Called after ``deliver`` crashed, to put the hardware behind the hook in its safe state."""

    # -- the worker ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._dropped and not self._draining:
                    self._cond.wait()
                dropped, self._dropped = self._dropped, []
                delivery = self._queue.popleft() if self._queue and not self._stopping.is_set() else None
                if delivery is None and not dropped:
                    break  # draining (or stopping) with nothing left to do
            for d in dropped:
                self._settle(d, DeliveryState.FAILED, f"dropped: queue full ({self.queue_size} waiting)")
            if delivery is not None:
                self._handle(delivery)
        with self._cond:
            left = len(self._queue)
        if left:
            self._log.warning(
                "%s: stopped with %d event(s) undelivered; they stay pending in the journal", self.name, left
            )

    def _handle(self, delivery: Delivery) -> None:
        event = delivery.event
        attempt = 0
        while True:
            age = self._clock() - delivery.created_at
            if age > self.max_age_s:
                self._settle(delivery, DeliveryState.EXPIRED, f"{age:.1f} s old, max_age_s is {self.max_age_s:g}")
                return
            attempt += 1
            self.stats.attempts += 1
            self._report_attempt(delivery)
            try:
                self.deliver(delivery, attempt)
            except DeliveryError as exc:
                error: DeliveryError = exc
            except Exception as exc:  # a bug in one hook must not kill its thread or reach the frame loop
                self.stats.crashed += 1
                self._log.exception("%s: crashed delivering event %s %s", self.name, event.id, event.event.value)
                self._fail_safe()
                error = DeliveryError(f"crashed: {type(exc).__name__}: {exc}", retry=False)
            else:
                self._settle(delivery, DeliveryState.DELIVERED, None)
                return

            of = f"/{self.max_attempts}" if self.max_attempts < 1000 else ""  # MQTT: bounded by max_age, not a count
            what = f"{self.name}: event {event.id} {event.event.value} attempt {attempt}{of} failed: {error}"
            if not error.retry or attempt >= self.max_attempts:
                self._log.error("%s; giving up", what)
                self._settle(delivery, DeliveryState.FAILED, str(error), logged=True)
                return
            delay = self._retry_delay(attempt, error.retry_after)
            age_then = self._clock() + delay - delivery.created_at
            if age_then > self.max_age_s:
                self._log.error("%s; the next attempt would be past max_age_s", what)
                self._settle(
                    delivery, DeliveryState.EXPIRED, f"{error}; next attempt would be {age_then:.1f} s old", logged=True
                )
                return
            self._log.warning("%s; retrying in %.2f s", what, delay)
            self._settle(delivery, DeliveryState.PENDING, str(error), logged=True)
            if self._stopping.wait(delay):
                self._log.warning("%s: stopping; event %s stays pending", self.name, event.id)
                return

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter, but never sooner than the receiver asked."""
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt - 1))
        # "Equal jitter": half fixed, half random, so retries of many gates spread out but never hammer.
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        return max(delay, retry_after) if retry_after is not None else delay

    def _report_attempt(self, delivery: Delivery) -> None:
        if self.when_attempted is None:
            return
        try:
            self.when_attempted(self, delivery)
        except Exception:  # a failing reporter (the journal) must not stop deliveries
            self._log.exception("%s: reporting the attempt on event %s failed", self.name, delivery.event.id)

    def _settle(self, delivery: Delivery, state: DeliveryState, error: str | None, *, logged: bool = False) -> None:
        event = delivery.event
        if state is DeliveryState.DELIVERED:
            self.stats.delivered += 1
            self._log.debug("%s: delivered event %s %s", self.name, event.id, event.event.value)
        elif state is DeliveryState.FAILED:
            self.stats.failed += 1
            if not logged:
                self._log.error("%s: event %s %s failed: %s", self.name, event.id, event.event.value, error)
        elif state is DeliveryState.EXPIRED:
            self.stats.expired += 1
            if not logged:
                self._log.warning("%s: event %s %s expired: %s", self.name, event.id, event.event.value, error)
        if self.when_settled is None:
            return
        try:
            self.when_settled(self, delivery, state, error)
        except Exception:  # a failing reporter (the journal) must not stop deliveries
            self._log.exception("%s: reporting event %s as %s failed", self.name, delivery.event.id, state.value)


def close_hooks(hooks: Sequence[Hook], timeout: float = 5.0, *, interrupt: bool = False) -> bool:
    """The one shutdown of hooks: let them deliver what is queued for up to ``timeout`` seconds in
    all, then stop and release every one; True if everything settled.

    Whatever is left stays pending in the journal for the next start. Every hook is released
    (relay off, MQTT ``offline``) even if its worker is hung inside ``deliver`` (it is a daemon,
    left behind). ``interrupt``: a stop on request (SIGINT/SIGTERM); hooks first cut short what
    is unsafe to finish (the relay goes shut at once instead of ending its pulse).
    """
    deadline = time.monotonic() + timeout
    if interrupt:
        for hook in hooks:
            hook.interrupt()
    for hook in hooks:
        hook.drain(deadline)
    drained = [hook.join(max(0.0, deadline - time.monotonic())) for hook in hooks]
    for hook in hooks:
        hook.stop()
    for hook in hooks:
        if not hook.join(max(0.05, deadline - time.monotonic())):
            log.error("%s: worker still busy after %.1f s; left behind (its events stay pending)", hook.name, timeout)
    for hook in hooks:
        hook.release()
    return all(drained)
