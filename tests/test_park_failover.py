"""The park service with ``broker.brokers``: a real three-node NATS cluster (JetStream, MQTT) loses
the node the park is connected to while gates publish through it; the park moves to another node
with its persistent session and journals every event exactly once.

Fails (not skips) when nats-server is missing: CI installs it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from nats_cluster import NatsCluster
from polling import wait_for

from gatekeeper.events import Event, EventType
from gatekeeper.hooks import MqttHook, MqttHookConfig, close_hooks
from gatekeeper.park.config import park_config_from_dict
from gatekeeper.park.journal import ParkJournal
from gatekeeper.park.service import ParkService

PREFIX = "parkfo"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = NatsCluster(tmp_path_factory.mktemp("nats"))
    c.start()
    yield c
    c.stop()


def make_event(kind: str, frame: int) -> Event:
    return Event(EventType(kind), frame, frame / 10, 0.9 if kind == "OPEN" else None, uuid.uuid4().hex, None, 1)


def journaled(path: Path) -> dict[str, list[str]]:
    """gate -> the event ids the park journal holds, in order."""
    with ParkJournal(path, readonly=True) as journal:
        out: dict[str, list[str]] = {}
        for e in journal.entries():
            out.setdefault(e.gate, []).append(e.entry.event.id)
        return out


@pytest.mark.slow
def test_the_park_moves_to_the_next_node_with_its_session(cluster: NatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gatekeeper")
    # The hardest node to lose: the one leading the session stream, which every CONNECT goes through.
    leader = cluster.stream_leaders().get("$MQTT_sess")
    first = next((n for n in cluster.nodes if n.name == leader), cluster.nodes[0])
    others = [n for n in cluster.nodes if n is not first]
    path, brokers = tmp_path / "park.sqlite3", [first.broker] + [n.broker for n in others]
    config = park_config_from_dict(
        {"broker": {"brokers": brokers, "topic_prefix": PREFIX, "client_id": "park-failover"}, "journal": {"path": str(path)}}
    )
    park = ParkService(config)
    park.start("127.0.0.1", 0)
    # Gates: the project's MQTT hook through the node that dies (it fails over too), and a plain
    # QoS-1 publisher on a node that stays.
    hook = MqttHook(MqttHookConfig(brokers=tuple(brokers), topic_prefix=PREFIX, max_age_s=60), name="mqtt", gate="lane1")
    sim = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-{uuid.uuid4().hex[:8]}")
    sent: dict[str, list[str]] = {"lane1": [], "sim1": []}
    infos: list[mqtt.MQTTMessageInfo] = []

    def publish(i: int) -> None:
        a, b = make_event("OPEN", i), make_event("DENY", i)
        hook.publish(a)
        infos.append(sim.publish(f"{PREFIX}/sim1/event", json.dumps({**b.to_dict(), "gate": "sim1"}), qos=1))
        sent["lane1"].append(a.id)
        sent["sim1"].append(b.id)

    try:
        assert park.listener.wait_connected(10) and park.listener.broker == first.broker, park.listener.last_error
        hook.start()
        sim.connect("127.0.0.1", others[1].mqtt_port, keepalive=10)
        sim.loop_start()
        assert hook.wait_connected(10)
        for i in range(10):
            publish(i)
        wait_for(lambda: park.listener.counts["journaled"] == 20, 10, "20 events journaled before the kill")

        cluster.kill(first)
        killed = time.monotonic()
        for i in range(10, 20):  # the gates go on while the park looks for another node
            publish(i)
            time.sleep(0.05)
        wait_for(lambda: park.listener.connected and park.listener.broker != first.broker, 20, "the park on another node")
        print(f"the park switched {time.monotonic() - killed:.1f} s after the kill")
        lines = [r.getMessage() for r in caplog.records if "switched to broker" in r.getMessage() and r.name == "gatekeeper.park"]
        assert len(lines) == park.listener.switches >= 1, lines
        assert f"(from {first.broker}; session park-failover, resumed)" in lines[0], lines
        status = park.service_status()["broker"]
        assert f"{status['host']}:{status['port']}" == park.listener.broker != first.broker
        assert (status["brokers"], status["switches"], status["connected"]) == (brokers, park.listener.switches, True)
        # Every event of both gates, the ones published while the park moved included, once (in any
        # order: what was on its way to the park when its node died comes again after NATS's mqtt
        # ack_wait, 5 s here, behind newer ones).
        wait_for(lambda: {g: sorted(ids) for g, ids in journaled(path).items()} == {g: sorted(ids) for g, ids in sent.items()}, 20, "every event in the park journal, each once, from both gates")
        for info in infos:
            assert info.is_published()
        assert park.listener.counts["journaled"] == 40 and park.listener.counts["malformed"] == 0
    finally:
        sim.disconnect()
        sim.loop_stop()
        close_hooks([hook], timeout=1)
        park.stop()
