"""The door's own contact (gate.sensor, gatekeeper/door.py and contact.py).

The door's rules as tables (pure, time passed in), the contact's debounce as a table, the config's
errors, and the contact on gpiozero's MockFactory driven through a real Camera, Gate, Controls,
Dispatcher and SQLite journal (a stand-in for detect -> classify), with its page state, /status
and /metrics; and once end to end, the real models on a real clip: the OPEN, then the door
opens, and PASSAGE is in the journal and on stdout.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
from polling import wait_for
from running_gate import GATE, OneFace
from test_web import browser, metric_samples  # noqa: F401 (browser: a fixture)
from test_web import wait_for as wait_in_page

from gatekeeper.actions import Action, Controls
from gatekeeper.app import Service, StdoutSink
from gatekeeper.camera import Camera
from gatekeeper.capture import Frame
from gatekeeper.capture_file import FileSource
from gatekeeper.config import Config, JournalConfig
from gatekeeper.config_load import config_from_dict, load_config
from gatekeeper.contact import DoorContact
from gatekeeper.door import Door, DoorConfig, DoorState, settle
from gatekeeper.errors import ConfigError, HookError
from gatekeeper.events import Event, EventType
from gatekeeper.gate import Gate, GateConfig
from gatekeeper.hooks import Dispatcher
from gatekeeper.journal import Journal
from gatekeeper.serve import Watchers
from gatekeeper.web import LiveView, WebServer

DOOR = "GPIO22"

# -- the rules, as tables --------------------------------------------------------------------------

# Steps: ("read", open?) the first reading; ("open", track) an OPEN that happened; ("door", open?) a
# settled level; ("tick",) time passing. Each at its time t. passage_s=5, held_open_s=20.
RULES = [
    pytest.param([(0, "read", False), (10, "open", 3), (11.5, "door", True), (14, "door", False)], ["PASSAGE@11.5#3", "CLOSED@14"], 0, id="OPEN then the door: a passage"),
    pytest.param([(0, "read", False), (1, "door", True), (2, "door", False)], ["FORCED_OPEN@1", "CLOSED@2"], 0, id="no OPEN: forced"),
    pytest.param([(0, "read", False), (10, "open", 1), (15.1, "tick"), (16, "door", True)], ["FORCED_OPEN@16"], 1, id="after the passage window: forced, and the OPEN unused"),
    pytest.param([(0, "read", False), (10, "open", 1), (16, "door", True)], ["FORCED_OPEN@16"], 1, id="window ended between two turns: still forced"),
    pytest.param([(0, "read", False), (10, "open", 1), (15, "door", True)], ["PASSAGE@15#1"], 0, id="at the window's end: a passage"),
    pytest.param([(0, "read", False), (10, "open", 1), (11, "door", True), (12, "door", False), (13, "door", True)], ["PASSAGE@11#1", "CLOSED@12", "FORCED_OPEN@13"], 0, id="one passage per OPEN: the second opening is forced"),
    pytest.param([(0, "read", False), (10, "open", 1), (11, "open", 2), (12, "door", True)], ["PASSAGE@12#2"], 1, id="a newer OPEN replaces one unused"),
    pytest.param([(0, "read", False), (10, "open", 1), (20, "tick"), (30, "tick")], [], 1, id="OPEN, nobody went through: counted once, no event"),
    pytest.param([(0, "read", False), (1, "door", True), (20.9, "tick"), (21, "tick"), (40, "tick"), (50, "door", False)], ["FORCED_OPEN@1", "HELD_OPEN@21", "CLOSED@50"], 0, id="held open: once per opening"),
    pytest.param(
        [(0, "read", False), (1, "door", True), (21, "tick"), (22, "door", False), (23, "door", True), (43, "tick")],
        ["FORCED_OPEN@1", "HELD_OPEN@21", "CLOSED@22", "FORCED_OPEN@23", "HELD_OPEN@43"],
        0,
        id="held open again after the next opening",
    ),
    pytest.param([(0, "read", True), (19, "tick"), (20, "tick"), (25, "door", False)], ["HELD_OPEN@20", "CLOSED@25"], 0, id="found open at start: timed from then, not forced"),
    pytest.param([(0, "read", True), (3, "door", False), (4, "door", False)], ["CLOSED@3"], 0, id="the same level twice: one event"),
    pytest.param([(0, "open", 1), (1, "read", False), (2, "door", True)], ["PASSAGE@2#1"], 0, id="an OPEN before the first reading still counts"),
]


def run_rules(steps: list[tuple[Any, ...]], door: Door) -> list[str]:
    out = []
    for frame, (t, op, *arg) in enumerate(steps):
        if op == "open":
            door.granted(t, arg[0])
            continue
        events = door.tick(frame, t) if op == "tick" else door.sense(arg[0], frame, t)
        out += [f"{e.event.value}@{e.t:g}" + (f"#{e.track}" if e.track is not None else "") for e in events]
    return out


@pytest.mark.parametrize(("steps", "expected", "unused"), RULES)
def test_door_rules(steps: list[tuple[Any, ...]], expected: list[str], unused: int) -> None:
    door = Door(DoorConfig(pin=DOOR, passage_s=5, held_open_s=20))
    assert run_rules(steps, door) == expected
    assert door.unused == unused


def test_a_door_event_has_a_reason_and_the_frame_it_was_seen_at() -> None:
    ids = (f"e{i}" for i in itertools.count())
    door = Door(DoorConfig(pin=DOOR, passage_s=5, held_open_s=20), id_factory=lambda: next(ids))
    door.sense(False, 0, 0.0)
    door.granted(10.0, 7)
    (e,) = door.sense(True, 42, 11.25)
    assert (e.event, e.frame, e.t, e.id, e.track, e.score, e.reason) == (EventType.PASSAGE, 42, 11.25, "e0", 7, None, "opened 1.2 s after the OPEN")
    assert door.state is DoorState.OPEN and door.since == 11.25 and not door.held_open
    (held,) = door.tick(50, 31.25)
    assert held.reason == "open for 20.0 s (gate.sensor.held_open_s=20)" and door.held_open
    (closed,) = door.sense(False, 51, 32.0)
    assert closed.reason == "open for 20.8 s" and not door.held_open


SETTLE = [
    pytest.param([], 1.0, ([], []), id="nothing"),
    pytest.param([(True, 0.0)], 0.049, ([], [(True, 0.0)]), id="too young: still settling"),
    pytest.param([(True, 0.0)], 0.05, ([True], []), id="held for bounce_s"),
    pytest.param([(True, 0.0), (False, 0.01), (True, 0.02), (False, 0.03), (True, 0.04)], 0.2, ([True], []), id="a bouncing opening: one level"),
    pytest.param([(True, 0.0), (False, 0.01)], 0.2, ([False], []), id="a glitch: the level it came back to"),
    pytest.param([(True, 0.0), (False, 1.0), (True, 1.01)], 1.03, ([True], [(True, 1.01)]), id="settled, then a bounce still settling"),
    pytest.param([(True, 0.0), (False, 1.0)], 2.0, ([True, False], []), id="two real changes"),
]


@pytest.mark.parametrize(("edges", "now", "expected"), SETTLE)
def test_settle(edges: list[tuple[bool, float]], now: float, expected: tuple[list[bool], list[tuple[bool, float]]]) -> None:
    assert settle(edges, now, 0.05) == expected


def test_settle_without_bounce_time_takes_every_edge() -> None:
    assert settle([(True, 0.0), (False, 0.0), (True, 0.0)], 0.0, 0.0) == ([True, False, True], [])


def test_the_gate_grants_the_door_only_opens_that_happened_and_only_with_a_sensor() -> None:
    open_ = Event(EventType.OPEN, 3, 1.0, 0.9, "o1", track=4)
    with_sensor = Gate(GateConfig(sensor=DoorConfig(pin=DOOR)))
    with_sensor.announce(open_)  # the camera calls it once the journal holds the OPEN
    with_sensor.door.sense(False, 0, 0.0)
    assert [(e.event, e.track) for e in with_sensor.door.sense(True, 4, 2.0)] == [(EventType.PASSAGE, 4)]
    without = Gate()
    assert not without.door.enabled and without.config.sensor == DoorConfig()
    without.announce(open_)
    without.door.tick(10, 100.0)
    assert without.door.unused == 0 and without.door.state is DoorState.UNKNOWN


# -- config ------------------------------------------------------------------------------------------

BAD = [
    ("gate: {sensor: {pin: ''}}\n", "gate.sensor: pin: expected a gpiozero pin name such as GPIO22, or null for no door sensor; got an empty string"),
    ("gate: {sensor: {pin: 22}}\n", "gate.sensor.pin: expected a string, got 22 (int)"),
    ("gate: {sensor: {held_open_s: -1}}\n", "gate.sensor.held_open_s: expected a value > 0, got -1.0"),
    ("gate: {sensor: {passage_s: .inf}}\n", "gate.sensor.passage_s: expected a finite number > 0, got inf"),
    ("gate: {sensor: {passage_s: 0}}\n", "gate.sensor.passage_s: expected a value > 0, got 0.0"),
    ("gate: {sensor: {bounce_s: -0.01}}\n", "gate.sensor.bounce_s: expected a value >= 0 and <= 5, got -0.01"),
    ("gate: {sensor: {bounce_s: 10}}\n", "gate.sensor.bounce_s: expected a value >= 0 and <= 5, got 10.0"),
    ("gate: {sensor: {open_when: magnet}}\n", "gate.sensor.open_when: expected one of 'contact_open', 'contact_closed', got 'magnet' (str)"),
    ("gate: {sensor: {pin_factory: lgpio}}\n", "gate.sensor.pin_factory: expected one of 'auto', 'mock'"),
    ("gate: {sensor: {pull: up}}\n", "gate.sensor.pull: unknown key; expected one of bounce_s, held_open_s, open_when, passage_s, pin, pin_factory, pull_up"),
    ("cameras:\n  a: {camera: 0, gate: {sensor: {held_open_s: .nan}}}\n", "cameras.a.gate.sensor.held_open_s: expected a value > 0, got nan"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m.split(":")[0] + ": " + t.strip()[:40] for t, m in BAD])
def test_a_bad_sensor_config_is_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_sensor_config_and_a_cameras_own_sensor() -> None:
    cfg = config_from_dict({"gate": {"sensor": {"pin": "GPIO22", "held_open_s": 45}}, "cameras": {"a": {"camera": 0}, "b": {"camera": 1, "gate": {"sensor": {"pin": "GPIO23"}}}}})
    assert cfg.gate.sensor == DoorConfig(pin="GPIO22", held_open_s=45.0)
    a, b = cfg.cameras
    assert a.gate.sensor == DoorConfig(pin="GPIO22", held_open_s=45.0)
    assert b.gate.sensor == DoorConfig(pin="GPIO23")  # a camera's sensor: its own block, defaults for the rest
    assert load_config(None).gate.sensor.pin is None


@pytest.mark.parametrize(
    ("pin", "message"),
    [("NOTAPIN", "gate.sensor.pin: cannot use pin 'NOTAPIN': "), ("GPIO99", "gate.sensor.pin: cannot use pin 'GPIO99': "), ("BOARD1", "gate.sensor.pin: cannot use pin 'BOARD1': ")],
)
def test_a_pin_that_cannot_be_a_door_contact_is_one_clear_error(mock_factory: MockFactory, pin: str, message: str) -> None:
    with pytest.raises(HookError) as info:
        DoorContact(DoorConfig(pin=pin, pin_factory="mock"))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


# -- the contact on gpiozero's mock pins, through a real camera ---------------------------------------


@pytest.fixture
def mock_factory() -> Iterator[MockFactory]:
    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory  # the contact (pin_factory: mock) uses this one: the test drives its pins
    yield factory
    factory.reset()
    Device.pin_factory = previous


class DoorGate:
    """A Camera with the door's contact in a thread, fed 50 synthetic frames a second (nobody in
    view), with its journal, controls and live view; the door found shut (contact closed) at start."""

    def __init__(self, tmp_path: Path, factory: MockFactory, **sensor: Any) -> None:
        sensor = {"pin": DOOR, "pin_factory": "mock", **sensor}
        gate = dataclasses.replace(GATE, sensor=DoorConfig(**sensor))
        self.cfg = Config(gate=gate, journal=JournalConfig(path=str(tmp_path / "journal.sqlite3")))
        self.journal = Journal(self.cfg.journal.resolved_path())
        self.dispatcher = Dispatcher(self.journal, [])
        self.controls = Controls(self.cfg.actions)
        watchers = Watchers()
        self.camera = Camera("lane1", self.cfg, OneFace(Gate(gate)), [watchers], watchers.on_frame, dispatcher=self.dispatcher, controls=self.controls)  # type: ignore[arg-type]
        self.camera.start_door()
        self.pin = factory.pin(DOOR)
        self.shut()
        self.dispatcher.start()
        self.view = LiveView(self.camera)
        watchers.add(self.view)
        self.thread = threading.Thread(target=self.camera.run, args=(self._frames(),), daemon=True)
        self.thread.start()
        wait_for(lambda: self.view.door()["state"] == "closed", 5, "the door's first reading")  # type: ignore[index]

    def _frames(self) -> Iterator[Frame]:
        image = np.zeros((120, 160, 3), np.uint8)
        start = time.monotonic()
        for i in itertools.count():
            if self.camera.stopping.is_set():
                return
            yield Frame(image, i, time.monotonic() - start)
            time.sleep(0.02)

    def opened(self) -> None:
        """The door opens: its contact opens, the pull-up takes the pin high."""
        self.pin.drive_high()

    def shut(self) -> None:
        self.pin.drive_low()

    def events(self) -> list[dict[str, Any]]:
        return [e.event.to_dict() for e in self.journal.entries()]

    def kinds(self) -> list[str]:
        return [e["event"] for e in self.events()]

    def close(self) -> None:
        self.camera.stopping.set()
        self.thread.join(5)
        self.camera.close()


@pytest.fixture
def door_gate(tmp_path: Path, mock_factory: MockFactory) -> Iterator[Callable[..., DoorGate]]:
    made: list[DoorGate] = []

    def start(**sensor: Any) -> DoorGate:
        made.append(DoorGate(tmp_path, mock_factory, **sensor))
        return made[-1]

    yield start
    for g in made:
        g.close()


def test_open_by_hand_then_the_door_opens_is_a_passage(door_gate: Callable[..., DoorGate], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gatekeeper.contact")
    g = door_gate()
    assert g.pin.function == "input" and g.pin.pull == "up"
    ticket = g.controls.submit(Action("open", by="maria", via="http"))
    assert ticket.wait(5)
    g.opened()
    wait_for(lambda: "PASSAGE" in g.kinds(), 5, "PASSAGE")
    g.shut()
    wait_for(lambda: "CLOSED" in g.kinds(), 5, "CLOSED")
    opened, passage, closed = g.events()
    assert (opened["event"], opened["by"], passage["event"], closed["event"]) == ("OPEN", "maria", "PASSAGE", "CLOSED")
    assert passage["camera"] == "lane1" and passage["reason"].startswith("opened ") and passage["t"] >= opened["t"]
    assert closed["reason"].startswith("open for ")
    assert g.view.door() == {"state": "closed", "since": closed["t"], "held_open": False, "open_without_passage": 0}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # a passage is no alarm


def test_the_door_opened_with_no_open_is_forced_and_a_warning(door_gate: Callable[..., DoorGate], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gatekeeper")
    g = door_gate()
    g.opened()
    wait_for(lambda: "FORCED_OPEN" in g.kinds(), 5, "FORCED_OPEN")
    wait_for(lambda: g.view.status()["door"]["state"] == "open", 5, "the door open in /status")  # the view sees it after the journal
    assert g.view.live_state()["door"]["state"] == "open"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["camera lane1: door forced open: opened with no unused OPEN in the last 10 s (gate.sensor.passage_s)"]


def test_a_bouncing_contact_is_one_opening(door_gate: Callable[..., DoorGate]) -> None:
    g = door_gate(bounce_s=0.1)
    contact = g.camera.door
    assert contact is not None
    edges, bounces = contact.edges, contact.bounces  # the shutting at start
    for _ in range(6):  # a contact that chatters as the door starts to move
        g.opened()
        g.shut()
    g.opened()
    wait_for(lambda: "FORCED_OPEN" in g.kinds(), 5, "FORCED_OPEN")
    time.sleep(0.3)
    assert g.kinds() == ["FORCED_OPEN"]
    assert (contact.edges - edges, contact.bounces - bounces) == (13, 12)
    g.shut()
    g.opened()  # shut for a moment only: bounce too
    time.sleep(0.3)
    assert g.kinds() == ["FORCED_OPEN"]


def test_held_open_once_then_closed_and_the_metrics_follow(door_gate: Callable[..., DoorGate], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gatekeeper")
    g = door_gate(held_open_s=0.3, passage_s=0.2)
    assert g.controls.submit(Action("open", by="maria", via="http")).wait(5)
    time.sleep(0.4)  # nobody went through within passage_s
    g.opened()
    wait_for(lambda: "HELD_OPEN" in g.kinds(), 5, "HELD_OPEN")
    wait_for(lambda: g.view.door()["held_open"], 5, "the view sees HELD_OPEN")  # type: ignore[index]
    samples = metric_samples(_metrics_text(g.view))
    assert samples[("gatekeeper_door_open", (("camera", "lane1"),))] == 1
    assert samples[("gatekeeper_door_held_open", (("camera", "lane1"),))] == 1
    assert samples[("gatekeeper_open_without_passage_total", (("camera", "lane1"),))] == 1
    assert samples[("gatekeeper_events_total", (("camera", "lane1"), ("type", "FORCED_OPEN")))] == 1
    assert samples[("gatekeeper_events_total", (("camera", "lane1"), ("type", "HELD_OPEN")))] == 1
    time.sleep(0.5)
    g.shut()
    wait_for(lambda: "CLOSED" in g.kinds(), 5, "CLOSED")
    assert g.kinds() == ["OPEN", "FORCED_OPEN", "HELD_OPEN", "CLOSED"]  # HELD_OPEN once per opening
    wait_for(lambda: g.view.door()["state"] == "closed", 5, "the view sees CLOSED")  # type: ignore[index]
    samples = metric_samples(_metrics_text(g.view))
    assert samples[("gatekeeper_door_open", (("camera", "lane1"),))] == 0
    assert samples[("gatekeeper_door_held_open", (("camera", "lane1"),))] == 0
    assert [r.getMessage().split(":")[1] for r in caplog.records if r.levelno == logging.WARNING] == [" door forced open", " door held open"]


def _metrics_text(view: LiveView) -> str:
    from prometheus_client import generate_latest

    return generate_latest(view.registry).decode()


def test_a_gate_without_a_sensor_has_no_door_anywhere(tmp_path: Path) -> None:
    """No gate.sensor: no contact claimed, no door in the page's state, /status or /metrics."""
    cfg = Config(journal=JournalConfig(path=str(tmp_path / "journal.sqlite3")))
    journal = Journal(cfg.journal.resolved_path())
    camera = Camera("lane1", cfg, OneFace(Gate(cfg.gate)), dispatcher=Dispatcher(journal, []))  # type: ignore[arg-type]
    try:
        camera.start_door()
        assert camera.door is None
        view = LiveView(camera)
        assert view.door() is None and view.status()["door"] is None and view.live_state()["door"] is None
        assert "gatekeeper_door" not in _metrics_text(view) and "without_passage" not in _metrics_text(view)
    finally:
        camera.close()


