"""A list of MQTT brokers tried in turn: which one is next and how long to wait before trying it.

The MQTT hook keeps one paho client, and with it one queue of QoS-1 messages that wait for their
PUBACK, whichever broker it is connected to. When the broker it uses is lost (the connection
refused, dropped, or not answered), it moves to the next in the list at once; only after a whole
round of the list has failed does it wait, 1 s after the first round, then 2, 4... up to 30 s. With
one broker that is the backoff paho had before there were lists: 1, 2, 4... 30 s.

>>> r = Rotation(parse_brokers(["a:1883", "b:1883", "c:1883"]))
>>> r.current, r.failed(), r.current, r.failed(), r.current, r.failed(), r.current
(('a', 1883), 0.0, ('b', 1883), 0.0, ('c', 1883), 1.0, ('a', 1883))
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .base import HookStats

__all__ = ["Broker", "BrokerKeys", "Failover", "MqttStats", "Rotation", "broker_addresses", "broker_text", "parse_broker", "parse_brokers"]

Broker = tuple[str, int]


@dataclass
class MqttStats(HookStats):
    """An MQTT hook's counters, and the times it connected to another broker than the one it had lost."""

    broker_switches: int = 0


def parse_broker(text: str) -> Broker:
    """``host:port`` (``[address]:port`` for IPv6) -> ``(host, port)``; ValueError saying what was expected.

    >>> parse_broker("nats-1.park:1883"), parse_broker("[::1]:1884")
    (('nats-1.park', 1883), ('::1', 1884))
    """
    expected = f"expected host:port with a port from 1 to 65535 ([address]:port for IPv6), got {text!r}"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        colon, port = rest[:1], rest[1:]
        if not bracket:
            raise ValueError(expected)
    else:
        host, colon, port = text.rpartition(":")
        if ":" in host:
            raise ValueError(expected)
    if colon != ":" or not host or any(c.isspace() or c in "/[]@" for c in host):
        raise ValueError(expected)
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(expected)
    return host, int(port)


def parse_brokers(texts: Iterable[str], key: str = "brokers") -> tuple[Broker, ...]:
    """Every entry parsed; ValueError naming ``key[i]`` for a bad or repeated one, ``key`` for none."""
    out: list[Broker] = []
    for i, text in enumerate(texts):
        try:
            broker = parse_broker(text)
        except ValueError as exc:
            raise ValueError(f"{key}[{i}]: {exc}") from None
        if broker in out:
            raise ValueError(f"{key}[{i}]: {text!r} is listed twice; expected each broker once")
        out.append(broker)
    if not out:
        raise ValueError(f"{key}: expected at least one host:port, got an empty list")
    return tuple(out)


def broker_addresses(brokers: Iterable[str] | None, host: str, port: int, *, default: Broker = ("127.0.0.1", 1883)) -> tuple[Broker, ...]:
    """A config's brokers in the order they are tried: ``brokers``, or ``host``:``port`` alone when it
    is None; ValueError for a bad entry, or for host/port set (not ``default``) beside ``brokers``.
    The MQTT hook's and the park's broker keys both mean this."""
    if not host.strip():
        raise ValueError("host: expected a broker host name or address, got an empty string")
    if brokers is None:
        return ((host, port),)
    out = parse_brokers(brokers)
    if (host, port) != default:
        raise ValueError("brokers and host/port are both set; expected brokers alone (its first entry is tried first)")
    return out


class BrokerKeys:
    """For a frozen config dataclass with ``brokers``, ``host`` and ``port`` keys (the MQTT hook's, the park's)."""

    def _check_brokers(self) -> None:
        broker_addresses(self.brokers, self.host, self.port)  # type: ignore[attr-defined]

    @property
    def addresses(self) -> tuple[Broker, ...]:
        """The brokers to try, in order: ``brokers``, or ``host``:``port``."""
        return broker_addresses(self.brokers, self.host, self.port)  # type: ignore[attr-defined]


