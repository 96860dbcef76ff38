"""gatekeeper park (gatekeeper/park/): one page, one audit trail and actions for a park of gates.

The fast tests drive the parts alone: the config (its errors name the key; examples/park.yaml is
its documentation), the journal (an event id is kept once), the state (an hour's OPENs, a last
will), ``gatekeeper events --gate``. The slow ones run the service against a real mosquitto with
simulated gates (plain paho publishers of the gate's topics) and, in test_park_pages, two real
``gatekeeper`` processes replaying a clip from ../shared with an MQTT hook, the page in Chromium.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from hooks.conftest import Broker, Subscriber, broker, free_port  # noqa: F401 -- broker: a fixture, a real mosquitto
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from polling import wait_for
from test_deploy import run_promtool
from test_faults import gatekeeper_process
from test_web import browser, metric_samples  # noqa: F401 -- browser: a fixture, Debian's Chromium

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench_park import PageWatcher  # the page's /events reader the park benchmark uses

from gatekeeper import cli, commands
from gatekeeper.errors import ConfigError, JournalError
from gatekeeper.journal import Journal
from gatekeeper.park.config import load_park_config, park_config_from_dict, render
from gatekeeper.park.journal import ParkJournal, is_park_journal
from gatekeeper.park.service import ParkService
from gatekeeper.park.state import ParkState
from gatekeeper.park.web import PUSH_GAP_S
from gatekeeper.park.wire import BufferedClient, ReadBuffer
from gatekeeper.users import hash_secret

REPO = Path(__file__).resolve().parents[1]
TOKEN = "park-token-0123456789"
PREFIX = "park"


def event(kind: str = "OPEN", gate: str = "sim1", **kw: Any) -> dict[str, Any]:
    """An event as a gate's MQTT hook publishes it (Event.to_dict() plus the gate)."""
    base = {"event": kind, "frame": 1, "t": 0.5, "score": 0.9 if kind == "OPEN" else None, "id": uuid.uuid4().hex, "box": None, "faces": 1,
            "reason": None, "track": 1, "by": None, "via": None, "override": None, "note": None, "camera": gate, "gate": gate}
    return {**base, **kw}


# -- config ------------------------------------------------------------------------------------


def test_the_documented_park_config_is_the_rendered_defaults() -> None:
    assert (REPO / "examples" / "park.yaml").read_text(encoding="utf-8") == render(), "run: python -m gatekeeper.park.config > examples/park.yaml"
    assert load_park_config(REPO / "examples" / "park.yaml") == park_config_from_dict({})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"broker": {"prot": 1883}}, "broker.prot: unknown key; expected one of "),
        ({"broker": {"port": "x"}}, "broker.port: expected an integer >= 1 and <= 65535, got 'x' (str)"),
        ({"broker": {"topic_prefix": "park/#"}}, "broker: topic_prefix: expected topic levels"),
        ({"broker": {"brokers": ["nats-1:1883", "nats-2"]}}, "broker: brokers[1]: expected host:port with a port from 1 to 65535"),
        ({"broker": {"brokers": ["nats-1:1883"], "port": 1884}}, "broker: brokers and host/port are both set; expected brokers alone"),
        ({"broker": {"brokers": []}}, "broker: brokers: expected at least one host:port, got an empty list"),
        ({"http": {"token": "short"}}, "http: token: expected at least 16 characters, got 5"),
        ({"http": {"resync_s": -1}}, "http.resync_s: expected a value > 0 and <= 60, got -1"),
        ({"gates": ["lane1", "a/b"]}, "config: gates[1]: expected a gate's MQTT name"),
        ({"gates": ["lane1", "lane1"]}, "config: gates: 'lane1' is listed twice"),
        ({"journal": {"keep_days": "many"}}, "journal.keep_days: expected a number > 0, got 'many' (str)"),
    ],
)
def test_a_bad_park_config_names_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        park_config_from_dict(data)
    assert str(err.value).startswith(message), str(err.value)