# -- end to end: the real models on a real clip ------------------------------------------------------


class OpensTheDoor:
    """An event sink that plays the guest: once the OPEN is out, the door opens (its contact opens)."""

    def __init__(self, pin: Any) -> None:
        self.pin = pin

    def emit(self, event: Event) -> None:
        if event.event is EventType.OPEN:
            self.pin.drive_high()

    def close(self) -> None:
        pass


def test_a_smile_opens_then_the_door_opens_and_passage_is_journaled_and_printed(tmp_path: Path, shared_dir: Path, face_model_path: Path, mock_factory: MockFactory) -> None:
    cfg = config_from_dict(
        {
            "detector": {"model_path": str(face_model_path)},
            "journal": {"path": str(tmp_path / "journal.sqlite3")},
            "gate": {"sensor": {"pin": DOOR, "pin_factory": "mock", "bounce_s": 0.02}},
        }
    )
    out = io.StringIO()
    service = Service(cfg)
    try:
        (camera_cfg,) = cfg.camera_list()
        cam = service.add_camera(camera_cfg, FileSource(shared_dir / "videos" / "single_face.mp4"), [StdoutSink(out), OpensTheDoor(mock_factory.pin(DOOR))])
        mock_factory.pin(DOOR).drive_low()  # the door is shut when the clip starts
        service.run()
        service.serve_actions(0.3)  # as with --hold-open: the contact's last edge settles after the last frame
        journaled = [e.event.to_dict() for e in service.journal.entries()]  # type: ignore[union-attr]
    finally:
        service.close()
    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in journaled] == ["OPEN", "PASSAGE"], journaled
    assert [e["event"] for e in printed] == ["OPEN", "PASSAGE"]
    opened, passage = printed
    assert passage["id"] == journaled[1]["id"] and passage["camera"] == "gate"
    assert passage["track"] == opened["track"] is not None
    assert passage["frame"] >= opened["frame"] and passage["reason"].startswith("opened ")
    assert cam.gate.door.state is DoorState.OPEN and cam.gate.door.unused == 0


