"""The MQTT hook with a list of brokers: the order and backoff it tries them in, its config errors,
failover between two real mosquitto brokers, the single broker as before, and a real three-node
NATS cluster (JetStream, MQTT) losing the node the hook is connected to in the middle of a stream.

These tests fail (not skip) when mosquitto or nats-server is missing: CI installs both.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from nats_cluster import NatsCluster
from polling import wait_for

from gatekeeper.config_load import config_from_dict
from gatekeeper.errors import ConfigError
from gatekeeper.events import DeliveryState
from gatekeeper.hooks import MqttHook, MqttHookConfig, close_hooks
from gatekeeper.hooks.brokers import Rotation, parse_broker

PREFIX = "gk"
EVENTS = f"{PREFIX}/front/event"


@pytest.fixture
def started():
    """``started(brokers=[...] or host=..., port=..., **config)``: a started hook, closed after the test."""
    hooks: list[MqttHook] = []

    def make(brokers: list[str] | None = None, **kw: Any) -> MqttHook:
        kw.setdefault("topic_prefix", PREFIX)
        if brokers is not None:
            kw["brokers"] = tuple(brokers)
        hooks.append(MqttHook(MqttHookConfig(**kw), name="mqtt", gate="front"))
        hooks[-1].start()
        return hooks[-1]

    yield make
    close_hooks(hooks, timeout=1)


def delivered_once(got, events, timeout: float) -> None:
    """Every event settled DELIVERED exactly once and never FAILED or EXPIRED: the journal's account."""
    for e in events:
        assert got.final(e.id, timeout=timeout).state is DeliveryState.DELIVERED
    finals = Counter((o.event_id, o.state) for o in got.settled if o.state is not DeliveryState.PENDING)
    assert all(state is DeliveryState.DELIVERED and n == 1 for (_, state), n in finals.items()), finals


# -- the order and the waits -------------------------------------------------------------------------


def test_one_broker_backs_off_as_paho_did():
    r = Rotation((("h", 1883),), 1, 30)
    assert [r.failed() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert r.connected() is None  # the same broker again: no switch
    assert r.failed() == 1  # a success starts the backoff over


def test_several_brokers_are_tried_in_turn_and_back_off_per_round():
    r = Rotation((("a", 1), ("b", 2), ("c", 3)), 1, 30)
    assert r.connected() is None and r.current == ("a", 1)
    seen = []
    for _ in range(7):
        delay = r.failed()
        seen.append((r.current[0], delay))
    assert seen == [("b", 0), ("c", 0), ("a", 1), ("b", 0), ("c", 0), ("a", 2), ("b", 0)]
    assert r.connected() == ("a", 1)  # connected to b after a: a switch, from a
    assert r.failed() == 0 and r.current == ("c", 3)


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        ({"brokers": []}, "hooks[0]: brokers: expected at least one host:port, got an empty list"),
        ({"brokers": ["mqtt.local"]}, "hooks[0]: brokers[0]: expected host:port with a port from 1 to 65535"),
        ({"brokers": ["a:1883", "b:0"]}, "hooks[0]: brokers[1]: expected host:port with a port from 1 to 65535"),
        ({"brokers": ["a:1883", "a:1883"]}, "hooks[0]: brokers[1]: 'a:1883' is listed twice"),
        ({"brokers": ["::1:1883"]}, "([address]:port for IPv6), got '::1:1883'"),
        ({"brokers": "a:1883"}, "hooks[0].brokers: expected a list, got 'a:1883' (str)"),
        ({"brokers": [1883]}, "hooks[0].brokers[0]: expected a string, got 1883 (int)"),
        ({"brokers": ["a:1883"], "host": "b"}, "hooks[0]: brokers and host/port are both set; expected brokers alone"),
    ],
)
def test_a_bad_broker_list_names_the_key(hook, message):
    with pytest.raises(ConfigError) as info:
        config_from_dict({"hooks": [{"type": "mqtt", **hook}]})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_broker_lists_and_host_port_give_the_addresses():
    cfg = config_from_dict({"hooks": [{"type": "mqtt", "brokers": ["n1.park:1883", "[fd00::2]:1884"]}]}).hooks[0]
    assert cfg.addresses == (("n1.park", 1883), ("fd00::2", 1884))
    assert config_from_dict({"hooks": [{"type": "mqtt", "host": "b", "port": 1884}]}).hooks[0].addresses == (("b", 1884),)
    assert parse_broker("[::1]:1") == ("::1", 1)


# -- mosquitto -----------------------------------------------------------------------------------------


