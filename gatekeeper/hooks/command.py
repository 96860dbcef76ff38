"""Run a command per event: the event JSON on its stdin and in ``$GATEKEEPER_EVENT``.

The JSON is ``Event.to_dict()`` plus ``"gate"``. The environment also carries
``GATEKEEPER_GATE``, ``GATEKEEPER_EVENT_TYPE`` and ``GATEKEEPER_EVENT_ID``. Exit status 0 is
delivered; anything else, a timeout (the command and everything it started are killed) or a
missing executable is logged with the event id and counted as failed, never retried (a command
may have side effects a second run would repeat), and never stops the gate.

Only the last few kilobytes of the command's stdout and stderr are kept (their tail is all that is
ever logged), so a command that prints without end costs no more memory than one that prints a line.
"""

from __future__ import annotations

import json
import os
import select
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping

from .base import Delivery, DeliveryError, Hook
from .config import CommandHookConfig

__all__ = ["CommandHook"]

KEEP_BYTES = 4096  # of each of stdout and stderr; a log line shows at most 300 characters of it


class CommandHook(Hook):
    """Runs ``config.argv`` once per event, with a timeout."""

    kind = "command"

    def __init__(
        self,
        config: CommandHookConfig,
        *,
        name: str = "command",
        gate: str = "gate",
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            name, events=config.events, max_age_s=config.max_age_s, queue_size=config.queue_size, clock=clock
        )
        self.config = config
        self.gate = gate
        self._env = dict(os.environ if env is None else env)

    def deliver(self, delivery: Delivery, attempt: int) -> None:
        event = delivery.event
        payload = json.dumps({**event.to_dict(), "gate": self.gate}, separators=(",", ":"))
        env = {
            **self._env,
            "GATEKEEPER_EVENT": payload,
            "GATEKEEPER_GATE": self.gate,
            "GATEKEEPER_EVENT_TYPE": event.event.value,
            "GATEKEEPER_EVENT_ID": event.id,
        }
        argv = list(self.config.argv)
        try:
            # A session of its own, so a timeout kills the whole process group (a shell and its children).
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise DeliveryError(f"cannot run {argv[0]!r}: {exc.strerror or exc}", retry=False) from None
        try:
            out, err = _communicate(proc, payload.encode() + b"\n", self.config.timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise DeliveryError(
                f"{argv[0]!r} timed out after {self.config.timeout_s:g} s and was killed", retry=False
            ) from None
        if out.total:
            self._log.debug("%s: event %s: stdout (%d bytes): %s", self.name, event.id, out.total, out.text())
        if proc.returncode != 0:
            how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
            said = err.text()
            raise DeliveryError(f"{argv[0]!r} failed ({how})" + (f": {said}" if said else ""), retry=False)


class Tail:
    """The last ``keep`` bytes of a stream, and how many bytes it carried in all."""

    def __init__(self, keep: int = KEEP_BYTES) -> None:
        self.keep = keep
        self.total = 0
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > 2 * self.keep:  # trim in batches, not on every read
            del self.data[: -self.keep]

    def text(self, limit: int = 300) -> str:
        """The tail as one line of at most ``limit`` characters ("..." first when cut)."""
        data = self.data[-self.keep :]
        text = bytes(data).decode("utf-8", "replace").strip().replace("\n", " | ")
        cut = len(text) > limit or self.total > len(data)
        return "..." + text[-limit:] if cut else text


def _communicate(proc: subprocess.Popen[bytes], data: bytes, timeout: float) -> tuple[Tail, Tail]:
    """Write ``data`` to the command's stdin and read its stdout and stderr until both end and it
    exits, keeping only their tails; raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds.

    ``Popen.communicate`` would keep all of both streams in memory.
    """
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout
    tails = {proc.stdout.fileno(): Tail(), proc.stderr.fileno(): Tail()}
    stdin_fd = proc.stdin.fileno()
    sent = 0
    with selectors.DefaultSelector() as selector:
        selector.register(stdin_fd, selectors.EVENT_WRITE)
        for fd in tails:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            for key, _ in selector.select(left):
                if key.fd == stdin_fd:
                    try:
                        # A pipe that selects writable takes PIPE_BUF bytes without blocking.
                        sent += os.write(stdin_fd, data[sent : sent + select.PIPE_BUF])
                    except BrokenPipeError:
                        sent = len(data)  # the command does not read its stdin; that is its choice
                    if sent >= len(data):
                        selector.unregister(stdin_fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if chunk:
                    tails[key.fd].add(chunk)
                else:
                    selector.unregister(key.fd)
    proc.stdout.close()
    proc.stderr.close()
    proc.wait(max(0.0, deadline - time.monotonic()))  # raises TimeoutExpired itself
    out, err = tails.values()
    return out, err


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it ended between the timeout and the kill
    # What is still in the pipes is not read: a process that left the group and still writes gets EPIPE.
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    proc.wait()