def test_a_missing_park_config_file_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"park config file '.*nope.yaml' does not exist; expected a YAML file \(see examples/park.yaml\)"):
        load_park_config(tmp_path / "nope.yaml")

def test_gatekeeper_park_refuses_a_bad_config_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "park.yaml"
    bad.write_text("broker: {port: 70000}\n")
    assert cli.main(["park", "--config", str(bad), "--check-config"]) == 2
    assert capsys.readouterr().err == "gatekeeper: error: broker.port: expected a value >= 1 and <= 65535, got 70000\n"
    assert cli.main(["park", "--config", str(REPO / "examples" / "park.yaml"), "--http", "0.0.0.0:8090", "--check-config"]) == 2
    assert "listening beyond loopback needs http.token" in capsys.readouterr().err
    assert cli.main(["park", "--config", str(REPO / "examples" / "park.yaml"), "--check-config"]) == 0
    assert "topic_prefix: gatekeeper" in capsys.readouterr().out


# -- journal -----------------------------------------------------------------------------------


def test_the_park_journal_keeps_each_event_id_once(tmp_path: Path) -> None:
    path = tmp_path / "park.sqlite3"
    clock = iter(range(100, 200))
    with ParkJournal(path, clock=lambda: float(next(clock))) as journal:
        e1, e2 = event("OPEN", "lane1"), event("FAULT", "lane2", reason="camera lost")
        assert [journal.record("lane1", e1), journal.record("lane2", e2), journal.record("lane1", e1)] == [True, True, False]
        with pytest.raises(ValueError, match="not an event"):
            journal.record("lane1", {"event": "NOPE", "id": "x"})
    assert is_park_journal(path)
    with ParkJournal(path, readonly=True) as journal:
        assert [(e.gate, e.entry.event.id) for e in journal.entries()] == [("lane1", e1["id"]), ("lane2", e2["id"])]
        assert [e.entry.event.reason for e in journal.entries(gate="lane2")] == ["camera lost"]
        assert journal.gates() == ["lane1", "lane2"]
    # The same schema's rule in SQLite itself: a second row with that id is refused.
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO events (id, created_at, type, event, gate) VALUES (?, 0, 'OPEN', '{}', 'x')", (e1["id"],))
    db.close()


def test_a_gate_journal_is_not_taken_for_a_park_journal(tmp_path: Path) -> None:
    Journal(tmp_path / "gate.sqlite3").close()
    assert not is_park_journal(tmp_path / "gate.sqlite3")
    with pytest.raises(JournalError, match="is not a park journal"):
        ParkJournal(tmp_path / "gate.sqlite3")


