"""``/metrics``: one Prometheus registry for every camera of a service.

Each per-camera family has a ``camera`` label; ``gatekeeper_uptime_seconds`` is the service's.
What the frame loop measures (stage times, events, the score, the state) is observed as it
happens; what others count (a source's frames, a hook's deliveries, the actions) is read when
Prometheus scrapes (:class:`_CountersCollector`). ``gatekeeper_build_info`` names the running
version, Python and smile model. The alert rules and the dashboard in ``deploy/`` use these names.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..actions import ActionStats

if TYPE_CHECKING:
    from ..actions import Controls
    from ..capture import SourceStatus
    from ..hooks.base import Hook
    from .hub import EventHub

__all__ = ["LATENCY_BUCKETS", "Counted", "Metrics"]

#: Per-stage latency buckets: a detector run is a few ms on a desktop and tens of ms on a Pi.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Counted(Protocol):
    """What the registry reads of each camera's live view when Prometheus scrapes
    (:class:`~gatekeeper.web.view.LiveView`)."""

    name: str
    source_status: SourceStatus | None
    frames_processed: int
    hub: EventHub
    controls: Controls

    @property
    def hooks(self) -> tuple[Hook, ...]: ...

    @property
    def journal_errors(self) -> int: ...

    def service(self) -> dict[str, Any]: ...

    def door(self) -> dict[str, Any] | None: ...

    def hours(self) -> dict[str, Any] | None: ...


def _family(name: str, doc: str, *labels: str) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=["camera", *labels])


class _CountersCollector(Collector):
    """Counters owned by others (each camera's source and hooks), read when Prometheus scrapes."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        per_camera = {
            "read": _family("gatekeeper_frames_read", "Frames the source decoded"),
            "processed": _family("gatekeeper_frames_processed", "Frames that went through the pipeline"),
            "dropped": _family("gatekeeper_frames_dropped", "Frames a live source replaced before the pipeline took them"),
            "skipped": _family("gatekeeper_frames_skipped", "Undecodable or malformed frames the source skipped"),
            "undecodable": _family("gatekeeper_frames_undecodable", "Parts or frames a live camera sent that could not be decoded (of the skipped)"),
            "reconnects": _family("gatekeeper_camera_reconnects", "Times a live source reconnected"),
        }
        hooks = {
            "attempts": _family("gatekeeper_hook_attempts", "Delivery attempts per hook", "hook"),
            "delivered": _family("gatekeeper_hook_deliveries", "Events delivered per hook", "hook"),
            "failed": _family("gatekeeper_hook_failures", "Events given up per hook (after retries, or dropped from a full queue)", "hook"),
            "expired": _family("gatekeeper_hook_expired", "Events too old to deliver per hook", "hook"),
        }
        switches = _family("gatekeeper_hook_broker_switches", "Times an MQTT hook connected to another broker than the one it had lost (hooks[].brokers)", "hook")
        taken = _family("gatekeeper_actions", "Operator actions the gate acted on", "kind", "via")
        refused = _family("gatekeeper_action_refusals", "Operator actions and commands refused, by where from and why", "via", "reason")
        in_service = GaugeMetricFamily(
            "gatekeeper_in_service", "1 while the gate is in service, 0 while out of service; via: who holds it out (schedule: the opening hours; empty while in service)", labels=["camera", "via"]
        )
        schedule_open = GaugeMetricFamily("gatekeeper_schedule_open", "1 inside the opening hours (service.hours; always 1 without them), 0 outside", labels=["camera"])
        queued = GaugeMetricFamily("gatekeeper_hook_queue_length", "Events waiting in a hook's queue", labels=["camera", "hook"])
        capacity = GaugeMetricFamily("gatekeeper_hook_queue_capacity", "Events a hook's queue holds before it drops its oldest (hooks[].queue_size)", labels=["camera", "hook"])
        web_dropped = _family("gatekeeper_web_events_dropped", "Events lost by live-view clients that did not keep up")
        journal_errors = _family("gatekeeper_journal_errors", "Journal writes that failed (a full disk)")
        door_open = GaugeMetricFamily("gatekeeper_door_open", "1 while the door's contact says open, 0 while shut (gate.sensor; no sample without one, nor before its first reading)", labels=["camera"])
        held_open = GaugeMetricFamily("gatekeeper_door_held_open", "1 while the door is still open after its HELD_OPEN (gate.sensor.held_open_s), else 0", labels=["camera"])
        unused = _family("gatekeeper_open_without_passage", "OPENs the door did not open for within gate.sensor.passage_s (a guest who did not go through)")
        for v in self.metrics.views():
            status = v.source_status
            values = {
                "read": status.read if status else 0,
                "processed": v.frames_processed,
                "dropped": status.dropped if status else 0,
                "skipped": status.skipped if status else 0,
                "undecodable": status.undecodable if status else 0,
                "reconnects": status.reconnects if status else 0,
            }
            for key, fam in per_camera.items():
                fam.add_metric([v.name], values[key])
            for hook in v.hooks:
                for attr, fam in hooks.items():
                    fam.add_metric([v.name, hook.name], getattr(hook.stats, attr))
                if hasattr(hook.stats, "broker_switches"):  # MQTT hooks (hooks.brokers.MqttStats)
                    switches.add_metric([v.name, hook.name], hook.stats.broker_switches)
                queued.add_metric([v.name, hook.name], hook.backlog)
                capacity.add_metric([v.name, hook.name], hook.queue_size)
            web_dropped.add_metric([v.name], v.hub.total_dropped())
            journal_errors.add_metric([v.name], v.journal_errors)
            door = v.door()
            if door is not None:
                unused.add_metric([v.name], door["open_without_passage"])
                if door["state"] != "unknown":
                    door_open.add_metric([v.name], 1 if door["state"] == "open" else 0)
                    held_open.add_metric([v.name], 1 if door["held_open"] else 0)
            done, refusals = v.controls.stats.counts()
            for labels, n in done:
                taken.add_metric([v.name, *labels], n)
            for labels, n in refusals:
                refused.add_metric([v.name, *labels], n)
            service, hours = v.service(), v.hours()
            in_service.add_metric([v.name, service["via"] or ""], 1 if service["in_service"] else 0)
            schedule_open.add_metric([v.name], 1 if hours is None or hours["open"] else 0)
        for labels, n in self.metrics.refused_for_no_camera.counts()[1]:
            refused.add_metric(["", *labels], n)  # no camera of the service: an empty camera label
        yield from per_camera.values()
        yield from hooks.values()
        yield switches
        yield from (queued, capacity)
        yield from (f for f in (door_open, held_open, unused) if f.samples)  # none without a door sensor
        yield from (web_dropped, journal_errors, taken, refused, in_service, schedule_open)


