"""The MQTT hook over TLS and per-user command topics, against a real mosquitto.

TLS: a listener that requires client certificates, with certificates made at test time
(tests/certs.py); a plain listener beside it lets the test's subscriber watch what arrives.

Per-user commands: MQTT 3.1.1 does not tell a subscriber who published, so what says who sent a
command is the topic ``<prefix>/<gate>/command/<user>`` and the broker's ACL that lets each user
write only their own (``pattern write .../command/%u``), with a real password file. The gate side
is a real Camera, Gate, Controls and journal (tests/running_gate.py) with a users file.
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
from certs import Certs, make_certs
from polling import wait_for
from running_gate import Running
from test_mqtt import started  # noqa: F401 -- a fixture: hooks started, closed after the test

from gatekeeper.errors import ConfigError
from gatekeeper.events import DeliveryState
from gatekeeper.hooks import MqttHook, MqttHookConfig
from gatekeeper.tls import MqttTlsConfig
from gatekeeper.users import hash_secret

PREFIX = "gk"
STAY_ROOT = "user root\n" if os.geteuid() == 0 else ""  # mosquitto as root would drop to a user that cannot read pytest's folders


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tls_broker(make_broker: Callable[..., Any], certs: Certs) -> tuple[Any, int]:
    """A broker whose listener requires TLS and a client certificate signed by the test CA,
    and a plain listener (returned port) for the test's own subscriber."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        plain = s.getsockname()[1]
    extra = f"{STAY_ROOT}cafile {certs.ca}\ncertfile {certs.server_cert}\nkeyfile {certs.server_key}\nrequire_certificate true\nlistener {plain} 127.0.0.1\n"
    broker = make_broker(extra=extra)
    wait_for(lambda: _listening(plain), 5, f"mosquitto's plain listener on {plain}")
    return broker, plain


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def tls_hook(port: int, **tls: Any) -> MqttHook:
    config = MqttHookConfig(host="127.0.0.1", port=port, topic_prefix=PREFIX, tls=MqttTlsConfig(enabled=True, **tls))
    return MqttHook(config, name="mqtt", gate="front", key="hooks[0]")


def test_events_go_over_tls_with_a_client_certificate(tls_broker: Any, certs: Certs, started: Any, subscribe: Any, outcomes: Any, make_event: Any) -> None:  # noqa: F811
    broker, plain = tls_broker
    watcher = subscribe(plain, (f"{PREFIX}/front/event",))
    hook = started(tls_hook(broker.port, ca=str(certs.ca), cert=str(certs.client_cert), key=str(certs.client_key)))
    got = outcomes(hook)
    assert hook.wait_connected(10), hook.last_error
    event = make_event("OPEN")
    hook.publish(event)
    assert got.final(event.id).state is DeliveryState.DELIVERED
    (msg,) = watcher.wait_for(lambda m: m.topic == f"{PREFIX}/front/event")
    assert msg.json["id"] == event.id


# paho drops the socket of a handshake that failed verification without closing it; CPython's
# reference counting closes it at once, with a ResourceWarning that is paho's, not the gate's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("case", ["no client certificate", "the wrong CA"])
def test_without_the_right_certificates_the_hook_never_connects(tls_broker: Any, certs: Certs, started: Any, case: str) -> None:  # noqa: F811
    broker, _ = tls_broker
    tls = {"ca": str(certs.ca)} if case == "no client certificate" else {"ca": str(certs.wrong_ca), "cert": str(certs.client_cert), "key": str(certs.client_key)}
    hook = started(tls_hook(broker.port, **tls))
    assert not hook.wait_connected(3)
    assert not hook.connected


def test_a_plain_hook_cannot_talk_to_the_tls_listener(tls_broker: Any, started: Any) -> None:  # noqa: F811
    broker, _ = tls_broker
    hook = started(MqttHook(MqttHookConfig(host="127.0.0.1", port=broker.port, topic_prefix=PREFIX), name="mqtt", gate="front"))
    assert not hook.wait_connected(3)


def test_a_tls_file_that_cannot_be_used_is_one_line_naming_the_key(tmp_path: Path, certs: Certs) -> None:
    with pytest.raises(ConfigError, match=r"^hooks\[0\]\.tls\.ca: .*nope\.pem: no such file; expected a PEM file$"):
        tls_hook(1883, ca=str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match=r"^hooks\[0\]\.tls\.cert: cannot load .*client\.pem with .*server\.key: "):
        tls_hook(1883, ca=str(certs.ca), cert=str(certs.client_cert), key=str(certs.server_key))
    with pytest.raises(ValueError, match="ca, cert or key is set but enabled is false"):
        MqttTlsConfig(ca=str(certs.ca))


