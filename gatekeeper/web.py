"""The live view: what the gate sees and why it decided, served over HTTP beside the frame loop.

    gatekeeper --video clip.mp4 --realtime --http 127.0.0.1:8080

=================  ==========================================================================
route              what
=================  ==========================================================================
``/``              the page: live picture with face boxes, smile score against the
                   thresholds, gate state, recent events as they happen
``/stream.mjpg``   the annotated picture as MJPEG (``multipart/x-mixed-replace``)
``/events``        Server-Sent Events: ``gate`` (each event, recent ones first) and ``state``
``/healthz``       200 while frames arrive; 503 before the first frame, after the watchdog
                   fired (FAULT), when frames stopped for ``source.watchdog_s``, or the
                   source ended
``/status``        JSON: state, frame counters, last score, uptime, events by type, hooks
``/metrics``       Prometheus text format, from this view's own registry
``POST             an operator action (``open``, ``out_of_service``, ``in_service``), body
/actions/{kind}``  ``{"by": ..., "reason": ...}``; always needs ``http.token`` as ``Authorization:
                   Bearer``, loopback or not (see :mod:`gatekeeper.actions`)
=================  ==========================================================================

Several cameras (one :class:`LiveView` each, their metrics in one :class:`Metrics`): every
camera's view lives under ``/cameras/{camera}/`` (the page, ``stream.mjpg``, ``events``,
``status``, ``healthz``, ``snapshot.jpg`` and ``POST actions/{kind}``), and also at the routes
above when it is the only one. With several, ``/`` is the list of cameras (``cameras.html``),
``/status`` and ``/healthz`` the overall answer with ``cameras: {name: ...}``, and the routes of
one camera's view without a name answer 404. Every per-camera metric family has a ``camera`` label.

Threads. The frame loop only calls :meth:`LiveView.on_frame` (stores a reference to the newest
frame in a one-slot handoff and observes a few numbers) and :meth:`LiveView.emit` (counts the
event and queues it for each live-view client). Everything that costs time (drawing the
boxes, JPEG encoding, HTTP) happens on the server's own thread and its executor, so a slow or
stuck browser can never stall the gate. Each ``/events`` client has a bounded queue: a client
that does not keep up loses its oldest events, counted in ``gatekeeper_web_events_dropped_total``.

With ``http.token`` set, every route but ``/healthz`` needs it, as ``Authorization: Bearer
TOKEN`` (the scheme in any case, as RFC 7235 has it) or ``?token=TOKEN`` (the page passes its
own ``?token=`` on to the picture and events). A bind beyond loopback refuses to start without
a token. Actions take the token only as a bearer header, never from the URL (a link or a form
on another site cannot carry it), and without a configured token they are refused.

A request the HTTP parser refuses (a request line or header over 8190 bytes, a malformed URL)
gets a short 400 that echoes nothing of the request, and one warning line in the log with any
token masked; no traceback.

Times. ``t`` in the state and the events is the source's own time: the position in a video
file, the wall clock (Unix seconds) for a live source. Each also carries ``elapsed``, seconds
since the start (a file: the same as ``t``; a live source: since the first frame or event the
view saw), and ``wall``, the wall clock for a live source (null for a file). The page shows
``elapsed``, and for a live source the local time of day.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import importlib.resources
import ipaddress
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, InvalidHeader, InvalidURLError, LineTooLong
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .actions import MAX_BODY as MAX_ACTION_BODY
from .errors import ConfigError, FrameError
from .gate import WHOLE_FRAME, Event, EventType, GateState, TrackedFace

if TYPE_CHECKING:
    from .actions import Controls
    from .app import Pipeline
    from .capture import Frame, SourceStatus
    from .config import Config
    from .hooks.base import Hook

__all__ = ["EventHub", "LiveView", "Metrics", "WebServer", "bearer_token", "is_loopback", "mask_secrets", "parse_listen"]

log = logging.getLogger(__name__)

#: Stages timed by the pipeline (see :class:`gatekeeper.app.StageTimes`).
STAGES = ("decode", "detect", "crop", "classify", "gate")
# Per-stage latency buckets: a detector run is a few ms on a desktop and tens of ms on a Pi.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BOUNDARY = "frame"
HEARTBEAT_S = 10.0  # an SSE comment this often keeps proxies from closing an idle stream
_ACTION_PATH = re.compile(r"^(/cameras/[^/]+)?/actions/")


# -- where to listen ------------------------------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT`` -> (host, port); host defaults to loopback.

    >>> parse_listen("8080"), parse_listen("0.0.0.0:80"), parse_listen("[::1]:8080")
    (('127.0.0.1', 8080), ('0.0.0.0', 80), ('::1', 8080))
    """
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"--http {text!r}: expected HOST:PORT, with an IPv6 address in brackets ([::1]:8080)")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"--http {text!r}: expected HOST:PORT with a port number, e.g. 127.0.0.1:8080") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"--http {text!r}: expected a port from 0 to 65535, got {port}")
    # An empty host would make the server listen on every interface: loopback unless told otherwise.
    return host or "127.0.0.1", port


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; any other name counts as reachable from outside."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so it is treated as public


