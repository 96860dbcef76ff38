"""The checks start-up runs, run without starting: what ``gatekeeper --check-config`` reports.

A config the schema accepts can still be refused when the gate starts: a model path that is
missing or a model file that is broken, a webhook or MQTT secret whose environment variable is
unset, two hooks with one name, a GPIO pin gpiozero does not know (a relay's or the staff
button's, or the button on a relay's pin), ``pin_factory: auto`` on a
machine without GPIO, a journal that cannot be opened or created, a command hook's program that
is not there. :func:`check` runs those checks through
the code start-up uses (:func:`~gatekeeper.pipeline.build_pipeline`,
:func:`~gatekeeper.hooks.build_hooks`, :class:`~gatekeeper.journal.Journal`) and returns every
problem it finds, one line each, instead of stopping at the first.

Nothing is started and nothing is left changed: no camera or stream is opened, no hook is
started or fired, the relay pin is not claimed (the pin name is checked on gpiozero's mock
board and the machine's GPIO driver is loaded and closed, so a check next to a running gate
does not fight it for the pin), an existing journal is opened as start-up opens it (which
writes no event), and one that does not exist yet is not created (an empty folder is made and
removed where its first missing folder would go, to see that one can be).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

from .config import Config
from .errors import GatekeeperError
from .hooks.config import CommandHookConfig, GpioHookConfig

__all__ = ["check"]


def check(cfg: Config, *, env: Mapping[str, str] | None = None) -> list[str]:
    """The problems start-up would refuse ``cfg`` for on this machine; empty when it would start.

    ``env``: where secrets named by ``secret_env``/``password_env`` are read (default: the
    process environment, as at start-up).
    """
    problems: list[str] = []
    for step in (_check_models, _check_hooks, _check_button, _check_sensors, _check_journal, _check_access):
        problems += step(cfg, os.environ if env is None else env)
    return problems


def _check_access(cfg: Config, env: Mapping[str, str]) -> list[str]:
    """``http.users`` and ``http.tls`` loaded as start-up loads them; MQTT hooks' per-user command
    topics need the users file for their roles."""
    from .users import check_http_access

    problems = []
    try:
        check_http_access(cfg.http)
    except GatekeeperError as exc:
        problems.append(str(exc))
    hooks = [h for c in cfg.camera_list() for h in c.hooks]
    if cfg.http.users is None and any(getattr(h, "commands_per_user", False) for h in hooks):
        problems.append("hooks: an MQTT hook has commands_per_user: true but http.users is not set; expected the users file that gives each command user a role")
    return problems


def _check_models(cfg: Config, env: Mapping[str, str]) -> list[str]:
    from .pipeline import build_pipeline

    try:
        build_pipeline(cfg).close()
    except GatekeeperError as exc:
        return [str(exc)]
    return []


def _check_hooks(cfg: Config, env: Mapping[str, str]) -> list[str]:
    """Every camera's hooks (one camera, named by ``name:``, without ``cameras:``), as start-up builds them."""
    from .hooks import build_hooks, hook_name

    problems: list[str] = []
    drivers_checked: set[str] = set()
    for camera in cfg.camera_list():
        where = f"cameras.{camera.name}: " if cfg.cameras else ""
        # Built as start-up builds them (names, secrets, pin names, MQTT topics), with every relay
        # on gpiozero's mock board: the real pin may belong to a gate that is running.
        mocked = tuple(dataclasses.replace(h, pin_factory="mock") if isinstance(h, GpioHookConfig) else h for h in camera.hooks)
        try:
            hooks = build_hooks(mocked, gate=camera.name, env=env)
        except GatekeeperError as exc:
            problem = where + str(exc)
            if problem not in problems:
                problems.append(problem)
        else:
            for hook in hooks:
                hook.release()
        for i, h in enumerate(camera.hooks):
            name = hook_name(h, i)
            if isinstance(h, CommandHookConfig):
                # Start-up does not run the command: the first event would find it missing.
                program = _program_problem(h.argv[0], env)
                problem = f"{where}hooks[{i}].argv: {program}"
                if program is not None and problem not in problems:
                    problems.append(problem)
            if isinstance(h, GpioHookConfig) and h.pin_factory == "auto" and name not in drivers_checked:
                drivers_checked.add(name)
                problem = _check_gpio_driver(name, "the relay")
                if problem:
                    problems.append(problem)
    return problems


def _check_button(cfg: Config, env: Mapping[str, str]) -> list[str]:
    """The staff button's pin (``actions.button``): a pin gpiozero knows, that can be an input with
    the pull asked for, and not a relay's pin; checked on a mock board of its own, with the relays'
    pins claimed first. ``pin_factory: auto`` also needs a GPIO driver on this machine."""
    button = cfg.actions.button
    if button.pin is None:
        return []
    from gpiozero import Button, OutputDevice
    from gpiozero.exc import GPIOPinInUse, GPIOZeroError
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    devices = []
    problem = None
    try:
        for h in (h for camera in cfg.camera_list() for h in camera.hooks):
            if isinstance(h, GpioHookConfig):
                try:
                    devices.append(OutputDevice(h.pin, pin_factory=factory))
                except GPIOZeroError:
                    pass  # the hook check reports it
        try:
            devices.append(Button(button.pin, pull_up=button.pull_up, pin_factory=factory))
        except GPIOPinInUse:
            problem = f"actions.button.pin: {button.pin!r} is a relay's pin (hooks); expected a pin of its own"
        except GPIOZeroError as exc:
            problem = f"actions.button.pin: cannot use pin {button.pin!r}: {exc}"
    finally:
        for device in devices:
            device.close()
        factory.close()
    if problem is None and button.pin_factory == "auto":
        problem = _check_gpio_driver("actions.button", "the button")
    return [problem] if problem else []


