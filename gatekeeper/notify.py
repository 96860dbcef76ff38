"""systemd's notification protocol, spoken by the service itself: READY, WATCHDOG, STATUS, STOPPING.

    gatekeeper (the unit's main process) --one datagram per message--> $NOTIFY_SOCKET (systemd)

Under a unit with ``Type=notify`` systemd names a unix datagram socket in ``$NOTIFY_SOCKET`` (a
path, or ``@name`` in the abstract namespace), and with ``WatchdogSec=`` it also sets
``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, the process the watchdog is for). A message is one
datagram of ``KEY=value`` lines (sd_notify(3)); :class:`Notifier` sends them, with no library.
Without ``$NOTIFY_SOCKET`` nothing here runs: no socket, no thread.

What the service says, and when (:class:`ServiceNotifier`):

* ``STATUS=``: what it is doing (loading the models, waiting for first frames), then each
  camera's state (running, FAULT and why, ended), a stuck frame loop, stopping.
* ``READY=1`` once the models are loaded and every camera is in: its first frame has been
  through the pipeline, or its FAULT is raised (a camera that sends no first frame within
  ``source.watchdog_s`` is faulted, and must not keep the service starting for ever), or its loop
  has ended. The ``STATUS=`` sent with it says which camera came in by which.
* ``WATCHDOG=1`` every half of ``$WATCHDOG_USEC``, and only while the frame loop of every camera
  that still runs keeps turning (:class:`Watchdog`). A loop turns on every frame and on every idle
  poll of a live source, so a camera that is merely faulted (no picture; its loop polls and
  reports FAULT) keeps the pings going, while a loop stuck in a stage (a model call, a write that
  never returns) stops them once it has not turned for that half period: systemd then ends the
  service ``WatchdogSec`` after the last ping (SIGABRT: every thread's stack goes to stderr
  first, :func:`dump_stacks_on_abort`) and restarts it. A loop that ended with an error stops them too;
  one whose finite source ended does not.
* ``STOPPING=1`` when a stop begins (SIGTERM or SIGINT, or the sources ended).

The decisions are pure, with the time passed in (:class:`LoopState`, :func:`pending`,
:func:`describe`, :class:`Watchdog`); :class:`ServiceNotifier` reads the cameras on a worker
thread of its own. The frame loop's only part is one timestamp per turn
(:attr:`Camera.turned <gatekeeper.camera.Camera.turned>`).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .worker import Worker

if TYPE_CHECKING:
    from .camera import Camera

__all__ = ["LoopState", "Notifier", "ServiceNotifier", "Watchdog", "describe", "dump_stacks_on_abort", "notify_address", "pending", "watchdog_interval"]

log = logging.getLogger(__name__)

#: How long one cause of a STATUS line may be (a camera's fault reason can be long).
MAX_REASON = 160


def notify_address(value: str) -> str | bytes:
    """The socket address that ``$NOTIFY_SOCKET`` names: an absolute path, or ``@name`` for
    ``name`` in Linux's abstract namespace (a NUL byte first).

    >>> notify_address("/run/systemd/notify")
    '/run/systemd/notify'
    >>> notify_address("@gatekeeper/notify")
    b'\\x00gatekeeper/notify'

    Raises ValueError for anything else (systemd's ``vsock:`` addresses are not spoken here).
    """
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return value
    raise ValueError(f"NOTIFY_SOCKET={value!r}: expected an absolute path or @name (abstract namespace)")


def watchdog_interval(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between two ``WATCHDOG=1``: half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled(3)
    advises; None when the watchdog is off, or is for another process (``$WATCHDOG_PID``).

    >>> watchdog_interval({"WATCHDOG_USEC": "30000000"})
    15.0
    >>> watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    True
    """
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    try:
        usec = int(raw)
    except ValueError:
        usec = 0
    if usec <= 0:
        log.warning("WATCHDOG_USEC=%r is not a positive whole number of microseconds; no watchdog pings", raw)
        return None
    return usec / 2e6


def dump_stacks_on_abort() -> bool:
    """When systemd's watchdog gives up on the service it sends SIGABRT (``WatchdogSignal=``): have
    Python write every thread's stack to stderr (the journal) as it dies, so the log shows where
    the stuck loop hung (:mod:`faulthandler`). False where stderr is no real file."""
    try:
        faulthandler.enable(file=sys.stderr, all_threads=True)
    except (AttributeError, OSError, RuntimeError, ValueError):  # no stderr, or no file descriptor behind it
        return False
    return True


class Notifier:
    """Messages to the service manager's socket, one datagram each (sd_notify(3)).

    ``address``: as :func:`notify_address` returns. A message that cannot be sent (the manager
    went away, its queue is full) is logged once per run of failures; nothing raises.
    """

    def __init__(self, address: str | bytes, *, timeout_s: float = 1.0) -> None:
        self.address = address
        self.failures = 0  # messages that could not be sent (only grows)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.settimeout(timeout_s)  # a manager too busy to read never holds the sender long
        self._lock = threading.Lock()
        self._failing = False

    def send(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines as one message; True when it went out."""
        data = "\n".join(lines).encode()
        with self._lock:
            try:
                self._sock.sendto(data, self.address)
            except OSError as exc:
                self.failures += 1
                if not self._failing:
                    log.warning("cannot notify the service manager at NOTIFY_SOCKET (%s: %s); %s not sent", type(exc).__name__, exc, lines[0].split("=")[0])
                self._failing = True
                return False
            self._failing = False
            return True

    def close(self) -> None:
        self._sock.close()


@dataclass(frozen=True)
class LoopState:
    """One camera's frame loop as the notifier sees it at one moment."""

    name: str
    turned: float | None  # time.monotonic() of its loop's last turn; None: not started
    frames: int  # frames through the pipeline
    fault: str | None = None  # what holds its gate shut, or None
    ended: str | None = None  # why its loop ended ("source ended", "stopped"), or None while it runs
    failed: str | None = None  # the error that ended its loop, or None

    @classmethod
    def of(cls, name: str, camera: Camera) -> LoopState:
        """Read from a running camera (on another thread: each attribute is read once)."""
        faults = camera.gate.faults  # a copy
        error = camera.error
        return cls(
            name,
            camera.turned,
            camera.frames,
            fault="; ".join(faults.values()) or None,
            ended=camera.ended,
            failed=None if error is None else f"{type(error).__name__}: {error}",
        )

    @property
    def is_in(self) -> bool:
        """The camera no longer holds READY back: a first frame, a FAULT, or the end of its loop."""
        return self.frames > 0 or self.fault is not None or self.ended is not None


def _short(text: str) -> str:
    text = " ".join(text.split())  # one line
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def pending(loops: Iterable[LoopState]) -> list[str]:
    """The cameras that hold READY back: no first frame yet, no FAULT, their loop still running."""
    return [loop.name for loop in loops if not loop.is_in]


def describe(loops: Iterable[LoopState], *, ready: bool = False) -> str:
    """A ``STATUS=`` line: each camera's state; ``ready``: how each came in (READY's line).

    >>> describe([LoopState("lane1", 1.0, 5), LoopState("lane2", 1.0, 0, fault="no frame for 2 s")], ready=True)
    'ready: lane1 first frame in; lane2 FAULT before a first frame (no frame for 2 s)'
    >>> describe([LoopState("lane1", 1.0, 5), LoopState("lane2", 1.0, 0, fault="no frame for 2 s")])
    'lane1 running; lane2 FAULT (no frame for 2 s)'
    """
    parts = []
    for loop in loops:
        if loop.failed is not None:
            state = f"failed ({_short(loop.failed)})"
        elif loop.ended is not None:
            state = f"ended ({_short(loop.ended)})"
        elif loop.fault is not None:
            state = f"FAULT ({_short(loop.fault)})"
        else:
            state = "running"
        if ready and loop.frames > 0:
            state = "first frame in" + ("" if state == "running" else f", now {state}")
        elif ready:
            state = state.replace(" (", " before a first frame (", 1)
        parts.append(f"{loop.name} {state}")
    return ("ready: " if ready else "") + "; ".join(parts)


class Watchdog:
    """When ``WATCHDOG=1`` is due: every ``interval_s``, and only while every running loop turns.

    >>> dog = Watchdog(15.0)
    >>> dog.ping([LoopState("lane1", turned=100.0, frames=9)], now=101.0)
    True
    >>> dog.ping([LoopState("lane1", turned=110.0, frames=9)], now=110.0)  # not due yet
    False
    >>> dog.stuck([LoopState("lane1", turned=110.0, frames=9)], now=126.0)
    {'lane1': 'frame loop has not turned for 16.0 s'}

    ``stall_s`` (by default ``interval_s``): how long a loop may go without turning. A loop that
    has ended (its finite source is done) is not watched; one that ended with an error is stuck.
    """

    def __init__(self, interval_s: float, stall_s: float | None = None) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self.interval_s = interval_s
        self.stall_s = interval_s if stall_s is None else stall_s
        self.last_ping: float | None = None

    def stuck(self, loops: Iterable[LoopState], now: float) -> dict[str, str]:
        """The loops that stop the pings, each with why."""
        out = {}
        for loop in loops:
            if loop.failed is not None:
                out[loop.name] = f"frame loop ended with an error ({_short(loop.failed)})"
            elif loop.ended is None and loop.turned is not None and now - loop.turned > self.stall_s:
                out[loop.name] = f"frame loop has not turned for {now - loop.turned:.1f} s"
        return out

    def ping(self, loops: Iterable[LoopState], now: float) -> bool:
        """True when a ``WATCHDOG=1`` is to go out at ``now`` (then counted as sent)."""
        if self.stuck(loops, now):
            return False
        if self.last_ping is not None and now - self.last_ping < self.interval_s:
            return False
        self.last_ping = now
        return True


class ServiceNotifier:
    """What the service tells systemd, from start to stop (see the module's docs).

    >>> notify = ServiceNotifier.from_environ()                # doctest: +SKIP
    >>> notify.status("loading the models")                    # doctest: +SKIP
    >>> notify.watch(service.cameras, service.stopping)        # doctest: +SKIP
    >>> service.run()                                          # doctest: +SKIP
    >>> notify.close()                                         # doctest: +SKIP

    With no ``notifier`` (no ``$NOTIFY_SOCKET``) every method does nothing. ``interval_s``: the
    watchdog's ping period (None: no watchdog); ``clock``: monotonic seconds.
    """

    def __init__(self, notifier: Notifier | None, interval_s: float | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.watchdog = Watchdog(interval_s) if notifier is not None and interval_s is not None else None
        self.clock = clock
        self.ready = False
        self.pings = 0  # WATCHDOG=1 sent
        self._status: str | None = None
        self._stuck: dict[str, str] = {}
        self._stopping = False
        self._lock = threading.Lock()
        self._worker: Worker | None = None

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> ServiceNotifier:
        """From ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` (``env``: by default the process's)."""
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET")
        if not raw:
            return cls(None)
        try:
            address = notify_address(raw)
        except ValueError as exc:
            log.warning("%s; systemd is not notified", exc)
            return cls(None)
        interval = watchdog_interval(env)
        if interval is not None:
            dump_stacks_on_abort()
        return cls(Notifier(address), interval)

    @property
    def enabled(self) -> bool:
        return self.notifier is not None

    def status(self, text: str) -> None:
        """``STATUS=text`` (not sent again while it is unchanged)."""
        if self.notifier is not None and text != self._status:
            self._status = text
            self.notifier.send(f"STATUS={text}")

    def watch(self, cameras: Mapping[str, Camera], stopping: threading.Event) -> None:
        """Watch the cameras on a thread of its own, from before they start until :meth:`close`:
        READY once each is in, WATCHDOG while their loops turn, STATUS as their states change,
        STOPPING as soon as ``stopping`` (the service's stop event) is set."""
        if self.notifier is None:
            return
        self.status(f"starting {len(cameras)} camera{'s' if len(cameras) != 1 else ''}")
        self._worker = Worker(self._watch, "systemd-notify", args=(cameras, stopping))
        self._worker.start()

    def stopping(self, why: str) -> None:
        """``STOPPING=1`` with ``STATUS=stopping: why`` (once)."""
        with self._lock:
            if self.notifier is None or self._stopping:
                return
            self._stopping = True
        self._status = f"stopping: {why}"
        self.notifier.send("STOPPING=1", f"STATUS={self._status}")

    def close(self, why: str = "delivering what is queued") -> None:
        """The thread ends, then STOPPING (unless a stop request said it already) and the socket
        closes. Again: nothing."""
        if self.notifier is None:
            return
        if self._worker is not None:
            self._worker.stop(timeout=2.0)  # first: nothing it sends may follow STOPPING
        self.stopping(why)
        self.notifier.close()

    def __enter__(self) -> ServiceNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- on the notifier's thread ----------------------------------------------------------
    def _watch(self, cameras: Mapping[str, Camera], stopping: threading.Event) -> None:
        assert self._worker is not None
        tick = 0.1  # until READY: a camera's first frame is noticed within a tenth of a second
        while not self._worker.stopping.wait(tick):
            if stopping.is_set():
                self.stopping("stop requested (SIGTERM or SIGINT); delivering what is queued")
                return
            loops = [LoopState.of(name, cam) for name, cam in cameras.items()]
            if not self.ready:
                waiting = pending(loops)
                if waiting:
                    self.status(f"waiting for the first frame of {', '.join(waiting)}")
                    continue
                self._announce_ready(loops)
                tick = 1.0 if self.watchdog is None else min(1.0, self.watchdog.interval_s / 4)
            self._tend(loops, self.clock())

    def _announce_ready(self, loops: list[LoopState]) -> None:
        assert self.notifier is not None
        self.ready = True
        self._status = describe(loops, ready=True)
        self.notifier.send("READY=1", f"STATUS={self._status}")
        log.info("systemd notified: %s", self._status)

    def _tend(self, loops: list[LoopState], now: float) -> None:
        """One tick after READY: a ping when due and nothing is stuck; STATUS when it changed."""
        assert self.notifier is not None
        stuck = self.watchdog.stuck(loops, now) if self.watchdog is not None else {}
        if stuck.keys() != self._stuck.keys():
            if stuck:
                what = "; ".join(f"{name}: {why}" for name, why in stuck.items())
                log.error("%s; watchdog pings stop, so systemd restarts the service", what)
                self.status(f"stuck: {what}; watchdog pings stopped")
            else:
                log.warning("every frame loop turns again; watchdog pings resume")
            self._stuck = stuck
        if stuck:
            return
        if self.watchdog is not None and self.watchdog.ping(loops, now) and self.notifier.send("WATCHDOG=1"):
            self.pings += 1
        self.status(describe(loops))