def test_one_broker_as_before(broker, subscribe, started, outcomes, make_event, wait, caplog):
    """host/port alone: no CONNACK watchdog, the same broker again after a restart, no switch counted."""
    caplog.set_level(logging.INFO, logger="gatekeeper.hooks")
    hook = started(host="127.0.0.1", port=broker.port, max_age_s=15)
    got = outcomes(hook)
    assert hook.client.on_socket_open is None
    assert hook.wait_connected(5) and hook.broker == f"127.0.0.1:{broker.port}"
    broker.stop()
    wait(lambda: not hook.connected)
    event = make_event()
    hook.publish(event)
    broker.start()
    delivered_once(got, [event], timeout=10)
    # The broker has it: the retained state names it (whenever this subscriber arrives).
    subscribe(broker.port, (f"{PREFIX}/front/state",)).wait_for(lambda m: m.json["id"] == event.id)
    assert hook.stats.broker_switches == 0 and hook.broker == f"127.0.0.1:{broker.port}"
    lines = [r.getMessage() for r in caplog.records]
    assert any("; reconnecting in the background" in line for line in lines), lines
    assert not any("switched" in line for line in lines), lines


def test_an_unacknowledged_event_is_waited_for_not_published_twice(broker, subscribe, started, outcomes, make_event):
    """The broker freezes after taking the event: the attempt times out and is retried, and the
    retry waits for the message paho still holds instead of sending a copy."""
    live = subscribe(broker.port, (EVENTS,))
    hook = started(host="127.0.0.1", port=broker.port, timeout_s=0.3, keepalive_s=60)
    got = outcomes(hook)
    assert hook.wait_connected(5)
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        event = make_event()
        hook.publish(event)
        wait_for(lambda: len([a for a in hook_attempts(got, event.id)]) >= 3, 10, "three attempts")
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    delivered_once(got, [event], timeout=5)
    live.wait_for(lambda m: m.json["id"] == event.id)
    time.sleep(0.3)  # a copy would follow right behind
    assert [m.json["id"] for m in live.on(EVENTS)] == [event.id]


def hook_attempts(got, event_id: str) -> list[float]:
    return [t for i, t in got.attempts if i == event_id]


def test_failover_between_two_mosquitto_brokers(make_broker, closed_port, subscribe, started, outcomes, make_event, wait, caplog):
    caplog.set_level(logging.INFO, logger="gatekeeper.hooks")
    a, b = make_broker(), make_broker()
    on_a, on_b = subscribe(a.port, (EVENTS,)), subscribe(b.port, (EVENTS,))
    # The first broker refuses: the hook goes on to a at once, without a backoff wait.
    t0 = time.monotonic()
    hook = started([f"127.0.0.1:{closed_port}", f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], max_age_s=30)
    got = outcomes(hook)
    assert hook.wait_connected(5) and hook.broker == f"127.0.0.1:{a.port}"
    assert time.monotonic() - t0 < 1.0
    first = [make_event("DENY", frame=i) for i in range(5)]
    for e in first:
        hook.publish(e)
    delivered_once(got, first, timeout=5)
    on_a.wait_for(lambda m: m.topic == EVENTS, n=len(first))  # a forwards after acknowledging
    a.stop()  # lost while connected: on to b, no wait
    lost = time.monotonic()
    rest = [make_event("DENY", frame=10 + i) for i in range(5)]
    for e in rest:
        hook.publish(e)
    delivered_once(got, first + rest, timeout=10)
    wait(lambda: hook.broker == f"127.0.0.1:{b.port}" and hook.connected)
    assert time.monotonic() - lost < 3.0
    on_b.wait_for(lambda m: m.topic == EVENTS, n=len(rest))
    assert [m.json["id"] for m in on_a.on(EVENTS)] == [e.id for e in first]
    assert [m.json["id"] for m in on_b.on(EVENTS)] == [e.id for e in rest]
    assert hook.stats.broker_switches == 1
    switches = [r.getMessage() for r in caplog.records if "switched to broker" in r.getMessage()]
    assert switches == [f"mqtt: switched to broker 127.0.0.1:{b.port} (from 127.0.0.1:{a.port})"]
    # ... and b has the retained availability and state, republished on connecting.
    late = subscribe(b.port, (f"{PREFIX}/front/availability", f"{PREFIX}/front/state"))
    late.wait_for(lambda m: m.topic.endswith("availability") and m.text == "online")
    late.wait_for(lambda m: m.topic.endswith("state") and m.json["id"] == rest[-1].id)


# -- a NATS cluster ----------------------------------------------------------------------------------------


class Session:
    """A subscriber with a persistent session (clean_session false, a fixed client id) on one node."""

    def __init__(self, port: int, topic: str, client_id: str | None = None) -> None:
        self.ids: list[str] = []
        self.present: list[bool] = []
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"park-{uuid.uuid4().hex[:8]}", clean_session=False)
        self.client.on_connect = lambda c, u, flags, rc, p: (self.present.append(flags.session_present), c.subscribe(topic, 1))
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(15), f"no SUBACK from 127.0.0.1:{port}"

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            # an event's id, or the text of anything else
            self.ids.append(json.loads(msg.payload)["id"] if msg.payload.startswith(b"{") else msg.payload.decode())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = NatsCluster(tmp_path_factory.mktemp("nats"))
    c.start()
    yield c
    c.stop()


