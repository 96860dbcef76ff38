"""gpiozero devices on the board's own GPIO or on gpiozero's mock: where the relay
(:mod:`gatekeeper.hooks.gpio`), the staff button (:mod:`gatekeeper.actions`) and the door's contact
(:mod:`gatekeeper.contact`) claim their pins.

Beside the hooks, not inside them: the button and the door's contact are inputs of the gate, the relay one of its
hooks, and neither should import the other's package to reach a pin.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from gpiozero import Device
from gpiozero.exc import BadPinFactory, GPIOZeroError, PinFactoryFallback
from gpiozero.pins.mock import MockFactory

from .errors import HookError

__all__ = ["gpio_device", "gpio_input"]

T = TypeVar("T")


def gpio_device(make: Callable[[Any], T], *, pin_factory: str, pin: str, name: str, what: str) -> T:
    """``make(factory)``: a gpiozero device on the board's own GPIO (``pin_factory: auto``) or on
    gpiozero's MockFactory (``mock``; one a test installed is reused, so the test reads the same
    pins). No GPIO on the machine, or a pin gpiozero cannot use, is one :class:`HookError` line
    naming ``name`` and the pin; ``what`` is what the mock would simulate."""
    factory = None
    if pin_factory == "mock":
        factory = Device.pin_factory if isinstance(Device.pin_factory, MockFactory) else MockFactory()
    try:
        with warnings.catch_warnings():
            # gpiozero warns once per driver it fails to load; one clear error below says it better.
            warnings.simplefilter("ignore", PinFactoryFallback)
            return make(factory)
    except BadPinFactory as exc:
        raise HookError(
            f"{name}: no GPIO on this machine that gpiozero can drive ({exc}); on a Raspberry Pi install "
            f"lgpio (pip install lgpio), elsewhere set pin_factory: mock to simulate {what}"
        ) from None
    except GPIOZeroError as exc:
        raise HookError(f"{name}: cannot use pin {pin!r}: {exc}") from None


def gpio_input(kind: Callable[..., T], config: Any, *, bounce_time: float | None, name: str, what: str) -> T:
    """gpiozero's input device ``kind`` (``Button``, ``DigitalInputDevice``) on ``config.pin``,
    with its ``pull_up`` and ``pin_factory`` (see :func:`gpio_device`)."""
    return gpio_device(
        lambda factory: kind(config.pin, pull_up=config.pull_up, bounce_time=bounce_time, pin_factory=factory),
        pin_factory=config.pin_factory,
        pin=str(config.pin),
        name=name,
        what=what,
    )
