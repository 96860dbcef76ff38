"""The dispatcher: journal first, then every hook that takes the event.

::

    dispatcher = open_dispatcher(config)     # journal + hooks from the validated config
    dispatcher.start()                       # resumes what a previous run left undelivered
    for event in gate.update(frame, t, faces):
        dispatcher.emit(event)               # one SQLite append, then queue appends; never waits
    dispatcher.close(timeout=5.0)            # drains within the bound, relay off, MQTT offline

Hooks report every attempt and outcome back through ``when_attempted``/``when_settled``, and the
dispatcher writes them to the journal on the hook's own thread, so the frame loop pays only for
the append.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import JournalError
from ..gate import Event
from ..journal import DeliveryState, Journal
from .base import Delivery, Hook

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Dispatcher", "open_dispatcher"]

log = logging.getLogger("gatekeeper.hooks.dispatch")


class Dispatcher:
    """Appends each event to the journal, then hands it to each hook that wants it.

    ``journal`` may be None (``journal.enabled: false``): events then reach the hooks but a
    restart cannot resume them.
    """

    def __init__(
        self, journal: Journal | None, hooks: Sequence[Hook], *, clock: Callable[[], float] = time.time
    ) -> None:
        names = [h.name for h in hooks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"hook names must be unique, got {duplicates[0]!r} more than once")
        self.journal = journal
        self.hooks = tuple(hooks)
        self.journal_errors = 0
        self._clock = clock
        self._started = False

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

    def emit(self, event: Event) -> None:
        """Journal ``event``, then queue it for each hook that wants it; never blocks on a hook."""
        targets = [h for h in self.hooks if h.wants(event)]
        created_at: float | None = None
        if self.journal is not None:
            try:
                created_at = self.journal.append(event, [h.name for h in targets])
            except JournalError as exc:
                # Losing the record must not also lose the delivery: the hooks still get the event.
                self.journal_errors += 1
                log.error("event %s %s not journaled, delivered without a record: %s", event.id, event.event.value, exc)
        if created_at is None:
            created_at = self._clock()
        for hook in targets:
            hook.publish(event, created_at)

    def close(self, timeout: float = 5.0, *, close_journal: bool = True) -> bool:
        """Let hooks deliver what is queued for up to ``timeout`` seconds in all, then stop them.

        Whatever is left stays pending in the journal for the next start. Every hook is released
        (relay off, MQTT ``offline``) even if its worker is hung. True if everything settled.
        """
        deadline = time.monotonic() + timeout
        for hook in self.hooks:
            hook.drain()
        drained = True
        for hook in self.hooks:
            if not hook.join(max(0.0, deadline - time.monotonic())):
                drained = False
        for hook in self.hooks:
            hook.stop()
        for hook in self.hooks:
            if not hook.join(max(0.05, deadline - time.monotonic())):
                log.error(
                    "%s: worker still busy after %.1f s; left behind (its events stay pending)", hook.name, timeout
                )
        for hook in self.hooks:
            hook.release()
        if close_journal and self.journal is not None:
            self.journal.close()
        return drained

    # -- journal bookkeeping -------------------------------------------------------------------
    def _resume(self) -> None:
        if self.journal is None:
            return
        by_name = {h.name: h for h in self.hooks}
        now = self._clock()
        resumed = expired = 0
        for p in self.journal.pending():
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
            self.journal_errors += 1
            log.error("%s: cannot journal an attempt on event %s: %s", hook.name, delivery.event.id, exc)

    def _settled(self, hook: Hook, delivery: Delivery, state: DeliveryState, error: str | None) -> None:
        self._mark(delivery.event.id, hook.name, state, error)

    def _mark(self, event_id: str, hook: str, state: DeliveryState, error: str | None) -> None:
        if self.journal is None:
            return
        try:
            self.journal.settle(event_id, hook, state, error)
        except JournalError as exc:
            self.journal_errors += 1
            log.error("%s: cannot journal event %s as %s: %s", hook, event_id, state.value, exc)


def open_dispatcher(config: Config, *, env: dict[str, str] | None = None) -> Dispatcher:
    """The journal (when enabled, with old events pruned) and the hooks of a validated config.

    Raises :class:`~gatekeeper.errors.ConfigError` (a secret's environment variable is missing),
    :class:`~gatekeeper.errors.HookError` (no GPIO) or :class:`~gatekeeper.errors.JournalError`.
    """
    from . import build_hooks  # here, not at the top: the package imports this module

    hooks = build_hooks(config.hooks, gate=config.name, env=env)
    journal = None
    if config.journal.enabled:
        try:
            journal = Journal(config.journal.resolved_path())
            journal.prune(time.time() - config.journal.keep_days * 86400)
        except JournalError:
            for hook in hooks:
                hook.release()  # the relay pin and the MQTT client were already claimed
            raise
    return Dispatcher(journal, hooks)