@pytest.fixture
def nats(cluster):
    cluster.start()  # starts again any node an earlier test killed, and waits until all are ready
    return cluster


@pytest.fixture
def session():
    made: list[Session] = []

    def make(port: int, topic: str, client_id: str | None = None) -> Session:
        s = Session(port, topic, client_id)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.mark.slow
def test_nats_keeps_qos1_retained_and_sessions_across_nodes(nats, session):
    n1, n2, n3 = nats.nodes
    park = session(n2.mqtt_port, "site/+/event", client_id="park-across")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub-across")
    pub.connect("127.0.0.1", n1.mqtt_port)
    pub.loop_start()
    try:
        for i in range(5):
            pub.publish("site/a/event", f"m{i}", qos=1).wait_for_publish(10)
        pub.publish("site/a/state", "kept", qos=1, retain=True).wait_for_publish(10)
        wait_for(lambda: len(park.ids) >= 5, 10, "5 messages on n2")
        # A retained message published on n1 is there for a subscriber that arrives on n3.
        late = session(n3.mqtt_port, "site/a/state")
        wait_for(lambda: late.ids == ["kept"], 10, "the retained message on n3")
        # The session outlives its connection: what is published meanwhile waits for it, and it
        # picks it up from another node.
        park.close()
        for i in range(5, 8):
            pub.publish("site/a/event", f"m{i}", qos=1).wait_for_publish(10)
        back = session(n3.mqtt_port, "site/+/event", client_id="park-across")
        # A message in flight when the session's connection closed comes again after ack_wait (5 s).
        wait_for(lambda: set(park.ids + back.ids) >= {f"m{i}" for i in range(8)}, 15, "the messages kept for the session")
        assert back.present[0] is True
    finally:
        pub.disconnect()
        pub.loop_stop()


@pytest.mark.slow
def test_the_hook_fails_over_when_its_nats_node_dies(nats, session, started, outcomes, make_event, caplog):
    caplog.set_level(logging.INFO, logger="gatekeeper.hooks")
    # The hardest node to lose: the one leading the session stream, which every CONNECT goes through.
    leader = nats.stream_leaders().get("$MQTT_sess")
    first = next((n for n in nats.nodes if n.name == leader), nats.nodes[0])
    others = [n for n in nats.nodes if n is not first]
    park = session(others[0].mqtt_port, EVENTS)
    hook = started([first.broker] + [n.broker for n in others], max_age_s=60)
    got = outcomes(hook)
    assert hook.wait_connected(10) and hook.broker == first.broker

    events = [make_event("DENY", frame=i) for i in range(40)]
    for e in events[:15]:
        hook.publish(e)
        time.sleep(0.02)
    wait_for(lambda: hook.stats.delivered >= 10, 10, "10 events delivered before the kill")
    nats.kill(first)
    killed = time.monotonic()
    for e in events[15:]:  # the stream goes on while the hook looks for another node
        hook.publish(e)
        time.sleep(0.05)
    wait_for(lambda: hook.connected and hook.broker != first.broker, 20, "the hook on another node")
    switched_after = time.monotonic() - killed
    print(f"switched {switched_after:.1f} s after the kill")  # shown with -s: the number docs/operating.md quotes
    delivered_once(got, events, timeout=30)
    wait_for(lambda: {e.id for e in events} <= set(park.ids), 20, "every event at the park's session")
    # On the wire it is at least once: an event in flight when a connection is lost is sent again
    # to the next node, so each loss may double the one event the hook had in flight.
    doubles = [i for i, n in Counter(park.ids).items() if n > 1]
    assert len(doubles) <= hook.stats.broker_switches, (doubles, hook.stats)
    # How soon (the target: 10 s) is a number for scripts/bench_park.py to report, not for
    # this test to time: most of it is NATS electing new stream leaders (7-10 s here, more on a
    # loaded machine). The wait above bounds it at 20 s, which a hook that never moved would fail.
    # Once on a node, NATS may still drop the connection: a QoS-1 PUBLISH waits for JetStream to
    # store it, and after 4 s without a stream leader the node closes the link. Then it switches
    # again; each switch is one line and one count.
    switches = [r.getMessage() for r in caplog.records if "switched to broker" in r.getMessage()]
    assert hook.stats.broker_switches == len(switches) >= 1, switches
    assert all(f"(from {first.broker})" not in line for line in switches[1:]), switches
    # No check of the retained availability here: after a node loss NATS 2.9 may serve a stale
    # retained value for a minute (see nats_cluster's notes).