def test_gatekeeper_events_reads_a_park_journal_by_gate(tmp_path: Path) -> None:
    path = tmp_path / "park.sqlite3"
    with ParkJournal(path) as journal:
        for gate in ("lane1", "lane2", "lane1"):
            journal.record(gate, event("OPEN", gate))
    out, err = io.StringIO(), io.StringIO()
    assert commands.events(["--journal", str(path), "--gate", "lane1", "--json"], stdout=out, stderr=err) == 0, err.getvalue()
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["gate"], r["event"]["event"]) for r in rows] == [("lane1", "OPEN"), ("lane1", "OPEN")]
    out = io.StringIO()
    assert commands.events(["--journal", str(path)], stdout=out, stderr=err) == 0
    assert [line.split("  ")[1] for line in out.getvalue().splitlines()] == ["gate lane1", "gate lane2", "gate lane1"]
    err = io.StringIO()
    assert commands.events(["--journal", str(path), "--gate", "lane9"], stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue() == "gatekeeper: error: --gate 'lane9': no gate of that name in the park journal; expected one of lane1, lane2\n"
    Journal(tmp_path / "gate.sqlite3").close()
    err = io.StringIO()
    assert commands.events(["--journal", str(tmp_path / "gate.sqlite3"), "--gate", "lane1"], stdout=io.StringIO(), stderr=err) == 2
    assert "is not a park journal" in err.getvalue() and "Traceback" not in err.getvalue()


# -- state -------------------------------------------------------------------------------------


def test_a_tile_follows_state_availability_and_the_hour() -> None:
    park = ParkState(["ghost"], recent=2)
    assert park.tile("ghost", now=0.0)["status"] == "never seen"
    park.on_state("lane1", {"state": "closed", "in_service": True, "since": 50.0}, at=100.0, retained=True)
    park.on_availability("lane1", "online", at=100.0, retained=True)
    tile = park.tile("lane1", now=100.0)
    assert (tile["status"], tile["health"], tile["last_seen"]) == ("online", "ok", 50.0), "a retained state was true at its 'since', not when replayed"
    for i, kind in enumerate(["OPEN", "OPEN", "FAULT", "OPEN"]):
        park.on_event("lane1", event(kind, "lane1", reason="camera lost" if kind == "FAULT" else None), at=200.0 + i * 1000)
    tile = park.tile("lane1", now=3900.0)
    assert [e["event"] for e in tile["recent"]] == ["OPEN", "FAULT"], "the newest first, two kept"
    assert (tile["opens_1h"], tile["faults_1h"], tile["health"]) == (2, 1, "fault: camera lost"), "the OPEN at 200 s is over an hour old"
    park.on_event("lane1", event("RECOVERED", "lane1"), at=3400.0)
    park.on_event("lane1", event("OUT_OF_SERVICE", "lane1", by="ali", via="mqtt"), at=3401.0)
    assert park.tile("lane1", now=3402.0)["health"] == "out of service"
    park.on_availability("lane1", "offline", at=3500.0, retained=False)  # its last will
    assert (park.tile("lane1", now=3500.0)["status"], park.tile("lane1", now=3500.0)["health"]) == ("offline", "offline")


def test_the_park_client_handles_buffered_packets_but_comes_back_to_its_loop() -> None:
    """BufferedClient reads ahead and handles every packet it has read, in order, but a broker
    that never pauses does not keep it from paho's loop (its PUBACKs, pings and stop)."""
    packet = bytes([0x30, 2 + 12 + 20]) + (12).to_bytes(2, "big") + b"park/g/event" + b"x" * 20
    per_read = 1000  # packets in each read from the socket

    class Endless:  # a broker with always more to send, each read ending in a packet's middle
        stream, sent, reads = packet * per_read * 50, 0, 0

        def recv(self, n: int) -> bytes:
            self.reads += 1
            if self.reads >= 50:
                raise AssertionError("read the socket without end")
            data = self.stream[self.sent : self.sent + min(n, len(packet) * per_read - 7)]
            self.sent += len(data)
            return data

        def close(self) -> None:
            pass

    client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="t")
    got: list[bytes] = []
    client.on_message = lambda c, u, m: got.append(m.payload)
    client._sock = sock = ReadBuffer(Endless())  # type: ignore[assignment]
    assert client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert sock.reads == 2 and len(got) == per_read, (sock.reads, len(got))
    assert sock.pending() > 0, "the rest is left for the next turn, which pending() asks for at once"
    assert client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS and len(got) == 2 * per_read


# -- the service against a real broker ----------------------------------------------------------


class SimGate:
    """A light simulated gate: a plain paho client publishing a gate's topics (QoS 1)."""

    def __init__(self, port: int, name: str) -> None:
        self.name = name
        self.client = Subscriber(port, ())

    def online(self, in_service: bool = True) -> None:
        self.client.publish(f"{PREFIX}/{self.name}/availability", "online", retain=True)
        self.client.publish(f"{PREFIX}/{self.name}/state", {"state": "closed", "in_service": in_service, "since": time.time()}, retain=True)

    def publish(self, data: dict[str, Any]) -> dict[str, Any]:
        self.client.publish(f"{PREFIX}/{self.name}/event", data)
        return data

    def close(self) -> None:
        self.client.client.disconnect()
        self.client.client.loop_stop()


