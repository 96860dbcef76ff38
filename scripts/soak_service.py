"""The service soak of ``scripts/soak.py --service``: one gatekeeper, 8 cameras with faults, hooks
whose receivers go away and come back, operator actions; sampled, then judged (see soak.py).

The judging is pure and tested (tests/test_soak.py): :func:`trend` fits a line through one sample
series after the warm-up, :func:`reconcile` checks what the journal says each hook delivered
against what its receiver got, :func:`judge` turns the numbers into a pass/fail per target.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_cameras.py beside this file
from bench_cameras import FPS, SHARED, Gatekeeper, face_loop, moving_scene, still_scene
from mjpeg_server import MjpegServer  # tests/, put on sys.path by bench_cameras

from gatekeeper.journal import Journal

TOKEN = "soak-operator-token-0123456789"
PREFIX = "soak"
CAMERAS = ("cam0", "cam1", "cam2", "cam3", "cam4", "cam5", "cam6", "cam7")
HEALTHY = ("cam0", "cam1", "cam2", "cam3", "cam4")  # still, moving, three with faces
#: Targets of issue 32.
RSS_MB_PER_HOUR = 5.0
FLAT = 2.0  # fds and threads: the fitted line may rise this much over the run, no more
P99_MS = 50.0
JOURNAL_BYTES_PER_EVENT = 2048  # an event's row, its two deliveries and their index entries: about 650 bytes

# Fault schedule, seconds: (period, how long it lasts or None for an instant, first at)
FREEZE = (20.0, 4.0, 10.0)  # cam5 stalls
HANG_UP = (3.0, None, 3.0)  # cam6 drops its connections
RECEIVER_DOWN = (45.0, 8.0, 20.0)  # the webhook receiver is gone
BROKER_RESTART = (60.0, None, 30.0)  # mosquitto is stopped (SIGTERM) and started again
OPERATOR = (3.0, None, 5.0)  # one operator action


# -- judging (pure) ---------------------------------------------------------------------------------


@dataclass
class Sample:
    minute: float
    rss_mb: float
    fds: int
    threads: int
    journal_kb: float
    backlog: int  # deliveries pending in the journal
    events: int  # events written so far (stdout)
    p99_ms: float | None  # frame-to-event of the healthy cameras since the last sample


@dataclass(frozen=True)
class Trend:
    per_hour: float  # slope of the fitted line
    rise: float  # what the line rises over the fitted window
    first: float
    last: float
    n: int


def trend(samples: Sequence[Sample], key: str, warmup_min: float) -> Trend | None:
    """A least-squares line through ``key`` over the samples after ``warmup_min``; None with fewer than two."""
    kept = [s for s in samples if s.minute >= warmup_min]
    if len(kept) < 2:
        return None
    t = np.array([s.minute for s in kept]) / 60.0
    y = np.array([float(getattr(s, key)) for s in kept])
    slope = float(np.polyfit(t, y, 1)[0]) if np.ptp(t) > 0 else 0.0
    return Trend(slope, slope * float(np.ptp(t)), float(y[0]), float(y[-1]), len(kept))


@dataclass
class Delivered:
    """One hook kind's events: what the journal says and what the receiver got."""

    hook: str
    journaled: int = 0
    states: dict[str, int] = field(default_factory=dict)
    received: int = 0  # messages, duplicates included
    duplicates: int = 0
    lost: list[str] = field(default_factory=list)  # journaled for it and never received, or given up on
    opens_missing: list[str] = field(default_factory=list)
    conflicting: list[str] = field(default_factory=list)  # one id received with different contents
    unknown: list[str] = field(default_factory=list)  # received, not in the journal


