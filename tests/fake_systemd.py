"""A unix datagram socket standing in for systemd's ``$NOTIFY_SOCKET``: bound by the test, read
on a thread, every message kept with the time it came.

>>> systemd = FakeSystemd(str(tmp_path / "notify.sock"))      # doctest: +SKIP
>>> env = {"NOTIFY_SOCKET": systemd.env_value}               # doctest: +SKIP
>>> systemd.wait_for("READY", "1", timeout=60)               # doctest: +SKIP
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class FakeSystemd:
    """A unix datagram socket bound where systemd's would be, read on a thread: every message
    with the time it came (time.monotonic())."""

    def __init__(self, address: str | bytes) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    @property
    def env_value(self) -> str:
        """What ``$NOTIFY_SOCKET`` says for this socket."""
        a = self.address
        return "@" + a[1:].decode() if isinstance(a, bytes) else a

    def _read(self) -> None:
        while not self._closing.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            with self._cond:
                self.messages.append((time.monotonic(), fields))
                self._cond.notify_all()

    def wait_for(self, key: str, value: str | None = None, *, after: float = 0.0, timeout: float = 30.0) -> tuple[float, dict[str, str]]:
        """The first message since ``after`` with ``key`` (equal to ``value``, or containing it for STATUS)."""

        def match() -> tuple[float, dict[str, str]] | None:
            for t, m in self.messages:
                if t >= after and key in m and (value is None or (value in m[key] if key == "STATUS" else m[key] == value)):
                    return t, m
            return None

        with self._cond:
            found = self._cond.wait_for(match, timeout)
        if found is None:
            raise AssertionError(f"no {key}={value or ''} within {timeout:g} s; got {self.log()}")
        return found

    def wait_count(self, key: str, count: int, *, after: float = 0.0, timeout: float = 30.0) -> list[float]:
        """Wait for ``count`` messages with ``key`` since ``after``; their times."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.times(key, after=after)) >= count, timeout)
        found = self.times(key, after=after)
        if not ok:
            raise AssertionError(f"{len(found)} {key} messages within {timeout:g} s, expected {count}; got {self.log()}")
        return found

    def times(self, key: str, *, after: float = 0.0, before: float = float("inf")) -> list[float]:
        with self._cond:
            return [t for t, m in self.messages if key in m and after <= t < before]

    def log(self) -> list[dict[str, str]]:
        with self._cond:
            return [m for _, m in self.messages]

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=2)
        self.sock.close()
        if isinstance(self.address, str):
            Path(self.address).unlink(missing_ok=True)
