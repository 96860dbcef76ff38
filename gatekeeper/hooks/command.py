"""Run a command per event: the event JSON on its stdin and in ``$GATEKEEPER_EVENT``.

The JSON is ``Event.to_dict()`` plus ``"gate"``. The environment also carries
``GATEKEEPER_GATE``, ``GATEKEEPER_EVENT_TYPE`` and ``GATEKEEPER_EVENT_ID``. Exit status 0 is
delivered; anything else, a timeout (the command and everything it started are killed) or a
missing executable is logged with the event id and counted as failed, never retried (a command
may have side effects a second run would repeat), and never stops the gate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping

from .base import Delivery, DeliveryError, Hook
from .config import CommandHookConfig

__all__ = ["CommandHook"]


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
            out, err = proc.communicate(payload.encode() + b"\n", timeout=self.config.timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise DeliveryError(
                f"{argv[0]!r} timed out after {self.config.timeout_s:g} s and was killed", retry=False
            ) from None
        if out:
            self._log.debug("%s: event %s: stdout: %s", self.name, event.id, _tail(out))
        if proc.returncode != 0:
            how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
            raise DeliveryError(f"{argv[0]!r} failed ({how})" + (f": {_tail(err)}" if err.strip() else ""), retry=False)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it ended between the timeout and the kill
    try:
        proc.communicate(timeout=2.0)
    except subprocess.TimeoutExpired:
        # Something that left the process group still holds the pipes; stop reading them.
        proc.kill()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()


def _tail(data: bytes, limit: int = 300) -> str:
    text = data.decode("utf-8", "replace").strip().replace("\n", " | ")
    return text if len(text) <= limit else "..." + text[-limit:]
