"""The ``cameras:`` section: each camera's name, its one source, its zone and its overrides of
``gate:`` and ``hooks:`` (the top-level ones applied), and the rules of the cameras as a set:
one camera per source, one relay pin and one MQTT client id per camera."""

from __future__ import annotations

import re
from typing import Any

from .config import CameraConfig, Config
from .config_values import convert, describe, override
from .errors import ConfigError
from .hooks.config import GpioHookConfig, HookConfig
from .schema import MAX_CAMERA_INDEX, check_url

__all__ = ["CAMERA_KEYS", "CAMERA_NAME", "CAMERA_SOURCES", "camera_configs"]


#: A camera's name: a URL path segment, an MQTT topic level and a metric label as it is.
CAMERA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Keys of one entry of ``cameras:``; exactly one of the first three.
CAMERA_SOURCES = ("camera", "url", "video")
CAMERA_KEYS = (*CAMERA_SOURCES, "zone", "gate", "hooks")


def camera_configs(data: Any, top: Config) -> tuple[CameraConfig, ...]:
    """``cameras:``: name -> source, zone and overrides of ``gate:`` and ``hooks:``, checked as a set."""
    if not isinstance(data, dict):
        raise ConfigError(f"cameras: expected a mapping of camera names to cameras, got {describe(data)}")
    cameras: list[CameraConfig] = []
    seen: dict[str, str] = {}
    for name, value in data.items():
        path = f"cameras.{name}"
        if not isinstance(name, str) or not CAMERA_NAME.match(name):
            raise ConfigError(f"cameras: camera name {describe(name)} is not usable; expected 1 to 64 of A-Z a-z 0-9 _ -")
        if name.lower() in seen:
            raise ConfigError(f"{path}: duplicate camera name (cameras.{seen[name.lower()]} already has it; names are compared without case)")
        seen[name.lower()] = name
        cameras.append(_camera(name, value, path, top))
    _check_sources_unique(cameras)
    _check_relays_unique(cameras, top)
    return tuple(cameras)


def _camera(name: str, value: Any, path: str, top: Config) -> CameraConfig:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping with one of {', '.join(CAMERA_SOURCES)}, got {describe(value)}")
    unknown = sorted(map(str, set(value) - set(CAMERA_KEYS)))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown camera key; expected one of {', '.join(CAMERA_KEYS)}")
    given = [k for k in CAMERA_SOURCES if value.get(k) is not None]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise ConfigError(f"{path}: expected exactly one source, one of {', '.join(CAMERA_SOURCES)}; got {what}")
    (kind,) = given
    if kind == "camera":
        source = convert(int, value[kind], f"{path}.camera", {"ge": 0, "le": MAX_CAMERA_INDEX})
    else:
        source = convert(str, value[kind], f"{path}.{kind}", {})
        if not source.strip():
            raise ConfigError(f"{path}.{kind}: expected a {'URL' if kind == 'url' else 'video file path'}, got an empty string")
        if kind == "url":
            try:
                check_url(source)  # the same check as --url: a malformed URL stops the start, not one camera's thread
            except ValueError as exc:
                raise ConfigError(f"{path}.url: {exc}") from None
    overrides = value.get("gate") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{path}.gate: expected a mapping of gate keys to override, got {describe(overrides)}")
    overrides = dict(overrides)
    if "zone" in value:
        if "zone" in overrides:
            raise ConfigError(f"{path}.zone: given twice, also as {path}.gate.zone; expected one of them")
        overrides["zone"] = value["zone"]
    gate = override(top.gate, overrides, f"{path}.gate")
    hooks = top.hooks if value.get("hooks") is None else convert(tuple[HookConfig, ...], value["hooks"], f"{path}.hooks", {})
    return CameraConfig(name, **{kind: source}, gate=gate, hooks=hooks)


def _check_sources_unique(cameras: list[CameraConfig]) -> None:
    first: dict[tuple[str, Any], str] = {}
    for cam in cameras:
        kind = next(k for k in CAMERA_SOURCES if getattr(cam, k) is not None)
        key = (kind, getattr(cam, kind))
        if key in first:
            raise ConfigError(f"cameras.{cam.name}.{kind}: {key[1]!r} is already the source of cameras.{first[key]}; expected one camera per source")
        first[key] = cam.name


_PIN_NUMBER = re.compile(r"^(?:GPIO|BCM)?(\d+)$", re.IGNORECASE)


def _pin_key(pin: str) -> str:
    """One spelling per pin: GPIO17, BCM17 and 17 are the same Broadcom pin."""
    m = _PIN_NUMBER.match(pin.strip())
    return f"GPIO{int(m.group(1))}" if m else pin.strip().upper()


def _check_relays_unique(cameras: list[CameraConfig], top: Config) -> None:
    """Two cameras on one relay pin would open each other's gate, and two MQTT clients with one
    ``client_id`` would throw each other off the broker: both refused, naming the second."""
    pins: dict[str, str] = {}
    clients: dict[str, str] = {}
    for cam in cameras:
        inherited = cam.hooks is top.hooks
        for i, hook in enumerate(cam.hooks):
            where = f"hooks[{i}]" if inherited else f"cameras.{cam.name}.hooks[{i}]"
            also = f" (inherited by cameras.{cam.name})" if inherited else ""
            if isinstance(hook, GpioHookConfig):
                pin = _pin_key(hook.pin)
                if pin in pins and pins[pin] != cam.name:
                    raise ConfigError(f"{where}.pin{also}: relay pin {hook.pin!r} is already the relay of cameras.{pins[pin]}; expected one relay pin per camera")
                pins[pin] = cam.name
            client_id = getattr(hook, "client_id", None)
            if client_id is not None:
                if client_id in clients and clients[client_id] != cam.name:
                    raise ConfigError(f"{where}.client_id{also}: {client_id!r} is already the MQTT client id of cameras.{clients[client_id]}; expected one per camera (null: each its own)")
                clients[client_id] = cam.name