# -- the frame loop's side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The newest processed frame and what the gate made of it (handed to the server as is)."""

    seq: int
    picture: Frame  # the source makes a new frame each time, so no copy is needed
    faces: tuple[TrackedFace, ...]  # with their track ids, from the gate
    score: float | None
    state: str

    @property
    def frame(self) -> int:
        return self.picture.index

    @property
    def t(self) -> float:
        return self.picture.t

    @property
    def image(self) -> np.ndarray:
        """The RGB picture: a live MJPEG frame the pipeline did not need in full is decoded here,
        on the server's side, and only when someone watches (raises :class:`FrameError`)."""
        return self.picture.image


class _Subscriber:
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
        self._subscribers: set[_Subscriber] = set()
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

    def subscribe(self) -> _Subscriber:
        """A new client, its queue already holding the recent events (call on the event loop)."""
        sub = _Subscriber(asyncio.get_running_loop(), self.queue_size)
        with self._lock:
            for item in self._recent:
                sub.put(item)
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)
            self.dropped += sub.dropped

    def total_dropped(self) -> int:
        with self._lock:
            return self.dropped + sum(s.dropped for s in self._subscribers)


class _CountersCollector(Collector):
    """Counters owned by others (each camera's source and hooks), read when Prometheus scrapes."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        def family(name: str, doc: str, *labels: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=["camera", *labels])

        per_camera = {
            "read": family("gatekeeper_frames_read", "Frames the source decoded"),
            "processed": family("gatekeeper_frames_processed", "Frames that went through the pipeline"),
            "dropped": family("gatekeeper_frames_dropped", "Frames a live source replaced before the pipeline took them"),
            "skipped": family("gatekeeper_frames_skipped", "Undecodable or malformed frames the source skipped"),
            "reconnects": family("gatekeeper_camera_reconnects", "Times a live source reconnected"),
        }
        hooks = {
            "attempts": family("gatekeeper_hook_attempts", "Delivery attempts per hook", "hook"),
            "delivered": family("gatekeeper_hook_deliveries", "Events delivered per hook", "hook"),
            "failed": family("gatekeeper_hook_failures", "Events given up per hook (after retries, or dropped from a full queue)", "hook"),
            "expired": family("gatekeeper_hook_expired", "Events too old to deliver per hook", "hook"),
        }
        taken = family("gatekeeper_actions", "Operator actions the gate acted on", "kind", "via")
        refused = family("gatekeeper_action_refusals", "Operator actions and commands refused, by where from and why", "via", "reason")
        in_service = GaugeMetricFamily("gatekeeper_in_service", "1 while the gate is in service, 0 while an operator has it out of service", labels=["camera"])
        web_dropped = family("gatekeeper_web_events_dropped", "Events lost by live-view clients that did not keep up")
        journal_errors = family("gatekeeper_journal_errors", "Journal writes that failed (a full disk)")
        for v in self.metrics.views():
            status = v.source_status
            values = {
                "read": status.read if status else 0,
                "processed": v.frames_processed,
                "dropped": status.dropped if status else 0,
                "skipped": status.skipped if status else 0,
                "reconnects": status.reconnects if status else 0,
            }
            for key, fam in per_camera.items():
                fam.add_metric([v.camera], values[key])
            for hook in v.hooks:
                for attr, fam in hooks.items():
                    fam.add_metric([v.camera, hook.name], getattr(hook.stats, attr))
            web_dropped.add_metric([v.camera], v.hub.total_dropped())
            journal_errors.add_metric([v.camera], v.app.journal_errors if v.app is not None else 0)
            if v.controls is not None:
                done, refusals = v.controls.stats.counts()
                for labels, n in done:
                    taken.add_metric([v.camera, *labels], n)
                for labels, n in refusals:
                    refused.add_metric([v.camera, *labels], n)
            in_service.add_metric([v.camera], 1 if v.service()["in_service"] else 0)
        yield from per_camera.values()
        yield from hooks.values()
        yield web_dropped
        yield journal_errors
        yield taken
        yield refused
        yield in_service


class Metrics:
    """One Prometheus registry for every camera of a service: each per-camera family has a
    ``camera`` label; ``gatekeeper_uptime_seconds`` is the service's."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started_at = clock()
        self._views: list[LiveView] = []
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=True)
        self.stage = Histogram("gatekeeper_stage_seconds", "Wall time per pipeline stage and frame (crop and classify only on frames with faces)", ["camera", "stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.events = Counter("gatekeeper_events", "Gate events by type", ["camera", "type"], registry=self.registry)
        self.score = Gauge("gatekeeper_smile_score", "Smile probability of the deciding face in the last frame (NaN: no face)", ["camera"], registry=self.registry)
        self.state = Gauge("gatekeeper_gate_state", "1 for the gate's current state", ["camera", "state"], registry=self.registry)
        uptime = Gauge("gatekeeper_uptime_seconds", "Seconds since the live view started", registry=self.registry)
        uptime.set_function(self.uptime)
        self.registry.register(_CountersCollector(self))

    def uptime(self) -> float:
        return self._clock() - self.started_at

    def add(self, view: LiveView) -> None:
        with self._lock:
            if any(v.camera == view.camera for v in self._views):
                raise ValueError(f"camera {view.camera!r} already has a live view in these metrics")
            self._views.append(view)

    def views(self) -> list[LiveView]:
        with self._lock:
            return list(self._views)


class LiveView:
    """The frame loop's side of the web view: an ``on_frame`` callback and an event sink.

    >>> view = LiveView(cfg)                                        # doctest: +SKIP
    >>> app = App(cfg, pipeline, [StdoutSink(), view], on_frame=view.on_frame)  # doctest: +SKIP

    ``source_status`` and ``hooks`` may be set after construction (the server starts before the
    models load, so the page is up early); until then their counters read zero. ``live``: the
    source is a camera or stream, whose times are the wall clock (see the module's "Times").
    ``camera``: the camera's name (default ``cfg.name``), the ``camera`` label of its metrics;
    ``metrics``: the registry the service's cameras share (default: one of the view's own).
    """

    def __init__(
        self,
        cfg: Config,
        *,
        source_status: SourceStatus | None = None,
        hooks: Sequence[Hook] = (),
        live: bool = False,
        clock: Callable[[], float] = time.monotonic,
        camera: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.camera = cfg.name if camera is None else camera
        self.source_status = source_status
        self.hooks: Sequence[Hook] = hooks
        self.live = live
        self._t0: float | None = None  # a live source's start: the first frame's or event's time
        self.hub = EventHub(cfg.http.event_queue, cfg.http.recent_events)
        self._clock = clock
        self.started_at = clock()
        self.frames_processed = 0
        self.events_by_type: dict[str, int] = {e.value: 0 for e in EventType}
        self.fault: str | None = None  # reason of an unrecovered FAULT event
        self.ended = False
        self.app: Any = None  # the App, once built: its trouble() (the journal cannot write) and journal_errors
        self.controls: Controls | None = None  # the operator controls, once built (POST /actions/...)
        self._snapshot: Snapshot | None = None
        self._last_frame_at: float | None = None
        self._lock = threading.Lock()

        self.metrics = Metrics(clock) if metrics is None else metrics
        self.registry = self.metrics.registry
        m, cam = self.metrics, self.camera
        self._stage_children = {st: m.stage.labels(cam, st) for st in STAGES}
        self._event_children = {e.value: m.events.labels(cam, e.value) for e in EventType}  # every type shows, at 0
        self._score = m.score.labels(cam)
        self._score.set(float("nan"))
        self._state_shown: str | None = None
        self._state_children = {st.value: m.state.labels(cam, st.value) for st in GateState}
        self._set_state(GateState.IDLE.value)
        m.add(self)

    # -- called on the frame loop ------------------------------------------------------------
    def observe_stage(self, stage: str, seconds: float) -> None:
        """A :class:`~gatekeeper.app.StageTimes` observer: one histogram sample."""
        child = self._stage_children.get(stage)
        if child is not None:
            child.observe(seconds)

    def on_frame(self, frame: Frame, pipeline: Pipeline) -> None:
        """Hand the newest frame over (one slot: an unsent older frame is simply replaced)."""
        with self._lock:
            if self._t0 is None:
                self._t0 = frame.t
            seq = self._snapshot.seq + 1 if self._snapshot else 0
            state = GateState.FAULT.value if self.fault else pipeline.gate.state.value
            score = pipeline.gate.last_score
            self._snapshot = Snapshot(seq, frame, tuple(pipeline.gate.faces), score, state)
            self._last_frame_at = self._clock()
            self.frames_processed += 1
        self._score.set(float("nan") if score is None else score)
        self._set_state(state)

    def emit(self, event: Event) -> None:
        """Event sink: count it and queue it for the live-view clients."""
        kind = event.event.value
        with self._lock:
            if self._t0 is None:
                self._t0 = event.t
            self.events_by_type[kind] = self.events_by_type.get(kind, 0) + 1
            if event.event is EventType.FAULT:
                self.fault = event.reason or "fault"
            elif event.event is EventType.RECOVERED:
                self.fault = None
        child = self._event_children.get(kind)
        (child if child is not None else self.metrics.events.labels(self.camera, kind)).inc()
        if event.event is EventType.FAULT:
            self._set_state(GateState.FAULT.value)
        self.hub.publish({**event.to_dict(), **self.times(event.t)})

    def close(self) -> None:
        """Event sink: the source has ended (the server may stay up; health says so)."""
        self.ended = True

    def _set_state(self, state: str) -> None:
        if state == self._state_shown:
            return  # the common case on the frame loop: nothing to touch
        self._state_shown = state
        for value, child in self._state_children.items():
            child.set(1 if value == state else 0)

    def times(self, t: float) -> dict[str, float | None]:
        """``elapsed`` (seconds since the start) and ``wall`` (Unix seconds, live sources only) of source time ``t``."""
        if not self.live:
            return {"elapsed": round(t, 3), "wall": None}
        t0 = t if self._t0 is None else self._t0
        return {"elapsed": round(t - t0, 3), "wall": round(t, 3)}

    # -- read by the server ------------------------------------------------------------------
    def snapshot(self) -> Snapshot | None:
        with self._lock:
            return self._snapshot

    def health(self) -> tuple[bool, str]:
        """(healthy, why): frames arrived within ``source.watchdog_s`` and no FAULT is open."""
        with self._lock:
            last, fault = self._last_frame_at, self.fault
        if fault is not None:
            return False, f"fault: {fault}"
        trouble = self.app.trouble() if self.app is not None else None
        if trouble is not None:
            return False, trouble
        if last is None:
            return False, "no frame yet"
        age = self._clock() - last
        if self.ended or age > self.cfg.source.watchdog_s:  # ended: at once, not after watchdog_s
            return False, f"source ended; last frame {age:.1f} s ago" if self.ended else f"no frame for {age:.1f} s"
        return True, "ok"

    def service(self) -> dict[str, Any]:
        """Whether the gate is in service and, when not, who took it out, how and why."""
        gate = self.app.pipeline.gate if self.app is not None else None
        out = gate.out_of_service if gate is not None else None
        if out is None:
            return {"in_service": True, "by": None, "via": None, "reason": None, "event": None}
        return {"in_service": False, "by": out.by, "via": out.via, "reason": out.note, "event": out.id}

    def live_state(self) -> dict[str, Any]:
        """The small, often-sent part of the status: what the page redraws."""
        snap = self.snapshot()
        healthy, why = self.health()
        service = self.service()
        state = GateState.FAULT.value if self.fault else (snap.state if snap else GateState.IDLE.value)
        if not service["in_service"] and state != GateState.FAULT.value:
            state = GateState.OUT_OF_SERVICE.value
        return {
            "state": state,
            "score": None if snap is None or snap.score is None else round(snap.score, 4),
            "faces": [] if snap is None else [[round(v, 1) for v in f.box] + [round(f.score, 4)] for f in snap.faces],
            "frame": None if snap is None else snap.frame,
            "t": None if snap is None else round(snap.t, 3),
            **(self.times(snap.t) if snap is not None else {"elapsed": None, "wall": None}),
            "live": self.live,
            "healthy": healthy,
            "health": why,
            "ended": self.ended,
            "in_service": service["in_service"],
            "service": service,
            # The page shows its controls when the server takes actions at all (a token is set).
            "controls": self.controls is not None and bool(self.cfg.http.token),
        }

    def status(self) -> dict[str, Any]:
        """Everything ``/status`` reports."""
        st = self.source_status
        with self._lock:
            events = dict(self.events_by_type)
            processed = self.frames_processed
        return {
            "name": self.camera,
            **self.live_state(),
            "uptime_s": round(self._clock() - self.started_at, 3),
            "frames": {
                "read": st.read if st else 0,
                "processed": processed,
                "dropped": st.dropped if st else 0,
                "skipped": st.skipped if st else 0,
            },
            "reconnects": st.reconnects if st else 0,
            "source_fault": st.fault if st else None,
            "events": events,
            "hooks": {h.name: dataclasses.asdict(h.stats) for h in self.hooks},
            "thresholds": {"enter": self.cfg.gate.enter_threshold, "exit": self.cfg.gate.exit_threshold},
            "actions": self.controls.stats.snapshot() if self.controls is not None else {"taken": {}, "refused": {}},
        }


# -- drawing ------------------------------------------------------------------------------------


def annotate_jpeg(snap: Snapshot, *, enter: float, exit_: float, quality: int, zone: tuple[float, ...] = WHOLE_FRAME) -> bytes:
    """The frame with the gate's zone and each face's box, track id and score drawn on it, as JPEG
    (runs on the server side)."""
    img = cv2.cvtColor(snap.image, cv2.COLOR_RGB2BGR)  # a new array: the frame itself stays untouched
    thickness = max(2, img.shape[1] // 320)
    if tuple(zone) != WHOLE_FRAME:
        height, width = img.shape[:2]
        corners = [(round(zone[0] * width), round(zone[1] * height)), (round(zone[2] * width), round(zone[3] * height))]
        cv2.rectangle(img, corners[0], corners[1], (255, 255, 255), max(1, thickness // 2))
    for face in snap.faces:
        x, y, w, h = (round(v) for v in face.box)
        # BGR: green for a smile that counts, amber inside the hysteresis band, red below it; grey outside the zone.
        color = (80, 200, 60) if face.score >= enter else (0, 180, 255) if face.score >= exit_ else (60, 60, 230)
        if not face.in_zone:
            color = (150, 150, 150)
        cv2.rectangle(img, (x, y), (x + w, y + h), color, thickness)
        label = f"#{face.track} {face.score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)
        top = max(y - th - base - 4, 0)
        cv2.rectangle(img, (x, top), (x + tw + 6, top + th + base + 4), color, -1)
        cv2.putText(img, label, (x + 3, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 2, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


class _JpegCache:
    """Encodes each new frame once, however many clients watch (on the server's executor)."""

    def __init__(self, view: LiveView) -> None:
        self.view = view
        self._seq = -1
        self._jpeg: bytes | None = None
        self._lock = asyncio.Lock()

    async def latest(self) -> tuple[int, bytes | None]:
        snap = self.view.snapshot()
        if snap is None:
            return -1, None
        if snap.seq == self._seq:
            return self._seq, self._jpeg
        async with self._lock:
            if snap.seq != self._seq:
                g = self.view.cfg.gate
                try:
                    jpeg = await asyncio.get_running_loop().run_in_executor(
                        None, lambda: annotate_jpeg(snap, enter=g.enter_threshold, exit_=g.exit_threshold, quality=self.view.cfg.http.jpeg_quality, zone=g.zone)
                    )
                except FrameError:  # a damaged JPEG from the camera: the last good picture stays up
                    jpeg = self._jpeg
                self._seq, self._jpeg = snap.seq, jpeg
        return self._seq, self._jpeg


# -- the server ---------------------------------------------------------------------------------


def _page() -> str:
    return importlib.resources.files("gatekeeper").joinpath("live.html").read_text(encoding="utf-8")


def _cameras_page() -> str:
    return importlib.resources.files("gatekeeper").joinpath("cameras.html").read_text(encoding="utf-8")


#: Routes that answer without a token: the health checks a load balancer or systemd polls.
_HEALTHZ = re.compile(r"^(/cameras/[^/]+)?/healthz$")


def _sse(kind: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# -- requests the HTTP parser refuses -----------------------------------------------------------

_TOKEN_PARAM = re.compile(r"(?i)(token=)[^&\s'\"\\]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"\\]+")


def mask_secrets(text: str, token: str | None = None) -> str:
    """``text`` with ``token=...`` values, bearer credentials and ``token`` itself replaced by ``***``.

    >>> mask_secrets("GET /status?token=abc&x=1 HTTP/1.1")
    'GET /status?token=***&x=1 HTTP/1.1'
    """
    if token:
        text = text.replace(token, "***")
    return _BEARER.sub(r"\1***", _TOKEN_PARAM.sub(r"\1***", text))


def _one_line(text: str, limit: int = 160) -> str:
    """The first line of ``text``, control characters escaped and cut to ``limit`` characters."""
    first = text.strip().split("\n", 1)[0]
    printable = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in first)
    return printable if len(printable) <= limit else printable[: limit - 3] + "..."


def _what_was_wrong(exc: BaseException | None) -> str:
    if isinstance(exc, LineTooLong):
        return "request line or header field too long"
    if isinstance(exc, InvalidURLError):
        return "malformed URL"
    if isinstance(exc, InvalidHeader):
        return "malformed header"
    if isinstance(exc, BadHttpMethod):
        return "not an HTTP request"
    return "malformed request"


class _GuardedRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, answering requests its parser refuses without echoing them.

    aiohttp's own answer to such a request repeats the start of the offending line (with any
    ``?token=``) in the 400 body, and logs it with a traceback. Here the client gets a fixed
    line, and the log one masked warning line. Errors of our own handlers (5xx) keep aiohttp's
    handling: their tracebacks are bugs worth seeing.
    """

    secret: str | None = None  # set per server by _GuardedServer

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        what = _what_was_wrong(exc)
        detail = mask_secrets(_one_line(message or str(exc or "")), self.secret)
        # Scanners and TLS clients on a plain HTTP port are routine: their first line is not worth a warning.
        level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.WARNING
        log.log(level, "bad request from %s: %d, %s: %s", request.remote, status, what, detail)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        resp = web.Response(status=status, text=f"{status} {phrase}: {what}\n")
        resp.force_close()
        return resp


class _GuardedServer(web.Server):
    """An aiohttp server whose connections are handled by :class:`_GuardedRequestHandler`."""

    secret: str | None = None

    def __call__(self) -> web.RequestHandler:
        handler = _GuardedRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.secret = self.secret
        return handler


class _GuardedAppRunner(web.AppRunner):
    """``AppRunner`` serving through :class:`_GuardedServer` (aiohttp offers no option for it)."""

    def __init__(self, app: web.Application, *, secret: str | None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._secret = secret

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # the same object, only its protocol factory differs
        assert isinstance(server, _GuardedServer)
        server.secret = self._secret
        return server


def bearer_token(header: str) -> str | None:
    """The credentials of an ``Authorization: Bearer ...`` header (scheme in any case), else None.

    >>> bearer_token("bearer abc"), bearer_token("Bearer  abc"), bearer_token("Basic abc")
    ('abc', 'abc', None)
    """
    scheme, _, credentials = header.strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


class WebServer:
    """aiohttp on its own event loop and thread, serving a :class:`LiveView`.

    >>> server = WebServer(view, "127.0.0.1", 8080)   # doctest: +SKIP
    >>> server.start()                                 # raises ConfigError if it cannot listen
    >>> server.url                                     # doctest: +SKIP
    'http://127.0.0.1:8080/'
    >>> server.stop()                                  # doctest: +SKIP
    """

    def __init__(self, view: LiveView | Mapping[str, LiveView], host: str, port: int, *, name: str | None = None) -> None:
        views = {view.camera: view} if isinstance(view, LiveView) else dict(view)
        if not views:
            raise ValueError("WebServer: expected at least one camera's LiveView")
        self.views = views
        self.view = next(iter(views.values()))  # the first camera's: the http settings are the service's
        self.name = self.view.camera if name is None else name
        self.host, self.port = host, port
        self.token = self.view.cfg.http.token
        if not is_loopback(host) and not self.token:
            raise ConfigError(
                f"--http {host}:{port}: listening beyond loopback needs http.token in the config "
                "(16+ characters); expected a loopback address such as 127.0.0.1:8080, or a token"
            )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._jpeg = {camera: _JpegCache(v) for camera, v in views.items()}

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self, timeout: float = 10.0) -> None:
        """Listen and serve in a background thread; :class:`ConfigError` if the address is unusable."""
        self._thread = threading.Thread(target=self._serve, name="web", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ConfigError(f"--http {self.host}:{self.port}: the server did not start within {timeout:g} s")
        if self._error is not None:
            self._thread.join(timeout)
            if isinstance(self._error, OSError):  # address in use, not an address of this machine...
                raise ConfigError(f"--http {self.host}:{self.port}: cannot listen there: {self._error}") from None
            raise RuntimeError(f"web server failed to start: {self._error!r}") from self._error
        log.info("live view on %s", self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Close open streams, stop listening and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop already stopped
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            log.error("web server still busy after %.1f s; left behind", timeout)

    # -- the server thread ---------------------------------------------------------------------
    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start())
        except Exception as exc:  # handed to start() on the caller's thread, which raises it
            self._error = exc
            loop.run_until_complete(self._cleanup())
            loop.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._cleanup())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _start(self) -> None:
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[self._auth])
        routes = {
            "/": self._index,
            "/stream.mjpg": self._stream,
            "/events": self._events,
            "/healthz": self._healthz,
            "/status": self._status,
            "/metrics": self._metrics,
            # Every camera's own live view, whatever their number: /cameras/NAME/ and what it loads.
            "/cameras/{camera}": self._camera_slash,
            "/cameras/{camera}/": self._page_of_camera,
            "/cameras/{camera}/stream.mjpg": self._stream,
            "/cameras/{camera}/snapshot.jpg": self._snapshot,
            "/cameras/{camera}/events": self._events,
            "/cameras/{camera}/healthz": self._healthz_of_camera,
            "/cameras/{camera}/status": self._status_of_camera,
        }
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        app.router.add_post("/actions/{kind}", self._action)
        app.router.add_post("/cameras/{camera}/actions/{kind}", self._action)
        # Streams end on their own once _closing is set; the timeout only bounds a stuck client.
        self._runner = _GuardedAppRunner(app, secret=self.token, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # an ephemeral port (tests): report the one the system chose
            self.port = int(self._runner.addresses[0][1])

    async def _cleanup(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if _ACTION_PATH.match(request.path):
            return await handler(request)  # actions check their own token (bearer only), count and log each refusal
        if self.token and not _HEALTHZ.match(request.path):
            given = bearer_token(request.headers.get("Authorization", ""))
            if given is None:
                given = request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                raise web.HTTPUnauthorized(text="a token is required: Authorization: Bearer TOKEN or ?token=TOKEN\n", headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    async def _ticks(self, period: float) -> AsyncIterator[None]:
        """Yields every ``period`` seconds until the server closes."""
        assert self._closing is not None
        while not self._closing.is_set():
            yield
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), period)

    def _view_of(self, request: web.Request) -> LiveView:
        """The camera a request is about: ``/cameras/NAME/...``, or the only one (404 otherwise)."""
        camera = request.match_info.get("camera")
        if camera is None:
            if len(self.views) == 1:
                return self.view
            raise web.HTTPNotFound(text=f"{len(self.views)} cameras here; expected /cameras/NAME{request.path}, NAME one of {', '.join(self.views)}\n")
        view = self.views.get(camera)
        if view is None:
            raise web.HTTPNotFound(text=f"no camera {camera!r}; expected one of {', '.join(self.views)}\n")
        return view

    async def _index(self, request: web.Request) -> web.Response:
        # One camera: its live view, as always. Several: the list of cameras, each linking to its own.
        text = _page() if len(self.views) == 1 else _cameras_page()
        return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def _camera_slash(self, request: web.Request) -> web.Response:
        self._view_of(request)
        raise web.HTTPFound(request.path + "/" + (f"?{request.query_string}" if request.query_string else ""))

    async def _page_of_camera(self, request: web.Request) -> web.Response:
        self._view_of(request)
        return web.Response(text=_page(), content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def _snapshot(self, request: web.Request) -> web.Response:
        view = self._view_of(request)
        _, jpeg = await self._jpeg[view.camera].latest()
        if jpeg is None:
            raise web.HTTPServiceUnavailable(text="no frame yet\n")
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-cache, no-store"})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        view = self._view_of(request)
        cache = self._jpeg[view.camera]
        resp = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}", "Cache-Control": "no-cache, no-store"})
        await resp.prepare(request)
        sent = -1
        try:
            await resp.write(f"--{BOUNDARY}\r\n".encode())
            async for _ in self._ticks(1.0 / view.cfg.http.max_fps):
                seq, jpeg = await cache.latest()
                if jpeg is None or seq == sent:
                    continue
                # The closing boundary goes right after the picture: browsers show a part only
                # once the next boundary has arrived.
                head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                await resp.write(head + jpeg + f"\r\n--{BOUNDARY}\r\n".encode())
                sent = seq
        except ConnectionError:
            pass  # the viewer went away
        return resp

    async def _events(self, request: web.Request) -> web.StreamResponse:
        view = self._view_of(request)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        sub = view.hub.subscribe()
        assert self._closing is not None
        period = 1.0 / min(view.cfg.http.max_fps, 10.0)
        last_state: dict[str, Any] | None = None
        last_write = time.monotonic()
        # One pending get() at a time, never cancelled while waiting: wait_for() on a queue
        # could lose an item that arrives at the very moment of the timeout.
        getter: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(sub.queue.get())
        try:
            await resp.write(b"retry: 2000\n\n")
            while not self._closing.is_set():
                done, _ = await asyncio.wait({getter}, timeout=period)
                if getter in done:
                    # Everything queued goes out now, then the state right behind it, so the
                    # page never lists an OPEN under a state from before it.
                    items = [getter.result()]
                    while not sub.queue.empty():
                        items.append(sub.queue.get_nowait())
                    getter = asyncio.ensure_future(sub.queue.get())
                    await resp.write(b"".join(_sse("gate", item, item.get("id")) for item in items))
                    last_write = time.monotonic()
                state = view.live_state()
                if state != last_state:
                    await resp.write(_sse("state", state))
                    last_state, last_write = state, time.monotonic()
                elif time.monotonic() - last_write > HEARTBEAT_S:
                    await resp.write(b": keep-alive\n\n")
                    last_write = time.monotonic()
        except ConnectionError:
            pass  # the viewer went away
        finally:
            getter.cancel()
            view.hub.unsubscribe(sub)
        return resp

    async def _healthz(self, request: web.Request) -> web.Response:
        """Healthy when every camera is: frames arriving, no FAULT. ``cameras`` has each one's answer."""
        cameras = {name: dict(zip(("ok", "reason"), v.health(), strict=True)) for name, v in self.views.items()}
        bad = [(name, c["reason"]) for name, c in cameras.items() if not c["ok"]]
        if len(self.views) == 1:
            why = next(iter(cameras.values()))["reason"]
        else:
            why = "ok" if not bad else "; ".join(f"camera {name}: {reason}" for name, reason in bad)
        return web.json_response({"ok": not bad, "reason": why, "cameras": cameras}, status=503 if bad else 200)

    async def _healthz_of_camera(self, request: web.Request) -> web.Response:
        healthy, why = self._view_of(request).health()
        return web.json_response({"ok": healthy, "reason": why}, status=200 if healthy else 503)

    async def _status(self, request: web.Request) -> web.Response:
        """One camera: its status, as always, and ``cameras``. Several: the service's overall fields and ``cameras``."""
        cameras = {name: v.status() for name, v in self.views.items()}
        if len(self.views) == 1:
            return web.json_response({**next(iter(cameras.values())), "cameras": cameras})
        events: dict[str, int] = {}
        for c in cameras.values():
            for kind, n in c["events"].items():
                events[kind] = events.get(kind, 0) + n
        bad = [f"camera {name}: {c['health']}" for name, c in cameras.items() if not c["healthy"]]
        overall = {
            "name": self.name,
            "healthy": not bad,
            "health": "; ".join(bad) or "ok",
            "uptime_s": round(self.view.metrics.uptime(), 3),
            "events": events,
            "states": {name: c["state"] for name, c in cameras.items()},
        }
        return web.json_response({**overall, "cameras": cameras})

    async def _status_of_camera(self, request: web.Request) -> web.Response:
        return web.json_response(self._view_of(request).status())

    async def _action(self, request: web.Request) -> web.Response:
        """``POST /cameras/NAME/actions/KIND``, or ``/actions/KIND`` on a one-camera service. The
        route is outside the token middleware (actions check the bearer token themselves), so an
        unknown camera is answered without naming the cameras there are."""
        camera = request.match_info.get("camera")
        if camera is None and len(self.views) > 1:
            return web.json_response({"refused": "no_camera", "detail": "several cameras here; expected POST /cameras/NAME/actions/KIND"}, status=404)
        view = self.view if camera is None else self.views.get(camera)
        if view is None:
            return web.json_response({"refused": "no_camera", "detail": "no such camera"}, status=404)
        controls = view.controls
        if controls is None:
            return web.json_response({"refused": "no_controls", "detail": "this server takes no operator actions"}, status=503)
        header = request.headers.get("Authorization")
        credentials = None if header is None else bearer_token(header)
        if request.content_length is not None and request.content_length > MAX_ACTION_BODY:
            body = b"x" * (MAX_ACTION_BODY + 1)  # not read: refused as too long, after the token check
        else:
            body = await request.content.read(MAX_ACTION_BODY + 1)
        answer = await asyncio.get_running_loop().run_in_executor(
            None, lambda: controls.http(request.match_info["kind"], credentials, body, remote=request.remote)
        )
        return web.json_response(answer.body, status=answer.status)

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        # Collecting reads a few counters; cheap enough for the event loop.
        return web.Response(body=encoder(self.view.registry), headers={"Content-Type": content_type})