def broker_text(broker: Broker) -> str:
    host, port = broker
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class Rotation:
    """Where a client connects next. ``failed()`` after every attempt that ended without a
    CONNACK and after every lost connection; ``connected()`` after every CONNACK success."""

    brokers: tuple[Broker, ...]
    min_delay_s: float = 1.0
    max_delay_s: float = 30.0
    index: int = 0
    failures: int = 0  # attempts since the last CONNACK success that failed (a lost connection counts)
    last_connected: int | None = field(default=None)  # the broker of the last CONNACK success

    def __post_init__(self) -> None:
        if not self.brokers:
            raise ValueError("a rotation needs at least one broker")

    @property
    def current(self) -> Broker:
        return self.brokers[self.index]

    def failed(self) -> float:
        """The current broker failed: move to the next; the seconds to wait before trying it."""
        self.failures += 1
        self.index = (self.index + 1) % len(self.brokers)
        rounds, within = divmod(self.failures, len(self.brokers))
        if within:
            return 0.0  # brokers of this round not tried yet: the next one now
        return min(self.min_delay_s * 2 ** (rounds - 1), self.max_delay_s)

    def connected(self) -> Broker | None:
        """The current broker accepted the connection: the broker it replaces when that is a
        switch (the last connection was to another broker), else None."""
        previous, self.last_connected, self.failures = self.last_connected, self.index, 0
        return None if previous is None or previous == self.index else self.brokers[previous]


class Failover:
    """Moves one paho client along a :class:`Rotation` of brokers, from paho's own callbacks.

    ``lock``: the owner's lock, held by the owner around :meth:`lost`, :meth:`accepted` and
    :meth:`bump`. With several brokers, :meth:`opened` (paho's ``on_socket_open``) arms a watchdog:
    a broker that takes the TCP connection but sends no CONNACK within ``connack_s`` has its socket
    shut, so paho's loop sees the link end and the owner's on_disconnect moves on.
    """

    def __init__(self, client: Any, rotation: Rotation, *, keepalive_s: int, lock: Any, closing: Callable[[], bool], connack_s: float) -> None:
        self.client, self.rotation, self.keepalive_s = client, rotation, keepalive_s
        self._lock, self._closing, self.connack_s = lock, closing, connack_s
        self.attempt = 0  # bumped by every socket opened, CONNACK and loss: the watchdog's key
        self.overdue = False  # the watchdog ended the current attempt
        self._refused = False  # the current attempt's CONNECT was refused (refused())
        if len(rotation.brokers) > 1:
            client.on_socket_open = self.opened

    @property
    def several(self) -> bool:
        return len(self.rotation.brokers) > 1

    def connect(self) -> None:
        """Point paho at the current broker (``connect_async``: the loop thread connects)."""
        host, port = self.rotation.current
        self.client.connect_async(host, port, keepalive=self.keepalive_s)

    def bump(self) -> None:
        """Hold the lock. The current attempt was answered or ended: its watchdog does nothing."""
        self.attempt += 1

    def lost(self) -> str:
        """Hold the lock. The broker in use failed: point paho's loop at the next one after its
        delay (no link is open now, so ``connect_async`` only changes where the loop reconnects);
        what happens next, for the log."""
        self.bump()
        self.overdue = False
        delay = self.rotation.failed()
        self.connect()
        self.client.reconnect_delay_set(delay, delay)
        if not self.several:
            return "reconnecting in the background"
        return f"trying {broker_text(self.rotation.current)} " + (f"in {delay:g} s" if delay else "now")

    def refused(self) -> None:
        """Hold the lock. The broker answered the CONNECT with a refusal (the owner logged it)."""
        self.bump()
        self._refused = True

    def ended(self, connected: bool, reason: Any, error: str | None) -> tuple[str | None, str | None] | None:
        """Hold the lock; from paho's on_disconnect. The link to the current broker (``connected``),
        or the attempt to reach it, ended: paho is pointed at the next broker (:meth:`lost`).
        ``(last_error, plan)`` for the owner's log (plan None after a refusal, already logged;
        ``error``, the owner's last_error, kept then), or None while the owner is closing."""
        refused, self._refused = self._refused, False
        self.bump()
        if self._closing():
            return None
        where = broker_text(self.rotation.current)
        if connected:
            error = f"disconnected from broker {where}: {reason}"
        elif self.overdue:
            error = f"broker {where} did not accept the connection within {self.connack_s:g} s"
        elif not refused:
            error = f"broker {where} closed the connection before accepting it: {reason}"
        plan = self.lost()
        return error, None if refused and not connected else plan

    def accepted(self) -> Broker | None:
        """Hold the lock. CONNACK success: the broker this one replaces, when it is a switch."""
        self.bump()
        return self.rotation.connected()

    def opened(self, client: Any, userdata: Any, sock: Any) -> None:
        with self._lock:
            self.bump()
            timer = threading.Timer(self.connack_s, self._connack_overdue, args=(self.attempt, sock))
        timer.daemon = True
        timer.start()

    def _connack_overdue(self, attempt: int, sock: Any) -> None:
        with self._lock:
            if attempt != self.attempt or self._closing():
                return  # answered, lost or closing since
            self.overdue = True
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