def reconcile(journaled: Iterable[tuple[str, str, dict[str, str]]], hook: str, received: Sequence[tuple[str, str]]) -> Delivered:
    """Check one hook kind: ``journaled`` is (event id, event type, {hook name: state}) for every
    event; ``hook`` the kind ("webhook", "mqtt": hook names start with it); ``received`` (event id,
    a digest of the event as received) per message. Lost: an event the journal holds for the hook
    that the receiver never got, or that the hook gave up on (failed, expired, still pending)."""
    out = Delivered(hook)
    got = Counter(i for i, _ in received)
    digests: dict[str, set[str]] = {}
    for i, digest in received:
        digests.setdefault(i, set()).add(digest)
    states: Counter[str] = Counter()
    ids = set()
    for event_id, kind, deliveries in journaled:
        mine = [state for name, state in deliveries.items() if name.startswith(hook)]
        if not mine:
            continue
        ids.add(event_id)
        out.journaled += 1
        states.update(mine)
        if event_id not in got or any(state != "delivered" for state in mine):
            out.lost.append(event_id)
            if kind == "OPEN":
                out.opens_missing.append(event_id)
    out.states = dict(states)
    out.received = sum(got.values())
    out.duplicates = out.received - len(got)
    out.conflicting = sorted(i for i, d in digests.items() if len(d) > 1)
    out.unknown = sorted(set(got) - ids)
    return out


def judge(samples: Sequence[Sample], warmup_min: float, deliveries: Sequence[Delivered], p99_all_ms: float | None, journal_missing: int) -> list[tuple[str, str, bool]]:
    """(target, what was measured, passed) for every target of the soak."""
    rows: list[tuple[str, str, bool]] = []

    def line(key: str, unit: str, limit_per_hour: float | None, flat: float | None) -> None:
        tr = trend(samples, key, warmup_min)
        if tr is None:
            rows.append((f"{key} flat", "fewer than two samples after the warm-up", False))
            return
        what = f"{tr.first:g} -> {tr.last:g} {unit}, fit {tr.per_hour:+.2f} {unit}/h ({tr.rise:+.2f} over {tr.n} samples)"
        if limit_per_hour is not None:
            rows.append((f"{key} growth <= {limit_per_hour:g} {unit}/h after warm-up", what, tr.per_hour <= limit_per_hour))
        if flat is not None:
            rows.append((f"{key} flat (fit rises <= {flat:g})", what, tr.rise <= flat))

    line("rss_mb", "MB", RSS_MB_PER_HOUR, None)
    line("fds", "fds", None, FLAT)
    line("threads", "threads", None, FLAT)
    tr = trend(samples, "journal_kb", warmup_min)
    kept = [s for s in samples if s.minute >= warmup_min]
    per_event = (kept[-1].journal_kb - kept[0].journal_kb) * 1024 / (kept[-1].events - kept[0].events) if len(kept) > 1 and kept[-1].events > kept[0].events else None
    what = "-" if tr is None else f"{tr.first:g} -> {tr.last:g} kB, {tr.per_hour:+.1f} kB/h, {'-' if per_event is None else f'{per_event:.0f}'} bytes per event written"
    # Issue 32's "the journal's growth matches the events written": it grows by about one row of
    # each table per event and hook; a journal growing much faster holds something it should not.
    rows.append((f"journal growth matches the events written (<= {JOURNAL_BYTES_PER_EVENT} bytes each)", what, per_event is not None and per_event <= JOURNAL_BYTES_PER_EVENT))
    tr = trend(samples, "backlog", warmup_min)
    rows.append(("hook backlog (reported)", "-" if tr is None else f"{tr.first:g} -> {tr.last:g}, fit {tr.per_hour:+.1f}/h", True))
    for d in deliveries:
        lost = len(d.lost) + len(d.conflicting) + len(d.unknown)
        what = (
            f"{d.journaled} journaled {d.states}, {d.received} received ({d.duplicates} duplicates), "
            f"{len(d.lost)} lost ({len(d.opens_missing)} OPEN), {len(d.conflicting)} conflicting, {len(d.unknown)} unknown"
        )
        rows.append((f"{d.hook}: 0 lost, every OPEN at least once, duplicates only of the same event", what, lost == 0 and d.journaled > 0))
    rows.append(("journal holds every event written", f"{journal_missing} missing", journal_missing == 0))
    worst = max((s.p99_ms for s in samples if s.p99_ms is not None and s.minute >= warmup_min), default=None)
    what = f"whole run {_ms(p99_all_ms)}, worst sample after the warm-up {_ms(worst)}"
    rows.append((f"healthy cameras' p99 frame-to-event <= {P99_MS:g} ms throughout", what, worst is not None and worst <= P99_MS))
    return rows


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


# -- the receivers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest(event: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()[:16]


