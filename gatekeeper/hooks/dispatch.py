"""The dispatcher: journal first, then every hook that takes the event.

::

    dispatcher = Dispatcher(journal, hooks)  # or gatekeeper.app.open_dispatcher(config)
    dispatcher.start()                       # resumes what a previous run left undelivered
    for event in pipeline.process(frame):
        dispatcher.emit(event)               # one SQLite append, then queue appends; never waits
    dispatcher.close(timeout=5.0)            # drains within the bound, relay off, MQTT offline

Hooks report every attempt and outcome back through ``when_attempted``/``when_settled``, and the
dispatcher writes them to the journal on the hook's own thread, so the frame loop pays only for
the append.

A journal that cannot write (a full disk, a file gone read-only) sets :attr:`Dispatcher.journal_fault`
until a probe write succeeds again (tried every ``probe_interval_s`` on a thread of its own). What
happens meanwhile to an OPEN that cannot be recorded is ``on_error``: ``fail_closed`` (the
default) keeps it from every hook, so no gate opens without its record; ``deliver`` hands it to
the hooks all the same. Other events (a FAULT must reach the relay) go to the hooks either way.
The app watches ``journal_fault`` and holds the gate shut while it is set (``fail_closed``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal

from ..errors import JournalError
from ..events import DeliveryState, Event, EventType
from ..journal import Journal
from ..worker import Worker
from .base import Delivery, Hook, close_hooks

__all__ = ["ON_ERROR", "Dispatcher"]

log = logging.getLogger("gatekeeper.hooks.dispatch")

#: What an OPEN that the journal cannot record does (``journal.on_error``).
ON_ERROR = ("fail_closed", "deliver")
OnError = Literal["fail_closed", "deliver"]


class Dispatcher:
    """Appends each event to the journal, then hands it to each hook that wants it.

    ``journal`` may be None (``journal.enabled: false``): events then reach the hooks but a
    restart cannot resume them. ``on_error`` is the ``journal.on_error`` policy (module docstring).
    ``camera``: the camera whose events these are, when several share one journal; the
    dispatcher then resumes only that camera's undelivered events (None: every event).
    """

    def __init__(
        self,
        journal: Journal | None,
        hooks: Sequence[Hook],
        *,
        clock: Callable[[], float] = time.time,
        on_error: OnError = "fail_closed",
        probe_interval_s: float = 1.0,
        camera: str | None = None,
    ) -> None:
        names = [h.name for h in hooks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"hook names must be unique, got {duplicates[0]!r} more than once")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error: expected one of {', '.join(ON_ERROR)}, got {on_error!r}")
        self.journal = journal
        self.camera = camera
        self.hooks = tuple(hooks)
        self.on_error = on_error
        self.probe_interval_s = probe_interval_s
        self.journal_errors = 0  # failed journal writes, all threads together (only grows)
        self.journal_fault: str | None = None  # why the journal cannot write, until a probe write succeeds
        self.withheld = 0  # OPENs kept from the hooks because they could not be recorded (fail_closed)
        self._clock = clock
        self._started = False
        self._fault_lock = threading.Lock()
        self._closing = threading.Event()
        self._prober: Worker | None = None

    def start(self) -> None:
        """Resume undelivered events from the journal, then start every hook's worker."""
        if self._started:
            return
        self._started = True
        for hook in self.hooks:
            hook.when_attempted = self._attempted
            hook.when_settled = self._settled
        self._resume()
        for hook in self.hooks:
            hook.start()

    def emit(self, event: Event) -> bool:
        """Journal ``event``, then queue it for each hook that wants it; never blocks on a hook.

        Returns False when the event was withheld from the hooks: an OPEN the journal could not
        record, under ``fail_closed``.
        """
        targets = [h for h in self.hooks if h.wants(event)]
        created_at: float | None = None
        if self.journal is not None:
            try:
                created_at = self.journal.append(event, [h.name for h in targets])
            except JournalError as exc:
                self._journal_failed(str(exc))
                if event.event is EventType.OPEN and self.on_error == "fail_closed":
                    self.withheld += 1
                    log.error(
                        "event %s OPEN withheld from the hooks: the journal cannot record it (journal.on_error: fail_closed)",
                        event.id,
                    )
                    return False
                log.error("event %s %s not journaled, delivered without a record: %s", event.id, event.event.value, exc)
        if created_at is None:
            created_at = self._clock()
        for hook in targets:
            hook.publish(event, created_at)
        return True

    def close(self, timeout: float = 5.0, *, close_journal: bool = True, interrupt: bool = False) -> bool:
        """Let hooks deliver what is queued for up to ``timeout`` seconds in all, then stop them.

        Whatever is left stays pending in the journal for the next start. Every hook is released
        (relay off, MQTT ``offline``) even if its worker is hung. True if everything settled.
        ``interrupt``: a stop on request (SIGINT/SIGTERM); hooks first cut short what is unsafe
        to finish (the relay goes shut at once instead of ending its pulse).
        """
        deadline = time.monotonic() + timeout
        self._closing.set()
        drained = close_hooks(self.hooks, timeout, interrupt=interrupt)
        if self._prober is not None:
            self._prober.finish(max(0.05, deadline - time.monotonic()))
        if close_journal and self.journal is not None:
            self.journal.close()
        return drained

    # -- journal health ------------------------------------------------------------------------
    def _journal_failed(self, error: str) -> None:
        """Count a failed write; the first of an episode logs it and starts the probe."""
        with self._fault_lock:
            self.journal_errors += 1
            if self.journal_fault is not None:
                return
            self.journal_fault = error
            if self._closing.is_set():
                return
            log.error("journal cannot write: %s; probing it every %g s", error, self.probe_interval_s)
            self._prober = Worker(self._probe, "journal-probe", stopping=self._closing)
            self._prober.start()

    def _probe(self) -> None:
        assert self.journal is not None
        while not self._closing.wait(self.probe_interval_s):
            try:
                self.journal.check_writable()
            except JournalError as exc:
                log.debug("journal still cannot write: %s", exc)
                continue
            with self._fault_lock:
                log.warning("journal writable again (%d failed writes so far)", self.journal_errors)
                self.journal_fault = None
            return

    # -- journal bookkeeping -------------------------------------------------------------------
    def _resume(self) -> None:
        if self.journal is None:
            return
        by_name = {h.name: h for h in self.hooks}
        now = self._clock()
        resumed = expired = 0
        for p in self.journal.pending(camera=self.camera):
            hook = by_name.get(p.hook)
            age = now - p.created_at
            if hook is None:
                self._mark(p.event.id, p.hook, DeliveryState.EXPIRED, f"hook {p.hook!r} is no longer configured")
                expired += 1
            elif age > hook.max_age_s:
                self._mark(
                    p.event.id,
                    p.hook,
                    DeliveryState.EXPIRED,
                    f"{age:.1f} s old at restart, max_age_s is {hook.max_age_s:g}",
                )
                expired += 1
            else:
                hook.publish(p.event, p.created_at)
                resumed += 1
        if resumed or expired:
            log.warning(
                "journal: resuming %d undelivered event(s), %d expired while gatekeeper was down", resumed, expired
            )

    def _attempted(self, hook: Hook, delivery: Delivery) -> None:
        if self.journal is None:
            return
        try:
            self.journal.attempted(delivery.event.id, hook.name)
        except JournalError as exc:
            self._journal_failed(str(exc))
            log.error("%s: cannot journal an attempt on event %s: %s", hook.name, delivery.event.id, exc)

    def _settled(self, hook: Hook, delivery: Delivery, state: DeliveryState, error: str | None) -> None:
        self._mark(delivery.event.id, hook.name, state, error)

    def _mark(self, event_id: str, hook: str, state: DeliveryState, error: str | None) -> None:
        if self.journal is None:
            return
        try:
            self.journal.settle(event_id, hook, state, error)
        except JournalError as exc:
            self._journal_failed(str(exc))
            log.error("%s: cannot journal event %s as %s: %s", hook, event_id, state.value, exc)
