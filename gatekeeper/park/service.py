"""The park service: the journal, the state, the MQTT listener and the page, wired and run.

    service = ParkService(config, password=os.environ.get(...))
    service.start("127.0.0.1", 8090)   # raises ConfigError if it cannot listen
    ...
    service.stop()

At start the journal is pruned (``journal.keep_days``) and read back: every gate it has events
of, with its last events, its OPENs and FAULTs of the last hour and when it was last heard,
so a restarted park shows what it knew before the broker hands over what it missed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from ..users import shared_users
from ..web.access import Authenticator
from ..web.hub import EventHub
from .actions import ParkActions
from .config import ParkConfig
from .journal import ParkJournal
from .listener import ParkListener
from .metrics import ActionCounts, ParkCollector, park_registry
from .state import HOUR_S, ParkState
from .web import ParkWeb

__all__ = ["ParkService", "broker_password", "run_park"]

log = logging.getLogger("gatekeeper.park")


def broker_password(config: ParkConfig, env: dict[str, str] | None = None) -> str | None:
    """The broker password from ``broker.password_env`` (:class:`ConfigError` if it is not set)."""
    name = config.broker.password_env
    if name is None:
        return None
    value = (os.environ if env is None else env).get(name)
    if value is None:
        raise ConfigError(f"broker.password_env: the environment variable {name} is not set; expected the broker password in it")
    return value


class ParkService:
    def __init__(self, config: ParkConfig, *, password: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self.started = clock()
        self.journal = ParkJournal(config.journal.resolved_path(), clock=clock)
        self.journal.prune(self.started - config.journal.keep_days * 86400)
        self.hub = EventHub(queue_size=config.http.event_queue, history=0)
        self.state = ParkState(config.gates, recent=config.http.recent_events, on_change=lambda gate: self.hub.publish({"gate": gate}))
        self._warm()
        self.listener = ParkListener(config.broker, self.state, self.journal, password=password, clock=clock)
        self.action_counts = ActionCounts()
        self.auth = Authenticator(config.http.token, shared_users(config.http.users, "http.users"))
        self.actions = ParkActions(self.auth, self.state, self.listener.send_command, self.action_counts, wait_s=config.http.action_wait_s, clock=clock)
        self.registry = park_registry(ParkCollector(lambda: self.state.tiles(now=self._clock()), self.service_status, self.action_counts, self.auth.refusals.items))
        self.web: ParkWeb | None = None

    def _warm(self) -> None:
        """What the journal knew: each gate's last events, its hour's OPENs and FAULTs, when it was last seen."""
        for entry in self.journal.recent_each(self.config.http.recent_events):
            self.state.on_event(entry.gate, entry.entry.event.to_dict(), at=entry.entry.created_at, live=False)
        for gate, kind, at in self.journal.counts_since(self.started - HOUR_S, ("OPEN", "FAULT")):
            self.state.count_at_start(gate, kind, at)
        for gate, at in self.journal.last_seen().items():
            self.state.seen_at_start(gate, at)

    def start(self, host: str, port: int) -> None:
        self.web = ParkWeb(
            self.config.http, self.state, self.hub, self.actions, self.auth, self.registry,
            status=self.status, summary=self.summary, healthy=self.healthy, host=host, port=port,
        )
        self.web.start()
        self.listener.start()

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()
        self.listener.stop()
        self.journal.close()

    # -- what it says --------------------------------------------------------------------------
    def healthy(self) -> tuple[bool, str]:
        if not self.listener.connected:
            return False, self.listener.last_error or "connecting to the broker"
        return True, "ok"

    def service_status(self) -> dict[str, Any]:
        li = self.listener
        host, _, port = li.broker.rpartition(":")
        return {
            # host/port: the broker in use (or being tried), one of brokers
            "broker": {"host": host.strip("[]"), "port": int(port), "brokers": li.brokers, "connected": li.connected, "connects": li.connects, "switches": li.switches, "last_error": li.last_error, "topics": [t for t, _ in li.topics]},
            "messages": dict(self.listener.counts),
        }

    def summary(self) -> dict[str, Any]:
        return {"name": self.config.name, **self.state.summary(now=self._clock()), "broker_connected": self.listener.connected}

    def status(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "name": self.config.name,
            "uptime_s": round(now - self.started, 3),
            "summary": self.summary(),
            **self.service_status(),
            "journal": {"path": self.journal.path},
            "gates": self.state.tiles(now=now),
        }


def run_park(config: ParkConfig, host: str, port: int, *, password: str | None = None, stopping: threading.Event | None = None) -> None:
    """Run the park service until SIGINT/SIGTERM (or ``stopping`` is set)."""
    stopping = stopping or threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        log.info("park: received %s; stopping", signal.Signals(signum).name)
        stopping.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)
    service = ParkService(config, password=password)
    try:
        service.start(host, port)
        stopping.wait()
    finally:
        service.stop()
