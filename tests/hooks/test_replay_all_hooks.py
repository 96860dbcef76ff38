"""Issue 4's acceptance run: the real clip, the real pipeline, all four hooks against real receivers.

``gatekeeper --video single_face.mp4`` (in-process, so the relay's mock pin can be read) with a
signed webhook to a local HTTP server, MQTT to a local mosquitto, a command, and a relay on
gpiozero's MockFactory: each must get the clip's one OPEN exactly once, and the journal must
show it delivered to all four.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import statistics
from pathlib import Path

import pytest

from gatekeeper.cli import main

pytestmark = pytest.mark.slow


def test_replay_delivers_the_open_to_every_hook_exactly_once(
    tmp_path: Path, shared_dir: Path, face_model_path: Path, receiver, secret, broker, subscribe, mock_factory, wait, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("GATEKEEPER_FACE_MODEL", str(face_model_path))
    rx = receiver()
    sub = subscribe(broker.port, ("gk/entry/event",))
    runs = tmp_path / "runs.jsonl"
    pin = mock_factory.pin("GPIO17")
    journal = tmp_path / "journal.sqlite3"
    config = {
        "name": "entry",
        "journal": {"path": str(journal)},
        "hooks": [
            {"type": "webhook", "url": rx.url, "secret": secret, "require_signature": True, "events": ["OPEN"]},
            {"type": "mqtt", "port": broker.port, "topic_prefix": "gk", "events": ["OPEN"]},
            {"type": "command", "argv": ["/bin/sh", "-c", 'cat >> "$0"; echo >> "$0"', str(runs)]},
            {"type": "gpio", "pin": "GPIO17", "pulse_ms": 100, "pin_factory": "mock"},
        ],
    }
    (tmp_path / "c.yaml").write_text(json.dumps(config))  # JSON is YAML
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert main(["--video", str(shared_dir / "videos" / "single_face.mp4"), "--config", str(tmp_path / "c.yaml")]) == 0
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    stdout = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (open_event,) = [e for e in stdout if e["event"] == "OPEN"]

    # The run drains the hooks before it returns, so everything has arrived by now.
    assert [r.id for r in rx.requests] == [open_event["id"]] and rx.requests[0].signature_ok
    mqtt = sub.wait_for(lambda m: True, n=1)
    assert [m.json["id"] for m in sub.messages] == [open_event["id"]] and mqtt[0].json["gate"] == "entry"
    assert [json.loads(line)["id"] for line in runs.read_text().split("\n") if line.strip()] == [open_event["id"]]
    on_states = [s.state for s in pin.states]
    assert on_states.count(True) == 1 and on_states[-1] is False  # one pulse, relay off at the end

    assert main(["events", "--json", "--journal", str(journal)]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (entry,) = [e for e in entries if e["id"] == open_event["id"]]
    assert {d["hook"]: d["state"] for d in entry["deliveries"]} == {
        "webhook[0]": "delivered", "mqtt[1]": "delivered", "command[2]": "delivered", "gpio[3]": "delivered"
    }
    created = dt.datetime.fromisoformat(entry["created_at"]).timestamp()
    latency = {"webhook": rx.requests[0].at - created, "mqtt": mqtt[0].at - created}
    print("\nreplay delivery latency, journal append -> receiver (ms):", {k: round(1000 * v, 1) for k, v in latency.items()})
    assert statistics.median(latency.values()) < 1.0