def _check_sensors(cfg: Config, env: Mapping[str, str]) -> list[str]:
    """Each camera's door contact (``gate.sensor``): a pin gpiozero knows, that can be an input
    with the pull asked for, and none of the relays', the staff button's or another door's;
    checked on a mock board of its own. ``pin_factory: auto`` also needs a GPIO driver here."""
    cameras = [c for c in cfg.camera_list() if c.gate.sensor.pin is not None]
    if not cameras:
        return []
    from gpiozero import DigitalInputDevice, InputDevice, OutputDevice
    from gpiozero.exc import GPIOPinInUse, GPIOZeroError
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    devices, problems = [], []
    try:
        others = [(OutputDevice, h.pin) for c in cfg.camera_list() for h in c.hooks if isinstance(h, GpioHookConfig)]
        others += [(InputDevice, cfg.actions.button.pin)] if cfg.actions.button.pin is not None else []
        for kind, pin in others:
            try:
                devices.append(kind(pin, pin_factory=factory))
            except GPIOZeroError:
                pass  # the relay's and the button's own checks report it
        for camera in cameras:
            sensor = camera.gate.sensor
            inherited = camera.gate.sensor is cfg.gate.sensor
            key = "gate.sensor.pin" if not cfg.cameras else f"gate.sensor.pin (inherited by cameras.{camera.name})" if inherited else f"cameras.{camera.name}.gate.sensor.pin"
            try:
                devices.append(DigitalInputDevice(sensor.pin, pull_up=sensor.pull_up, pin_factory=factory))
            except GPIOPinInUse:
                problems.append(f"{key}: {sensor.pin!r} is already a relay's, the staff button's or another camera's door pin; expected a pin of its own")
            except GPIOZeroError as exc:
                problems.append(f"{key}: cannot use pin {sensor.pin!r}: {exc}")
    finally:
        for device in devices:
            device.close()
        factory.close()
    if not problems and any(c.gate.sensor.pin_factory == "auto" for c in cameras):
        problem = _check_gpio_driver("gate.sensor", "the door's contact")
        problems += [problem] if problem else []
    return problems


def _check_gpio_driver(name: str, what: str) -> str | None:
    """Whether gpiozero finds a GPIO driver on this machine (what ``pin_factory: auto`` uses);
    the driver is loaded and closed again, and no pin is claimed."""
    from gpiozero import Device
    from gpiozero.exc import BadPinFactory, PinFactoryFallback

    if Device.pin_factory is not None:
        return None  # one is loaded already ($GPIOZERO_PIN_FACTORY, or a device made earlier)
    try:
        with warnings.catch_warnings():
            # gpiozero warns once per driver it fails to load; the one line below says it better.
            warnings.simplefilter("ignore", PinFactoryFallback)
            factory = Device._default_pin_factory()  # the factory gpiozero would pick for the first device
    except BadPinFactory as exc:
        return (
            f"{name}: no GPIO on this machine that gpiozero can drive ({exc}); on a Raspberry Pi install lgpio "
            f"(pip install lgpio), elsewhere set pin_factory: mock to simulate {what}"
        )
    factory.close()
    return None


def _check_journal(cfg: Config, env: Mapping[str, str]) -> list[str]:
    if not cfg.journal.enabled:
        return []
    path = cfg.journal.resolved_path()
    if path.exists():
        from .journal import Journal

        try:
            Journal(path).close()  # what start-up opens: a SQLite file of a schema this version reads
        except GatekeeperError as exc:
            return [str(exc)]
        return []
    # Start-up creates it (and its missing folders); the check makes sure it could, by creating
    # an empty folder where the first missing one would go and removing it again. Permission
    # bits alone do not say (root passes them everywhere, /proc and a read-only mount refuse).
    folder = next(p for p in (path.parent, *path.parent.parents) if p.exists() or p == Path(p.anchor))
    expected = "expected a journal.path in a folder this user can write to, or journal.enabled: false"
    if not folder.is_dir():
        return [f"journal {str(path)!r} cannot be created: {str(folder)!r} is not a folder; {expected}"]
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".gatekeeper-check-", dir=folder))
    except OSError as exc:
        return [f"journal {str(path)!r} cannot be created: nothing can be created in {str(folder)!r} ({exc.strerror or exc}); {expected}"]
    return []


def _program_problem(program: str, env: Mapping[str, str]) -> str | None:
    """Why a command hook's ``argv[0]`` cannot be run as the hook runs it (``Popen`` with the
    hook's environment, from the gate's working directory), or None."""
    if "/" not in program:
        if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
            return f"program {program!r} is not found on PATH; expected the name of a program on PATH, or a path to one"
        return None
    if not Path(program).is_file():
        what = "is a folder" if Path(program).is_dir() else "does not exist"
        return f"program {program!r} {what}; expected an executable file"
    if not os.access(program, os.X_OK):
        return f"program {program!r} is not executable by this user; expected an executable file (chmod +x)"
    return None
