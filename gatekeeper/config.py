"""One config object, declared as typed dataclasses, validated once at start.

Every field has a type, a default and a one-line description (``doc``), optionally bounds
(``ge``/``le``/``gt``). Unknown keys and wrong types are errors that name the key path::

    ConfigError: gate.hold_frames: expected an integer >= 1, got 'six' (str)

``config.yaml`` at the repository root documents every key with its default; a test keeps it
equal to the defaults declared here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import ConfigError
from .gate import GateConfig
from .hooks.config import HOOK_TYPES, HookConfig
from .schema import bounds_text, check_bounds, opt

__all__ = ["Config", "HttpConfig", "config_from_dict", "config_to_dict", "load_config"]


@dataclass(frozen=True)
class SourceConfig:
    realtime: bool = opt(False, "replay files at their own frame rate instead of as fast as possible")
    width: int | None = opt(None, "camera: requested frame width in pixels (null: the camera's default)", ge=16)
    height: int | None = opt(None, "camera: requested frame height in pixels (null: the camera's default)", ge=16)
    reconnect_initial_s: float = opt(0.5, "live sources: first wait before reconnecting after a failure", gt=0)
    reconnect_max_s: float = opt(10.0, "live sources: longest wait between reconnect attempts (exponential backoff)", gt=0)
    watchdog_s: float = opt(2.0, "live sources: no frame for this long raises a FAULT and holds the gate shut", gt=0)
    max_reconnects: int | None = opt(None, "live sources: give up after this many failed reconnects in a row (null: never)", ge=0)


@dataclass(frozen=True)
class DetectorConfig:
    model_path: str | None = opt(None, "face detector .tflite; null: $GATEKEEPER_FACE_MODEL, then the user cache, then a download")
    download: bool = opt(True, "allow the checked download of the official model when no file is found")
    min_confidence: float = opt(0.7, "detections below this confidence are ignored", ge=0, le=1)
    min_face_px: float = opt(40.0, "faces narrower than this (pixels) are ignored: too far away to judge", ge=0)


@dataclass(frozen=True)
class ClassifierConfig:
    model_path: str | None = opt(None, "smile model .tflite with its model card beside it; null: the model shipped in model/")
    threads: int = opt(1, "CPU threads for the smile model", ge=1, le=64)


@dataclass(frozen=True)
class JournalConfig:
    path: str | None = opt(None, "SQLite event journal (WAL); null: $XDG_STATE_HOME/gatekeeper/journal.sqlite3 (~/.local/state/...)")
    enabled: bool = opt(True, "write every event to the journal before any hook sees it")
    keep_days: float = opt(30.0, "events older than this many days are deleted from the journal at start", gt=0)

    def resolved_path(self) -> Path:
        """Where the journal lives: ``path``, else the user's state directory."""
        if self.path:
            return Path(self.path).expanduser()
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        return Path(base) / "gatekeeper" / "journal.sqlite3"


@dataclass(frozen=True)
class HttpConfig:
    token: str | None = opt(None, "bearer token for the live view, /status and /metrics; required to listen beyond loopback (16+ characters)")
    jpeg_quality: int = opt(80, "JPEG quality of the live picture (1-100)", ge=1, le=100)
    max_fps: float = opt(15.0, "most pictures per second sent to each live view", gt=0, le=60)
    event_queue: int = opt(64, "events waiting for one slow live-view client; beyond it the oldest is dropped", ge=1)
    recent_events: int = opt(20, "recent events a newly opened live view starts with", ge=0, le=1000)

    def __post_init__(self) -> None:
        check_bounds(self)  # HttpConfig(max_fps=0) built in code fails as a file would
        # A short token on a network-facing camera view is no protection; say so at start.
        if self.token is not None and len(self.token) < 16:
            raise ValueError(f"token: expected at least 16 characters, got {len(self.token)}")


#: Fields whose values are secrets: ``--check-config`` prints them masked.
SECRET_FIELDS = frozenset({"secret", "token"})
REDACTED = "<redacted>"


