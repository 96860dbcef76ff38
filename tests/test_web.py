"""The live view (gatekeeper/web.py): routes, health, metrics, streams, auth, and a real browser.

Most tests drive a real server on an ephemeral loopback port from the test's own frames and
events (no models), with a fake clock where time matters. The slow test at the end runs the
whole command on a shared clip and watches the page in headless Chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import json
import logging
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from standin import StandInPipeline

from gatekeeper.camera import Camera
from gatekeeper.capture import Frame, SourceStatus
from gatekeeper.cli import main
from gatekeeper.config import Config, HttpConfig
from gatekeeper.errors import ConfigError
from gatekeeper.events import Event, EventType, FaceScore
from gatekeeper.gate import Gate
from gatekeeper.hooks import Dispatcher
from gatekeeper.hooks.base import Delivery, Hook, HookStats
from gatekeeper.hooks.brokers import MqttStats
from gatekeeper.serve import Watchers
from gatekeeper.web import EventHub, LiveView, Metrics, WebServer, is_loopback, mask_secrets, parse_listen

REPO = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token-0123456789"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def image(shade: int, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    img = np.full((*size, 3), shade, np.uint8)
    img[10:30, 10:30] = 255 - shade  # something to see besides a flat colour
    return img


class Counted(Hook):
    """A hook that takes no event and never starts: its counters are the ones the test gives."""

    kind = "counted"

    def __init__(self, name: str, stats: HookStats) -> None:
        super().__init__(name, events=(), max_age_s=30.0, queue_size=1)
        self.stats = stats

    def deliver(self, delivery: Delivery, attempt: int) -> None:
        raise AssertionError("a counted hook takes no event")


class OneFace:
    """The stand-in models' answer for every frame: one face of ``score``, or nobody (None)."""

    def __init__(self) -> None:
        self.score: float | None = None

    def __call__(self, frame: Frame) -> list[FaceScore]:
        return [] if self.score is None else [FaceScore((40.0, 30.0, 50.0, 50.0), self.score)]


def make_view(clock: Callable[[], float] = time.monotonic, *, live: bool = False, hooks: Sequence[Hook] = (), cfg: Config | None = None, metrics: Metrics | None = None, **http: Any) -> LiveView:
    """The live view of a real Camera: the real tracker, Gate and sinks behind stand-in models
    (:class:`OneFace`), no source (:class:`Feeder` plays it), ``hooks`` in its dispatcher."""
    cfg = Config(http=HttpConfig(**http)) if cfg is None else cfg
    watchers = Watchers()
    # The synthetic frames hold a smile for a few frames: the hold is counted in frames here.
    pipeline = StandInPipeline(Gate(dataclasses.replace(cfg.gate, hold_seconds=None)), OneFace())
    camera = Camera(cfg.name, cfg, pipeline, [watchers], watchers.on_frame, dispatcher=Dispatcher(None, hooks))  # type: ignore[arg-type]
    view = LiveView(camera, source_status=SourceStatus(), live=live, clock=clock, metrics=metrics)
    watchers.add(view)
    return view


