"""Bad hook config is rejected at start with the key path; good config builds the right hooks."""

from __future__ import annotations

import base64

import pytest

from gatekeeper.config_load import config_from_dict
from gatekeeper.errors import ConfigError, HookError
from gatekeeper.events import EventType
from gatekeeper.hooks import CommandHook, WebhookHook, build_hooks
from gatekeeper.hooks.config import EVENT_NAMES

GOOD_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
URL = "http://127.0.0.1:8080/hook"


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        (
            [{"type": "telegram"}],
            "hooks[0].type: expected one of 'command', 'gpio', 'mqtt', 'webhook', got 'telegram' (str)",
        ),
        ([{"url": URL}], "hooks[0].type: expected one of"),
        (["webhook"], "hooks[0]: expected a mapping with a 'type' key, got 'webhook' (str)"),
        ([{"type": "webhook"}], "hooks[0]: url: required; expected an http:// or https:// URL"),
        (
            [{"type": "webhook", "url": "ftp://example.com/x"}],
            "hooks[0]: url: expected an http:// or https:// URL with a host",
        ),
        (
            [{"type": "webhook", "url": "http:///path"}],
            "hooks[0]: url: expected an http:// or https:// URL with a host",
        ),
        ([{"type": "webhook", "url": "http://host:99999/x"}], "hooks[0]: url: malformed URL"),
        ([{"type": "webhook", "url": "http://exa mple.com/"}], "hooks[0]: url: expected an http:// or https:// URL"),
        (
            [{"type": "webhook", "url": URL, "timeout_s": "fast"}],
            "hooks[0].timeout_s: expected a number > 0, got 'fast' (str)",
        ),
        ([{"type": "webhook", "url": URL, "max_attempts": 0}], "hooks[0].max_attempts: expected a value >= 1, got 0"),
        ([{"type": "webhook", "url": URL, "retries": 3}], "hooks[0].retries: unknown key"),
        (
            [{"type": "webhook", "url": URL, "require_signature": True}],
            "hooks[0]: require_signature is true but neither secret nor secret_env is set",
        ),
        (
            [{"type": "webhook", "url": URL, "secret": "hunter2"}],
            "hooks[0]: secret: expected a Standard Webhooks secret",
        ),
        (
            [{"type": "webhook", "url": URL, "secret": "whsec_!!!"}],
            "hooks[0]: secret: the part after 'whsec_' is not valid base64",
        ),
        (
            [{"type": "webhook", "url": URL, "secret": "whsec_" + base64.b64encode(b"short").decode()}],
            "hooks[0]: secret: expected 24 to 64 secret bytes after 'whsec_', got 5",
        ),
        (
            [{"type": "webhook", "url": URL, "secret": GOOD_SECRET, "secret_env": "X"}],
            "hooks[0]: secret and secret_env are both set",
        ),
        (
            [{"type": "webhook", "url": URL, "events": ["OPEN", "SMILE"]}],
            "hooks[0]: events: unknown event name 'SMILE'",
        ),
        ([{"type": "webhook", "url": URL, "events": []}], "hooks[0]: events: expected at least one of"),
        ([{"type": "webhook", "url": URL, "events": "OPEN"}], "hooks[0].events: expected a list, got 'OPEN' (str)"),
        ([{"type": "webhook", "url": URL, "name": "has space"}], "hooks[0]: name: expected 1 to 64 of"),
        ([{"type": "mqtt", "topic_prefix": "site/#"}], "hooks[0]: topic_prefix: MQTT wildcards"),
        ([{"type": "mqtt", "topic_prefix": "/site"}], "hooks[0]: topic_prefix: expected topic levels"),
        ([{"type": "mqtt", "port": 70000}], "hooks[0].port: expected a value >= 1 and <= 65535, got 70000"),
        ([{"type": "mqtt", "password_env": "PW"}], "hooks[0]: password_env is set but username is not"),
        ([{"type": "mqtt", "qos": True}], "hooks[0].qos: expected an integer"),
        ([{"type": "command"}], "hooks[0]: argv: expected a command and its arguments"),
        ([{"type": "command", "argv": "open-gate"}], "hooks[0].argv: expected a list"),
        ([{"type": "command", "argv": ["x"], "timeout_s": 0}], "hooks[0].timeout_s: expected a value > 0, got 0.0"),
        ([{"type": "gpio", "pulse_ms": 0}], "hooks[0].pulse_ms: expected a value >= 1 and <= 60000, got 0"),
        (
            [{"type": "gpio", "pin_factory": "lgpio"}],
            "hooks[0].pin_factory: expected one of 'auto', 'mock', got 'lgpio'",
        ),
        ([{"type": "gpio", "active_high": "no"}], "hooks[0].active_high: expected true or false, got 'no' (str)"),
        ([{"type": "command", "argv": ["x"]}, {"type": "webhook", "url": "nope"}], "hooks[1]: url:"),
    ],
)
def test_bad_hook_config_names_the_key(hooks, message):
    with pytest.raises(ConfigError) as info:
        config_from_dict({"hooks": hooks})
    assert message in str(info.value)


