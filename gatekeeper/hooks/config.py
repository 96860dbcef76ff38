"""Declared configuration of each hook type (entries of the ``hooks:`` list in config.yaml).

Types, defaults and bounds are checked generically by :mod:`gatekeeper.config`; the rules that
involve more than one field (a well-formed URL, a secret where signing is required, known event
names) live in each class's ``__post_init__`` and raise ``ValueError``, which the loader reports
with the key path, e.g. ``hooks[1]: url: expected an http:// or https:// URL, got 'ftp://x'``.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from dataclasses import dataclass
from typing import Literal

from ..schema import opt
from ..tls import MqttTlsConfig
from .brokers import BrokerKeys

__all__ = [
    "EVENT_NAMES",
    "HOOK_TYPES",
    "CommandHookConfig",
    "GpioHookConfig",
    "HookConfig",
    "MqttHookConfig",
    "WebhookHookConfig",
    "decode_webhook_secret",
]

EVENT_NAMES = ("OPEN", "DENY", "FACE_LOST", "FAULT", "RECOVERED", "OUT_OF_SERVICE", "IN_SERVICE", "PASSAGE", "FORCED_OPEN", "HELD_OPEN", "CLOSED")

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-\[\]]{1,64}$")
# Standard Webhooks: secrets are 24 to 64 random bytes, written base64 after a "whsec_" prefix.
_SECRET_MIN_BYTES, _SECRET_MAX_BYTES = 24, 64


def _check_name(name: str | None) -> None:
    if name is not None and not _NAME_RE.match(name):
        raise ValueError(f"name: expected 1 to 64 of A-Z a-z 0-9 _ . - [ ], got {name!r}")


def _check_events(events: tuple[str, ...]) -> None:
    unknown = [e for e in events if e not in EVENT_NAMES]
    if unknown:
        raise ValueError(f"events: unknown event name {unknown[0]!r}; expected some of {', '.join(EVENT_NAMES)}")
    if not events:
        raise ValueError(f"events: expected at least one of {', '.join(EVENT_NAMES)}, got an empty list")


def _check_topic(key: str, topic: str) -> None:
    if not topic or topic.startswith("/") or topic.endswith("/") or "//" in topic:
        raise ValueError(f"{key}: expected topic levels separated by single '/', got {topic!r}")
    if any(c in topic for c in "+#\0"):
        raise ValueError(f"{key}: MQTT wildcards '+' and '#' cannot be used in a publish topic, got {topic!r}")


def decode_webhook_secret(secret: str, key: str = "secret") -> bytes:
    """The HMAC key of a Standard Webhooks secret ``whsec_<base64>``; ``ValueError`` names ``key``.

    >>> len(decode_webhook_secret("whsec_" + "A" * 32))
    24
    """
    if not secret.startswith("whsec_"):
        raise ValueError(
            f"{key}: expected a Standard Webhooks secret 'whsec_<base64>', got a value without the 'whsec_' prefix"
        )
    try:
        raw = base64.b64decode(secret[len("whsec_") :], validate=True)
    except binascii.Error:
        raise ValueError(f"{key}: the part after 'whsec_' is not valid base64") from None
    if not _SECRET_MIN_BYTES <= len(raw) <= _SECRET_MAX_BYTES:
        raise ValueError(
            f"{key}: expected {_SECRET_MIN_BYTES} to {_SECRET_MAX_BYTES} secret bytes after 'whsec_', got {len(raw)}"
        )
    return raw


@dataclass(frozen=True)
class GpioHookConfig:
    type: Literal["gpio"] = opt("gpio", "a relay on a GPIO pin, pulsed on OPEN and forced shut on FAULT")
    name: str | None = opt(None, "name of this hook in the journal and logs (null: gpio[<index>])")
    pin: str = opt("GPIO17", "gpiozero pin name, e.g. GPIO17 or BOARD11")
    active_high: bool = opt(True, "false for relay boards that switch on a low level")
    pulse_ms: int = opt(500, "how long the relay is held on for one OPEN", ge=1, le=60000)
    pin_factory: Literal["auto", "mock"] = opt(
        "auto", "auto: the board's own GPIO; mock: gpiozero's MockFactory (tests, demos)"
    )
    max_age_s: float = opt(2.0, "an OPEN older than this is not pulsed (the person has gone)", gt=0)
    queue_size: int = opt(64, "events waiting for this hook; beyond it the oldest is dropped and counted", ge=1)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not self.pin.strip():
            raise ValueError("pin: expected a gpiozero pin name such as GPIO17 or BOARD11, got an empty string")


@dataclass(frozen=True)
class WebhookHookConfig:
    url: str = opt("", "http(s) URL that receives each event as a JSON POST")
    type: Literal["webhook"] = opt("webhook", "an HTTP POST per event")
    name: str | None = opt(None, "name of this hook in the journal and logs (null: webhook[<index>])")
    secret: str | None = opt(None, "Standard Webhooks signing secret (whsec_<base64>); null: unsigned")
    secret_env: str | None = opt(None, "name of an environment variable holding the secret instead")
    require_signature: bool = opt(False, "refuse to start when no secret is configured")
    events: tuple[str, ...] = opt(EVENT_NAMES, "event types sent to this hook")
    timeout_s: float = opt(2.0, "per-request timeout", gt=0)
    max_attempts: int | None = opt(None, "attempts per event before it is given up (null: no count; retried until max_age_s)", ge=1)
    backoff_initial_s: float = opt(0.25, "first retry delay; doubles each attempt, with jitter", gt=0)
    backoff_max_s: float = opt(5.0, "longest retry delay", gt=0)
    max_age_s: float = opt(30.0, "events older than this are marked expired instead of sent (or retried)", gt=0)
    queue_size: int = opt(256, "events waiting for this hook; beyond it the oldest is dropped and counted", ge=1)

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_events(self.events)
        if not self.url:
            raise ValueError("url: required; expected an http:// or https:// URL")
        try:
            parts = urllib.parse.urlsplit(self.url)
            parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
        except ValueError as exc:
            raise ValueError(f"url: malformed URL {self.url!r}: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in self.url):
            raise ValueError(f"url: expected an http:// or https:// URL with a host, got {self.url!r}")
        if self.secret is not None and self.secret_env is not None:
            raise ValueError("secret and secret_env are both set; expected at most one of them")
        if self.secret is not None:
            decode_webhook_secret(self.secret)
        if self.secret_env is not None and not self.secret_env:
            raise ValueError("secret_env: expected the name of an environment variable, got an empty string")
        if self.require_signature and self.secret is None and self.secret_env is None:
            raise ValueError("require_signature is true but neither secret nor secret_env is set")
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError(
                f"backoff_initial_s ({self.backoff_initial_s}) must not exceed backoff_max_s ({self.backoff_max_s})"
            )


@dataclass(frozen=True)
class MqttHookConfig(BrokerKeys):
    type: Literal["mqtt"] = opt("mqtt", "publish events and the gate state to an MQTT broker")
    name: str | None = opt(None, "name of this hook in the journal and logs (null: mqtt[<index>])")
    host: str = opt("127.0.0.1", "broker host")
    port: int = opt(1883, "broker port", ge=1, le=65535)
    brokers: tuple[str, ...] | None = opt(
        None, "several brokers as [host:port, ...] instead of host and port: tried in order, the next when one is lost (null: host:port alone)"
    )
    username: str | None = opt(None, "broker user name")
    password_env: str | None = opt(None, "name of an environment variable holding the broker password")
    client_id: str | None = opt(None, "MQTT client id (null: gatekeeper-<gate name>-<random>)")
    topic_prefix: str = opt("gatekeeper", "events go to <prefix>/<name>/event, state to <prefix>/<name>/state")
    qos: int = opt(1, "MQTT QoS of event messages", ge=0, le=2)
    keepalive_s: int = opt(30, "MQTT keepalive; the broker sends the last will after 1.5x this without traffic", ge=5)
    timeout_s: float = opt(5.0, "how long to wait for the broker to acknowledge one message", gt=0)
    discovery: bool = opt(False, "publish Home Assistant MQTT discovery for a binary sensor (and, with commands, a button and a switch)")
    discovery_prefix: str = opt("homeassistant", "Home Assistant discovery prefix")
    events: tuple[str, ...] = opt(EVENT_NAMES, "event types published (the state topic follows these)")
    open_s: float = opt(0.5, "the state topic says open this long after an OPEN, then closed (match the relay's pulse_ms)", gt=0, le=3600)
    max_age_s: float = opt(30.0, "events older than this are marked expired instead of published", gt=0)
    queue_size: int = opt(256, "events waiting for this hook; beyond it the oldest is dropped and counted", ge=1)
    commands: bool = opt(
        False, "take operator actions from <prefix>/<name>/command (JSON: action, by, reason, id, ts); use a broker that authenticates, with an ACL"
    )
    command_max_age_s: float = opt(10.0, "commands whose ts is further than this from now (stale, or a clock far off) are refused", gt=0, le=3600)
    commands_per_user: bool = opt(
        False, "with commands: take them from <prefix>/<name>/command/<user> instead, <user> a person of http.users with role operator or admin; the broker's ACL must let only <user> write there"
    )
    tls: MqttTlsConfig = opt(MqttTlsConfig(), "TLS to the broker, with a CA and a client certificate")

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_events(self.events)
        if self.commands_per_user and not self.commands:
            raise ValueError("commands_per_user is true but commands is not; expected commands: true as well")
        self._check_brokers()
        _check_topic("topic_prefix", self.topic_prefix)
        _check_topic("discovery_prefix", self.discovery_prefix)
        if self.password_env is not None and self.username is None:
            raise ValueError("password_env is set but username is not; expected both or neither")


@dataclass(frozen=True)
class CommandHookConfig:
    argv: tuple[str, ...] = opt((), "command and arguments; gets the event JSON on stdin and in $GATEKEEPER_EVENT")
    type: Literal["command"] = opt("command", "run a command per event")
    name: str | None = opt(None, "name of this hook in the journal and logs (null: command[<index>])")
    events: tuple[str, ...] = opt(("OPEN",), "event types that run the command")
    timeout_s: float = opt(5.0, "the command (and anything it started) is killed after this long", gt=0)
    max_age_s: float = opt(10.0, "events older than this are marked expired instead of run", gt=0)
    queue_size: int = opt(64, "events waiting for this hook; beyond it the oldest is dropped and counted", ge=1)

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_events(self.events)
        if not self.argv or not self.argv[0]:
            raise ValueError("argv: expected a command and its arguments, e.g. [/usr/local/bin/on-open, --fast]")


HookConfig = GpioHookConfig | WebhookHookConfig | MqttHookConfig | CommandHookConfig
HOOK_TYPES: dict[str, type] = {
    "gpio": GpioHookConfig,
    "webhook": WebhookHookConfig,
    "mqtt": MqttHookConfig,
    "command": CommandHookConfig,
}
