"""The park's Prometheus metrics, collected from what it holds at each scrape (one registry of
its own): every gate's availability, state, service and hour's counts, and the service's own
broker link, journal and actions."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["ActionCounts", "ParkCollector", "park_registry"]

_STATES = ("open", "closed", "fault")


class ActionCounts:
    """Actions asked of the park, by gate, kind and result (refusals before a gate is known: gate "")."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def count(self, gate: str, kind: str, result: str) -> None:
        with self._lock:
            self.counts[(gate, kind, result)] += 1

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self.counts)


class ParkCollector:
    """A custom collector: ``tiles()`` and ``service()`` are read at each scrape."""

    def __init__(self, tiles: Callable[[], dict[str, dict[str, Any]]], service: Callable[[], dict[str, Any]], actions: ActionCounts, refusals: Callable[[], list[tuple[tuple[str, str], int]]]) -> None:
        self.tiles, self.service, self.actions, self.refusals = tiles, service, actions, refusals
        self.started = time.time()

    def collect(self) -> Iterator[Metric]:
        tiles, svc = self.tiles(), self.service()
        g = "gatekeeper_park_gate_"
        online = GaugeMetricFamily(g + "online", "1 while the gate says it is online (0: offline by its last will or a clean stop, or never seen)", labels=["gate"])
        state = GaugeMetricFamily(g + "state", "the gate's retained state: 1 for the state it is in", labels=["gate", "state"])
        service = GaugeMetricFamily(g + "in_service", "1 in service, 0 out of service (an operator took it out)", labels=["gate"])
        healthy = GaugeMetricFamily(g + "healthy", "1 when online, not faulted and in service", labels=["gate"])
        opens = GaugeMetricFamily(g + "opens_last_hour", "OPENs of the last hour (10 s buckets)", labels=["gate"])
        faults = GaugeMetricFamily(g + "faults_last_hour", "FAULTs of the last hour (10 s buckets)", labels=["gate"])
        seen = GaugeMetricFamily(g + "last_seen_timestamp_seconds", "wall clock of the gate's last message", labels=["gate"])
        events = CounterMetricFamily("gatekeeper_park_events", "events journaled since the park service started", labels=["gate", "type"])
        for name, t in tiles.items():
            online.add_metric([name], 1.0 if t["status"] == "online" else 0.0)
            for s in _STATES:
                state.add_metric([name, s], 1.0 if t["state"] == s else 0.0)
            if t["in_service"] is not None:  # nothing is known of a gate never seen
                service.add_metric([name], 1.0 if t["in_service"] else 0.0)
            healthy.add_metric([name], 1.0 if t["health"] == "ok" else 0.0)
            opens.add_metric([name], t["opens_1h"])
            faults.add_metric([name], t["faults_1h"])
            if t["last_seen"] is not None:
                seen.add_metric([name], t["last_seen"])
            for kind, n in t["events"].items():
                events.add_metric([name, kind], n)
        yield from (online, state, service, healthy, opens, faults, seen, events)
        yield GaugeMetricFamily("gatekeeper_park_gates", "gates the park knows of", value=len(tiles))
        yield GaugeMetricFamily("gatekeeper_park_broker_connected", "1 while the broker has accepted the park's connection", value=1.0 if svc["broker"]["connected"] else 0.0)
        yield CounterMetricFamily("gatekeeper_park_broker_connects", "connections the broker accepted (the first, then each reconnect)", value=svc["broker"]["connects"])
        yield CounterMetricFamily("gatekeeper_park_broker_switches", "connections accepted by another broker of broker.brokers than the one lost", value=svc["broker"]["switches"])
        counts = svc["messages"]
        messages = CounterMetricFamily("gatekeeper_park_messages", "messages taken from the broker, by outcome", labels=["outcome"])
        for outcome in ("journaled", "duplicates", "malformed", "journal_errors"):
            messages.add_metric([outcome], counts[outcome])
        yield messages
        acts = CounterMetricFamily("gatekeeper_park_actions", "operator actions asked of the park, by gate, kind and result", labels=["gate", "action", "result"])
        for (gate, kind, result), n in sorted(self.actions.snapshot().items()):
            acts.add_metric([gate, kind, result], n)
        yield acts
        auth = CounterMetricFamily("gatekeeper_park_auth_refusals", "credentials refused (page, status, metrics, actions), by reason and the role of the user named (none: no user)", labels=["reason", "role"])
        for (reason, role), n in self.refusals():
            auth.add_metric([reason, role], n)
        yield auth
        yield GaugeMetricFamily("gatekeeper_park_start_time_seconds", "wall clock the park service started", value=self.started)


def park_registry(collector: ParkCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]  # a collector is anything with collect()
    return registry