def test_event_names_match_the_gate():
    assert EVENT_NAMES == tuple(e.value for e in EventType)


def test_a_valid_config_builds_named_hooks():
    config = config_from_dict(
        {
            "name": "front",
            "hooks": [
                {"type": "webhook", "url": URL, "secret": GOOD_SECRET, "events": ["OPEN"]},
                {"type": "command", "argv": ["true"], "name": "log"},
            ],
        }
    )
    webhook, command = build_hooks(config.hooks, gate=config.name)
    assert isinstance(webhook, WebhookHook) and webhook.name == "webhook[0]" and webhook.signed
    assert webhook.events == {"OPEN"} and webhook.gate == "front"
    assert isinstance(command, CommandHook) and command.name == "log"


def test_secret_from_the_environment():
    config = config_from_dict(
        {"hooks": [{"type": "webhook", "url": URL, "secret_env": "GK_SECRET", "require_signature": True}]}
    )
    (hook,) = build_hooks(config.hooks, env={"GK_SECRET": GOOD_SECRET})
    assert isinstance(hook, WebhookHook) and hook.signed
    with pytest.raises(ConfigError, match=r"hooks\[0\]\.secret_env: environment variable GK_SECRET is not set"):
        build_hooks(config.hooks, env={})
    with pytest.raises(ConfigError, match=r"hooks\[0\]\.secret_env: \$GK_SECRET: expected a Standard Webhooks secret"):
        build_hooks(config.hooks, env={"GK_SECRET": "plain"})


def test_mqtt_password_from_the_environment():
    config = config_from_dict({"hooks": [{"type": "mqtt", "username": "gate", "password_env": "GK_MQTT_PW"}]})
    with pytest.raises(ConfigError, match=r"hooks\[0\]\.password_env: environment variable GK_MQTT_PW is not set"):
        build_hooks(config.hooks, env={})
    (hook,) = build_hooks(config.hooks, env={"GK_MQTT_PW": "pw"})
    hook.release()


def test_hook_names_must_be_unique():
    config = config_from_dict(
        {
            "hooks": [
                {"type": "command", "argv": ["true"], "name": "x"},
                {"type": "command", "argv": ["true"], "name": "x"},
            ]
        }
    )
    with pytest.raises(ConfigError, match=r"hooks\[1\]\.name: 'x' is already the name of hooks\[0\]"):
        build_hooks(config.hooks)


def test_a_gate_name_that_cannot_be_a_topic_level():
    config = config_from_dict({"name": "front/#", "hooks": [{"type": "mqtt"}]})
    with pytest.raises(HookError, match="cannot be an MQTT topic level"):
        build_hooks(config.hooks, gate=config.name)
