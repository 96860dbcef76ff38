"""Publish events and the gate state to an MQTT broker (paho-mqtt 2.x).

Topics, with ``<p>`` the ``topic_prefix`` and ``<gate>`` the gate's name:

* ``<p>/<gate>/event``: one message per event, ``Event.to_dict()`` plus ``"gate"``, QoS 1 by
  default. Delivered means the broker acknowledged it (PUBACK).
* ``<p>/<gate>/state``: retained ``{"state": ..., "event": ..., "id": ..., "t": ..., "since": ...}``,
  so a subscriber that arrives later sees where the gate is. ``state`` follows the gate:

  - ``open`` when an OPEN is delivered, for ``open_s`` seconds (0.5 s by default, the relay's
    default pulse) counted from when the event was recorded; then ``closed``, still naming that
    OPEN. A DENY or FACE_LOST meanwhile leaves it open (the relay pulse runs on); a later OPEN
    starts a new period. An OPEN delivered after its period (a broker that was down) only
    updates the event and leaves the state ``closed``.
  - ``fault`` from a FAULT (the relay is held shut) until RECOVERED, which makes it ``closed``.
  - ``closed`` otherwise: DENY and FACE_LOST update ``event``/``id`` and leave it closed.
  - on a clean shutdown, ``closed`` is published (retained) before ``offline``.

  ``event``, ``id`` and ``t`` are those of the event that led to the state; ``since`` is the
  wall clock (Unix seconds) of the change. With the broker unreachable at shutdown the retained
  state cannot be changed; ``availability`` then says ``offline`` (the last will), and a state
  read while ``offline`` is stale.
* with the door's contact (``gate.sensor``), the state also carries ``door``: ``open`` or
  ``closed``, the level found at start, then each PASSAGE, FORCED_OPEN, HELD_OPEN (open) and
  CLOSED (closed) delivered; ``door_since`` is the wall clock of its last change. The relay's
  ``state`` is not touched by them. Discovery then adds a ``binary_sensor`` of device class
  ``door`` on it. Without a sensor there is no ``door`` key and no door entity.
* ``<p>/<gate>/availability``: retained ``online`` once the broker accepts the connection;
  ``offline`` on a clean shutdown and, as the last will, when the process dies.
* with ``discovery: true``, a retained Home Assistant discovery config under
  ``<discovery_prefix>/binary_sensor/gatekeeper_<gate>/gate/config`` so the gate shows up as a
  binary sensor (device class ``opening``) with that availability.
* with ``commands: true``, the hook subscribes to ``<p>/<gate>/command`` and hands every message
  to ``on_command`` (the operator controls parse and judge it: :meth:`gatekeeper.actions.Controls.mqtt`).
  The state carries ``in_service`` (false from an OUT_OF_SERVICE until IN_SERVICE, and from the
  start when the journal says so) and ``service_via`` (the OUT_OF_SERVICE's ``via``; ``schedule``:
  the opening hours), and discovery adds a ``button`` (open) and a ``switch`` (in service) whose
  command templates write a fresh ``id`` and ``ts`` per press.
* with ``commands_per_user: true`` as well, the commands come from ``<p>/<gate>/command/<user>``
  instead (a subscription to ``<p>/<gate>/command/+``), and ``on_command`` gets ``user=<user>``.
  MQTT 3.1.1 does not tell a subscriber who published a message; what says who it was is the
  broker's ACL, which must let each user write only their own topic (mosquitto:
  ``pattern write <p>/+/command/%u``). The hook trusts the topic level because of that ACL and
  nothing else; the controls give ``<user>`` the role the users file (``http.users``) gives them.

With ``tls.enabled`` the connection is TLS (:func:`gatekeeper.tls.client_context`): the broker's
certificate is verified against ``tls.ca`` (else the system's CAs) and its host name checked, and
``tls.cert``/``tls.key`` are presented to a broker that asks for a client certificate.

The network loop runs in paho's own thread and reconnects with backoff. The worker only
publishes once the broker has accepted the connection: a refused connection (TCP or CONNACK)
is logged and never counted as connected.

With ``brokers: [host:port, ...]`` the hook moves to the next broker when the one in use is lost
(refused, dropped, or with several brokers no CONNACK within ``_CONNACK_S``), with the backoff of
:mod:`gatekeeper.hooks.brokers`. Its one paho client keeps the QoS-1 messages awaiting a PUBACK and
sends them to the next broker; a retried event is waited for, not published again. A switch is one
log line and one count (``stats.broker_switches``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from ..door import DOOR_EVENTS
from ..errors import HookError
from ..events import EventType
from ..tls import client_context
from .base import Delivery, DeliveryError, Hook
from .brokers import Failover, MqttStats, Rotation, broker_text
from .config import MqttHookConfig

__all__ = ["MqttHook", "MqttStats", "gate_state"]

_RECONNECT_MIN_S, _RECONNECT_MAX_S = 1, 30
_CONNACK_S = 3.0  # with several brokers: no CONNACK this long after connecting, the next (brokers.Failover)


def gate_state(event: EventType) -> str:
    """The state an event puts the gate in when it is delivered (an OPEN's ``open`` lasts ``open_s``)."""
    if event is EventType.OPEN:
        return "open"
    if event is EventType.FAULT:
        return "fault"
    return "closed"


class MqttHook(Hook):
    """Events on ``<prefix>/<gate>/event``, retained state, availability with a last will, optional HA discovery."""

    kind = "mqtt"

    def __init__(
        self,
        config: MqttHookConfig,
        *,
        name: str = "mqtt",
        gate: str = "gate",
        password: str | None = None,
        clock: Callable[[], float] = time.time,
        key: str | None = None,
    ) -> None:
        # Attempts are bounded by max_age_s, not by a count: the broker may come back any moment.
        super().__init__(
            name,
            events=config.events,
            max_age_s=config.max_age_s,
            queue_size=config.queue_size,
            max_attempts=1_000_000,
            backoff_initial_s=0.1,
            backoff_max_s=2.0,
            clock=clock,
        )
        if any(c in gate for c in "+#/\0") or not gate:
            raise HookError(
                f"{name}: the gate name {gate!r} cannot be an MQTT topic level; expected no '/', '+' or '#'"
            )
        self.config = config
        self.gate = gate
        base = f"{config.topic_prefix}/{gate}"
        self.event_topic = f"{base}/event"
        self.state_topic = f"{base}/state"
        self.availability_topic = f"{base}/availability"
        self.command_topic = f"{base}/command"
        self.command_subscription = f"{base}/command/+" if config.commands_per_user else self.command_topic
        node = re.sub(r"[^A-Za-z0-9_-]", "_", f"gatekeeper_{gate}")
        self.discovery_topic = f"{config.discovery_prefix}/binary_sensor/{node}/gate/config"
        self.button_discovery_topic = f"{config.discovery_prefix}/button/{node}/open/config"
        self.door_discovery_topic = f"{config.discovery_prefix}/binary_sensor/{node}/door/config"
        self.switch_discovery_topic = f"{config.discovery_prefix}/switch/{node}/in_service/config"
        self._node = node
        self.on_command: Callable[..., Any] | None = None  # on_command(payload, retained=...); set before start() to take commands

        self._link = threading.Condition()  # connected / stopping changes wake the worker
        self._connected = False
        self._closing = False
        self._failures_in_a_row = 0
        self.last_error: str | None = None
        self.stats: MqttStats = MqttStats()
        self._unacked: tuple[str, mqtt.MQTTMessageInfo] | None = None  # an event paho holds until its PUBACK (resent on reconnecting)
        # The gate starts shut. _state is what the state topic says (republished on every connect).
        self._state: dict[str, Any] = {"state": "closed", "event": None, "id": None, "t": None, "since": round(clock(), 3), "in_service": True, "service_via": None}
        self._open_timer: threading.Timer | None = None  # ends the current OPEN's period

        client_id = config.client_id or f"gatekeeper-{gate}-{uuid.uuid4().hex[:8]}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv311, clean_session=True
        )
        if config.username is not None:
            self.client.username_pw_set(config.username, password)
        _use_tls(self.client, config, f"{key or name}.tls")  # key: where the config declares it (hooks[0]), for its errors
        # Set before connecting: the broker publishes it for us if this process dies or the link is cut.
        self.client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(_RECONNECT_MIN_S, _RECONNECT_MAX_S)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        rotation = Rotation(config.addresses, _RECONNECT_MIN_S, _RECONNECT_MAX_S)
        self._failover = Failover(self.client, rotation, keepalive_s=config.keepalive_s, lock=self._link, closing=lambda: self._closing, connack_s=_CONNACK_S)
        self.client.on_subscribe = self._on_subscribe
        self.client.message_callback_add(self.command_subscription, self._on_command_message)

    @property
    def connected(self) -> bool:
        """Whether the broker has accepted the connection (CONNACK success) and it is still up."""
        with self._link:
            return self._connected

    @property
    def broker(self) -> str:
        """``host:port`` of the broker in use, or being tried."""
        return broker_text(self._failover.rotation.current)

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the broker accepts the connection; False on timeout or when stopping."""
        with self._link:
            self._link.wait_for(lambda: self._connected or self._stopping.is_set(), timeout)
            return self._connected

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._worker is not None:
            return
        # connect_async never raises for an unreachable broker: the loop thread retries with backoff.
        self._failover.connect()
        self.client.loop_start()
        super().start()

    def stop(self) -> None:
        super().stop()
        with self._link:
            self._link.notify_all()

    def release(self) -> None:
        """Say the gate is ``closed``, then ``offline`` (a clean disconnect does not trigger the will), then disconnect."""
        with self._link:
            if self._closing:
                return
            self._closing = True
            self._cancel_open_timer()
            # Shut down, the gate is shut: nothing drives the relay any more.
            self._state = {**self._state, "state": "closed", "since": round(self._clock(), 3)}
            state = json.dumps(self._state)
            # Also when paho has the link but our on-connect has not run yet.
            connected = self._connected or self.client.is_connected()
        if connected:
            # Both QoS 1 from one client, in this order: a subscriber sees closed before offline.
            infos = [
                self.client.publish(self.state_topic, state, qos=1, retain=True),
                self.client.publish(self.availability_topic, "offline", qos=1, retain=True),
            ]
            deadline = time.monotonic() + 1.0
            for info in infos:
                if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    _wait_published(info, max(0.0, deadline - time.monotonic()))
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho callbacks (paho's network thread) ------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            # A CONNACK refusal (bad credentials, not authorised...): not connected, whatever paho does next.
            with self._link:
                self._connected = False
                self._failover.refused()
                self.last_error = f"broker {self.broker} refused the connection: {reason_code}"
            self._log.error("%s: %s", self.name, self.last_error)
            return  # paho's on_disconnect follows, and moves on
        with self._link:
            if self._closing:
                return  # release() is saying goodbye; announcing "online" now would outlive it
            # Queued before anyone can see the link as up: an "offline" from release() is
            # always queued after this "online", never before it.
            client.publish(self.availability_topic, "online", qos=1, retain=True)
            if self.config.discovery:
                client.publish(self.discovery_topic, json.dumps(self.discovery_config()), qos=1, retain=True)
                if "door" in self._state:  # a door sensor (set_door)
                    client.publish(self.door_discovery_topic, json.dumps(self.door_discovery_config()), qos=1, retain=True)
                if self.config.commands:
                    client.publish(self.button_discovery_topic, json.dumps(self.button_discovery_config()), qos=1, retain=True)
                    client.publish(self.switch_discovery_topic, json.dumps(self.switch_discovery_config()), qos=1, retain=True)
            if self.config.commands and self.on_command is not None:
                client.subscribe(self.command_subscription, qos=1)
            client.publish(self.state_topic, json.dumps(self._state), qos=1, retain=True)
            self._connected = True
            self._failures_in_a_row = 0
            replaced = self._failover.accepted()
            if replaced is not None:
                self.stats.broker_switches += 1
            self._link.notify_all()
        if replaced is None:
            self._log.info("%s: connected to %s", self.name, self.broker)
        else:
            self._log.warning("%s: switched to broker %s (from %s)", self.name, self.broker, broker_text(replaced))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        with self._link:
            self._connected = False
            if self._closing:
                return
            self.last_error = f"cannot connect to broker {self.broker}"
            plan = self._failover.lost()
        self._note_failure(plan)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._link:
            was, self._connected = self._connected, False
            ended = self._failover.ended(was, reason_code, self.last_error)
            if ended is None:
                return  # closing
            self.last_error, plan = ended
        if was:
            self._log.warning("%s: %s; %s", self.name, self.last_error, plan)
        elif plan is not None:
            self._note_failure(plan)

    def _note_failure(self, plan: str) -> None:
        """A connection attempt failed: once loudly, then quietly (an absent broker would fill the log)."""
        with self._link:
            self._failures_in_a_row += 1
            first = self._failures_in_a_row == 1
            error = self.last_error
        self._log.log(logging.WARNING if first else logging.DEBUG, "%s: %s; %s", self.name, error, plan)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        for code in reason_codes:
            if code.is_failure:  # the broker's ACL does not let this user read the command topic
                self.last_error = f"broker refused the subscription to {self.command_subscription}: {code}"
                self._log.error("%s: %s; operator commands over MQTT will not arrive", self.name, self.last_error)

    def _on_command_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self.on_command is not None:
            # retained: a command kept by the broker, which would act again at every reconnect; the controls refuse it.
            if self.config.commands_per_user:
                # The user is the topic's last level: only the broker's ACL makes that trustworthy.
                self.on_command(bytes(message.payload), retained=bool(message.retain), user=message.topic.rsplit("/", 1)[1])
            else:
                self.on_command(bytes(message.payload), retained=bool(message.retain))

    def set_door(self, state: str) -> None:
        """The door's contact (``gate.sensor``) read ``state`` (open, closed) at start: from now on
        the state topic carries ``door``, and discovery adds the door's binary sensor."""
        with self._link:
            self._state = {**self._state, "door": state, "door_since": round(self._clock(), 3)}

    def set_in_service(self, in_service: bool, via: str | None = None) -> None:
        """The service state at start (``via``: of the OUT_OF_SERVICE in force), before any event says otherwise."""
        with self._link:
            self._state = {**self._state, "in_service": in_service, "service_via": None if in_service else via}

    # -- delivery ------------------------------------------------------------------------------
    def _entity(self, key: str, **fields: Any) -> dict[str, Any]:
        """A Home Assistant discovery config: ``fields`` plus what every entity of this gate shares."""
        return {
            "unique_id": f"{self._node}_{key}",
            "object_id": f"{self._node}_{key}",
            **fields,
            "availability_topic": self.availability_topic,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {"identifiers": [self._node], "name": f"gatekeeper {self.gate}", "manufacturer": "gatekeeper"},
        }

    def _command_template(self, action: str) -> str:
        # Home Assistant renders it on each press: a fresh id and the time it was sent.
        return (
            '{"action": ' + action + ', "by": "home-assistant", "id": "ha-{{ now().timestamp() }}-{{ range(1000000) | random }}", '
            '"ts": {{ now().timestamp() }}}'
        )

    def button_discovery_config(self) -> dict[str, Any]:
        """Home Assistant MQTT discovery config of the Open button."""
        return self._entity(
            "open", name="Open", icon="mdi:gate-open", command_topic=self.command_topic, command_template=self._command_template('"open"'), qos=1, retain=False
        )

    def switch_discovery_config(self) -> dict[str, Any]:
        """Home Assistant MQTT discovery config of the In service switch (its state: the state topic's ``in_service``)."""
        return self._entity(
            "in_service",
            name="In service",
            icon="mdi:wrench-clock",
            command_topic=self.command_topic,
            command_template=self._command_template("\"{{ 'in_service' if value == 'ON' else 'out_of_service' }}\""),
            payload_on="ON",
            payload_off="OFF",
            state_topic=self.state_topic,
            value_template="{{ 'ON' if value_json.in_service else 'OFF' }}",
            state_on="ON",
            state_off="OFF",
            qos=1,
            retain=False,
        )

    def door_discovery_config(self) -> dict[str, Any]:
        """Home Assistant MQTT discovery config of the door's binary sensor (device class ``door``):
        the state topic's ``door``, ON while open; unknown while it says neither."""
        return self._entity(
            "door",
            name="Door",
            device_class="door",
            state_topic=self.state_topic,
            value_template="{{ {'open': 'ON', 'closed': 'OFF'}.get(value_json.door, 'None') }}",
        )

    def discovery_config(self) -> dict[str, Any]:
        """Home Assistant MQTT discovery config of the gate's binary sensor."""
        return self._entity(
            "gate",
            name=None,  # the entity takes the device's name
            device_class="opening",
            state_topic=self.state_topic,
            value_template="{{ 'ON' if value_json.state == 'open' else 'OFF' }}",
            json_attributes_topic=self.state_topic,
        )

    def deliver(self, delivery: Delivery, attempt: int) -> None:
        cfg = self.config
        event = delivery.event
        if not self.wait_connected(
            min(cfg.timeout_s, max(0.0, self.max_age_s - (self._clock() - delivery.created_at)))
        ):
            raise DeliveryError(f"not connected: {self.last_error or 'connecting'}")
        if self._unacked is not None and self._unacked[0] == event.id:
            info = self._unacked[1]  # an earlier attempt's message, still held by paho: wait for it, send no copy
        else:
            payload = json.dumps({**event.to_dict(), "gate": self.gate}, separators=(",", ":"))
            info = self.client.publish(self.event_topic, payload, qos=cfg.qos, retain=False)
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                # The link fell since the check above: paho keeps the message and sends it on reconnecting.
                info.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise DeliveryError(f"publish failed: {mqtt.error_string(info.rc)}")
            self._unacked = (event.id, info)
        if not _wait_published(info, cfg.timeout_s):
            raise DeliveryError(f"the broker did not acknowledge within timeout_s={cfg.timeout_s:g}")
        self._unacked = None
        self._follow(delivery)

    # -- the state topic -------------------------------------------------------------------------
    def _follow(self, delivery: Delivery) -> None:
        """Update the state topic for a delivered event (see the module's description)."""
        event = delivery.event
        now = self._clock()
        about = {"event": event.event.value, "id": event.id, "t": round(event.t, 4)}
        with self._link:
            if self._closing:
                return  # release() has said closed; nothing may follow it
            about["in_service"], about["service_via"] = self._state.get("in_service", True), self._state.get("service_via")
            if "door" in self._state:  # the door's contact: kept through the relay's changes
                about["door"], about["door_since"] = self._state["door"], self._state["door_since"]
            if event.event in DOOR_EVENTS:
                door = "closed" if event.event is EventType.CLOSED else "open"
                self._publish_state({**self._state, "door": door, "door_since": round(now, 3)})
                return
            if event.event in (EventType.OUT_OF_SERVICE, EventType.IN_SERVICE):
                # The relay is not touched: an OPEN's period runs on; only in_service changes.
                back = event.event is EventType.IN_SERVICE  # service_via: who holds it out (schedule: the opening hours)
                self._publish_state({**self._state, **about, "in_service": back, "service_via": None if back else event.via, "since": round(now, 3)})
                return
            if event.event is EventType.OPEN:
                self._cancel_open_timer()
                left = delivery.created_at + self.config.open_s - now
                state = "open" if left > 0 else "closed"  # a late OPEN: its pulse is long over
                if left > 0:
                    timer = threading.Timer(left, self._open_ended, args=(event.id,))
                    timer.daemon = True
                    self._open_timer = timer
                    timer.start()
            elif event.event in (EventType.DENY, EventType.FACE_LOST) and self._state["state"] == "open":
                return  # the relay pulse runs on; the state stays with the OPEN
            else:
                self._cancel_open_timer()
                state = gate_state(event.event)
            self._publish_state({"state": state, **about, "since": round(now, 3)})

    def _open_ended(self, event_id: str) -> None:
        """Timer thread: the OPEN's period is over, unless something newer changed the state since."""
        with self._link:
            if self._closing or self._state["id"] != event_id or self._state["state"] != "open":
                return
            self._open_timer = None
            self._publish_state({**self._state, "state": "closed", "since": round(self._clock(), 3)})

    def _publish_state(self, state: dict[str, Any]) -> None:
        """Hold ``_link``. Retained, QoS 1; while disconnected, on-connect publishes it."""
        self._state = state
        if self._connected:
            self.client.publish(self.state_topic, json.dumps(state), qos=1, retain=True)

    def _cancel_open_timer(self) -> None:
        """Hold ``_link``."""
        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None


def _use_tls(client: mqtt.Client, config: MqttHookConfig, where: str) -> None:
    """TLS on ``client`` as ``config.tls`` says (nothing when it is off); :class:`ConfigError`
    naming ``where`` for a CA, certificate or key that cannot be used."""
    context = client_context(config.tls, where)
    if context is not None:
        client.tls_set_context(context)


def _wait_published(info: mqtt.MQTTMessageInfo, timeout: float) -> bool:
    try:
        info.wait_for_publish(timeout)
        return info.is_published()
    except (RuntimeError, ValueError):  # the connection went away before the acknowledgement
        return False
