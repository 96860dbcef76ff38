"""Failed credentials counted per remote address and per user name claimed: after ``failures`` of
them within ``window_s`` seconds, that address (or name) is refused for ``window_s`` seconds
without its credential being checked, so a flood of wrong secrets costs no scrypt. Pure: the time
is an argument (monotonic seconds), so the table tests need no clock.

>>> limit = FailureLimit(failures=3, window_s=60.0)
>>> keys = [("address", "10.0.0.9"), ("user", "maria")]
>>> [limit.failed(keys, t) for t in (0, 1, 2)]
[[], [], [('address', '10.0.0.9'), ('user', 'maria')]]
>>> limit.retry_after([("address", "10.0.0.9")], 10), limit.retry_after([("address", "10.0.0.8")], 10)
(52.0, None)
>>> limit.retry_after([("address", "10.0.0.9")], 62)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

__all__ = ["FAILURES", "WINDOW_S", "FailureLimit"]

Key = tuple[str, str]

FAILURES = 10  # failed credentials from one address, or naming one user, ...
WINDOW_S = 60.0  # ... within this many seconds: refused for this many seconds
_MAX_KEYS = 10_000  # beyond it, keys with nothing recent are forgotten (many addresses must not grow it forever)


class FailureLimit:
    """``failed()`` after each refused credential, ``retry_after()`` before checking one."""

    def __init__(self, failures: int = FAILURES, window_s: float = WINDOW_S) -> None:
        if failures < 1 or window_s <= 0:
            raise ValueError(f"expected failures >= 1 and window_s > 0, got {failures} and {window_s}")
        self.failures, self.window_s = failures, window_s
        self._recent: dict[Key, deque[float]] = {}
        self._until: dict[Key, float] = {}  # refused until then
        self._lock = threading.Lock()

    def retry_after(self, keys: Iterable[Key], now: float) -> float | None:
        """Seconds until the last of ``keys`` that is refused is taken again; None when none is."""
        with self._lock:
            waits = [until - now for key in keys if (until := self._until.get(key)) is not None and until > now]
        return max(waits) if waits else None

    def failed(self, keys: Iterable[Key], now: float) -> list[Key]:
        """Count one failure for each of ``keys``: those it makes refused (an episode starts: say it once)."""
        started: list[Key] = []
        with self._lock:
            if len(self._recent) > _MAX_KEYS:
                self._forget(now)
            for key in keys:
                if self._until.get(key, now) > now:
                    continue  # already refused: this failure is part of the episode
                recent = self._recent.setdefault(key, deque())
                while recent and recent[0] <= now - self.window_s:
                    recent.popleft()
                recent.append(now)
                if len(recent) >= self.failures:
                    self._until[key] = now + self.window_s
                    del self._recent[key]
                    started.append(key)
        return started

    def _forget(self, now: float) -> None:
        for key in [k for k, recent in self._recent.items() if recent[-1] <= now - self.window_s]:
            del self._recent[key]
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]
