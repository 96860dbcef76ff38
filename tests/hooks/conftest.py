"""Real receivers for the hook tests: an HTTP server that verifies Standard Webhooks signatures,
a mosquitto broker on a free loopback port, gpiozero's MockFactory, and helpers to wait on them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
from polling import wait_for

from gatekeeper.events import DeliveryState, Event, EventType
from gatekeeper.hooks.base import Delivery, Hook

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()  # 32 bytes, like the spec's examples
REPO = Path(__file__).resolve().parents[2]


# -- events and waiting --------------------------------------------------------------------------


@pytest.fixture
def make_event() -> Callable[..., Event]:
    def make(kind: str = "OPEN", frame: int = 10, t: float = 0.5, **kw: Any) -> Event:
        score = kw.pop("score", 0.93 if kind == "OPEN" else None)
        box = kw.pop("box", (10.0, 20.0, 120.0, 120.0) if kind == "OPEN" else None)
        return Event(EventType(kind), frame, t, score, kw.pop("id", uuid.uuid4().hex), box, kw.pop("faces", 1), **kw)

    return make


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005) -> Any:
    """Poll ``predicate`` until it is truthy; returns its value or fails the test on timeout."""
    return wait_for(predicate, timeout, str(getattr(predicate, "__name__", predicate)), interval)


@pytest.fixture
def wait() -> Callable[..., Any]:
    return wait_until


@dataclass
class Outcome:
    event_id: str
    state: DeliveryState
    error: str | None
    at: float  # time.time()


class Outcomes:
    """Records what a hook reports (attempts and settlements) and lets a test wait for it."""

    def __init__(self, hook: Hook) -> None:
        self.attempts: list[tuple[str, float]] = []
        self.settled: list[Outcome] = []
        self._cond = threading.Condition()
        hook.when_attempted = self._attempted
        hook.when_settled = self._settled

    def _attempted(self, hook: Hook, delivery: Delivery) -> None:
        with self._cond:
            self.attempts.append((delivery.event.id, time.time()))

    def _settled(self, hook: Hook, delivery: Delivery, state: DeliveryState, error: str | None) -> None:
        with self._cond:
            self.settled.append(Outcome(delivery.event.id, state, error, time.time()))
            self._cond.notify_all()

    def final(self, event_id: str, timeout: float = 5.0) -> Outcome:
        """The final (non-pending) outcome of an event, waiting for it."""

        def find() -> Outcome | None:
            return next(
                (o for o in self.settled if o.event_id == event_id and o.state is not DeliveryState.PENDING), None
            )

        with self._cond:
            if not self._cond.wait_for(find, timeout):
                pytest.fail(f"event {event_id} not settled within {timeout} s; so far: {self.settled}")
            result = find()
            assert result is not None
            return result


@pytest.fixture
def outcomes() -> Callable[[Hook], Outcomes]:
    return Outcomes


# -- the webhook receiver -------------------------------------------------------------------------


def verify_signature(secret: str, headers: Any, body: bytes, tolerance_s: float = 300) -> bool:
    """Standard Webhooks verification, written from the spec for the test: any v1 signature matches."""
    msg_id, ts, sigs = headers.get("webhook-id"), headers.get("webhook-timestamp"), headers.get("webhook-signature")
    if not (msg_id and ts and sigs) or abs(time.time() - int(ts)) > tolerance_s:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return any(
        version == "v1" and hmac.compare_digest(sig, expected)
        for version, _, sig in (item.partition(",") for item in sigs.split())
    )


@dataclass
class Request:
    at: float  # time.time() when the body had been read
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None  # None: the receiver has no secret

    @property
    def id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a slow receiver)


class Receiver:
    """A real HTTP server on 127.0.0.1; answers from ``script`` in order, then ``default``."""

    def __init__(self, secret: str | None = SECRET) -> None:
        self.secret = secret
        self.script: deque[Answer] = deque()
        self.default = Answer()
        self.requests: list[Request] = []
        self._cond = threading.Condition()
        self._closing = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                ok = None if receiver.secret is None else verify_signature(receiver.secret, headers, body)
                with receiver._cond:
                    receiver.requests.append(Request(time.time(), headers, body, ok))
                    answer = receiver.script.popleft() if receiver.script else receiver.default
                    receiver._cond.notify_all()
                if answer.delay:
                    receiver._closing.wait(answer.delay)
                status = answer.status if ok is not False else 401
                try:
                    self.send_response(status)
                    for k, v in answer.headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (timeout) or was killed

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def then(self, status: int = 200, headers: dict[str, str] | None = None, delay: float = 0.0) -> Receiver:
        """Answer the next unanswered request this way (in order of calls)."""
        self.script.append(Answer(status, headers or {}, delay))
        return self

    def always(self, status: int = 200, headers: dict[str, str] | None = None, delay: float = 0.0) -> Receiver:
        """Answer every request after the scripted ones this way."""
        self.default = Answer(status, headers or {}, delay)
        return self

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Request]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                pytest.fail(f"receiver got {len(self.requests)} request(s) within {timeout} s, expected {n}")
            return list(self.requests)

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def secret() -> str:
    """The Standard Webhooks secret the receiver verifies with by default."""
    return SECRET


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(secret: str | None = SECRET) -> Receiver:
        r = Receiver(secret)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused."""
    return free_port()


