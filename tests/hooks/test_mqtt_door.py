"""The door's contact over MQTT (gate.sensor; gatekeeper/hooks/mqtt.py) against a real mosquitto:
the state topic's ``door`` follows the contact's events without touching the relay's state, Home
Assistant discovery adds a door binary sensor, and a gate without a sensor publishes neither."""

from __future__ import annotations

from typing import Any

from test_mqtt import PREFIX, mqtt_hook, started  # noqa: F401 (started: a fixture)

from gatekeeper.events import DeliveryState

DOOR_TOPIC = "homeassistant/binary_sensor/gatekeeper_front/door/config"


def test_home_assistant_discovery_of_the_door(broker: Any, subscribe: Any, started: Any) -> None:  # noqa: F811
    hook = mqtt_hook(broker.port, discovery=True)
    hook.set_door("closed")  # what the camera does at start with a sensor (Camera.start_door)
    started(hook)
    assert hook.wait_connected(5)
    subscribe(broker.port, ("homeassistant/binary_sensor/#",)).wait_for(lambda m: m.topic == DOOR_TOPIC)
    (msg,) = subscribe(broker.port, (DOOR_TOPIC,)).wait_for(lambda m: True)
    assert msg.retain
    config = msg.json
    assert config["device_class"] == "door" and config["name"] == "Door"
    assert config["unique_id"] == "gatekeeper_front_door" and config["device"]["identifiers"] == ["gatekeeper_front"]
    assert config["state_topic"] == f"{PREFIX}/front/state"
    assert config["value_template"] == "{{ {'open': 'ON', 'closed': 'OFF'}.get(value_json.door, 'None') }}"
    assert (config["availability_topic"], config["payload_available"]) == (f"{PREFIX}/front/availability", "online")
    (state,) = subscribe(broker.port, (f"{PREFIX}/front/state",)).wait_for(lambda m: True)
    assert state.json["door"] == "closed" and state.json["state"] == "closed"


def test_the_state_topic_follows_the_contact_and_leaves_the_relay_alone(broker: Any, subscribe: Any, started: Any, outcomes: Any, make_event: Any) -> None:  # noqa: F811
    live = subscribe(broker.port, (f"{PREFIX}/front/state",))
    hook = mqtt_hook(broker.port, open_s=30)
    hook.set_door("closed")
    started(hook)
    got = outcomes(hook)
    assert hook.wait_connected(5)
    sequence = [make_event("OPEN"), make_event("PASSAGE", track=1), make_event("CLOSED"), make_event("FORCED_OPEN"), make_event("HELD_OPEN"), make_event("CLOSED")]
    for event in sequence:
        hook.publish(event)
        assert got.final(event.id).state is DeliveryState.DELIVERED
    live.wait_for(lambda m: m.json.get("door_since") is not None, n=7)
    seen = [(m.json["state"], m.json["door"], m.json["id"]) for m in live.on(f"{PREFIX}/front/state")]
    open_id = sequence[0].id
    assert seen == [
        ("closed", "closed", None),  # on connect
        ("open", "closed", open_id),  # the relay's OPEN: the door still shut
        ("open", "open", open_id),  # PASSAGE: the door opens; the relay's pulse runs on
        ("open", "closed", open_id),
        ("open", "open", open_id),  # FORCED_OPEN
        ("open", "open", open_id),  # HELD_OPEN: still open
        ("open", "closed", open_id),
    ]


def test_without_a_sensor_no_door_in_the_state_nor_in_discovery(broker: Any, subscribe: Any, started: Any, outcomes: Any, make_event: Any) -> None:  # noqa: F811
    everything = subscribe(broker.port, ("#",))
    hook = started(mqtt_hook(broker.port, discovery=True))
    got = outcomes(hook)
    assert hook.wait_connected(5)
    event = make_event("OPEN")
    hook.publish(event)
    assert got.final(event.id).state is DeliveryState.DELIVERED
    everything.wait_for(lambda m: m.topic == f"{PREFIX}/front/state" and m.json["id"] == event.id)
    assert not [m for m in everything.messages if m.topic == DOOR_TOPIC]
    assert all("door" not in m.json for m in everything.on(f"{PREFIX}/front/state"))
