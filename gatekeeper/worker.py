"""The one kind of thread gatekeeper starts by hand: a daemon with a stop event.

As gpiozero's ``GPIOThread``: the thread's loop waits on :attr:`Worker.stopping` instead of
sleeping (``while not worker.stopping.wait(interval)``), so a stop is seen at once, and
:meth:`Worker.stop` sets it and waits a bounded time. A worker left running past its bound (a
receiver that hangs) is a daemon: it never holds up the end of the process.

>>> ticks = []
>>> def tick() -> None:
...     while not worker.stopping.wait(0.01):
...         ticks.append(1)
>>> worker = Worker(tick, "ticker")
>>> worker.start()
>>> worker.stop(timeout=1.0)
True
>>> worker.is_alive()
False
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Threaded", "Worker"]


class Worker(threading.Thread):
    """A daemon thread running ``target(*args)``, with a stop event (its own, or one shared with
    others: ``stopping``, the service's, stops every camera at once)."""

    def __init__(self, target: Callable[..., Any], name: str, *, args: tuple[Any, ...] = (), stopping: threading.Event | None = None) -> None:
        super().__init__(target=target, name=name, args=args, daemon=True)
        self.stopping = stopping if stopping is not None else threading.Event()

    def stop(self, timeout: float | None = None) -> bool:
        """Set :attr:`stopping`, then wait up to ``timeout`` seconds (None: for as long as it takes);
        True once the thread has ended."""
        self.stopping.set()
        return self.finish(timeout)

    def finish(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end, without asking it to; True once it
        has ended (or never started)."""
        if self.ident is None:
            return True
        self.join(timeout)
        return not self.is_alive()


class Threaded:
    """Something that runs on a :class:`Worker` of its own (a camera's loop, a hook's deliveries):
    :meth:`join` waits for it. Subclasses start ``self._worker`` themselves."""

    _worker: Worker | None = None

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the worker to end; True once it has (or never
        started), False while it still runs (a hook hung in a delivery)."""
        return self._worker is None or self._worker.finish(timeout)