def http(url: str, *, method: str = "GET", body: dict[str, Any] | None = None, token: str | None = TOKEN) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(raw) if r.headers.get_content_type() == "application/json" else raw.decode()
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if e.headers.get_content_type() == "application/json" else raw.decode()


def park_service(tmp_path: Path, on: Broker, **http_keys: Any) -> ParkService:
    cfg = park_config_from_dict(
        {
            "broker": {"port": on.port, "topic_prefix": PREFIX, "client_id": "park-under-test"},
            "journal": {"path": str(tmp_path / "park.sqlite3")},
            "http": {"token": TOKEN, "resync_s": 0.5, **http_keys},
            "gates": ["ghost"],
        }
    )
    service = ParkService(cfg)
    service.start("127.0.0.1", 0)
    assert service.listener.wait_connected(5), service.listener.last_error
    return service


@pytest.mark.slow
def test_a_restarted_park_catches_up_without_loss_or_doubles(tmp_path: Path, broker: Broker) -> None:  # noqa: F811
    """Events published at QoS 1 while the park service is stopped wait in its persistent
    session; after the restart every one is journaled once, duplicates included."""
    sim = SimGate(broker.port, "sim1")
    sim.online()
    park = park_service(tmp_path, broker)
    try:
        before = [sim.publish(event("OPEN")) for _ in range(5)]
        wait_for(lambda: park.listener.counts["journaled"] == 5, 5, "5 events journaled")
        # paho's socket is behind the read buffer (BufferedClient overrides a private method of paho 2)
        assert isinstance(park.listener.client._sock, ReadBuffer) and park.listener.client._sock.reads > 0
    finally:
        park.stop()
    while_away = [sim.publish(event(kind)) for kind in ["OPEN", "DENY", "FAULT", "RECOVERED"] * 5]
    for again in before[:3] + while_away[:3]:  # a gate that retried: the same ids again
        sim.publish(again)
    park = park_service(tmp_path, broker)
    try:
        wait_for(lambda: park.listener.counts["journaled"] + park.listener.counts["duplicates"] == 26, 10, "every message of the stopped time delivered")
        assert park.listener.counts == {**park.listener.counts, "journaled": 20, "duplicates": 6, "malformed": 0, "journal_errors": 0}
        ids = [e.entry.event.id for e in park.journal.entries(gate="sim1")]
        assert ids == [e["id"] for e in before + while_away], "each once, in publish order"
        code, status = http(park.web.url + "status")
        assert code == 200
        tile = status["gates"]["sim1"]
        assert (tile["opens_1h"], tile["faults_1h"], tile["health"]) == (10, 5, "ok"), "the hour counted from the journal across the restart"
        assert status["gates"]["ghost"]["status"] == "never seen"
        code, text = http(park.web.url + "metrics")
        checked = run_promtool("check", "metrics", stdin=text)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert metric_samples(text)[("gatekeeper_park_messages_total", (("outcome", "duplicates"),))] == 6
    finally:
        park.stop()
        sim.close()


