"""The examples stay runnable: the example config validates, the receiver accepts our signatures."""

from __future__ import annotations

import base64
import importlib.util
import json
import time
from pathlib import Path

from gatekeeper.config_load import load_config
from gatekeeper.hooks.webhook import sign

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_config_is_valid() -> None:
    cfg = load_config(EXAMPLES / "config.example.yaml")
    assert cfg.name == "coaster-entry"
    assert [h.type for h in cfg.hooks] == ["gpio", "webhook", "mqtt"]


def test_example_receiver_verifies_gatekeeper_signatures() -> None:
    spec = importlib.util.spec_from_file_location("webhook_receiver", EXAMPLES / "webhook_receiver.py")
    assert spec is not None and spec.loader is not None
    receiver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(receiver)
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    body = json.dumps({"type": "gate.open", "data": {"event": "OPEN"}}).encode()
    ts = int(time.time())
    headers = {"webhook-id": "abc", "webhook-timestamp": str(ts), "webhook-signature": sign(key, "abc", ts, body)}
    assert receiver.verify(secret, headers, body)
    assert not receiver.verify(secret, headers, body + b" ")  # tampered body
    assert not receiver.verify(secret, {**headers, "webhook-timestamp": str(ts - 3600)}, body)  # stale


def test_example_cameras_config_is_valid() -> None:
    cfg = load_config(EXAMPLES / "cameras.example.yaml")
    assert [c.name for c in cfg.cameras] == ["lane1", "lane2", "fastpass"]
    assert [[h.type for h in c.hooks] for c in cfg.cameras] == [["gpio", "mqtt"], ["gpio", "mqtt"], ["mqtt"]]
    assert cfg.cameras[1].gate.deny_after_s == 8.0 and cfg.cameras[0].gate.deny_after_s == 6.0