@dataclass(frozen=True)
class Config:
    name: str = opt("gate", "the gate's name, used in MQTT topics and webhook payloads")
    source: SourceConfig = opt(SourceConfig(), "where frames come from")
    detector: DetectorConfig = opt(DetectorConfig(), "face detection")
    classifier: ClassifierConfig = opt(ClassifierConfig(), "smile classification")
    gate: GateConfig = opt(GateConfig(), "when the gate opens")
    journal: JournalConfig = opt(JournalConfig(), "the event journal")
    http: HttpConfig = opt(HttpConfig(), "the live view and metrics server (on with --http HOST:PORT)")
    hooks: tuple[HookConfig, ...] = opt((), "where events go besides stdout: a list of hooks, each with a 'type'")


# -- validation ----------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _convert(tp: Any, value: Any, path: str, meta: dict[str, Any]) -> Any:
    if tp is HookConfig:
        return _hook(value, path)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{path}: expected a value, got null")
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, path, meta)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{path}: expected one of {', '.join(map(repr, choices))}, got {_describe(value)}")
        return value
    if origin is tuple:
        (inner, _) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
        return tuple(_convert(inner, v, f"{path}[{i}]", {}) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping of keys, got {_describe(value)}")
        return _build(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_describe(value)}")
        return value
    if tp in (int, float):
        ok = isinstance(value, int) if tp is int else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            kind = "an integer" if tp is int else "a number"
            raise ConfigError(f"{path}: expected {kind} {bounds_text(meta)}".rstrip() + f", got {_describe(value)}")
        value = tp(value)
        if math.isnan(value) or ("ge" in meta and value < meta["ge"]) or ("gt" in meta and value <= meta["gt"]) or ("le" in meta and value > meta["le"]):
            raise ConfigError(f"{path}: expected a value {bounds_text(meta)}, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")  # a bug in the schema, not the file


def _hook(value: Any, path: str) -> HookConfig:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'type' key, got {_describe(value)}")
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in HOOK_TYPES:
        raise ConfigError(f"{path}.type: expected one of {', '.join(map(repr, sorted(HOOK_TYPES)))}, got {_describe(kind)}")
    return _build(HOOK_TYPES[kind], value, path)


def _build(cls: type, data: dict[str, Any], path: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(data) - set(fields)))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key; expected one of {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        kwargs[name] = _convert(hints[name], value, f"{path}.{name}" if path else name, dict(f.metadata))
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"{path + '.' if path else ''}{missing[0]}: required key is missing") from None
        raise ConfigError(f"{path or 'config'}: {exc}") from None
    except ValueError as exc:  # cross-field rules in __post_init__
        raise ConfigError(f"{path or 'config'}: {exc}") from None
    return obj


def config_from_dict(data: dict[str, Any] | None) -> Config:
    """Validate a parsed mapping into a :class:`Config`; raises :class:`ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping of keys at the top level, got {_describe(data)}")
    return _build(Config, data, "")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (YAML would keep the last)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)):
            continue  # complex keys are rejected later as unknown keys
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_config(path: Path | str | None) -> Config:
    """Read and validate a YAML config file; ``None`` gives the built-in defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist; expected a YAML file (see config.yaml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {str(p)!r} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return config_from_dict(data)


def config_to_dict(cfg: Any, *, redact: bool = False) -> Any:
    """The effective values as plain data (for ``--check-config`` and tests).

    ``redact=True`` replaces every set secret (see :data:`SECRET_FIELDS`) with ``<redacted>``,
    so the output can be pasted into a ticket.
    """
    if dataclasses.is_dataclass(cfg):
        out = {}
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name)
            secret = redact and f.name in SECRET_FIELDS and value is not None
            out[f.name] = REDACTED if secret else config_to_dict(value, redact=redact)
        return out
    if isinstance(cfg, tuple):
        return [config_to_dict(v, redact=redact) for v in cfg]
    return cfg