def gate_config(tmp_path: Path, name: str, broker_port: int, face_model: Path) -> Path:
    """A real gate publishing to the park: an MQTT hook under the park's prefix, taking commands."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "detector": {"model_path": str(face_model)},
                "journal": {"path": str(tmp_path / f"{name}.sqlite3")},
                "hooks": [{"type": "mqtt", "port": broker_port, "topic_prefix": PREFIX, "commands": True, "keepalive_s": 5}],
            }
        )
    )
    return path




@pytest.mark.slow
def test_park_pages_two_real_gates_and_simulated_ones(tmp_path: Path, broker: Broker, shared_dir: Path, face_model_path: Path, browser: Any) -> None:  # noqa: F811
    """Two real gatekeeper processes replaying single_face.mp4 with an MQTT hook, and simulated
    gates: the park journals each real gate's events as its stdout printed them, /status and
    /metrics say where every gate is, the page (Chromium) shows every tile, updates within 1 s
    of an event, takes a gate out of service by its command topic, and shows a killed gate
    offline by its last will."""
    from selenium.webdriver.common.by import By

    park = park_service(tmp_path, broker)
    sims = [SimGate(broker.port, f"sim{i}") for i in (1, 2)]
    clip = str(shared_dir / "videos" / "single_face.mp4")
    procs = {}
    try:
        for sim in sims:
            sim.online()
        with contextlib.ExitStack() as stack:
            for name in ("lane1", "lane2"):
                args = ("--video", clip, "--config", str(gate_config(tmp_path, name, broker.port, face_model_path)), "--http", "127.0.0.1:0", "--hold-open", "120")
                procs[name] = stack.enter_context(gatekeeper_process(*args))
            for _, out in procs.values():
                out.wait_event("OPEN", timeout=90)
            # Each real gate's events, as it printed them, are in the park journal, once.
            for name, (_, out) in procs.items():
                printed = lambda out=out: [json.loads(line)["id"] for line in list(out.lines)]  # noqa: E731
                wait_for(lambda n=name, p=printed: sorted(e.entry.event.id for e in park.journal.entries(gate=n)) == sorted(p()), 30, f"{name}'s events in the park journal")
            code, status = http(park.web.url + "status")
            assert code == 200 and status["summary"]["online"] == 4 and status["summary"]["never_seen"] == 1, status["summary"]
            assert {n: (t["status"], t["in_service"]) for n, t in status["gates"].items()} == {
                "ghost": ("never seen", None), "lane1": ("online", True), "lane2": ("online", True), "sim1": ("online", True), "sim2": ("online", True)}
            assert status["gates"]["lane1"]["opens_1h"] >= 1 and status["gates"]["lane1"]["recent"][0]["camera"] == "lane1"

            # Actions: the credential first, then the gate.
            assert http(park.web.url + "gates/lane9/actions/open", method="POST", body={"by": "x"}, token=None)[0] == 401
            code, body = http(park.web.url + "gates/lane9/actions/open", method="POST", body={"by": "x"})
            assert (code, body["refused"]) == (404, "no_gate")

            browser.get(f"{park.web.url}?token={TOKEN}")
            wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#gates .tile")) == 5, 15, "five tiles")
            tile = lambda name: browser.find_element(By.CSS_SELECTOR, f'.tile[data-gate="{name}"]')  # noqa: E731
            assert tile("ghost").get_attribute("data-status") == "never seen"
            assert not tile("ghost").find_element(By.CSS_SELECTOR, ".service").is_displayed(), "nothing known of a gate never seen"
            assert int(tile("lane1").find_element(By.CSS_SELECTOR, ".opens").text) >= 1

            # An event of a simulated gate reaches its tile (how fast, at 200 gates: test_park_page.py).
            opened = sims[0].publish(event("OPEN", "sim1"))
            wait_for(lambda: tile("sim1").find_element(By.CSS_SELECTOR, ".opens").text == "1", 5, "sim1's OPEN on the page")
            assert tile("sim1").find_element(By.CSS_SELECTOR, ".events li").get_attribute("data-id") == opened["id"]

            # Out of service from the page: the gate's command topic, the gate's own event back.
            browser.find_element(By.ID, "by").send_keys("ops-maria")
            tile("lane2").find_element(By.CSS_SELECTOR, 'button[data-kind="out_of_service"]').click()
            wait_for(lambda: tile("lane2").find_element(By.CSS_SELECTOR, ".service").get_attribute("textContent") == "out of service", 15, "lane2 out of service on the page")
            assert "out_of_service on lane2: OUT_OF_SERVICE" in browser.find_element(By.ID, "answer").text
            (entry,) = [e.entry.event for e in park.journal.entries(gate="lane2") if e.entry.event.event.value == "OUT_OF_SERVICE"]
            assert (entry.by, entry.via, entry.camera) == ("ops-maria", "mqtt", "lane2")

            # A gate that dies: its last will, and the page says offline.
            procs["lane1"][0].kill()
            wait_for(lambda: tile("lane1").get_attribute("data-status") == "offline", 10, "lane1 offline on the page")
            m = metric_samples(http(park.web.url + "metrics")[1])
            assert m[("gatekeeper_park_gate_online", (("gate", "lane1"),))] == 0 and m[("gatekeeper_park_gate_online", (("gate", "lane2"),))] == 1
            assert m[("gatekeeper_park_gate_in_service", (("gate", "lane2"),))] == 0
            assert m[("gatekeeper_park_actions_total", (("action", "out_of_service"), ("gate", "lane2"), ("result", "done")))] == 1
            assert m[("gatekeeper_park_actions_total", (("action", "open"), ("gate", ""), ("result", "refused_no_gate")))] == 1
            assert m[("gatekeeper_park_auth_refusals_total", (("reason", "no_token"), ("role", "none")))] >= 1, "the POST without a credential"
            (REPO / "artifacts").mkdir(exist_ok=True)
            browser.save_screenshot(str(REPO / "artifacts" / "park_page.png"))
            procs["lane2"][0].send_signal(signal.SIGTERM)
            assert procs["lane2"][0].wait(timeout=20) == 0
            for proc, out in procs.values():
                _, stderr = proc.communicate(timeout=10)  # and the pipes closed
                out.join()
                assert "Traceback" not in stderr, stderr[-3000:]
    finally:
        park.stop()
        for sim in sims:
            sim.close()


@pytest.mark.slow
def test_an_event_the_journal_could_not_write_comes_again(tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A full disk at the wrong moment: the event is not acknowledged, the park reconnects, the
    broker delivers it again, and it is journaled once."""
    sim = SimGate(broker.port, "sim1")
    park = park_service(tmp_path, broker)
    real = ParkJournal.record
    failures = iter([True])

    def record_failing_once(self: ParkJournal, gate: str, data: dict[str, Any]) -> bool:
        if next(failures, False):
            raise JournalError("park journal: cannot record: database or disk is full")
        return real(self, gate, data)

    monkeypatch.setattr(ParkJournal, "record", record_failing_once)
    try:
        first = sim.publish(event("OPEN"))
        wait_for(lambda: park.listener.counts["journaled"] == 1, 10, "the event journaled after the failure")
        assert park.listener.counts["journal_errors"] == 1 and park.listener.connects == 2, park.listener.counts
        second = sim.publish(event("OPEN"))
        wait_for(lambda: park.listener.counts["journaled"] == 2, 5, "the next event")
        assert [e.entry.event.id for e in park.journal.entries()] == [first["id"], second["id"]]
    finally:
        park.stop()
        sim.close()


