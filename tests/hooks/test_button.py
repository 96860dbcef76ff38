"""The staff push button (actions.button) and the relay, both on gpiozero's MockFactory: a press
pulses the relay and the journal says ``via: button``; held down, bouncing or hammered, the
gate opens once within its rate limit.

The gate side is a real Camera, tracker, Gate, Controls, Dispatcher, SQLite journal and GpioHook, with a
stand-in for detect -> classify (see tests/running_gate.py): nobody is in front of the camera.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for
from running_gate import Running

from gatekeeper.actions import ActionsConfig, ButtonConfig, Controls
from gatekeeper.errors import HookError
from gatekeeper.events import DeliveryState
from gatekeeper.hooks import GpioHook, GpioHookConfig

RELAY, BUTTON = "GPIO17", "GPIO27"
PULSE_MS = 100


@pytest.fixture
def gate(mock_factory: Any, tmp_path: Path) -> Iterator[Callable[..., Running]]:
    made: list[Running] = []

    def start(**button: Any) -> Running:
        relay = GpioHook(GpioHookConfig(pin=RELAY, pulse_ms=PULSE_MS, pin_factory="mock"), name="relay")
        r = Running(tmp_path, hooks=[relay], actions=ActionsConfig(button=ButtonConfig(pin=BUTTON, pin_factory="mock", **button)))
        made.append(r)
        return r

    yield start
    for r in made:
        r.close()


def pulses(mock_factory: Any) -> int:
    """Times the relay pin went active (high: the relay is active-high)."""
    return sum(1 for s in mock_factory.pin(RELAY).states[1:] if s.state)


def opens(r: Running) -> list[Any]:
    return [e for e in r.journal.entries() if e.event.event.value == "OPEN"]


def press(pin: Any, hold_s: float = 0.0, pull_up: bool = True) -> None:
    (pin.drive_low if pull_up else pin.drive_high)()
    if hold_s:
        time.sleep(hold_s)
    (pin.drive_high if pull_up else pin.drive_low)()


def test_a_press_pulses_the_relay_and_the_journal_says_via_button(gate: Callable[..., Running], mock_factory: Any) -> None:
    r = gate()
    button = mock_factory.pin(BUTTON)
    assert button.function == "input" and button.pull == "up" and button.state is True  # released: pulled high
    press(button)
    (entry,) = wait_for(lambda: [e for e in opens(r) if e.deliveries and e.deliveries[0].state is DeliveryState.DELIVERED], 5, "the OPEN pulsed")
    e = entry.event.to_dict()
    assert (e["reason"], e["by"], e["via"], e["override"]) == ("manual", "staff button", "button", False)
    assert [(d.hook, d.state) for d in entry.deliveries] == [("relay", DeliveryState.DELIVERED)]
    states = mock_factory.pin(RELAY).states
    assert [s.state for s in states] == [False, True, False]
    assert states[2].timestamp >= PULSE_MS / 1000 * 0.95  # held for the pulse


def test_a_button_held_down_opens_once(gate: Callable[..., Running], mock_factory: Any) -> None:
    r = gate()
    press(mock_factory.pin(BUTTON), hold_s=2.5)  # two rate-limit periods and more
    time.sleep(0.3)
    assert len(opens(r)) == 1 and pulses(mock_factory) == 1


def test_a_bouncing_contact_opens_once_and_the_bounces_are_counted(gate: Callable[..., Running], mock_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    r = gate()
    caplog.set_level(logging.INFO, logger="gatekeeper")
    button = mock_factory.pin(BUTTON)
    for _ in range(8):  # a worn contact: eight closures within a few ms
        press(button)
    wait_for(lambda: opens(r), 5, "the OPEN")
    time.sleep(0.4)
    assert len(opens(r)) == 1 and pulses(mock_factory) == 1
    assert r.controls.stats.snapshot() == {"taken": {"open/button": 1}, "refused": {"button/bounce": 7}}
    assert not [rec for rec in caplog.records if "refused" in rec.getMessage()]  # bounce is not news: debug only


def test_presses_faster_than_the_rate_limit_are_refused_one_line_each(gate: Callable[..., Running], mock_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    r = gate(bounce_ms=20)
    button = mock_factory.pin(BUTTON)
    press(button)
    wait_for(lambda: opens(r), 5, "the first OPEN")
    time.sleep(0.06)  # beyond bounce, within gate.manual_open_interval_s (1 s)
    press(button)
    wait_for(lambda: r.controls.stats.refused, 5, "the refusal")
    assert r.controls.stats.snapshot() == {"taken": {"open/button": 1}, "refused": {"button/rate_limited": 1}}
    lines = [rec.getMessage() for rec in caplog.records if "refused" in rec.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("action refused (button, rate_limited): open by staff button: manual open ")
    time.sleep(1.0)  # the rate limit has passed
    press(button)
    wait_for(lambda: len(opens(r)) == 2, 5, "the second OPEN")
    wait_for(lambda: pulses(mock_factory) == 2, 5, "the second pulse")


def test_a_pull_down_button_presses_high(gate: Callable[..., Running], mock_factory: Any) -> None:
    r = gate(pull_up=False)
    button = mock_factory.pin(BUTTON)
    assert button.pull == "down"
    press(button, pull_up=False)
    wait_for(lambda: opens(r), 5, "the OPEN")


@pytest.mark.parametrize(
    ("pin", "message"),
    [
        ("GPIO99", "actions.button: cannot use pin 'GPIO99': "),
        ("BOARD1", "actions.button: cannot use pin 'BOARD1': "),  # a 3V3 power pin
        (RELAY, "actions.button: cannot use pin 'GPIO17': "),  # the relay's own pin
    ],
)
def test_a_pin_that_cannot_be_a_button_is_one_clear_error(mock_factory: Any, pin: str, message: str) -> None:
    relay = GpioHook(GpioHookConfig(pin=RELAY, pin_factory="mock"), name="relay")
    try:
        controls = Controls(ActionsConfig(button=ButtonConfig(pin=pin, pin_factory="mock")))
        with pytest.raises(HookError) as info:
            controls.start_button()
        assert str(info.value).startswith(message) and "\n" not in str(info.value)
    finally:
        relay.release()


def test_a_press_the_journal_cannot_record_does_not_pulse(gate: Callable[..., Running], mock_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    """journal.on_error: fail_closed (the default): no OPEN without its record, by hand either."""
    r = gate()
    with r.journal._lock:  # the connection refuses writes, as a file system gone read-only would
        r.journal._db.execute("PRAGMA query_only = ON")
    press(mock_factory.pin(BUTTON))
    wait_for(lambda: r.controls.stats.refused, 5, "the refusal")
    time.sleep(0.3)
    assert pulses(mock_factory) == 0
    assert r.controls.stats.snapshot()["refused"] == {"button/not_recorded": 1}
    assert any(rec.getMessage().startswith("action refused (button, not_recorded): open by staff button: the journal cannot record it") for rec in caplog.records)
