"""The events of a camera fanned out to its live-view clients (Server-Sent Events).

Publishing never waits for a client: each ``/events`` client has a bounded queue on the server's
event loop, and a client that does not keep up loses its oldest events (counted in
``gatekeeper_web_events_dropped_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from typing import Any

__all__ = ["EventHub", "Subscriber", "sse"]


def sse(kind: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    """One Server-Sent Events message.

    >>> sse("gate", {"event": "OPEN"}, "e1")
    b'id: e1\\nevent: gate\\ndata: {"event":"OPEN"}\\n\\n'
    """
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Subscriber:
    """One ``/events`` client: a bounded queue living on the server's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=size)
        self.dropped = 0

    def put(self, item: dict[str, Any]) -> None:
        """Runs on the event loop: a full queue loses its oldest item."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)


class EventHub:
    """Fans events out to the live-view clients; publishing never waits for any of them.

    >>> hub = EventHub(queue_size=2, history=5)
    >>> hub.publish({"event": "OPEN"})
    >>> hub.recent()
    [{'event': 'OPEN'}]
    """

    def __init__(self, queue_size: int, history: int) -> None:
        self.queue_size = queue_size
        self._recent: deque[dict[str, Any]] = deque(maxlen=history)
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self.dropped = 0  # items lost by subscribers that left, added when they leave

    def publish(self, item: dict[str, Any]) -> None:
        """Keep ``item`` among the recent ones and queue it for every client (any thread)."""
        with self._lock:
            self._recent.append(item)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            # call_soon_threadsafe only appends to the loop's ready queue and wakes it up.
            with contextlib.suppress(RuntimeError):  # the loop closed under us: the server is stopping
                sub.loop.call_soon_threadsafe(sub.put, item)

    def recent(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._recent)

    def subscribe(self) -> Subscriber:
        """A new client, its queue already holding the recent events (call on the event loop)."""
        sub = Subscriber(asyncio.get_running_loop(), self.queue_size)
        with self._lock:
            for item in self._recent:
                sub.put(item)
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)
            self.dropped += sub.dropped

    def total_dropped(self) -> int:
        with self._lock:
            return self.dropped + sum(s.dropped for s in self._subscribers)
