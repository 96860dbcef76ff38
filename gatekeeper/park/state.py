"""What the park knows of each gate: its latest state, availability and health, its last events,
its OPENs and FAULTs of the last hour. Pure: every change takes the time it happened as an
argument (the MQTT thread passes the wall clock), and the tiles are computed for a time given.

>>> park = ParkState(["lane1"], recent=3)
>>> park.on_availability("lane1", "online", at=10.0, retained=False)
>>> park.on_event("lane1", {"event": "OPEN", "id": "e1", "t": 1.5, "camera": "lane1"}, at=11.0)
>>> tile = park.tile("lane1", now=12.0)
>>> tile["status"], tile["opens_1h"], [e["event"] for e in tile["recent"]]
('online', 1, ['OPEN'])
>>> park.tile("lane1", now=11.0 + 3700)["opens_1h"]
0
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HOUR_S", "GateRecord", "ParkState"]

HOUR_S = 3600.0
_BUCKET_S = 10.0  # the hour's OPENs and FAULTs are counted in 10-second buckets
#: What a tile keeps of each event (the rest is in the journal).
_EVENT_KEYS = ("event", "id", "t", "camera", "reason", "by", "via", "score")


@dataclass
class GateRecord:
    """One gate as the park last heard of it."""

    name: str
    availability: str = "never seen"  # online, offline (its last will, or a clean stop), never seen
    state: str | None = None  # open, closed, fault: the gate's retained state topic
    in_service: bool | None = None
    camera: str | None = None
    last_seen: float | None = None  # wall clock of the last message (a retained state: its 'since')
    fault: str | None = None  # the reason of a FAULT not yet RECOVERED
    recent: deque[dict[str, Any]] = field(default_factory=deque)
    hour: dict[str, Counter[int]] = field(default_factory=lambda: {"OPEN": Counter(), "FAULT": Counter()})
    events: Counter[str] = field(default_factory=Counter)  # since the park service started
    _sums: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (first bucket, count): the page asks often

    def add(self, kind: str, at: float) -> None:
        self.hour[kind][int(at // _BUCKET_S)] += 1
        self._sums.pop(kind, None)

    def count_since(self, kind: str, since: float) -> int:
        first = int(since // _BUCKET_S)
        cached = self._sums.get(kind)
        if cached is not None and cached[0] == first:
            return cached[1]
        buckets = self.hour[kind]
        for old in [b for b in buckets if b < first]:
            del buckets[old]
        total = sum(buckets.values())
        self._sums[kind] = (first, total)
        return total

    def health(self) -> str:
        if self.availability == "offline":
            return "offline"
        if self.availability == "never seen":
            return "never seen"
        if self.state == "fault" or self.fault is not None:
            return f"fault: {self.fault}" if self.fault else "fault"
        if self.in_service is False:
            return "out of service"
        return "ok"


class ParkState:
    """Every gate's :class:`GateRecord`, behind a lock (the MQTT thread writes, the web thread reads).

    ``expected``: gates listed in the config, shown as never seen until they speak; others are
    added as they appear. ``on_change(gate)`` is called (outside the lock) after each change.
    """

    def __init__(self, expected: Iterable[str] = (), *, recent: int = 5, on_change: Callable[[str], None] | None = None) -> None:
        self.recent_n = recent
        self.on_change = on_change
        self._lock = threading.Condition()
        self._gates: dict[str, GateRecord] = {}
        for name in expected:
            self._gates[name] = GateRecord(name, recent=deque(maxlen=recent))

    def _gate(self, name: str) -> GateRecord:
        rec = self._gates.get(name)
        if rec is None:
            rec = self._gates[name] = GateRecord(name, recent=deque(maxlen=self.recent_n))
        return rec

    def _changed(self, gate: str) -> None:
        if self.on_change is not None:
            self.on_change(gate)

    # -- changes (any thread) ------------------------------------------------------------------
    def on_event(self, gate: str, data: dict[str, Any], *, at: float, live: bool = True) -> None:
        """An event of ``gate`` arrived at ``at``; ``live`` False: read back from the journal at start."""
        kind = str(data.get("event"))
        with self._lock:
            rec = self._gate(gate)
            rec.recent.appendleft({**{k: data.get(k) for k in _EVENT_KEYS}, "at": round(at, 3)})
            if live and kind in rec.hour:  # at start, count_at_start reads the whole hour back
                rec.add(kind, at)
            if live:
                rec.events[kind] += 1
                rec.last_seen = max(rec.last_seen or at, at)
                if rec.availability == "never seen":
                    rec.availability = "online"  # it published: it is up, whatever availability says later
            if data.get("camera") is not None:
                rec.camera = str(data["camera"])
            if live and kind == "FAULT":
                rec.fault = str(data.get("reason") or "fault")
            elif live and kind == "RECOVERED":
                rec.fault = None
            if live and kind in ("OUT_OF_SERVICE", "IN_SERVICE"):
                rec.in_service = kind == "IN_SERVICE"
            self._lock.notify_all()
        self._changed(gate)

    def on_state(self, gate: str, data: dict[str, Any], *, at: float, retained: bool) -> None:
        """The gate's state topic: ``{"state", "in_service", "since", ...}`` (retained: replayed
        by the broker on subscribing, so ``since`` is when it was true, not ``at``)."""
        with self._lock:
            rec = self._gate(gate)
            rec.state = str(data.get("state")) if data.get("state") is not None else rec.state
            if isinstance(data.get("in_service"), bool):
                rec.in_service = data["in_service"]
            if rec.state != "fault":
                rec.fault = None
            elif rec.fault is None:
                rec.fault = "fault"
            since = data.get("since")
            seen = at if not retained else (float(since) if isinstance(since, (int, float)) else None)
            if seen is not None:
                rec.last_seen = max(rec.last_seen or seen, seen)
            if rec.availability == "never seen":
                rec.availability = "unknown"
        self._changed(gate)

    def on_availability(self, gate: str, text: str, *, at: float, retained: bool) -> None:
        """``online`` or ``offline`` (the last will, or a clean shutdown)."""
        with self._lock:
            rec = self._gate(gate)
            rec.availability = text if text in ("online", "offline") else "unknown"
            if not retained:
                rec.last_seen = max(rec.last_seen or at, at)
        self._changed(gate)

    def count_at_start(self, gate: str, kind: str, at: float) -> None:
        """An OPEN or FAULT of the last hour, read back from the journal at start."""
        with self._lock:
            self._gate(gate).add(kind, at)

    def seen_at_start(self, gate: str, at: float) -> None:
        """The journal's last time for ``gate`` (a restarted park knows when it last heard from it)."""
        with self._lock:
            rec = self._gate(gate)
            rec.last_seen = max(rec.last_seen or at, at)

    # -- reading -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._gates)

    def knows(self, gate: str) -> bool:
        with self._lock:
            return gate in self._gates

    def availability(self, gate: str) -> str | None:
        with self._lock:
            rec = self._gates.get(gate)
            return None if rec is None else rec.availability

    def tile(self, gate: str, *, now: float) -> dict[str, Any]:
        """What the page shows of one gate (KeyError for a gate never heard of)."""
        with self._lock:
            return self._tile(self._gates[gate], now)

    def tiles(self, *, now: float) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: self._tile(self._gates[name], now) for name in sorted(self._gates)}

    def summary(self, *, now: float) -> dict[str, int]:
        """The park in numbers (cheap: sent to every page with each change)."""
        with self._lock:
            health = [rec.health() for rec in self._gates.values()]
            return {
                "gates": len(health),
                "online": sum(rec.availability == "online" for rec in self._gates.values()),
                "offline": health.count("offline"),
                "never_seen": health.count("never seen"),
                "faulted": sum(h.startswith("fault") for h in health),
                "out_of_service": health.count("out of service"),
                "opens_1h": sum(rec.count_since("OPEN", now - HOUR_S) for rec in self._gates.values()),
            }

    def _tile(self, rec: GateRecord, now: float) -> dict[str, Any]:
        return {
            "gate": rec.name,
            "status": rec.availability,
            "state": rec.state,
            "in_service": rec.in_service,
            "health": rec.health(),
            "camera": rec.camera,
            "last_seen": None if rec.last_seen is None else round(rec.last_seen, 3),
            "opens_1h": rec.count_since("OPEN", now - HOUR_S),
            "faults_1h": rec.count_since("FAULT", now - HOUR_S),
            "recent": list(rec.recent),
            "events": dict(rec.events),
        }

    def wait_for_event(self, gate: str, match: Callable[[dict[str, Any]], bool], timeout: float, *, after: float) -> dict[str, Any] | None:
        """The newest event of ``gate`` seen at or after ``after`` for which ``match`` holds, waiting
        up to ``timeout`` seconds for it (an action's answer); None if none came."""

        def found() -> dict[str, Any] | None:
            rec = self._gates.get(gate)
            return None if rec is None else next((e for e in rec.recent if e["at"] >= after and match(e)), None)

        with self._lock:
            self._lock.wait_for(found, timeout)
            return found()