class Metrics:
    """One Prometheus registry for every camera of a service: each per-camera family has a
    ``camera`` label; ``gatekeeper_uptime_seconds`` is the service's. ``refused_for_no_camera``
    counts the operator actions that named no camera of the service (``camera=""``).
    ``model_sha``: the SHA-256 of the smile model the service runs, for ``gatekeeper_build_info``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, model_sha: str = "") -> None:
        self._clock = clock
        self.started_at = clock()
        self._views: list[Counted] = []
        self._lock = threading.Lock()
        self.refused_for_no_camera = ActionStats()
        self.registry = CollectorRegistry(auto_describe=True)
        self.stage = Histogram("gatekeeper_stage_seconds", "Wall time per pipeline stage and frame (crop and classify only on frames with faces)", ["camera", "stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.events = Counter("gatekeeper_events", "Gate events by type", ["camera", "type"], registry=self.registry)
        self.score = Gauge("gatekeeper_smile_score", "Smile probability of the deciding face in the last frame (NaN: no face)", ["camera"], registry=self.registry)
        self.state = Gauge("gatekeeper_gate_state", "1 for the gate's current state", ["camera", "state"], registry=self.registry)
        self.last_open = Gauge("gatekeeper_last_open_timestamp_seconds", "Unix time of the gate's last OPEN (0: none since the start)", ["camera"], registry=self.registry)
        build = Info("gatekeeper_build", "The running gatekeeper: its version, Python, and the smile model's SHA-256", registry=self.registry)
        build.info({"version": _version(), "python": platform.python_version(), "model_sha": model_sha})
        uptime = Gauge("gatekeeper_uptime_seconds", "Seconds since the live view started", registry=self.registry)
        uptime.set_function(self.uptime)
        self.registry.register(_CountersCollector(self))

    def uptime(self) -> float:
        return self._clock() - self.started_at

    def add(self, view: Counted) -> None:
        with self._lock:
            if any(v.name == view.name for v in self._views):
                raise ValueError(f"camera {view.name!r} already has a live view in these metrics")
            self._views.append(view)

    def views(self) -> list[Counted]:
        with self._lock:
            return list(self._views)


def _version() -> str:
    """The installed gatekeeper's version ("unknown" when it runs from a checkout never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gatekeeper")
    except PackageNotFoundError:
        return "unknown"
