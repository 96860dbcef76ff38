"""The live page's operator controls in headless Chromium, on a gate running the real pipeline
(MediaPipe, the smile model) over a real clip, with the relay on gpiozero's MockFactory: clicking
Open pulses the relay, and the service switch takes the gate out of service and back.

The clip is a woman talking with a concerned face (from ../shared/videos), in a loop: a guest the
camera does not open for, whom staff let through by hand.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
from test_web import browser, wait_for  # noqa: F401 -- browser is a fixture: Debian's Chromium through its chromedriver

from gatekeeper.actions import Controls
from gatekeeper.app import open_dispatcher
from gatekeeper.camera import Camera
from gatekeeper.config_load import config_from_dict
from gatekeeper.demo import LoopedClip
from gatekeeper.events import DeliveryState
from gatekeeper.pipeline import build_pipeline
from gatekeeper.serve import Watchers
from gatekeeper.web import LiveView, WebServer

TOKEN = "page-operator-token-0123"
RELAY = "GPIO17"


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory  # the relay hook (pin_factory: mock) uses this one: the test reads its pins
    yield factory
    factory.reset()
    Device.pin_factory = previous


@pytest.fixture
def running_gate(mock_pins: MockFactory, shared_dir: Path, face_model_path: Path, tmp_path: Path) -> Iterator[tuple[WebServer, Camera]]:
    cfg = config_from_dict(
        {
            "detector": {"model_path": str(face_model_path)},
            "http": {"token": TOKEN},
            "journal": {"path": str(tmp_path / "journal.sqlite3")},
            "hooks": [{"type": "gpio", "name": "relay", "pin": RELAY, "pulse_ms": 300, "pin_factory": "mock"}],
        }
    )
    pipeline = build_pipeline(cfg)
    dispatcher = open_dispatcher(cfg)
    controls = Controls(cfg.actions)
    watchers = Watchers()
    app = Camera(cfg.name, cfg, pipeline, [watchers], watchers.on_frame, dispatcher=dispatcher, controls=controls)
    controls.attach(dispatcher.hooks, in_service=pipeline.gate.in_service)
    dispatcher.start()
    view = LiveView(app)
    watchers.add(view)
    server = WebServer(view, "127.0.0.1", 0)
    server.start()
    thread = threading.Thread(target=app.run, args=(LoopedClip(shared_dir / "videos" / "concerned_talk.mp4", realtime=True),), daemon=True)
    thread.start()
    try:
        yield server, app
    finally:
        app.stopping.set()
        thread.join(10)
        app.close()
        server.stop()


def relay_pulses(pins: MockFactory) -> int:
    return sum(1 for s in pins.pin(RELAY).states[1:] if s.state)


@pytest.mark.slow
def test_staff_open_the_gate_and_take_it_out_of_service_from_the_page(browser: Any, running_gate: tuple[WebServer, Camera], mock_pins: MockFactory) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    server, app = running_gate
    journal = app.dispatcher.journal
    assert journal is not None
    browser.get(f"{server.url}?token={TOKEN}")
    controls = wait_for("the controls", lambda: (c := browser.find_element(By.ID, "controls")).is_displayed() and c)
    switch = browser.find_element(By.ID, "service")
    assert switch.text == "In service" and switch.get_attribute("aria-checked") == "true"

    # The name goes with every action; without one the page asks for it and sends nothing.
    browser.find_element(By.ID, "open").click()
    wait_for("the page to ask for a name", lambda: browser.find_element(By.ID, "actionresult").text == "type your name first")
    browser.find_element(By.ID, "operator").send_keys("maria")

    before = relay_pulses(mock_pins)
    assert before == 0 and not [e for e in journal.entries() if e.event.event.value == "OPEN"]  # the camera did not open for him
    browser.find_element(By.ID, "open").click()
    wait_for("the relay pulse", lambda: relay_pulses(mock_pins) == 1)
    opened = wait_for("the OPEN delivered to the relay", lambda: [e for e in journal.entries() if e.event.event.value == "OPEN" and e.deliveries[0].state is DeliveryState.DELIVERED])
    e = opened[0].event
    assert (e.reason, e.by, e.via, e.override) == ("manual", "maria", "page", False)
    wait_for("OPEN in the event list", lambda: browser.find_elements(By.CSS_SELECTOR, '#events li[data-event="OPEN"]'))
    assert "by maria via page" in browser.find_element(By.CSS_SELECTOR, '#events li[data-event="OPEN"]').text

    # Out of service: the page, the state and the switch say so.
    switch.click()
    wait_for("the switch to flip", lambda: switch.text == "Out of service" and switch.get_attribute("aria-checked") == "false")
    wait_for("the state badge", lambda: browser.find_element(By.ID, "state").get_attribute("data-state") == "out_of_service")
    assert app.pipeline.gate.in_service is False
    artifacts = Path(__file__).resolve().parents[1] / "artifacts"
    artifacts.mkdir(exist_ok=True)
    browser.save_screenshot(str(artifacts / "web_controls.png"))
    # An open while out of service still pulses, and says it overrode (a second after the first:
    # gate.manual_open_interval_s, in the clip's time, which lags the wall clock on a loaded machine).
    view = server.views[app.name]
    wait_for("a second of the clip since the first open", lambda: view.live_state()["t"] - e.t >= 1.0)
    controls.find_element(By.ID, "open").click()
    wait_for("the second pulse", lambda: relay_pulses(mock_pins) == 2)
    assert [x.event.override for x in journal.entries() if x.event.event.value == "OPEN"] == [False, True]
    switch.click()
    wait_for("back in service", lambda: switch.text == "In service" and app.pipeline.gate.in_service)
    kinds = [x.event.event.value for x in journal.entries() if x.event.by is not None]
    assert kinds == ["OPEN", "OUT_OF_SERVICE", "OPEN", "IN_SERVICE"]