@pytest.mark.slow
def test_a_page_gets_a_burst_of_changes_in_few_messages_each_within_a_second(tmp_path: Path, broker: Broker) -> None:  # noqa: F811
    """Changes a page has not been sent yet go out together, at most every PUSH_GAP_S (hundreds
    a second in a big park), and every event still shows on its tile within 1 s."""
    sims = [SimGate(broker.port, f"sim{i}") for i in range(4)]
    park = park_service(tmp_path, broker)
    try:
        page = PageWatcher(park.web.url, TOKEN, timeout=30)
        assert page.ready.wait(5), "the page's first message"
        sent: dict[str, float] = {}
        for i in range(60):  # 60 events over about 1.5 s, on 4 gates
            sent[sims[i % 4].publish(event("OPEN", gate=f"sim{i % 4}"))["id"]] = time.time()
            time.sleep(0.025)
        wait_for(lambda: set(sent) <= set(page.seen), 5, "every event shown on the page")
        late = {i: round(page.seen[i] - t, 3) for i, t in sent.items() if page.seen[i] - t > 1.0}
        assert not late, f"shown more than 1 s after publishing: {late}"
        span = page.messages[-1] - page.messages[0]
        assert len(page.messages) <= span / PUSH_GAP_S + 2, f"{len(page.messages)} messages in {span:.2f} s for 60 events: not coalesced"
    finally:
        park.stop()
        for sim in sims:
            sim.close()