# -- per-user command topics ------------------------------------------------------------------------

BROKER_USERS = {"gate": "gate-pass-1", "otto": "otto-pass-2", "vera": "vera-pass-3", "stranger": "stranger-pass-4", "old": "old-pass-5"}
ACL = f"""\
user gate
topic write {PREFIX}/front/event
topic write {PREFIX}/front/state
topic write {PREFIX}/front/availability
topic read {PREFIX}/front/command/+

pattern write {PREFIX}/+/command/%u
"""


@pytest.fixture
def command_broker(tmp_path: Path, make_broker: Callable[..., Any]) -> Any:
    passwords = tmp_path / "passwd"
    for i, (user, password) in enumerate(BROKER_USERS.items()):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwords), user, password], check=True, capture_output=True)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    return make_broker(allow_anonymous=False, extra=f"{STAY_ROOT}password_file {passwords}\nacl_file {acl}\n")


@pytest.fixture
def gate(command_broker: Any, tmp_path: Path) -> Iterator[Running]:
    users = tmp_path / "users.yaml"
    users.write_text(
        f"otto: {{role: operator, hash: '{hash_secret('otto-http-secret')}'}}\nvera: {{role: viewer, hash: '{hash_secret('vera-http-secret')}'}}\n"
        f"old: {{role: operator, hash: '{hash_secret('old-http-secret')}', expires: 2020-01-01}}\n"
    )
    config = MqttHookConfig(host="127.0.0.1", port=command_broker.port, username="gate", topic_prefix=PREFIX, commands=True, commands_per_user=True)
    hook = MqttHook(config, name="mqtt", gate="front", password=BROKER_USERS["gate"])
    r = Running(tmp_path, hooks=[hook], users=str(users))
    assert hook.wait_connected(5), hook.last_error
    time.sleep(0.2)  # the SUBACK of the command topics
    yield r
    r.close()


def command(action: str = "open", **kw: Any) -> bytes:
    return json.dumps({"action": action, "id": uuid.uuid4().hex, "ts": time.time(), **kw}).encode()


def send(broker: Any, user: str, topic_user: str, payload: bytes) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(user, BROKER_USERS[user])
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.publish(f"{PREFIX}/front/command/{topic_user}", payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_command_on_an_operators_own_topic_is_theirs_and_a_typed_name_only_a_note(gate: Running, command_broker: Any) -> None:
    send(command_broker, "otto", "otto", command("open", by="the front desk", reason="pram"))
    (opened,) = wait_for(lambda: gate.journaled(), 5, "the manual OPEN in the journal")
    assert (opened["event"], opened["by"], opened["via"], opened["claimed_by"], opened["note"]) == ("OPEN", "otto", "mqtt", "the front desk", "pram")


def test_the_broker_keeps_one_user_from_writing_anothers_topic(gate: Running, command_broker: Any) -> None:
    send(command_broker, "vera", "otto", command("open", by="otto"))  # the ACL drops it: it never reaches the gate
    time.sleep(0.5)
    assert gate.journaled() == [] and gate.controls.stats.snapshot()["refused"] == {}


@pytest.mark.parametrize(
    ("user", "code", "why"),
    [("vera", "forbidden", "role viewer may not act"), ("stranger", "unknown_user", "no such user in http.users"), ("old", "expired", "their entry in http.users has expired")],
)
def test_a_user_without_an_operator_role_is_refused_in_one_line_and_counted(gate: Running, command_broker: Any, caplog: pytest.LogCaptureFixture, user: str, code: str, why: str) -> None:
    caplog.set_level(logging.INFO, logger="gatekeeper")
    send(command_broker, user, user, command("open"))
    wait_for(lambda: gate.controls.stats.snapshot()["refused"] == {f"mqtt/{code}": 1}, 5, "the refusal counted")
    lines = [rec.getMessage() for rec in caplog.records if rec.name.startswith("gatekeeper") and "refused" in rec.getMessage()]
    assert lines == [f"action refused (mqtt, {code}): a command on the topic of user {user!r}: {why}" + ("; expected operator or admin" if code == "forbidden" else "")]
    assert gate.controls.users is not None
    assert gate.controls.users.refusals.snapshot() == {f"{code}/{ {'vera': 'viewer', 'old': 'operator'}.get(user, 'none')}": 1}
    assert gate.journaled() == []