def test_the_camera_tells_the_mqtt_hook_the_door_found_at_start(tmp_path: Path, mock_factory: MockFactory) -> None:
    from gatekeeper.hooks import MqttHook, MqttHookConfig

    hook = MqttHook(MqttHookConfig(port=1, discovery=True), gate="lane1")  # never started: only its state is looked at
    cfg = Config(gate=GateConfig(sensor=DoorConfig(pin=DOOR, pin_factory="mock")), journal=JournalConfig(path=str(tmp_path / "journal.sqlite3")))
    camera = Camera("lane1", cfg, OneFace(Gate(cfg.gate)), dispatcher=Dispatcher(Journal(cfg.journal.resolved_path()), [hook]))  # type: ignore[arg-type]
    try:
        camera.start_door()  # the pull-up holds the pin high: the contact is open, so the door is
        assert hook._state["door"] == "open"
    finally:
        camera.close()


@pytest.mark.slow
def test_the_page_shows_the_door_and_its_events(browser: Any, door_gate: Callable[..., DoorGate]) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    g = door_gate(held_open_s=0.5)
    server = WebServer(g.view, "127.0.0.1", 0)
    server.start()
    try:
        browser.get(server.url)
        door = browser.find_element(By.ID, "door")
        wait_in_page("the door shut", lambda: door.is_displayed() and door.text == "door closed")
        g.opened()
        wait_in_page("FORCED_OPEN in the event list", lambda: browser.find_elements(By.CSS_SELECTOR, '#events li[data-event="FORCED_OPEN"]'))
        wait_in_page("the door held open", lambda: door.text == "door open (held open)" and door.get_attribute("class") == "held")
        g.shut()
        wait_in_page("CLOSED in the event list", lambda: browser.find_elements(By.CSS_SELECTOR, '#events li[data-event="CLOSED"]'))
        wait_in_page("the door shut again", lambda: door.text == "door closed")
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param({"gate": {"sensor": {"pin": DOOR, "pin_factory": "mock"}}}, [], id="a free pin"),
        pytest.param({"gate": {"sensor": {"pin": "NOTAPIN", "pin_factory": "mock"}}}, ["gate.sensor.pin: cannot use pin 'NOTAPIN': NOTAPIN is not a valid pin name"], id="not a pin"),
        pytest.param(
            {"gate": {"sensor": {"pin": "GPIO17", "pin_factory": "mock"}}, "hooks": [{"type": "gpio", "pin": "BCM17", "pin_factory": "mock"}]},
            ["gate.sensor.pin: 'GPIO17' is already a relay's, the staff button's or another camera's door pin; expected a pin of its own"],
            id="the relay's pin",
        ),
        pytest.param(
            {"gate": {"sensor": {"pin": DOOR, "pin_factory": "mock"}}, "cameras": {"a": {"camera": 0}, "b": {"camera": 1}}},
            ["gate.sensor.pin (inherited by cameras.b): 'GPIO22' is already a relay's, the staff button's or another camera's door pin; expected a pin of its own"],
            id="one door for two cameras",
        ),
        pytest.param(
            {"gate": {"sensor": {"pin": DOOR, "pin_factory": "mock"}}, "cameras": {"a": {"camera": 0}, "b": {"camera": 1, "gate": {"sensor": {"pin": "GPIO23", "pin_factory": "mock"}}}}},
            [],
            id="each camera its own door",
        ),
    ],
)
def test_check_config_checks_the_door_contacts_pin(config: dict[str, Any], expected: list[str]) -> None:
    from gatekeeper.preflight import check

    problems = [p for p in check(config_from_dict(config), env={}) if "sensor" in p]
    assert problems == expected