@pytest.mark.slow
def test_a_named_operator_acts_as_themselves_and_a_viewer_may_only_look(tmp_path: Path, broker: Broker) -> None:  # noqa: F811
    """http.users: the command the park sends names the user whose credential asked (the body's
    'by' does not count); a viewer sees the status but is refused an action (403)."""
    users = tmp_path / "users.yaml"
    users.write_text(yaml.safe_dump({"maria": {"role": "operator", "hash": hash_secret("maria-secret-1234")}, "vic": {"role": "viewer", "hash": hash_secret("vic-secret-12345")}}))
    sim = SimGate(broker.port, "sim1")
    sim.online()
    watcher = Subscriber(broker.port, (f"{PREFIX}/+/command",))
    park = park_service(tmp_path, broker, users=str(users), action_wait_s=0.2)
    try:
        wait_for(lambda: park.state.availability("sim1") == "online", 5, "sim1 online")
        assert http(park.web.url + "status", token="vic:vic-secret-12345")[0] == 200
        code, body = http(park.web.url + "gates/sim1/actions/open", method="POST", body={"by": "vic"}, token="vic:vic-secret-12345")
        assert (code, body["refused"]) == (403, "forbidden")
        code, body = http(park.web.url + "gates/sim1/actions/out_of_service", method="POST", body={"by": "someone else", "reason": "cleaning"}, token="maria:maria-secret-1234")
        assert (code, body["gate"], body["sent"]) == (202, "sim1", True), body
        (msg,) = watcher.wait_for(lambda m: m.topic == f"{PREFIX}/sim1/command")
        command = msg.json
        assert (command["action"], command["by"], command["reason"], command["id"], msg.retain) == ("out_of_service", "maria", "cleaning", body["command"], False)
        assert abs(command["ts"] - time.time()) < 5
    finally:
        park.stop()
        sim.close()
        watcher.close()


@pytest.mark.slow
def test_the_park_command_rides_out_a_broker_restart_and_stops_on_sigterm(tmp_path: Path, broker: Broker) -> None:  # noqa: F811
    """``gatekeeper park`` as a process: /healthz follows the broker link; a broker restarted
    without its sessions (persistence false) is subscribed to again; SIGTERM exits 0."""
    port = free_port()
    config = tmp_path / "park.yaml"
    config.write_text(yaml.safe_dump({"broker": {"port": broker.port, "topic_prefix": PREFIX}, "journal": {"path": str(tmp_path / "park.sqlite3")}}))
    proc = subprocess.Popen([sys.executable, "-m", "gatekeeper.cli", "park", "--config", str(config), "--http", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    sim = None
    try:
        wait_for(lambda: _code(url + "healthz") == 200, 30, "the park connected")
        broker.stop()
        wait_for(lambda: _code(url + "healthz") == 503, 10, "/healthz to say the broker is gone")
        broker.start()
        wait_for(lambda: _code(url + "healthz") == 200, 15, "the park connected again")
        sim = SimGate(broker.port, "sim1")
        sent = sim.publish(event("OPEN"))
        wait_for(lambda: sent["id"] in [e["id"] for e in http(url + "gates/sim1", token=None)[1].get("recent", [])] if _code(url + "gates/sim1") == 200 else False, 10, "an event after the restart")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate(timeout=10)
        if sim is not None:
            sim.close()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert is_park_journal(tmp_path / "park.sqlite3")


def _code(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0
