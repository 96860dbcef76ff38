"""The park service's configuration: a YAML file of its own (``gatekeeper park --config park.yaml``),
declared as typed dataclasses with :func:`~gatekeeper.schema.opt` and validated by the project's
reader (:func:`~gatekeeper.config_load.read_yaml`, :func:`~gatekeeper.config_values.build`), so an
unknown key or a wrong type is one error naming the key path::

    ConfigError: broker.port: expected an integer >= 1 and <= 65535, got 'x' (str)

``examples/park.yaml`` documents every key with its default; a test keeps it equal to
:func:`render`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import JournalConfig
from ..config_doc import _scalar
from ..config_load import read_yaml
from ..config_values import build, describe
from ..errors import ConfigError
from ..hooks.brokers import BrokerKeys
from ..schema import check_bounds, opt

__all__ = ["PARK_EXAMPLE", "ParkBrokerConfig", "ParkConfig", "ParkHttpConfig", "ParkJournalConfig", "load_park_config", "park_config_from_dict", "render"]

#: The documented park config, beside the gate's examples.
PARK_EXAMPLE = "examples/park.yaml"

_GATE_RE = re.compile(r"^[^/+#\s\x00]{1,64}$")


def _check_prefix(topic: str) -> None:
    if not topic or topic.startswith("/") or topic.endswith("/") or "//" in topic or any(c in topic for c in "+#\0"):
        raise ValueError(f"topic_prefix: expected topic levels separated by single '/', without '+' or '#', got {topic!r}")


@dataclass(frozen=True)
class ParkBrokerConfig(BrokerKeys):
    host: str = opt("127.0.0.1", "broker host (a node of the park's broker cluster)")
    port: int = opt(1883, "broker port", ge=1, le=65535)
    brokers: tuple[str, ...] | None = opt(
        None, "the cluster's nodes as [host:port, ...] instead of host and port: tried in order, the next when one is lost, the persistent session kept (null: host:port alone)"
    )
    username: str | None = opt(None, "broker user name")
    password_env: str | None = opt(None, "name of an environment variable holding the broker password")
    client_id: str = opt("gatekeeper-park", "MQTT client id, fixed: the broker keeps this persistent session's queue while the park service is away")
    topic_prefix: str = opt("gatekeeper", "the gates' topic_prefix: the park reads <prefix>/+/event, /state and /availability, and writes <prefix>/<gate>/command")
    keepalive_s: int = opt(30, "MQTT keepalive", ge=5)
    timeout_s: float = opt(5.0, "how long an action waits for the broker to acknowledge its command", gt=0)

    def __post_init__(self) -> None:
        check_bounds(self)
        self._check_brokers()
        if not self.client_id.strip():
            raise ValueError("client_id: expected a fixed client id (the persistent session is named by it), got an empty string")
        _check_prefix(self.topic_prefix)
        if self.password_env is not None and self.username is None:
            raise ValueError("password_env is set but username is not; expected both or neither")


@dataclass(frozen=True)
class ParkJournalConfig:
    path: str | None = opt(None, "SQLite park journal (WAL); null: $XDG_STATE_HOME/gatekeeper/park.sqlite3 (~/.local/state/...)")
    keep_days: float = opt(90.0, "events older than this many days are deleted at start", gt=0)

    def __post_init__(self) -> None:
        check_bounds(self)

    def resolved_path(self) -> Path:
        """Where the park journal lives: ``path``, else beside a gate's default journal."""
        if self.path:
            return Path(self.path).expanduser()
        return JournalConfig().resolved_path().with_name("park.sqlite3")


@dataclass(frozen=True)
class ParkHttpConfig:
    token: str | None = opt(None, "bearer token (an admin credential that names nobody) for the page, /status, /metrics and actions; 16+ characters")
    users: str | None = opt(None, "users file (gatekeeper users add): viewers see the page, operators and admins act as themselves; a token or users are needed to act or listen beyond loopback")
    recent_events: int = opt(5, "last events shown on each gate's tile", ge=1, le=100)
    event_queue: int = opt(1024, "gate changes waiting for one slow page; beyond it the oldest are dropped (the page catches up within resync_s)", ge=1)
    resync_s: float = opt(2.0, "how often each page is sent the tiles that changed without an event (an hour's OPENs ageing out)", gt=0, le=60)
    action_wait_s: float = opt(2.0, "how long an action waits for the gate's event before answering 202 (sent, not yet seen)", ge=0, le=30)

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.token is not None and len(self.token) < 16:
            raise ValueError(f"token: expected at least 16 characters, got {len(self.token)}")


@dataclass(frozen=True)
class ParkConfig:
    name: str = opt("park", "the park's name, on its page and in /status")
    broker: ParkBrokerConfig = opt(ParkBrokerConfig(), "the broker (cluster) every gate publishes to")
    journal: ParkJournalConfig = opt(ParkJournalConfig(), "the park's own audit trail of every gate's events")
    http: ParkHttpConfig = opt(ParkHttpConfig(), "the page, /status, /metrics and actions (on with --http HOST:PORT)")
    gates: tuple[str, ...] = opt((), "gates the park expects (their MQTT names): shown as 'never seen' until they speak; others are added as they appear")

    def __post_init__(self) -> None:
        for i, gate in enumerate(self.gates):
            if not _GATE_RE.match(gate):
                raise ValueError(f"gates[{i}]: expected a gate's MQTT name (1 to 64 characters, no '/', '+', '#' or space), got {gate!r}")
        if len(set(self.gates)) != len(self.gates):
            twice = next(g for g in self.gates if self.gates.count(g) > 1)
            raise ValueError(f"gates: {twice!r} is listed twice; expected each gate once")


def park_config_from_dict(data: Any) -> ParkConfig:
    """Validate a parsed mapping into a :class:`ParkConfig`; raises :class:`ConfigError`."""
    if data is None:
        return ParkConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"park config: expected a mapping of keys at the top level, got {describe(data)}")
    return build(ParkConfig, data, "")


def load_park_config(path: Path | str | None) -> ParkConfig:
    """Read and validate a park config file; ``None`` gives the defaults."""
    if path is None:
        return ParkConfig()
    return park_config_from_dict(read_yaml(path, what="park config file", example=PARK_EXAMPLE))


HEADER = """\
# gatekeeper park: every key, its default, and what it does (gatekeeper park --config park.yaml).
# Generated from the code by `python -m gatekeeper.park.config`; a test keeps the two equal.
# Unknown keys and wrong types are errors that name the key. The gates publish with an MQTT hook
# whose topic_prefix is broker.topic_prefix here (commands: true for actions from the park).
"""


def _lines(obj: Any, indent: int) -> list[str]:
    import dataclasses

    out: list[str] = []
    for f in dataclasses.fields(obj):
        value, doc, pad = getattr(obj, f.name), f.metadata.get("doc", ""), "  " * indent
        if dataclasses.is_dataclass(value):
            out += [f"{pad}{f.name}:  # {doc}", *_lines(value, indent + 1)]
        else:
            out.append(f"{pad}{f.name}: {_scalar(value)}  # {doc}")
    return out


def render() -> str:
    """The documented default park config (``examples/park.yaml``)."""
    return HEADER + "\n".join(_lines(ParkConfig(), 0)) + "\n"


if __name__ == "__main__":
    print(render(), end="")