class WebhookReceiver:
    """An HTTP receiver on a fixed loopback port that can be taken down and brought back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[tuple[str, str]] = []  # (event id, digest)
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        if self._server is not None:
            return
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                with receiver._lock:
                    receiver.got.append((body["data"]["id"], digest(body["data"])))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class Broker:
    """mosquitto with persistence on a fixed port, restartable: what it acknowledged survives a restart."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.access(exe, os.X_OK):
            raise SystemExit("soak: --service needs the mosquitto broker (apt-get install mosquitto)")
        self.exe = exe
        self.port = free_port()
        data = workdir / "mosquitto"
        data.mkdir(exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        stay = "user root\n" if os.geteuid() == 0 else ""  # root: keep it root, so it can write its folder
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {data}/\n{stay}log_dest none\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"soak: mosquitto did not listen on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: it saves what it holds for the persistent session
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()
        self.restarts += 1


class Subscriber:
    """A persistent-session MQTT client: the events the broker queued while it was away reach it."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.got: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-subscriber", clean_session=False)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{PREFIX}/+/event", qos=1)
        self.client.on_message = self._message
        self.client.reconnect_delay_set(0.2, 2.0)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        event = json.loads(msg.payload)
        event.pop("gate", None)
        with self._lock:
            self.got.append((event["id"], digest(event)))

    def command(self, camera: str, action: str) -> None:
        payload = {"action": action, "by": "soak", "id": uuid.uuid4().hex, "ts": time.time()}
        self.client.publish(f"{PREFIX}/{camera}/command", json.dumps(payload), qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# -- the service and its cameras --------------------------------------------------------------------


def service_config(workdir: Path, urls: dict[str, str], webhook: str, mqtt_port: int, model_workers: int | None = None) -> Path:
    config: dict[str, Any] = {
        "detector": {"model_path": str(SHARED / "models" / "blaze_face_short_range.tflite")},
        "journal": {"path": str(workdir / "journal.sqlite3")},
        "http": {"token": TOKEN},
        "cameras": {name: {"url": url} for name, url in urls.items()},
        "hooks": [
            # Retried until the receivers come back: nothing may expire while they are away.
            {"type": "webhook", "url": webhook, "max_age_s": 300, "backoff_max_s": 2.0, "queue_size": 4096},
            {"type": "mqtt", "port": mqtt_port, "topic_prefix": PREFIX, "commands": True, "max_age_s": 300, "queue_size": 4096},
        ],
    }
    if model_workers is not None:
        config["model_workers"] = model_workers
    path = workdir / "config.yaml"
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return path


def garbage_parts() -> list[bytes]:
    return [b"<html><body>camera firmware error %d</body></html>" % i * 20 for i in range(10)]


def proc_counts(pid: int, reads: int = 5, apart_s: float = 0.2) -> tuple[float, int, int]:
    """(RSS MB, open fds, threads) of a process. Fds and threads are the least of a few reads a
    second apart: a camera reconnecting or a request being served holds one for a moment, while
    a leak raises the floor."""
    fds, threads, rss = [], [], 0.0
    for i in range(reads):
        if i:
            time.sleep(apart_s)
        fds.append(len(os.listdir(f"/proc/{pid}/fd")))
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                threads.append(int(line.split()[1]))
    return rss, min(fds), min(threads)


def journal_kb(path: Path) -> float:
    """The journal's size as SQLite counts it (its pages, the WAL's included), not the files': the
    WAL file keeps the size of its largest checkpoint however little it holds."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
    finally:
        db.close()
    return pages * size / 1024


def pending(path: Path) -> int:
    with Journal(path, readonly=True) as j:
        return len(j.pending())


def latencies_ms(events: Sequence[tuple[float, dict]]) -> list[float]:
    """Frame-to-event of the healthy cameras' own events (not the operator's: those wait for no frame)."""
    return [
        (read_at - e["t"]) * 1000
        for read_at, e in events
        if e.get("camera") in HEALTHY and e["event"] in ("OPEN", "FACE_LOST", "DENY") and not e.get("via")
    ]