class Feeder:
    """Plays the source's part: frames through the view's camera, whose stand-in models see one
    face of the given score (or nobody); the tracker, the gate, the sinks and the view all see
    them as they run.

    Frame times are a file's (index / 30), or with ``start`` a live source's: the wall clock,
    ``start`` plus index / 30.
    """

    def __init__(self, view: LiveView, start: float | None = None) -> None:
        self.camera = view.camera
        self.faces: OneFace = self.camera.pipeline.faces  # type: ignore[attr-defined]
        self.index = 0
        self.start = start

    @property
    def t(self) -> float:
        return self.index / 30 + (self.start or 0.0)

    def frame(self, score: float | None, shade: int = 90) -> None:
        self.faces.score = score
        self.camera.step(Frame(image(shade), self.index, self.t))
        self.index += 1

    def fault(self, reason: str) -> None:
        """The camera's source is lost: the gate shuts (FAULT), as the camera's watchdog does it."""
        self.camera.emit(self.camera.gate.fault(self.index, self.t, reason, cause="source"))

    def recover(self) -> None:
        self.camera.emit(self.camera.pipeline.recover(self.index, self.t, "frames arriving again", cause="source"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def served(clock: FakeClock) -> Iterator[Callable[..., tuple[LiveView, WebServer]]]:
    """Start a server for a view made with the given http settings (``live=True``: a camera's
    view; ``hooks``: its camera's); stopped after the test."""
    servers: list[WebServer] = []

    def start(*, live: bool = False, hooks: Sequence[Hook] = (), **http: Any) -> tuple[LiveView, WebServer]:
        view = make_view(clock, live=live, hooks=hooks, **http)
        server = WebServer(view, "127.0.0.1", 0)
        server.start()
        servers.append(server)
        return view, server

    yield start
    for s in servers:
        s.stop()


def get(server: WebServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(server.url.rstrip("/") + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def open_stream(server: WebServer, path: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path)
    return conn, conn.getresponse()


def event(kind: EventType, frame: int = 1, reason: str | None = None) -> Event:
    return Event(kind, frame, frame / 30, None, f"id-{kind.value}-{frame}", None, 0, reason)


# -- where to listen ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8080", ("127.0.0.1", 8080)),
        (":8080", ("127.0.0.1", 8080)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:8080", ("::1", 8080)),
        ("gate.local:9000", ("gate.local", 9000)),
        ("localhost:8080", ("localhost", 8080)),
        ("::1:8080", ConfigError),
        ("host:http", ConfigError),
        ("host:70000", ConfigError),
        ("", ConfigError),
    ],
)
def test_parse_listen(text: str, expected: Any) -> None:
    if expected is ConfigError:
        with pytest.raises(ConfigError, match="--http"):
            parse_listen(text)
    else:
        assert parse_listen(text) == expected


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("gate.local", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "gate.local"])
def test_a_bind_beyond_loopback_needs_a_token(clock: FakeClock, host: str) -> None:
    with pytest.raises(ConfigError, match=r"http\.token"):
        WebServer(make_view(clock), host, 8080)
    WebServer(make_view(clock, token=TOKEN), host, 8080)  # constructed, not started: no bind


@pytest.mark.parametrize(
    ("http", "message"),
    [
        ({"token": "short"}, r"http: token: expected at least 16 characters, got 5"),
        ({"max_fps": 0}, r"http\.max_fps: expected a value > 0"),
        ({"jpeg_quality": 101}, r"http\.jpeg_quality: expected a value >= 1 and <= 100"),
        ({"port": 8080}, r"http\.port: unknown key"),
    ],
)
def test_http_config_errors_name_the_key(http: dict[str, Any], message: str) -> None:
    from gatekeeper.config_load import config_from_dict

    with pytest.raises(ConfigError, match=message):
        config_from_dict({"http": http})


def test_a_port_in_use_is_one_clear_error(served: Callable[..., tuple[LiveView, WebServer]], clock: FakeClock) -> None:
    _, first = served()
    with pytest.raises(ConfigError, match=f"127.0.0.1:{first.port}: cannot listen there"):
        WebServer(make_view(clock), "127.0.0.1", first.port).start()


# -- health, status, metrics ----------------------------------------------------------------------


def test_healthz_follows_frames_faults_and_the_watchdog(served: Callable[..., tuple[LiveView, WebServer]], clock: FakeClock) -> None:
    view, server = served()
    feed = Feeder(view)

    def health() -> tuple[int, str]:
        status, _, body = get(server, "/healthz")
        return status, json.loads(body)["reason"]

    assert health() == (503, "no frame yet")
    feed.frame(None)
    assert health() == (200, "ok")
    clock.now += view.cfg.source.watchdog_s + 0.5
    assert health() == (503, "no frame for 2.5 s")
    feed.frame(None)
    assert health() == (200, "ok")
    feed.fault("no frame for 2 s")
    assert health() == (503, "fault: no frame for 2 s")
    assert json.loads(get(server, "/status")[2])["state"] == "fault"
    feed.recover()
    feed.frame(None)
    assert health() == (200, "ok")
    view.close()
    clock.now += 10
    assert health() == (503, "source ended; last frame 10.0 s ago")


def test_a_fault_clears_the_score_the_faces_and_the_box_until_a_frame_comes(served: Callable[..., tuple[LiveView, WebServer]]) -> None:
    view, server = served()
    feed = Feeder(view)
    for _ in range(3):
        feed.frame(0.9)
    before = json.loads(get(server, "/status")[2])
    assert before["score"] == 0.9 and len(before["faces"]) == 1
    assert box_pixels(get(server, "/cameras/gate/snapshot.jpg")[2]) > 100

    feed.fault("no frame for 2 s")
    during = json.loads(get(server, "/status")[2])
    assert (during["state"], during["score"], during["faces"], during["frame"]) == ("fault", None, [], 2)
    assert box_pixels(get(server, "/cameras/gate/snapshot.jpg")[2]) < 20, "the last picture, without its box"
    m = metric_samples(get(server, "/metrics")[2].decode())
    assert math.isnan(m[("gatekeeper_smile_score", (("camera", "gate"),))])

    feed.recover()
    feed.frame(0.9)  # a frame again: its own face and score
    after = json.loads(get(server, "/status")[2])
    assert after["state"] != "fault" and (after["score"], len(after["faces"])) == (0.9, 1)


def test_status_reports_state_counters_events_and_hooks(served: Callable[..., tuple[LiveView, WebServer]], clock: FakeClock) -> None:
    view, server = served(hooks=[Counted("webhook[0]", HookStats(published=3, attempts=4, delivered=2, failed=1))])
    assert view.source_status is not None
    feed = Feeder(view)
    for score in [0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]:  # six frames held at the default hold_frames: OPEN
        feed.frame(score)
    view.source_status.read, view.source_status.dropped, view.source_status.reconnects = 9, 2, 1
    clock.now += 12.5
    status, headers, body = get(server, "/status")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    s = json.loads(body)
    assert s["state"] == "opened"
    assert s["score"] == 0.9
    assert s["frame"] == 6
    assert s["faces"] == [[40.0, 30.0, 50.0, 50.0, 0.9]]
    assert s["frames"] == {"read": 9, "processed": 7, "dropped": 2, "skipped": 0}
    assert s["reconnects"] == 1
    assert s["uptime_s"] == 12.5
    assert s["events"] == {"OPEN": 1, "DENY": 0, "FACE_LOST": 0, "FAULT": 0, "RECOVERED": 0, "OUT_OF_SERVICE": 0, "IN_SERVICE": 0, "PASSAGE": 0, "FORCED_OPEN": 0, "HELD_OPEN": 0, "CLOSED": 0}
    assert s["door"] is None  # no gate.sensor
    assert s["hooks"]["webhook[0]"]["delivered"] == 2 and s["hooks"]["webhook[0]"]["failed"] == 1
    assert s["thresholds"] == {"enter": 0.6, "exit": 0.4}


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_parse_with_the_prometheus_parser(served: Callable[..., tuple[LiveView, WebServer]]) -> None:
    view, server = served(hooks=[Counted("mqtt[1]", MqttStats(attempts=5, delivered=3, failed=2, expired=1, broker_switches=2))])
    assert view.source_status is not None
    feed = Feeder(view)
    for score in [0.9] * 6 + [None] * 12:  # OPEN, then the face leaves: FACE_LOST
        feed.frame(score)
    for stage, seconds in [("decode", 0.002), ("detect", 0.004), ("detect", 0.3), ("crop", 0.0004), ("classify", 0.001), ("gate", 0.00001)]:
        view.observe_stage(stage, seconds)
    view.observe_stage("not-a-stage", 1.0)  # ignored, not an error on the frame loop
    view.source_status.read, view.source_status.dropped, view.source_status.reconnects = 20, 2, 3

    status, headers, body = get(server, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    m = metric_samples(body.decode())
    assert m[("gatekeeper_frames_read_total", (("camera", "gate"),))] == 20
    assert m[("gatekeeper_frames_processed_total", (("camera", "gate"),))] == 18
    assert m[("gatekeeper_frames_dropped_total", (("camera", "gate"),))] == 2
    assert m[("gatekeeper_camera_reconnects_total", (("camera", "gate"),))] == 3
    assert m[("gatekeeper_events_total", (("camera", "gate"), ("type", "OPEN")))] == 1
    assert m[("gatekeeper_events_total", (("camera", "gate"), ("type", "FACE_LOST")))] == 1
    assert m[("gatekeeper_events_total", (("camera", "gate"), ("type", "DENY")))] == 0
    assert m[("gatekeeper_hook_deliveries_total", (("camera", "gate"), ("hook", "mqtt[1]")))] == 3
    assert m[("gatekeeper_hook_failures_total", (("camera", "gate"), ("hook", "mqtt[1]")))] == 2
    assert m[("gatekeeper_hook_broker_switches_total", (("camera", "gate"), ("hook", "mqtt[1]")))] == 2
    for stage in ("decode", "detect", "crop", "classify", "gate"):
        assert ("gatekeeper_stage_seconds_count", (("camera", "gate"), ("stage", stage))) in m
    assert m[("gatekeeper_stage_seconds_count", (("camera", "gate"), ("stage", "detect")))] == 2
    assert m[("gatekeeper_stage_seconds_bucket", (("camera", "gate"), ("le", "0.005"), ("stage", "detect")))] == 1
    assert m[("gatekeeper_gate_state", (("camera", "gate"), ("state", "idle")))] == 1
    assert ("gatekeeper_stage_seconds_count", (("camera", "gate"), ("stage", "not-a-stage"))) not in m


def test_metrics_use_their_own_registry() -> None:
    from prometheus_client import REGISTRY

    view = make_view(FakeClock())
    view.emit(event(EventType.OPEN))
    assert REGISTRY.get_sample_value("gatekeeper_events_total", {"type": "OPEN"}) is None
    assert view.registry.get_sample_value("gatekeeper_events_total", {"camera": "gate", "type": "OPEN"}) == 1


# -- the streams ------------------------------------------------------------------------------------


def read_sse(resp: http.client.HTTPResponse, want: Callable[[str, dict[str, Any]], bool]) -> list[tuple[str, dict[str, Any]]]:
    """Messages until one matches ``want`` (the socket timeout bounds the wait)."""
    seen: list[tuple[str, dict[str, Any]]] = []
    kind, data = "message", ""
    while True:
        line = resp.readline().decode()
        if not line:
            raise AssertionError(f"stream ended; got {seen}")
        line = line.rstrip("\n")
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]
        elif line == "" and data:
            seen.append((kind, json.loads(data)))
            if want(*seen[-1]):
                return seen
            kind, data = "message", ""


def test_events_stream_sends_recent_then_live_events_and_state(served: Callable[..., tuple[LiveView, WebServer]]) -> None:
    view, server = served()
    view.emit(event(EventType.FACE_LOST, 1))
    conn, resp = open_stream(server, "/events")
    try:
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
        # The recent event comes first; the subscription exists from then on.
        got = read_sse(resp, lambda k, d: k == "gate")
        assert got[-1][1]["event"] == "FACE_LOST"
        feed = Feeder(view)
        for _ in range(6):
            feed.frame(0.95)  # the sixth frame opens the gate
        # The OPEN and the state it leads to may come in either order: the state is sampled
        # on the server's own schedule, the event is pushed as it happens.
        got: list[tuple[str, dict[str, Any]]] = []
        opened_state: list[dict[str, Any]] = []
        while not (opened_state and any(k == "gate" for k, _ in got)):
            got += read_sse(resp, lambda k, d: k == "gate" or d.get("state") == "opened")
            opened_state = [d for k, d in got if k == "state" and d["state"] == "opened"]
        assert [d["event"] for k, d in got if k == "gate"] == ["OPEN"]
        assert next(d for k, d in got if k == "gate")["frame"] == 5
        assert opened_state[0]["score"] == 0.95
    finally:
        conn.close()


def test_a_slow_events_client_loses_its_oldest_events_not_the_gate() -> None:
    hub = EventHub(queue_size=2, history=3)

    async def scenario() -> tuple[list[int], int]:
        sub = hub.subscribe()
        for i in range(5):
            hub.publish({"n": i})  # from the loop's own thread here; call_soon_threadsafe still applies
        await asyncio.sleep(0)  # let the queued puts run
        items = [sub.queue.get_nowait()["n"] for _ in range(sub.queue.qsize())]
        hub.unsubscribe(sub)
        return items, hub.total_dropped()

    items, dropped = asyncio.run(scenario())
    assert items == [3, 4]
    assert dropped == 3
    assert [e["n"] for e in hub.recent()] == [2, 3, 4]


def read_part(resp: http.client.HTTPResponse) -> bytes:
    """One JPEG from a multipart/x-mixed-replace stream."""
    headers: dict[str, str] = {}
    while True:
        line = resp.readline().decode().strip()
        if line == "--frame":
            continue
        if not line and headers:
            break
        if line:
            key, _, value = line.partition(":")
            headers[key.lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    return resp.read(int(headers["content-length"]))


def test_mjpeg_stream_sends_each_new_frame_with_boxes(served: Callable[..., tuple[LiveView, WebServer]]) -> None:
    view, server = served(max_fps=60)
    feed = Feeder(view)
    feed.frame(0.9, shade=40)
    conn, resp = open_stream(server, "/stream.mjpg")
    try:
        assert resp.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
        first = cv2.imdecode(np.frombuffer(read_part(resp), np.uint8), cv2.IMREAD_COLOR)
        assert first.shape == (120, 160, 3)
        # The face box (40, 30, 50, 50) is drawn in green: a smile above the enter threshold.
        b, g, r = (int(v) for v in first[55, 40])
        assert g > 150 and g > r + 60 and g > b + 60, (b, g, r)
        feed.frame(None, shade=200)
        second = cv2.imdecode(np.frombuffer(read_part(resp), np.uint8), cv2.IMREAD_COLOR)
        assert abs(float(second.mean()) - float(first.mean())) > 50  # the new frame, not the old one again
    finally:
        conn.close()


def test_on_frame_keeps_only_the_newest_frame(clock: FakeClock) -> None:
    view = make_view(clock)
    feed = Feeder(view)
    for _ in range(50):
        feed.frame(None)
    snap = view.snapshot()
    assert snap is not None and snap.seq == 49 and snap.frame == 49


def test_the_page_is_served(served: Callable[..., tuple[LiveView, WebServer]]) -> None:
    _, server = served()
    status, headers, body = get(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert 'withToken("stream.mjpg")' in page and 'new EventSource(withToken("events"))' in page


# -- the token --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/status", {}, 401),
        ("/metrics", {}, 401),
        ("/", {}, 401),
        ("/status", {"Authorization": "Bearer wrong-token-0123456789"}, 401),
        ("/status", {"Authorization": f"Bearer {TOKEN}"}, 200),
        ("/status", {"Authorization": f"bearer {TOKEN}"}, 200),  # the scheme is case-insensitive (RFC 7235)
        ("/status", {"Authorization": f"BEARER  {TOKEN}"}, 200),
        ("/status", {"Authorization": f"Basic {TOKEN}"}, 401),
        (f"/status?token={TOKEN}", {"Authorization": "bearer wrong-token-0123456789"}, 401),  # the header decides
        (f"/metrics?token={TOKEN}", {}, 200),
        (f"/?token={TOKEN}", {}, 200),
        ("/healthz", {}, 503),  # health needs no token (probes carry none); no frame yet
    ],
)
def test_token(served: Callable[..., tuple[LiveView, WebServer]], path: str, headers: dict[str, str], expected: int) -> None:
    _, server = served(token=TOKEN)
    assert get(server, path, headers)[0] == expected


def raw_request(server: WebServer, data: bytes) -> bytes:
    """Send ``data`` on a plain socket and read the whole answer (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "request_bytes",
    [
        # a 9 KB request line, the token first in it
        f"GET /status?token={TOKEN}&pad={'a' * 9000} HTTP/1.1\r\nHost: gate\r\n\r\n".encode(),
        # a 9 KB header carrying the token
        f"GET /status HTTP/1.1\r\nHost: gate\r\nAuthorization: bearer {TOKEN}{'b' * 9000}\r\n\r\n".encode(),
        # a malformed URL, which aiohttp's parser quotes back
        f"GET /status?token={TOKEN}&x=\x01 HTTP/1.1\r\nHost: gate\r\n\r\n".encode(),
    ],
    ids=["long-request-line", "long-header", "bad-url"],
)
def test_a_bad_request_is_one_log_line_and_echoes_no_token(served: Callable[..., tuple[LiveView, WebServer]], caplog: pytest.LogCaptureFixture, request_bytes: bytes) -> None:
    _, server = served(token=TOKEN)
    caplog.set_level(logging.DEBUG)
    answer = raw_request(server, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400 ") or head.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert TOKEN.encode() not in answer and TOKEN[:8].encode() not in answer
    assert body.startswith(b"400 Bad Request: ") and len(body) < 100, body  # a fixed line, nothing of the request
    # Still serving, and the same request within bounds is fine.
    assert get(server, f"/status?token={TOKEN}")[0] == 200
    logged = [r for r in caplog.records if r.name.startswith(("aiohttp", "gatekeeper"))]
    bad = [r for r in logged if "bad request" in r.getMessage()]
    assert len(bad) == 1 and bad[0].levelno == logging.WARNING, [r.getMessage() for r in logged]
    assert "\n" not in bad[0].getMessage() and "from 127.0.0.1" in bad[0].getMessage()
    for record in logged:
        assert record.exc_info is None and record.exc_text is None, record.getMessage()  # no traceback
        assert TOKEN[:8] not in caplog.handler.format(record)
    assert not [r for r in logged if r.name.startswith("aiohttp") and r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"GET /x?token={TOKEN}&a=1", "GET /x?token=***&a=1"),
        (f"bytearray(b'/status?TOKEN={TOKEN[:10]}...')", "bytearray(b'/status?TOKEN=***')"),
        (f"Authorization: bearer {TOKEN}", "Authorization: bearer ***"),
        (f"b'{TOKEN}zzz'", "b'***zzz'"),
    ],
)
def test_mask_secrets(text: str, masked: str) -> None:
    assert mask_secrets(text, TOKEN) == masked


# -- times of a live source ----------------------------------------------------------------------


def test_a_live_view_reports_time_since_the_start_and_the_wall_clock(served: Callable[..., tuple[LiveView, WebServer]]) -> None:
    view, server = served(live=True)
    start = time.time()
    feed = Feeder(view, start=start)
    for _ in range(6):
        feed.frame(0.95)  # the sixth frame opens the gate, 5/30 s after the first
    state = json.loads(get(server, "/status")[2])
    assert state["live"] is True
    assert state["t"] == pytest.approx(start + 5 / 30, abs=1e-3)  # the source's own time, as before
    assert state["elapsed"] == pytest.approx(5 / 30, abs=1e-3)
    assert state["wall"] == pytest.approx(start + 5 / 30, abs=1e-3)
    conn, resp = open_stream(server, "/events")
    try:
        got = read_sse(resp, lambda k, d: k == "gate")
    finally:
        conn.close()
    opened = got[-1][1]
    assert opened["event"] == "OPEN" and opened["elapsed"] == pytest.approx(5 / 30, abs=1e-3) and opened["wall"] == pytest.approx(opened["t"])


def test_a_file_view_reports_the_position_in_the_file(served: Callable[..., tuple[LiveView, WebServer]]) -> None:
    view, server = served()
    feed = Feeder(view)
    for _ in range(4):
        feed.frame(None)
    state = json.loads(get(server, "/status")[2])
    assert (state["live"], state["t"], state["elapsed"], state["wall"]) == (False, 0.1, 0.1, None)


# -- the command line -------------------------------------------------------------------------------


def test_http_without_the_web_extra_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # import aiohttp now raises ImportError
    assert main(["--video", str(tmp_path / "missing.mp4"), "--http", "8080", "--config", os.devnull]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gatekeeper: error: --http needs the 'web' extra (aiohttp is not installed); install it with: pip install 'gatekeeper[web]'"]


def test_hold_open_needs_http(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--video", str(tmp_path / "clip.mp4"), "--hold-open", "5", "--config", os.devnull]) == 2
    assert "--hold-open" in capsys.readouterr().err


def test_check_config_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "whsec_" + "QUJD" * 8
    path = tmp_path / "config.yaml"
    path.write_text(f"http: {{token: {TOKEN}}}\nhooks:\n  - type: webhook\n    url: https://example.invalid/hook\n    secret: {secret}\n")
    assert main(["--check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out and secret not in out
    assert out.count("<redacted>") == 2


# -- the real thing, in a real browser --------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Debian Chromium through its chromedriver (Selenium Manager is never asked)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} not found; install Debian's browser: apt-get install chromium chromium-driver", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The picture is an endless MJPEG stream: "load" may never come. The tests wait for what they check.
    options.page_load_strategy = "eager"
    # No network beyond loopback here: keep Chromium from trying to reach its services.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,860", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


RECORD_PAGE = """
window.seen = {states: [], scores: []};
const watch = (id, into) => new MutationObserver(() => into.push(document.getElementById(id).textContent))
  .observe(document.getElementById(id), {childList: true, characterData: true, subtree: true});
watch("state", window.seen.states);
watch("scoretext", window.seen.scores);
"""


@pytest.mark.slow
def test_the_page_shows_a_live_sources_time_of_day_and_time_since_the_start(browser: Any, served: Callable[..., tuple[LiveView, WebServer]]) -> None:
    from selenium.webdriver.common.by import By

    view, server = served(live=True)
    start = time.time() - 130.0
    feed = Feeder(view, start=start)  # a camera: frame times are the wall clock
    feed.frame(None)  # the first frame, 130 s ago
    feed.index = 3765  # 125.5 s later (frames dropped, or nobody in view)
    for _ in range(6):
        feed.frame(0.95)  # the sixth opens the gate, at frame 3770: 125.67 s after the start
    wall = start + 3770 / 30
    clock = time.strftime("%H:%M:%S", time.localtime(wall))  # the browser runs on this machine, in its time zone
    browser.get(server.url)
    info = wait_for("the frame line", lambda: (text := browser.find_element(By.ID, "info").text) != "waiting for frames" and text)
    assert info == f"frame 3770 · {clock} · 2 min 05 s since start · 1 face"
    opened = wait_for("OPEN in the event list", lambda: browser.find_elements(By.CSS_SELECTOR, '#events li[data-event="OPEN"]'))
    assert opened[0].text.splitlines() == ["OPEN", f"{clock} · 2 min 05 s since start · frame 3770 · score 0.95"]
    assert str(int(wall))[:4] not in browser.find_element(By.TAG_NAME, "body").text  # never the Unix time


class Serving:
    """The real ``gatekeeper`` command, its live view on a port the system picked (``url``);
    ``stdout`` and ``returncode`` once it has ended."""

    def __init__(self, proc: subprocess.Popen[str], url: str, stderr: list[str]) -> None:
        self.proc, self.url, self.stderr = proc, url, stderr
        self.stdout = ""

    def fetch(self, path: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, bytes]:
        """GET ``path`` (POST with ``data``): the status and the body, whatever the status."""
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read()

    def status(self) -> dict[str, Any]:
        return json.loads(self.fetch("/status")[1])

    def events(self) -> list[str]:
        return [json.loads(line)["event"] for line in self.stdout.splitlines() if line.strip()]


@contextlib.contextmanager
def gatekeeper_serving(*args: str, face_model_path: Path, tmp_path: Path, config: Path | None = None) -> Iterator[Serving]:
    """Run ``gatekeeper ARGS --http 127.0.0.1:0`` with ``config`` (default: the built-in one)
    until the block ends (then SIGTERM), once it has said where its live view listens."""
    # The checkout first on the path: the package is tested from here, installed or not.
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "GATEKEEPER_FACE_MODEL": str(face_model_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    # Port 0: the system picks a free port and the server logs it.
    cmd = [sys.executable, "-m", "gatekeeper.cli", *args, "--http", "127.0.0.1:0", "--config", str(config or os.devnull)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    lines: queue.Queue[str] = queue.Queue()
    stderr: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    serving = None
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                line = lines.get(timeout=0.5)
                if "live view on " in line:
                    url = line.split("live view on ", 1)[1].strip()
            assert proc.poll() is None, "".join(stderr)
        assert url, "the server never said where it listens:\n" + "".join(stderr)
        serving = Serving(proc, url, stderr)
        yield serving
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        if serving is not None:
            serving.stdout = out


@pytest.mark.slow
def test_live_view_in_a_real_browser(browser: Any, shared_dir: Path, face_model_path: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    clip = shared_dir / "videos" / "face_noface.mov"
    # --hold-open keeps the page up after the 5.6 s clip so the checks after its end do not race the exit.
    with gatekeeper_serving("--video", str(clip), "--realtime", "--hold-open", "60", face_model_path=face_model_path, tmp_path=tmp_path) as gk:
        # The port is taken before the models load, and the page answers before the clip starts.
        browser.get(gk.url)
        # Record every state and score the page shows, so what passed by is checked afterwards
        # without racing the clip.
        browser.execute_script(RECORD_PAGE)
        picture = browser.find_element(By.ID, "picture")
        wait_for("the first picture", lambda: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", picture))
        first = picture.screenshot_as_png
        wait_for("the picture to change", lambda: picture.screenshot_as_png != first)

        opened = wait_for("OPEN in the event list", lambda: browser.find_elements(By.CSS_SELECTOR, '#events li[data-event="OPEN"]'))
        assert "OPEN" in opened[0].text
        browser.save_screenshot(str(artifacts / "web_live.png"))

        # The clip ends at 5.6 s; health turns 503 a watchdog period after the last frame.
        status = wait_for("the end of the clip", lambda: (s := gk.status())["ended"] and s, timeout=60)
        assert status["frames"] == {"read": 169, "processed": 169, "dropped": 0, "skipped": 0}
        assert status["events"]["OPEN"] == 1
        wait_for("/healthz to report the ended source", lambda: gk.fetch("/healthz")[0] == 503, timeout=30)
        assert "source ended" in json.loads(gk.fetch("/healthz")[1])["reason"]

        m = metric_samples(gk.fetch("/metrics")[1].decode())
        assert m[("gatekeeper_frames_processed_total", (("camera", "gate"),))] == 169
        assert m[("gatekeeper_events_total", (("camera", "gate"), ("type", "OPEN")))] == 1
        for stage in ("decode", "detect", "crop", "classify", "gate"):
            assert m[("gatekeeper_stage_seconds_count", (("camera", "gate"), ("stage", stage)))] > 0, stage
        wait_for("the page to show the end", lambda: browser.find_element(By.ID, "health").text == "source ended")
        browser.save_screenshot(str(artifacts / "web_ended.png"))
        seen = browser.execute_script("return window.seen")
        assert "opened" in seen["states"], seen["states"]
        scores = [float(text.split()[1]) for text in seen["scores"] if text.startswith("score ")]
        assert scores and max(scores) >= 0.6, seen["scores"]  # the bar showed the smile that opened the gate
    assert gk.proc.returncode == 0, "".join(gk.stderr)
    assert gk.events().count("OPEN") == 1, gk.events()
    assert "Traceback" not in "".join(gk.stderr)


#: The colours the live picture draws a face's box and label in (BGR): green, amber, red.
BOX_COLOURS = np.array([(80, 200, 60), (0, 180, 255), (60, 60, 230)])


def box_pixels(jpeg: bytes) -> int:
    """Pixels of a JPEG in the colours of a face's box (a drawn box: hundreds; a camera's own
    picture of a face: none, on the shared clip)."""
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    distance = np.abs(img[:, :, None, :].astype(int) - BOX_COLOURS[None, None]).max(axis=3)
    return int((distance <= 12).any(axis=2).sum())


@pytest.mark.slow
def test_a_camera_gone_shows_no_score_no_face_and_no_box(browser: Any, shared_dir: Path, face_model_path: Path, tmp_path: Path) -> None:
    """Issue 32 row 9: a camera that hangs up holds the gate shut (FAULT), and from then on the
    page, /status and the picture show no score, no face and no box: there is no picture to trust."""
    from mjpeg_server import MjpegServer, jpeg_frames_from_video
    from selenium.webdriver.common.by import By

    with MjpegServer(jpeg_frames_from_video(shared_dir / "videos" / "single_face.mp4", count=30), fps=30) as camera:
        with gatekeeper_serving("--url", camera.url, face_model_path=face_model_path, tmp_path=tmp_path) as gk:
            browser.get(gk.url)
            seen = wait_for("a face and its score on /status", lambda: (s := gk.status())["faces"] and s["score"] is not None and s)
            assert seen["state"] != "fault" and len(seen["faces"]) == 1
            wait_for("the page to show the face", lambda: browser.find_element(By.ID, "info").text.endswith(" · 1 face"))
            assert browser.find_element(By.ID, "scoretext").text.startswith("score ")
            assert box_pixels(gk.fetch("/cameras/gate/snapshot.jpg")[1]) > 100, "the face's box is drawn while frames come"

            camera.refuse()  # the camera is gone: no frame, no reconnect
            gone = wait_for("the FAULT on /status", lambda: (s := gk.status())["state"] == "fault" and s, timeout=20)
            assert (gone["score"], gone["faces"], gone["healthy"]) == (None, [], False), gone
            assert box_pixels(gk.fetch("/cameras/gate/snapshot.jpg")[1]) < 20, "the last picture stays up, without a box"
            wait_for("the page's FAULT badge", lambda: browser.find_element(By.ID, "state").get_attribute("data-state") == "fault")
            wait_for("the page to show no face", lambda: browser.find_element(By.ID, "info").text.endswith(" · 0 faces"))
            assert browser.find_element(By.ID, "scoretext").text == "no face"
            assert browser.find_element(By.ID, "fill").value_of_css_property("width") == "0px"
            time.sleep(1.0)  # the fault goes on: nothing comes back by itself
            assert (gk.status()["score"], gk.status()["faces"]) == (None, [])
    assert gk.proc.returncode == 0, "".join(gk.stderr)
    assert "FAULT" in gk.events()


def test_an_action_for_an_unknown_camera_of_one_camera_is_a_counted_refusal(served: Callable[..., tuple[LiveView, WebServer]], caplog: pytest.LogCaptureFixture) -> None:
    _, server = served(token=TOKEN)
    caplog.set_level(logging.INFO, logger="gatekeeper")
    req = urllib.request.Request(server.url + "cameras/lane9%0a/actions/open", data=b'{"by": "maria"}', headers={"Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(req, timeout=10)
    with answer.value as exc:
        assert exc.code == 404 and json.loads(exc.read()) == {"refused": "no_camera", "detail": "no such camera"}
    (line,) = [r.getMessage() for r in caplog.records if "no_camera" in r.getMessage()]
    assert line == "action refused (http, no_camera): 'open' for camera 'lane9?' from 127.0.0.1: no such camera; expected POST /cameras/NAME/actions/KIND, NAME one of gate"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert json.loads(get(server, "/status", auth)[2])["refused_for_no_camera"] == {"http/no_camera": 1}
    m = metric_samples(get(server, "/metrics", auth)[2].decode())
    assert m[("gatekeeper_action_refusals_total", (("camera", ""), ("reason", "no_camera"), ("via", "http")))] == 1


@pytest.mark.slow
def test_an_action_for_no_camera_is_refused_logged_and_counted(shared_dir: Path, face_model_path: Path, tmp_path: Path) -> None:
    """Issue 32 row 11: an action for a camera the service does not have, or one that names no
    camera where there are several, is one refusal: a 404 that names no camera, one log line and
    one count (/metrics and /status), as every other refusal."""
    videos = shared_dir / "videos"
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"http": {"token": TOKEN}, "cameras": {"lane1": {"video": str(videos / "single_face.mp4")}, "lane2": {"video": str(videos / "face_noface.mov")}}}))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with gatekeeper_serving("--hold-open", "60", config=config, face_model_path=face_model_path, tmp_path=tmp_path) as gk:
        for path in ("/cameras/lane9/actions/open", "/actions/open"):
            code, body = gk.fetch(path, {**auth, "Content-Type": "application/json"}, b'{"by": "maria"}')
            assert code == 404 and json.loads(body)["refused"] == "no_camera", (path, code, body)
            assert b"lane1" not in body and b"lane2" not in body, "the answer names no camera"
        logged = wait_for("two refusal lines", lambda: (r := [line for line in gk.stderr if "action refused (http, no_camera)" in line]) and len(r) == 2 and r, timeout=10)
        assert "'lane9'" in logged[0] and "from 127.0.0.1" in logged[0] and "lane1, lane2" in logged[0], logged
        assert "no camera named" in logged[1] and "lane1, lane2" in logged[1], logged
        m = metric_samples(gk.fetch("/metrics", auth)[1].decode())
        assert m[("gatekeeper_action_refusals_total", (("camera", ""), ("reason", "no_camera"), ("via", "http")))] == 2
        status = json.loads(gk.fetch("/status", auth)[1])
        assert status["refused_for_no_camera"] == {"http/no_camera": 2}
        assert all(c["actions"]["refused"] == {} for c in status["cameras"].values()), "no camera's count"
    assert "Traceback" not in "".join(gk.stderr)


# -- several cameras ----------------------------------------------------------------------------


def camera_views(token: str) -> dict[str, LiveView]:
    """Two cameras' views sharing one registry, as the command builds them for ``cameras:``."""
    metrics = Metrics()
    cfg = Config(http=HttpConfig(token=token))
    return {name: make_view(cfg=dataclasses.replace(cfg, name=name), live=True, metrics=metrics) for name in ("lane1", "lane2")}


def test_the_camera_list_and_each_cameras_view_in_a_real_browser(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    token = "x" * 20
    views = camera_views(token)
    feed = Feeder(views["lane1"], start=time.time())
    for score in [0.9] * 8:  # lane1: a smile held, OPEN; lane2: no frame yet
        feed.frame(score)
    server = WebServer(views, "127.0.0.1", 0, name="park")
    server.start()
    stop = threading.Event()

    def keep_feeding() -> None:  # a live camera: frames keep coming (the same person, still smiling)
        while not stop.wait(1 / 15):
            feed.frame(0.9)

    feeder = threading.Thread(target=keep_feeding, daemon=True)
    feeder.start()
    try:
        browser.get(f"{server.url}?token={token}")
        cards = wait_for("both cameras listed", lambda: (c := browser.find_elements(By.CSS_SELECTOR, "li.camera")) and len(c) == 2 and c)
        assert [c.get_attribute("data-camera") for c in cards] == ["lane1", "lane2"]
        wait_for("lane1's state", lambda: cards[0].find_element(By.CLASS_NAME, "state").text.lower() in ("opened", "smiling", "present"))
        assert "no frame yet" in cards[1].find_element(By.CLASS_NAME, "why").text
        assert "park" in browser.find_element(By.ID, "name").text
        assert "camera lane2: no frame yet" in browser.find_element(By.ID, "health").text
        wait_for("lane1's still", lambda: browser.execute_script("return document.querySelector('li.camera img').naturalWidth") > 0)
        cards[0].find_element(By.TAG_NAME, "a").click()
        wait_for("lane1's own live view", lambda: browser.find_element(By.ID, "name").text == "gatekeeper · lane1")
        assert browser.current_url == f"{server.url}cameras/lane1/?token={token}"
        wait_for("lane1's picture", lambda: browser.execute_script("return document.getElementById('picture').naturalWidth") > 0)
        events = wait_for("lane1's OPEN on its page", lambda: [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#events li.OPEN")])
        assert len(events) == 1
    finally:
        stop.set()
        feeder.join(5)
        server.stop()


def test_status_healthz_and_metrics_per_camera_and_overall() -> None:
    token = "x" * 20
    views = camera_views(token)
    clock_start = time.time()
    feeds = {name: Feeder(v, start=clock_start) for name, v in views.items()}
    for _ in range(8):
        feeds["lane1"].frame(0.9)
        feeds["lane2"].frame(None)
    server = WebServer(views, "127.0.0.1", 0, name="park")
    server.start()
    auth = {"Authorization": f"Bearer {token}"}
    try:
        code, _, body = get(server, "/status", auth)
        st = json.loads(body)
        assert code == 200 and st["name"] == "park" and st["healthy"] is True
        assert st["events"]["OPEN"] == 1 and st["cameras"]["lane1"]["events"]["OPEN"] == 1 and st["cameras"]["lane2"]["events"]["OPEN"] == 0
        assert json.loads(get(server, "/cameras/lane2/status", auth)[2])["name"] == "lane2"
        feeds["lane2"].fault("no frame for 2 s")
        code, _, body = get(server, "/healthz")  # no token needed, as for one camera
        assert code == 503
        assert json.loads(body) == {
            "ok": False,
            "reason": "camera lane2: fault: no frame for 2 s",
            "cameras": {"lane1": {"ok": True, "reason": "ok"}, "lane2": {"ok": False, "reason": "fault: no frame for 2 s"}},
        }
        assert get(server, "/cameras/lane1/healthz")[0] == 200 and get(server, "/cameras/lane2/healthz")[0] == 503
        assert get(server, "/cameras/lane1/status")[0] == 401, "a camera's status needs the token like the service's"
        m = metric_samples(get(server, "/metrics", auth)[2].decode())
        assert m[("gatekeeper_events_total", (("camera", "lane1"), ("type", "OPEN")))] == 1
        assert m[("gatekeeper_events_total", (("camera", "lane2"), ("type", "FAULT")))] == 1
        assert m[("gatekeeper_gate_state", (("camera", "lane2"), ("state", "fault")))] == 1
        assert m[("gatekeeper_frames_processed_total", (("camera", "lane2"),))] == 8
        assert ("gatekeeper_uptime_seconds", ()) in m, "the service's own uptime has no camera label"
        assert get(server, "/events", auth)[0] == 404 and get(server, "/cameras/nope/events", auth)[0] == 404
    finally:
        server.stop()
