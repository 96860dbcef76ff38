"""A relay on a GPIO pin: pulsed for ``pulse_ms`` on OPEN, forced shut at start, on FAULT and at shutdown.

The relay is driven through gpiozero, so tests and demos run on gpiozero's ``MockFactory``::

    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory
    Device.pin_factory = MockFactory()
    relay = GpioHook(GpioHookConfig(pin="GPIO17", pulse_ms=200))
    relay.start()
    relay.publish(open_event)          # the pin goes active for 200 ms
    relay.device.pin.states            # [PinState(0.0, False), PinState(..., True), PinState(~0.2, False)]

Fail closed: a FAULT switches the relay off at once, from the caller's thread, cutting any pulse
short, and an OPEN queued before that FAULT is never pulsed.

Shutdown comes in two kinds. The orderly end of a finite source (a replay that reached the end
of its file) lets a pulse in progress run out, and pulses the OPENs already queued, as long as
each pulse ends before the shutdown bound (``drain(deadline)``); a pulse that would outlast the
bound is cut at once rather than held and then cut. A stop on request (SIGINT/SIGTERM,
:meth:`GpioHook.interrupt`) shuts the relay at once: the controller is going away, and shut is
the safe state. A cut pulse is journaled as failed, with what cut it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gpiozero import OutputDevice

from ..events import Event, EventType
from ..pins import gpio_device
from .base import Delivery, DeliveryError, Hook
from .config import GpioHookConfig

__all__ = ["GpioHook"]

class GpioHook(Hook):
    """Pulses a relay on OPEN; FAULT, a crash in the hook and shutdown all leave it off (the safe state).

    Raises :class:`~gatekeeper.errors.HookError` at construction when the machine has no GPIO
    gpiozero can drive and ``pin_factory`` is not ``mock``.
    """

    kind = "gpio"

    def __init__(self, config: GpioHookConfig, *, name: str = "gpio", clock: Callable[[], float] = time.time) -> None:
        # Fixed, not configurable: OPEN is what the relay is for, FAULT is what must shut it.
        super().__init__(
            name, events=("OPEN", "FAULT"), max_age_s=config.max_age_s, queue_size=config.queue_size, clock=clock
        )
        self.config = config
        self._pulse_s = config.pulse_ms / 1000.0
        self._lock = threading.Lock()  # orders on()/off() between the worker and publish(FAULT)
        self._interrupt = threading.Event()  # set by FAULT, interrupt() and stop(): ends a pulse early
        self._cut_by = "a FAULT"  # what set _interrupt, for the journal
        self._last_fault = float("-inf")  # monotonic time of the last FAULT; older OPENs are not pulsed
        self._shutting_down = False  # set by interrupt(): no pulse starts from then on
        self._deadline = float("inf")  # set by drain(): no pulse may run past it
        self._pulse_end: float | None = None  # monotonic time the running pulse ends; None: relay off
        self.device = self._open_device()

    def _open_device(self) -> OutputDevice:
        cfg = self.config
        # initial_value=False: the relay is inactive (safe) from the moment the pin is claimed.
        return gpio_device(
            lambda factory: OutputDevice(cfg.pin, active_high=cfg.active_high, initial_value=False, pin_factory=factory),
            pin_factory=cfg.pin_factory,
            pin=cfg.pin,
            name=self.name,
            what="the relay",
        )

    @property
    def is_active(self) -> bool:
        """Whether the relay is switched on right now."""
        return bool(self.device.value)

    def force_safe(self) -> None:
        """Switch the relay off now, cut a running pulse short, and cancel OPENs queued before now."""
        with self._lock:
            self._last_fault = time.monotonic()
            self._cut("a FAULT")

    def publish(self, event: Event, created_at: float | None = None) -> None:
        if event.event is EventType.FAULT:
            # Not left to the worker: it may be in the middle of a pulse, or stuck.
            self.force_safe()
        super().publish(event, created_at)

    def deliver(self, delivery: Delivery, attempt: int) -> None:
        if delivery.event.event is EventType.FAULT:
            # publish() already forced the relay off and cancelled older OPENs; this only confirms it. It
            # must not move the fault time on, or OPENs published after this FAULT would be cancelled too.
            self._fail_safe()
            return
        with self._lock:
            if delivery.accepted <= self._last_fault:
                raise DeliveryError("a FAULT came after this OPEN; the relay stays shut", retry=False)
            if self._stopping.is_set() or self._shutting_down:
                raise DeliveryError("shutting down; the relay stays shut", retry=False)
            started = time.monotonic()
            if started + self._pulse_s > self._deadline:
                raise DeliveryError(
                    f"shutting down; a {self.config.pulse_ms} ms pulse would not end within the shutdown bound, "
                    "the relay stays shut",
                    retry=False,
                )
            self._interrupt.clear()
            self._pulse_end = started + self._pulse_s
            self.device.on()
        try:
            interrupted = self._interrupt.wait(self._pulse_s)
        finally:
            with self._lock:
                self._pulse_end = None
                if not self.device.closed:
                    self.device.off()
        if interrupted:
            held_ms = (time.monotonic() - started) * 1000
            raise DeliveryError(f"pulse cut short after {held_ms:.0f} ms by {self._cut_by}", retry=False)

    def _cut(self, by: str) -> None:
        """Relay off now, ending a pulse in progress early (the caller holds the lock)."""
        if self._pulse_end is not None:
            self._cut_by = by
        self._interrupt.set()
        if not self.device.closed:
            self.device.off()

    def interrupt(self) -> None:
        """A stop on request (SIGINT/SIGTERM): the relay goes shut now; queued OPENs are not pulsed."""
        with self._lock:
            self._shutting_down = True
            self._cut("shutdown on request")
        super().interrupt()

    def drain(self, deadline: float | None = None) -> None:
        """The orderly end: a pulse in progress and the queued OPENs are pulsed in full, if they end by ``deadline``.

        A pulse that would run past ``deadline`` is cut now (the relay would be cut at the
        deadline anyway, and shut is the safe state); a queued OPEN whose pulse would not fit is
        not pulsed. Without a deadline, every pulse runs out.
        """
        with self._lock:
            self._deadline = float("inf") if deadline is None else deadline
            if self._pulse_end is not None and self._pulse_end > self._deadline:
                self._cut(f"shutdown (it would have run past the {self._deadline - time.monotonic():.1f} s bound)")
        super().drain(deadline)

    def stop(self) -> None:
        super().stop()
        with self._lock:
            self._cut("shutdown (the bound ran out)")

    def _fail_safe(self) -> None:
        with self._lock:
            if not self.device.closed:
                self.device.off()

    def release(self) -> None:
        """Leave the relay off and free the pin."""
        with self._lock:
            if self.device.closed:
                return
            self.device.off()
            self.device.close()