class Operator:
    """One action every few seconds on the cameras in turn: open, out of service, back in service;
    over HTTP and MQTT alternately."""

    KINDS = ("open", "out_of_service", "in_service")

    def __init__(self, http_port: int, subscriber: Subscriber) -> None:
        self.http_port = http_port
        self.subscriber = subscriber
        self.count = 0
        self.answers: Counter[str] = Counter()

    def act(self) -> None:
        camera = CAMERAS[self.count % len(CAMERAS)]
        kind = self.KINDS[(self.count // len(CAMERAS)) % len(self.KINDS)]
        via_mqtt = self.count % 2 == 1
        self.count += 1
        if via_mqtt:
            self.subscriber.command(camera, kind)
            self.answers["mqtt sent"] += 1
            return
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/cameras/{camera}/actions/{kind}",
            data=b'{"by": "soak"}',
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                self.answers[f"http {answer.status}"] += 1
        except urllib.error.HTTPError as exc:
            self.answers[f"http {exc.code}"] += 1
        except OSError as exc:
            self.answers[f"http {type(exc).__name__}"] += 1


class Schedule:
    """Calls ``action`` every ``period`` s from ``first`` s on; with ``lasting``, ``undo`` that long after."""

    def __init__(self, period: float, lasting: float | None, first: float, action: Any, undo: Any = None) -> None:
        self.period, self.lasting, self.action, self.undo = period, lasting, action, undo
        self.next_at, self.undo_at = first, None
        self.count = 0

    def tick(self, t: float) -> None:
        if self.undo_at is not None and t >= self.undo_at:
            self.undo()
            self.undo_at = None
        if t >= self.next_at:
            self.action()
            self.count += 1
            self.next_at += self.period
            if self.lasting is not None:
                self.undo_at = t + self.lasting

    def finish(self) -> None:
        if self.undo_at is not None:
            self.undo()
            self.undo_at = None


def service_soak(minutes: float, *, sample_s: float, warmup_min: float, workdir: Path | None, out: Path | None, model_workers: int | None = None) -> int:
    warmup_min = min(warmup_min, minutes / 2)
    with tempfile.TemporaryDirectory(prefix="soak-service-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        return _soak(minutes, sample_s, warmup_min, work, out, model_workers)


def _soak(minutes: float, sample_s: float, warmup_min: float, work: Path, out: Path | None, model_workers: int | None = None) -> int:
    still = still_scene()
    faces = face_loop(still)
    frames = {"cam0": still, "cam1": moving_scene(), "cam2": faces, "cam3": faces, "cam4": faces, "cam5": faces, "cam6": faces, "cam7": garbage_parts()}
    servers = {name: MjpegServer(frames[name], fps=FPS).start() for name in CAMERAS}
    receiver = WebhookReceiver()
    broker = Broker(work)
    broker.start()
    subscriber = Subscriber(broker.port)
    http_port = free_port()
    config = service_config(work, {n: s.url for n, s in servers.items()}, receiver.url, broker.port, model_workers)
    journal = work / "journal.sqlite3"
    argv = [sys.executable, "-m", "gatekeeper.cli", "--config", str(config), "--http", f"127.0.0.1:{http_port}", "--log-level", "warning"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    stderr_path = work / "gatekeeper.err"
    print(f"soak --service: {minutes:g} min, 8 cameras, samples every {sample_s:g} s, warm-up {warmup_min:g} min, model_workers {model_workers or 'default'}; work in {work}", flush=True)
    gk = Gatekeeper(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr_path.open("w"), text=True, env=env, cwd=Path(__file__).resolve().parents[1]))
    operator = Operator(http_port, subscriber)
    schedules = [
        Schedule(*FREEZE, servers["cam5"].stall, servers["cam5"].resume),
        Schedule(*HANG_UP, servers["cam6"].drop),
        Schedule(*RECEIVER_DOWN, receiver.down, receiver.up),
        Schedule(*BROKER_RESTART, broker.restart),
        Schedule(*OPERATOR, operator.act),
    ]
    samples: list[Sample] = []
    rc = 1
    try:
        _wait_listening(http_port, gk)
        started = time.monotonic()
        next_sample = started + sample_s
        end = started + minutes * 60
        mark = 0
        print(f"{'minute':>7}{'RSS MB':>9}{'fds':>6}{'threads':>9}{'journal kB':>12}{'backlog':>9}{'events':>8}{'p99 ms':>11}", flush=True)
        while (now := time.monotonic()) < end:
            if gk.proc.poll() is not None:
                raise SystemExit(f"soak: the service exited with {gk.proc.returncode}: {stderr_path.read_text()[-2000:]}")
            for sch in schedules:
                sch.tick(now - started)
            if now >= next_sample:
                rss, fds, threads = proc_counts(gk.proc.pid)
                events = list(gk.events)
                lat = latencies_ms(events[mark:])
                mark = len(events)
                sample = Sample(round((now - started) / 60, 2), round(rss, 1), fds, threads, round(journal_kb(journal), 1), pending(journal), len(events), round(float(np.percentile(lat, 99)), 1) if lat else None)
                samples.append(sample)
                print(f"{sample.minute:>7}{sample.rss_mb:>9}{sample.fds:>6}{sample.threads:>9}{sample.journal_kb:>12}{sample.backlog:>9}{sample.events:>8}{_ms(sample.p99_ms):>11}", flush=True)
                next_sample += sample_s
            time.sleep(0.05)
        for sch in schedules:
            sch.finish()
        # Everything back: the backlog drains, then the service stops as an operator would stop it.
        receiver.up()
        for server in servers.values():
            server.resume()
        deadline = time.monotonic() + 120
        while pending(journal) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = pending(journal)
        gk.proc.send_signal(signal.SIGINT)  # as an operator stops it: the hooks deliver what is queued
        gk.proc.wait(60)
        time.sleep(1.0)  # the reader has the last lines; the last MQTT messages reach the subscriber
        rc = _report(samples, warmup_min, journal, gk, receiver, subscriber, operator, schedules, broker, left, out)
    finally:
        if gk.proc.poll() is None:
            gk.proc.kill()
        subscriber.close()
        broker.stop()
        receiver.down()
        for server in servers.values():
            server.close()
    return rc


def _wait_listening(port: int, gk: Gatekeeper, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gk.proc.poll() is not None:
            raise SystemExit(f"soak: the service exited with {gk.proc.returncode} at start")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers (503 before the first frames)
        except OSError:
            time.sleep(0.5)
    raise SystemExit("soak: the service did not start listening")


def _report(samples: list[Sample], warmup_min: float, journal: Path, gk: Gatekeeper, receiver: WebhookReceiver, subscriber: Subscriber, operator: Operator, schedules: list[Schedule], broker: Broker, left: int, out: Path | None) -> int:
    with Journal(journal, readonly=True) as j:
        entries = j.entries()
    journaled = [(e.event.id, e.event.event.value, {d.hook: d.state.value for d in e.deliveries}) for e in entries]
    deliveries = [reconcile(journaled, "webhook", receiver.got), reconcile(journaled, "mqtt", subscriber.got)]
    written = {e["id"] for _, e in gk.events}
    journal_missing = len(written - {e.event.id for e in entries})
    lat = latencies_ms(gk.events)
    p99 = float(np.percentile(lat, 99)) if lat else None
    rows = judge(samples, warmup_min, deliveries, p99, journal_missing)
    kinds = Counter(e["event"] for _, e in gk.events)
    print(f"\nevents written {dict(kinds)}; journal {len(entries)} events, {journal_kb(journal):.0f} kB; {left} pending when stopped")
    print(f"faults: cam5 froze {schedules[0].count}x, cam6 hung up {schedules[1].count}x, receiver down {schedules[2].count}x, broker restarted {broker.restarts}x; operator actions {operator.count} {dict(operator.answers)}")
    print(f"frame-to-event, healthy cameras: {len(lat)} events, p50 {_ms(float(np.percentile(lat, 50)) if lat else None)}, p99 {_ms(p99)}, max {_ms(max(lat, default=None))}")
    for target, what, ok in rows:
        print(f"{'PASS' if ok else 'FAIL'}  {target}: {what}")
    passed = all(ok for _, _, ok in rows)
    print("soak --service:", "every target passed" if passed else "FAILED")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"samples": [asdict(s) for s in samples], "targets": [{"target": t, "measured": w, "passed": ok} for t, w, ok in rows], "deliveries": [asdict(d) for d in deliveries], "events": dict(kinds)}, indent=1) + "\n")
    return 0 if passed else 1
