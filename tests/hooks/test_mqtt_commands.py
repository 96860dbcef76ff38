"""Operator commands over MQTT, against a real mosquitto that authenticates (a password file) and
authorises (an ACL): only the operator user may publish on the gate's command topic.

The gate side is a real Camera, tracker, Gate, Controls, Dispatcher and SQLite journal, with a stand-in
for detect -> classify (see tests/running_gate.py), and the real MqttHook with ``commands: true``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for
from running_gate import Running

from gatekeeper.hooks import MqttHook, MqttHookConfig

PREFIX = "gk"
COMMAND = f"{PREFIX}/front/command"
USERS = {"gate": "gate-pass-1", "operator": "operator-pass-2", "visitor": "visitor-pass-3"}
ACL = f"""\
user gate
topic readwrite {PREFIX}/front/#
topic write homeassistant/#

user operator
topic write {COMMAND}
topic read {PREFIX}/front/state

user visitor
topic read {PREFIX}/#
topic read homeassistant/#
"""


@pytest.fixture
def secured_broker(tmp_path: Path, make_broker: Callable[..., Any]) -> Any:
    """mosquitto with allow_anonymous false, a password file for three users, and the ACL above."""
    passwords = tmp_path / "passwd"
    for i, (user, password) in enumerate(USERS.items()):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwords), user, password], check=True, capture_output=True)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    # mosquitto reads both files after dropping root to its own user, which cannot read pytest's
    # private temporary folder: as root, the test broker stays root (no effect otherwise).
    stay = "user root\n" if os.geteuid() == 0 else ""
    return make_broker(allow_anonymous=False, extra=f"{stay}password_file {passwords}\nacl_file {acl}\n")


@pytest.fixture
def clients(secured_broker: Any, subscribe: Callable[..., Any]) -> Callable[..., Any]:
    """A test client logged in as ``user``, subscribed to ``topics`` (none: it only publishes)."""

    def make(user: str, topics: tuple[str, ...] = ()) -> Any:
        return subscribe(secured_broker.port, topics, username=user, password=USERS[user])

    return make


@pytest.fixture
def gate(secured_broker: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Running]]:
    """A running gate whose MQTT hook logs in as ``gate`` and takes commands."""
    made: list[Running] = []
    monkeypatch.setenv("GK_MQTT_PASSWORD", USERS["gate"])

    def start(**kw: Any) -> Running:
        cfg = MqttHookConfig(host="127.0.0.1", port=secured_broker.port, username="gate", password_env="GK_MQTT_PASSWORD", topic_prefix=PREFIX, commands=True, discovery=True, **kw)
        hook = MqttHook(cfg, name="mqtt", gate="front", password=USERS["gate"])
        r = Running(tmp_path, hooks=[hook])
        made.append(r)
        assert hook.wait_connected(5)
        time.sleep(0.2)  # the SUBACK of the command topic
        return r

    yield start
    for r in made:
        r.close()


def command(action: str = "open", **kw: Any) -> dict[str, Any]:
    return {"action": action, "by": "maria", "id": uuid.uuid4().hex, "ts": time.time(), **kw}


def events(r: Running) -> list[dict[str, Any]]:
    return [e.event.to_dict() for e in r.journal.entries()]


def test_an_operator_command_opens_and_is_published_with_who_and_how(gate: Callable[..., Running], clients: Callable[..., Any]) -> None:
    r = gate()
    watcher = clients("visitor", (f"{PREFIX}/front/event", f"{PREFIX}/front/state"))
    clients("operator").publish(COMMAND, command("open", reason="pram"))
    (opened,) = wait_for(lambda: events(r), 5, "the manual OPEN in the journal")
    assert (opened["event"], opened["reason"], opened["by"], opened["via"], opened["note"]) == ("OPEN", "manual", "maria", "mqtt", "pram")
    msg = wait_for(lambda: watcher.on(f"{PREFIX}/front/event"), 5, "the OPEN on the event topic")[0]
    assert msg.json == {**opened, "gate": "front"}


def test_out_of_service_over_mqtt_shows_in_the_retained_state(gate: Callable[..., Running], clients: Callable[..., Any]) -> None:
    r = gate()
    operator = clients("operator")
    operator.publish(COMMAND, command("out_of_service", reason="cleaning"))
    wait_for(lambda: [e["event"] for e in events(r)] == ["OUT_OF_SERVICE"], 5, "OUT_OF_SERVICE in the journal")
    late = clients("visitor", (f"{PREFIX}/front/state",))  # arrives after: the retained state tells it
    state = wait_for(lambda: [m.json for m in late.on(f"{PREFIX}/front/state") if m.json["event"] == "OUT_OF_SERVICE"], 5, "the retained state")[-1]
    assert state["in_service"] is False and state["state"] == "closed"
    operator.publish(COMMAND, command("in_service"))
    wait_for(lambda: any(m.json["in_service"] for m in late.on(f"{PREFIX}/front/state")), 5, "in_service back on the state topic")


def test_another_user_cannot_command_the_gate(gate: Callable[..., Running], clients: Callable[..., Any], secured_broker: Any) -> None:
    r = gate()
    clients("visitor").publish(COMMAND, command("open"))  # mosquitto's ACL drops it (MQTT 3.1.1 tells the publisher nothing)
    time.sleep(1.0)
    assert events(r) == [] and r.controls.stats.snapshot() == {"taken": {}, "refused": {}}
    clients("operator").publish(COMMAND, command("open"))  # the same command from the operator works: the gate was listening
    wait_for(lambda: events(r), 5, "the operator's OPEN")


def test_a_retained_command_is_never_taken(gate: Callable[..., Running], clients: Callable[..., Any]) -> None:
    # Kept by the broker, it would reach the gate again at every (re)connect.
    clients("operator").publish(COMMAND, command("open"), retain=True)
    r = gate()
    wait_for(lambda: r.controls.stats.refused, 5, "the refusal")
    assert r.controls.stats.snapshot() == {"taken": {}, "refused": {"mqtt/retained": 1}}
    time.sleep(0.2)
    assert events(r) == []


STALE_S = 10.0
HOSTILE = [
    # (what, payload maker, refusal code)
    ("malformed JSON", lambda: b'{"action": "open", "by": ', "malformed"),
    ("not UTF-8", lambda: b"\xff\xfe", "malformed"),
    ("not an object", lambda: b'["open"]', "malformed"),
    ("no by", lambda: {k: v for k, v in command().items() if k != "by"}, "malformed"),
    ("no id", lambda: {k: v for k, v in command().items() if k != "id"}, "malformed"),
    ("no ts", lambda: {k: v for k, v in command().items() if k != "ts"}, "malformed"),
    ("ts not a number", lambda: command(ts="now"), "malformed"),
    ("unknown key", lambda: command(pulse_ms=60000), "malformed"),
    ("by with a newline", lambda: command(by="ma\nria"), "malformed"),
    ("too long", lambda: command(reason="x" * 5000), "malformed"),
    ("unknown action", lambda: command("close"), "unknown_action"),
    ("stale", lambda: command(ts=time.time() - STALE_S - 5), "stale"),
    ("from the future", lambda: command(ts=time.time() + STALE_S + 5), "stale"),
]


@pytest.mark.parametrize(("what", "payload", "code"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_bad_commands_are_one_refusal_one_line_one_count_and_nothing_else(
    gate: Callable[..., Running], clients: Callable[..., Any], caplog: pytest.LogCaptureFixture, what: str, payload: Callable[[], Any], code: str
) -> None:
    r = gate(command_max_age_s=STALE_S)
    caplog.set_level(logging.INFO, logger="gatekeeper")
    caplog.clear()
    clients("operator").publish(COMMAND, payload())
    wait_for(lambda: r.controls.stats.refused, 5, "the refusal")
    time.sleep(0.2)  # a few frames: nothing reached the gate
    assert r.controls.stats.snapshot() == {"taken": {}, "refused": {f"mqtt/{code}": 1}}
    lines = [rec.getMessage() for rec in caplog.records if rec.name.startswith("gatekeeper") and rec.levelno >= logging.INFO]
    assert len(lines) == 1 and lines[0].startswith(f"action refused (mqtt, {code}): "), lines
    assert events(r) == []


def test_a_repeated_id_is_refused_once_and_the_first_acted_on(gate: Callable[..., Running], clients: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    r = gate()
    operator = clients("operator")
    first = command("open")
    operator.publish(COMMAND, first)
    wait_for(lambda: events(r), 5, "the first OPEN")
    operator.publish(COMMAND, {**first, "ts": time.time()})  # a replay, re-timed
    wait_for(lambda: r.controls.stats.refused, 5, "the refusal")
    assert r.controls.stats.snapshot() == {"taken": {"open/mqtt": 1}, "refused": {"mqtt/repeated": 1}}
    assert [rec.getMessage() for rec in caplog.records if "refused" in rec.getMessage()] == [
        f"action refused (mqtt, repeated): command {first['id']!r} (open by maria): this id was already received; expected a new id per command"
    ]
    assert len(events(r)) == 1


def test_home_assistant_gets_a_button_and_a_switch_beside_the_sensor(gate: Callable[..., Running], clients: Callable[..., Any]) -> None:
    r = gate()
    ha = clients("visitor", ("homeassistant/#",))
    topics = {"binary_sensor": "homeassistant/binary_sensor/gatekeeper_front/gate/config", "button": "homeassistant/button/gatekeeper_front/open/config", "switch": "homeassistant/switch/gatekeeper_front/in_service/config"}
    configs = {kind: json.loads(wait_for(lambda t=t: ha.on(t), 5, t)[0].payload) for kind, t in topics.items()}
    assert all(m.retain for t in topics.values() for m in ha.on(t))
    assert configs["button"]["command_topic"] == configs["switch"]["command_topic"] == COMMAND
    assert configs["switch"]["state_topic"] == f"{PREFIX}/front/state"
    assert {c["device"]["identifiers"][0] for c in configs.values()} == {"gatekeeper_front"}  # one device
    # What Home Assistant sends on a press and on a flip, its template expressions rendered as HA would:
    operator = clients("operator")
    for kind, value, expected in (("switch", "OFF", "OUT_OF_SERVICE"), ("button", None, "OPEN"), ("switch", "ON", "IN_SERVICE")):
        payload = render_ha_template(configs[kind]["command_template"], value)
        operator.publish(COMMAND, payload)
        wait_for(lambda e=expected: events(r) and events(r)[-1]["event"] == e, 5, expected)
        assert events(r)[-1]["by"] == "home-assistant"
        time.sleep(0.2)  # one manual open only: the rate limit does not come into it
    # The switch's state follows the retained state's in_service.
    assert configs["switch"]["value_template"] == "{{ 'ON' if value_json.in_service else 'OFF' }}"


def render_ha_template(template: str, value: str | None) -> str:
    """The few Jinja expressions our command templates use, rendered by hand (no Jinja here)."""
    now = time.time()
    out = template.replace("{{ now().timestamp() }}", repr(now)).replace("{{ range(1000000) | random }}", uuid.uuid4().hex[:6])
    out = out.replace("{{ 'in_service' if value == 'ON' else 'out_of_service' }}", "in_service" if value == "ON" else "out_of_service")
    assert "{{" not in out, out
    json.loads(out)  # a valid command
    return out


def test_the_state_at_start_says_out_of_service_when_the_journal_does(gate: Callable[..., Running], clients: Callable[..., Any], tmp_path: Path) -> None:
    first = gate()
    operator = clients("operator")
    operator.publish(COMMAND, command("out_of_service"))
    wait_for(lambda: events(first), 5, "OUT_OF_SERVICE")
    first.close()
    # Clear the retained state the first run left, so what follows can only come from the second.
    clients("gate").publish(f"{PREFIX}/front/state", b"", retain=True)
    gate()  # the same journal
    late = clients("visitor", (f"{PREFIX}/front/state",))
    state = wait_for(lambda: [m for m in late.on(f"{PREFIX}/front/state") if m.payload], 5, "the retained state")[-1]
    assert state.json["in_service"] is False



def test_a_command_replayed_after_a_restart_is_refused(gate: Callable[..., Running], clients: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    """Ids seen outlive a restart (they are in the journal) for twice command_max_age_s."""
    first = gate()
    operator = clients("operator")
    cmd = command("open", id="cmd-R")
    operator.publish(COMMAND, cmd)
    wait_for(lambda: events(first), 5, "the first OPEN")
    first.close()
    second = gate()  # the same journal
    operator.publish(COMMAND, {**cmd, "ts": time.time()})  # the same command again, within its max age
    wait_for(lambda: second.controls.stats.refused, 5, "the refusal")
    assert second.controls.stats.snapshot() == {"taken": {}, "refused": {"mqtt/repeated": 1}}
    assert "action refused (mqtt, repeated): command 'cmd-R' (open by maria): this id was already received" in caplog.text
    operator.publish(COMMAND, command("open"))  # a new id is still taken after the restart
    wait_for(lambda: len(events(second)) == 2, 5, "the second run's OPEN")
    assert [e["by"] for e in events(second)] == ["maria", "maria"]
