"""The opening hours on the MQTT state topic, against a real mosquitto: a real Camera (stand-in
models) with ``service.hours``, its SQLite journal and the real MqttHook. The retained state's
``in_service`` and ``service_via`` follow the schedule's events and staff's, and a gate restarted
in the closed stretch says so from its first connection, before any event."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from standin import StandInPipeline

from gatekeeper.actions import Controls
from gatekeeper.camera import Camera
from gatekeeper.capture import Frame
from gatekeeper.config import Config, JournalConfig
from gatekeeper.events import Action
from gatekeeper.gate import Gate
from gatekeeper.hooks import Dispatcher, MqttHook, MqttHookConfig
from gatekeeper.hours import Hours, ServiceConfig
from gatekeeper.journal import Journal

PREFIX = "gk"
STATE = f"{PREFIX}/front/state"
HOURS = Hours.from_config({"timezone": "Europe/Paris", "week": {"mon-fri": "09:00-18:00"}})


def at(*when: int) -> float:
    return datetime(*when, tzinfo=ZoneInfo("Europe/Paris")).timestamp()  # type: ignore[misc]


class Gatehouse:
    """A camera named front following HOURS on a clock the test sets, its hook on the broker."""

    def __init__(self, tmp_path: Path, port: int, clock: list[float]) -> None:
        cfg = Config(name="front", journal=JournalConfig(path=str(tmp_path / "journal.sqlite3")), service=ServiceConfig(hours=HOURS))
        self.journal = Journal(cfg.journal.resolved_path(), clock=lambda: clock[0])
        self.hook = MqttHook(MqttHookConfig(host="127.0.0.1", port=port, topic_prefix=PREFIX), name="broker", gate="front")
        self.dispatcher = Dispatcher(self.journal, [self.hook], camera="front")
        self.camera = Camera("front", cfg, StandInPipeline(Gate()), dispatcher=self.dispatcher, controls=Controls(), clock=lambda: clock[0])  # type: ignore[arg-type]
        out = self.camera.gate.out_of_service  # as the service wires a camera (gatekeeper.app)
        self.camera.controls.attach(self.dispatcher.hooks, in_service=out is None, via=None if out is None else out.via)
        self.dispatcher.start()
        assert self.hook.wait_connected(5)
        self.frame = 0

    def turn(self) -> None:
        self.camera.step(Frame(np.zeros((48, 64, 3), np.uint8), self.frame, self.frame / 10))
        self.frame += 1

    def close(self) -> None:
        self.camera.close(2.0)


def states(live: Any) -> list[tuple[bool, str | None, str | None]]:
    return [(m.json["in_service"], m.json["service_via"], m.json["event"]) for m in live.on(STATE) if m.payload]


def test_the_state_topic_says_who_holds_the_gate_out(broker: Any, subscribe: Any, tmp_path: Path) -> None:
    live = subscribe(broker.port, (STATE,))
    clock = [at(2026, 12, 14, 7, 0)]  # a Monday before opening
    gate = Gatehouse(tmp_path, broker.port, clock)
    try:
        gate.turn()
        live.wait_for(lambda m: m.json["event"] == "OUT_OF_SERVICE")
        clock[0] = at(2026, 12, 14, 9, 0)
        gate.turn()
        live.wait_for(lambda m: m.json["event"] == "IN_SERVICE")
        gate.camera.controls.submit(Action("out_of_service", "maria", "http"))
        gate.turn()
        live.wait_for(lambda m: m.json["event"] == "OUT_OF_SERVICE" and m.json["service_via"] == "http")
        clock[0] = at(2026, 12, 14, 18, 0)  # closing: the schedule takes the gate over
        gate.turn()
        live.wait_for(lambda m: m.json["event"] == "OUT_OF_SERVICE", n=3)
    finally:
        gate.close()
    assert states(live)[1:5] == [  # after the state on connect, before the one of the shutdown
        (False, "schedule", "OUT_OF_SERVICE"),
        (True, None, "IN_SERVICE"),
        (False, "http", "OUT_OF_SERVICE"),
        (False, "schedule", "OUT_OF_SERVICE"),
    ]


def test_a_gate_restarted_while_closed_says_so_on_connect(broker: Any, subscribe: Any, tmp_path: Path) -> None:
    clock = [at(2026, 12, 14, 20, 0)]
    first = Gatehouse(tmp_path, broker.port, clock)
    first.turn()
    first.close()
    first.journal.close()
    subscribe(broker.port, ()).publish(STATE, b"", retain=True)  # forget what the first run left
    clock[0] = at(2026, 12, 14, 22, 0)
    second = Gatehouse(tmp_path, broker.port, clock)
    try:
        late = subscribe(broker.port, (STATE,))
        (state,) = late.wait_for(lambda m: bool(m.payload))
        assert (state.json["in_service"], state.json["service_via"], state.json["event"]) == (False, "schedule", None)  # before any event
        second.turn()
        assert [e.event.event.value for e in second.journal.entries()] == ["OUT_OF_SERVICE"]  # no second one
    finally:
        second.close()