# -- mosquitto -------------------------------------------------------------------------------------


class Broker:
    """A mosquitto process on a loopback port, restartable on the same port."""

    def __init__(self, exe: str, workdir: Path, *, allow_anonymous: bool = True, extra: str = "") -> None:
        self.exe = exe
        self.port = free_port()
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if allow_anonymous else 'false'}\n"
            "persistence false\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            + extra  # more mosquitto.conf lines: password_file, acl_file...
        )
        self.log = workdir / f"mosquitto-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        pytest.fail(f"mosquitto did not listen on 127.0.0.1:{self.port} within 5 s: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def mosquitto_exe() -> str:
    exe = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )
    if exe is None:
        pytest.fail(
            "the MQTT tests need the mosquitto broker, which is not installed: run `apt-get install mosquitto` "
            "(CI installs it in .ci/run)",
            pytrace=False,
        )
    return exe


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(mosquitto_exe(), tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Start a broker made with the given Broker options (``extra`` mosquitto.conf lines); stopped after the test."""
    made: list[Broker] = []

    def make(**kw: Any) -> Broker:
        b = Broker(mosquitto_exe(), tmp_path, **kw)
        b.start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def refusing_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker that answers every CONNECT with 'not authorised'."""
    b = Broker(mosquitto_exe(), tmp_path, allow_anonymous=False)
    b.start()
    yield b
    b.stop()


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    at: float  # time.time() on arrival

    @property
    def text(self) -> str:
        return self.payload.decode()

    @property
    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A plain paho client subscribed (QoS 1) to ``topics`` (none: it only publishes), recording
    every message; ``username``/``password`` log in to a broker that authenticates."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",), *, username: str | None = None, password: str | None = None) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        if username is not None:
            self.client.username_pw_set(username, password)

        def on_connect(client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
            if topics and not rc.is_failure:
                client.subscribe([(t, 1) for t in topics])
            elif not rc.is_failure:
                subscribed.set()

        def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            with self._cond:
                self.messages.append(Message(msg.topic, msg.payload, msg.qos, bool(msg.retain), time.time()))
                self._cond.notify_all()

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(5):
            pytest.fail(f"test subscriber could not subscribe on 127.0.0.1:{port}")

    def wait_for(self, predicate: Callable[[Message], bool], n: int = 1, timeout: float = 5.0) -> list[Message]:
        """The first ``n`` messages matching ``predicate``, waiting for them."""
        with self._cond:
            if not self._cond.wait_for(lambda: len([m for m in self.messages if predicate(m)]) >= n, timeout):
                seen = [(m.topic, m.payload[:80]) for m in self.messages]
                pytest.fail(f"expected {n} matching MQTT message(s) within {timeout} s; got {seen}")
            return [m for m in self.messages if predicate(m)][:n]

    def on(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def publish(self, topic: str, payload: Any, *, retain: bool = False) -> None:
        """Publish (QoS 1) and wait for the broker's PUBACK; JSON for anything but bytes and str."""
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        self.client.publish(topic, body, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribe() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(port: int, topics: tuple[str, ...] = ("#",), **login: Any) -> Subscriber:
        sub = Subscriber(port, topics, **login)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


# -- gpiozero --------------------------------------------------------------------------------------


@pytest.fixture
def mock_factory() -> Iterator[MockFactory]:
    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = previous


@pytest.fixture
def repo_env() -> dict[str, str]:
    """Environment for subprocesses that import gatekeeper from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env
