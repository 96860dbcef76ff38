"""Where events go: GPIO relay, signed webhook, MQTT, command; each behind its own queue and thread.

The app needs three names::

    from gatekeeper.hooks import Dispatcher, build_hooks
    dispatcher = Dispatcher(journal, build_hooks(config.hooks, gate=config.name))  # gatekeeper.app.open_dispatcher
    dispatcher.start()
    dispatcher.emit(event)                 # per event, on the frame loop: journal append + queue appends
    dispatcher.close(timeout=5.0)          # at shutdown (close_hooks: the same for hooks without a journal)

``GpioHook`` and ``MqttHook`` load gpiozero and paho-mqtt only when first used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .base import Delivery, DeliveryError, Hook, HookStats, close_hooks
from .command import CommandHook
from .config import (
    HOOK_TYPES,
    CommandHookConfig,
    GpioHookConfig,
    HookConfig,
    MqttHookConfig,
    WebhookHookConfig,
    decode_webhook_secret,
)
from .dispatch import Dispatcher
from .webhook import WebhookHook

if TYPE_CHECKING:
    from .gpio import GpioHook
    from .mqtt import MqttHook

__all__ = [
    "HOOK_TYPES",
    "CommandHook",
    "CommandHookConfig",
    "Delivery",
    "DeliveryError",
    "Dispatcher",
    "GpioHook",
    "GpioHookConfig",
    "Hook",
    "HookConfig",
    "HookStats",
    "MqttHook",
    "MqttHookConfig",
    "WebhookHook",
    "WebhookHookConfig",
    "build_hooks",
    "close_hooks",
    "hook_name",
]


def __getattr__(name: str) -> Any:
    # gpiozero and paho-mqtt cost ~0.1 s to import; a gate without those hooks never pays it.
    if name == "GpioHook":
        from .gpio import GpioHook

        return GpioHook
    if name == "MqttHook":
        from .mqtt import MqttHook

        return MqttHook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def hook_name(config: HookConfig, index: int) -> str:
    """The hook's name in the journal and logs: its ``name``, else ``<type>[<index>]``."""
    return config.name or f"{config.type}[{index}]"


def build_hooks(
    configs: Sequence[HookConfig], *, gate: str = "gate", env: Mapping[str, str] | None = None
) -> list[Hook]:
    """Build (not start) one hook per config entry.

    Secrets named by ``secret_env``/``password_env`` are read from ``env`` (default: the process
    environment). Raises :class:`~gatekeeper.errors.ConfigError` naming ``hooks[i]`` for a
    missing or malformed secret or a repeated name, and :class:`~gatekeeper.errors.HookError`
    for a machine without GPIO; hooks built before the failure are released.
    """
    env = os.environ if env is None else env
    hooks: list[Hook] = []
    try:
        seen: dict[str, int] = {}
        for i, cfg in enumerate(configs):
            name = hook_name(cfg, i)
            if name in seen:
                raise ConfigError(
                    f"hooks[{i}].name: {name!r} is already the name of hooks[{seen[name]}]; expected unique names"
                )
            seen[name] = i
            hooks.append(_build(cfg, i, name, gate, env))
    except BaseException:
        for hook in hooks:
            hook.release()
        raise
    return hooks


def _secret_from_env(env: Mapping[str, str], var: str, path: str) -> str:
    value = env.get(var)
    if not value:
        raise ConfigError(f"{path}: environment variable {var} is not set or empty; expected it to hold the secret")
    return value


def _build(cfg: HookConfig, i: int, name: str, gate: str, env: Mapping[str, str]) -> Hook:
    if isinstance(cfg, WebhookHookConfig):
        key = None
        if cfg.secret_env is not None:
            secret = _secret_from_env(env, cfg.secret_env, f"hooks[{i}].secret_env")
            try:
                key = decode_webhook_secret(secret, key=f"${cfg.secret_env}")
            except ValueError as exc:
                raise ConfigError(f"hooks[{i}].secret_env: {exc}") from None
        return WebhookHook(cfg, name=name, gate=gate, secret=key)
    if isinstance(cfg, MqttHookConfig):
        from .mqtt import MqttHook

        password = (
            None if cfg.password_env is None else _secret_from_env(env, cfg.password_env, f"hooks[{i}].password_env")
        )
        return MqttHook(cfg, name=name, gate=gate, password=password, key=f"hooks[{i}]")
    if isinstance(cfg, GpioHookConfig):
        from .gpio import GpioHook

        return GpioHook(cfg, name=name)
    if isinstance(cfg, CommandHookConfig):
        return CommandHook(cfg, name=name, gate=gate, env=env)
    raise TypeError(f"hooks[{i}]: unknown hook config {type(cfg).__name__}")  # the schema and this list disagree
