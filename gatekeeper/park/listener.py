"""The park's MQTT client (paho-mqtt 2.x): every gate's topics in, operator commands out.

Subscribed at QoS 1 to ``<prefix>/+/event``, ``<prefix>/+/state`` and ``<prefix>/+/availability``
in a persistent session (``clean_session`` false, a fixed client id): while the park service is
stopped or cut off, the broker keeps the gates' events for it and delivers them when it comes
back. An event is acknowledged (PUBACK, paho's manual ack) only once the park journal has it, so
a park killed between the two gets it again, and the journal's unique id keeps it once. A journal
that cannot write leaves the event unacknowledged; the client reconnects after ``retry_s`` so the
broker delivers it again.

With ``broker.brokers`` (a cluster's nodes) the listener moves to the next node when the one in use
is lost, as the gates' MQTT hook does (:class:`~gatekeeper.hooks.brokers.Failover`: the next node at
once, a backoff only after a whole round; no CONNACK within ``_CONNACK_S``, the next). Its client id
and ``clean_session`` false go with it, so the session, and the events the broker keeps in it, are
picked up on the next node; one log line and one count (``switches``) per switch. The events are
subscribed apart from the retained topics, and a refused subscription is asked again every
``retry_s``: NATS refuses the retained topics for a while after a node loss, and took the events'
subscription down with them when they shared a SUBSCRIBE.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from ..errors import JournalError
from ..hooks.brokers import Failover, Rotation, broker_text
from .config import ParkBrokerConfig
from .journal import ParkJournal
from .state import ParkState
from .wire import BufferedClient

__all__ = ["ParkListener"]

log = logging.getLogger("gatekeeper.park")

_KINDS = ("event", "state", "availability")
_CONNACK_S = 5.0  # with several brokers: no CONNACK this long after connecting, the next (a resumed session takes longer than a new one)


class ParkListener:
    """Feeds :class:`ParkState` and :class:`ParkJournal` from the broker; publishes commands.

    ``clock``: the wall clock stamped on what arrives (tests pass their own).
    """

    def __init__(
        self,
        config: ParkBrokerConfig,
        state: ParkState,
        journal: ParkJournal,
        *,
        password: str | None = None,
        clock: Callable[[], float] = time.time,
        retry_s: float = 1.0,
    ) -> None:
        self.config = config
        self.state = state
        self.journal = journal
        self._clock = clock
        self._retry_s = retry_s
        self.prefix = config.topic_prefix
        self._lock = threading.Lock()
        self.connected = False
        self._closing = False
        self.connects = 0
        self.switches = 0  # connections accepted by another broker than the last one
        self.last_error: str | None = None
        self.counts = {"journaled": 0, "duplicates": 0, "malformed": 0, "journal_errors": 0, "messages": 0}
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2, client_id=config.client_id, protocol=MQTTProtocolVersion.MQTTv311, clean_session=False, manual_ack=True
        )
        if config.username is not None:
            self.client.username_pw_set(config.username, password)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._subscribing: dict[int, list[tuple[str, int]]] = {}  # SUBSCRIBE mid -> its topics
        self._failover = Failover(self.client, Rotation(config.addresses, 1, 30), keepalive_s=config.keepalive_s, lock=self._lock, closing=lambda: self._closing, connack_s=_CONNACK_S)

    @property
    def broker(self) -> str:
        """``host:port`` of the broker in use, or being tried."""
        return broker_text(self._failover.rotation.current)

    @property
    def brokers(self) -> list[str]:
        return [broker_text(b) for b in self._failover.rotation.brokers]

    @property
    def topics(self) -> list[tuple[str, int]]:
        return [(f"{self.prefix}/+/{kind}", 1) for kind in _KINDS]

    def start(self) -> None:
        self._failover.connect()
        self.client.loop_start()

    def stop(self) -> None:
        with self._lock:
            self._closing = True
        self.client.disconnect()
        self.client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected:
                return True
            time.sleep(0.02)
        return self.connected

    # -- paho's thread -------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            with self._lock:
                self._failover.refused()
                self.last_error = f"broker {self.broker} refused the connection: {reason_code}"
            log.error("park: %s", self.last_error)
            return  # paho's on_disconnect follows, and moves on
        # Subscribed every time: a broker that lost the session (restarted without persistence) has
        # forgotten them. The events on their own: NATS may refuse the retained topics for a while
        # after a node loss, and a refused SUBSCRIBE must not take the events' subscription with it.
        self._subscribe(self.topics[:1])
        self._subscribe(self.topics[1:])
        with self._lock:
            self.connected = True
            self.connects += 1
            self.last_error = None
            replaced = self._failover.accepted()
            self.switches += replaced is not None
        session = f"session {self.config.client_id}, {'resumed' if flags.session_present else 'new'}"
        if replaced is None:
            log.info("park: connected to %s (%s)", self.broker, session)
        else:
            log.warning("park: switched to broker %s (from %s; %s)", self.broker, broker_text(replaced), session)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        with self._lock:
            self.connected = False
            if self._closing:
                return
            self.last_error = f"cannot connect to broker {self.broker}"
            plan = self._failover.lost()
        log.log(self._failure_level(), "park: %s; %s", self.last_error, plan)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._lock:
            was, self.connected = self.connected, False
            ended = self._failover.ended(was, reason_code, self.last_error)
            if ended is None:
                return  # stopping
            self.last_error, plan = ended
        if plan is not None:
            log.log(logging.WARNING if was else self._failure_level(), "park: %s; %s", self.last_error, plan)

    def _failure_level(self) -> int:
        """An attempt failed: loudly the first since the last connection, then quietly (an absent broker would fill the log)."""
        return logging.WARNING if self._failover.rotation.failures <= 1 else logging.DEBUG

    def _subscribe(self, topics: list[tuple[str, int]]) -> None:
        with self._lock:
            if self._closing:
                return
            _, mid = self.client.subscribe(topics)
            self._subscribing[mid] = topics

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        with self._lock:
            topics = self._subscribing.pop(mid, [])
        failed = [(topic, code) for (topic, _), code in zip(topics, reason_codes, strict=False) if code.is_failure]
        if not failed:
            return
        # NATS refuses a subscription while its cluster elects a JetStream leader (a node lost):
        # without it the session would get nothing on that topic, so ask again until it is granted.
        self.last_error = f"broker {self.broker} refused the subscription to {', '.join(t for t, _ in failed)}: {failed[0][1]}"
        log.warning("park: %s; subscribing again in %g s", self.last_error, self._retry_s)
        timer = threading.Timer(self._retry_s, self._subscribe_again, args=([(t, 1) for t, _ in failed],))
        timer.daemon = True
        timer.start()

    def _subscribe_again(self, topics: list[tuple[str, int]]) -> None:
        if self.connected:  # else the next connection subscribes anyway
            self._subscribe(topics)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            acked = self._handle(message)
        except Exception:  # a bug must not end paho's thread: log it, and take the message as read
            log.exception("park: message on %s could not be handled", message.topic)
            acked = True
        if acked and message.qos > 0:
            client.ack(message.mid, message.qos)

    def _handle(self, message: mqtt.MQTTMessage) -> bool:
        """Take one message; False when it must not be acknowledged (the journal did not take it)."""
        self.counts["messages"] += 1
        gate, kind = _split(message.topic, self.prefix)
        if gate is None:
            return True
        now = self._clock()
        text = bytes(message.payload).decode("utf-8", "replace")
        if kind == "availability":
            self.state.on_availability(gate, text.strip(), at=now, retained=bool(message.retain))
            return True
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        except ValueError as exc:
            if text:  # an empty retained message clears a topic; nothing to say
                self._malformed(message.topic, str(exc))
            return True
        if kind == "state":
            self.state.on_state(gate, data, at=now, retained=bool(message.retain))
            return True
        try:
            new = self.journal.record(gate, data)
        except ValueError as exc:
            self._malformed(message.topic, str(exc))
            return True
        except JournalError as exc:
            self.counts["journal_errors"] += 1
            log.error("park: %s; the event stays with the broker, reconnecting in %.0f s to have it again", exc, self._retry_s)
            threading.Timer(self._retry_s, self._reconnect).start()
            return False
        if new:
            self.counts["journaled"] += 1
            self.state.on_event(gate, data, at=now)
        else:
            self.counts["duplicates"] += 1
        return True

    def _malformed(self, topic: str, why: str) -> None:
        self.counts["malformed"] += 1
        log.warning("park: a message on %s is not what a gate publishes (%s); ignored", topic, why)

    def _reconnect(self) -> None:
        try:
            self.client.reconnect()
        except (OSError, ValueError) as exc:
            log.warning("park: reconnect failed: %s; paho retries", exc)

    # -- commands ------------------------------------------------------------------------------
    def command_topic(self, gate: str) -> str:
        return f"{self.prefix}/{gate}/command"

    def send_command(self, gate: str, action: str, by: str, reason: str | None) -> dict[str, Any]:
        """Publish the gate's MQTT command (QoS 1, not retained) and wait for the broker's PUBACK;
        the command as sent, or :class:`RuntimeError` saying why it was not acknowledged."""
        command = {"action": action, "by": by, "reason": reason, "id": uuid.uuid4().hex, "ts": round(self._clock(), 3)}
        if reason is None:
            del command["reason"]
        info = self.client.publish(self.command_topic(gate), json.dumps(command), qos=1, retain=False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish failed: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(self.config.timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise RuntimeError(f"the broker connection went away: {exc}") from None
        if not info.is_published():
            raise RuntimeError(f"the broker did not acknowledge within broker.timeout_s={self.config.timeout_s:g}")
        return command


def _split(topic: str, prefix: str) -> tuple[str | None, str]:
    """``(gate, kind)`` of ``<prefix>/<gate>/<kind>``; gate None for another topic.

    >>> _split("park/lane1/event", "park"), _split("park/a/b/event", "park")
    (('lane1', 'event'), (None, 'event'))
    """
    head, _, kind = topic.rpartition("/")
    pre, _, gate = head.rpartition("/")
    if pre != prefix or kind not in _KINDS or not gate:
        return None, kind
    return gate, kind
