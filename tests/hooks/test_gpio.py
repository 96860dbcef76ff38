"""The relay hook on gpiozero's MockFactory: pin states and pulse timing from the mock pin's history."""

from __future__ import annotations

import time

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from gatekeeper.errors import HookError
from gatekeeper.events import DeliveryState
from gatekeeper.hooks import GpioHook, GpioHookConfig, close_hooks

TOLERANCE_S = 0.1  # a thread waking on a loaded 2-core machine; the lower bound is the one that matters


def relay(**kw: object) -> GpioHook:
    kw.setdefault("pin", "GPIO17")
    return GpioHook(GpioHookConfig(**kw), name="relay")  # type: ignore[arg-type]


@pytest.fixture
def started():
    hooks: list[GpioHook] = []

    def start(hook: GpioHook) -> GpioHook:
        hook.start()
        hooks.append(hook)
        return hook

    yield start
    for hook in hooks:
        close_hooks([hook], timeout=1)


def levels(pin) -> list[bool]:
    return [s.state for s in pin.states]


@pytest.mark.parametrize("active_high", [True, False])
def test_relay_is_off_from_the_start(mock_factory, active_high):
    hook = relay(active_high=active_high)
    pin = mock_factory.pin("GPIO17")
    assert pin.function == "output"
    assert pin.state is (not active_high)  # inactive: low for active-high boards, high for active-low
    assert not hook.is_active
    hook.release()


@pytest.mark.parametrize("active_high", [True, False])
def test_open_pulses_the_pin_for_pulse_ms(mock_factory, started, outcomes, make_event, active_high):
    hook = relay(pulse_ms=150, active_high=active_high)
    pin = mock_factory.pin("GPIO17")
    got = outcomes(hook)
    started(hook)
    pin.clear_states()
    event = make_event("OPEN")
    hook.publish(event)

    assert got.final(event.id).state is DeliveryState.DELIVERED
    on, off = active_high, not active_high
    assert levels(pin) == [off, on, off]
    held = pin.states[2].timestamp  # seconds between the two changes
    assert 0.150 <= held < 0.150 + TOLERANCE_S, held
    assert pin.states[1].timestamp < TOLERANCE_S  # switched on promptly after publish


def test_fault_switches_the_relay_off_at_once(mock_factory, started, outcomes, make_event, wait):
    hook = started(relay(pulse_ms=5000))
    pin = mock_factory.pin("GPIO17")
    got = outcomes(hook)
    opened = make_event("OPEN")
    hook.publish(opened)
    wait(lambda: pin.state)
    hook.publish(make_event("FAULT"))
    assert pin.state is False  # synchronously, before publish() returned
    outcome = got.final(opened.id)
    assert outcome.state is DeliveryState.FAILED and "cut short" in (outcome.error or "")
    assert pin.states[-1].timestamp < 0.5  # held far less than the 5 s pulse


def test_an_open_queued_before_a_fault_is_never_pulsed(mock_factory, started, outcomes, make_event):
    hook = relay(pulse_ms=100)
    pin = mock_factory.pin("GPIO17")
    got = outcomes(hook)
    first, second, fault = make_event("OPEN"), make_event("OPEN"), make_event("FAULT")
    for e in (first, second, fault):  # all queued before the worker starts
        hook.publish(e)
    started(hook)
    assert got.final(second.id).state is DeliveryState.FAILED
    assert "FAULT came after this OPEN" in (got.final(first.id).error or "")
    assert got.final(fault.id).state is DeliveryState.DELIVERED
    assert levels(pin) == [False]  # never switched on


def test_an_open_after_a_fault_pulses_again(mock_factory, started, outcomes, make_event):
    hook = started(relay(pulse_ms=50))
    pin = mock_factory.pin("GPIO17")
    got = outcomes(hook)
    hook.publish(make_event("FAULT"))
    event = make_event("OPEN")
    hook.publish(event)
    assert got.final(event.id).state is DeliveryState.DELIVERED
    assert levels(pin) == [False, True, False]


def test_close_mid_pulse_leaves_the_relay_off(mock_factory, make_event, wait):
    hook = relay(pulse_ms=10000, active_high=False)
    pin = mock_factory.pin("GPIO17")
    hook.start()
    hook.publish(make_event("OPEN"))
    wait(lambda: pin.state is False)  # active-low: on means low
    t0 = time.monotonic()
    close_hooks([hook], timeout=0.2)
    assert time.monotonic() - t0 < 1.0
    assert pin.states[-1].state is True  # inactive
    assert hook.device.closed


def test_a_stale_open_is_not_pulsed(mock_factory, started, outcomes, make_event):
    hook = started(relay(max_age_s=2.0))
    pin = mock_factory.pin("GPIO17")
    got = outcomes(hook)
    event = make_event("OPEN")
    hook.publish(event, created_at=time.time() - 3)
    assert got.final(event.id).state is DeliveryState.EXPIRED
    assert levels(pin) == [False]


def test_a_crash_while_driving_the_pin_leaves_it_off(mock_factory, started, outcomes, make_event, caplog):
    hook = relay(pulse_ms=50)
    pin = mock_factory.pin("GPIO17")
    got = outcomes(hook)
    real_on = hook.device.on
    calls = []

    def flaky_on() -> None:
        real_on()  # the relay did switch on, then the driver blew up
        calls.append(1)
        if len(calls) == 1:
            raise OSError("driver glitch")

    hook.device.on = flaky_on  # type: ignore[method-assign]
    started(hook)
    crashed, later = make_event("OPEN"), make_event("OPEN")
    hook.publish(crashed)
    assert got.final(crashed.id).state is DeliveryState.FAILED
    assert pin.state is False and hook.stats.crashed == 1
    assert crashed.id in caplog.text
    hook.publish(later)  # the worker survived
    assert got.final(later.id).state is DeliveryState.DELIVERED
    assert levels(pin) == [False, True, False, True, False]


def test_it_takes_open_and_fault_only(mock_factory, make_event):
    hook = relay()
    assert [k for k in ("OPEN", "DENY", "FACE_LOST", "FAULT", "RECOVERED") if hook.wants(make_event(k))] == [
        "OPEN",
        "FAULT",
    ]
    hook.release()


def test_without_gpio_the_error_says_so_and_names_the_mock(monkeypatch):
    monkeypatch.setattr(Device, "pin_factory", None)
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-factory")  # what a machine without GPIO drivers sees
    with pytest.raises(HookError, match=r"no GPIO on this machine.*pin_factory: mock"):
        relay()


def test_pin_factory_mock_needs_no_fixture(monkeypatch, outcomes, make_event):
    monkeypatch.setattr(Device, "pin_factory", None)
    hook = relay(pin_factory="mock", pulse_ms=20)
    assert isinstance(hook.device.pin_factory, MockFactory)
    got = outcomes(hook)
    hook.start()
    event = make_event("OPEN")
    hook.publish(event)
    assert got.final(event.id).state is DeliveryState.DELIVERED
    assert levels(hook.device.pin) == [False, True, False]
    close_hooks([hook], timeout=1)
