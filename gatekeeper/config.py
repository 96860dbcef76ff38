"""One config object, declared as typed dataclasses, validated once at start.

Every field has a type, a default and a one-line description (``doc``), optionally bounds
(``ge``/``le``/``gt``). Unknown keys and wrong types are errors that name the key path::

    ConfigError: gate.hold_frames: expected an integer >= 1, got 'six' (str)

``config.yaml`` at the repository root documents every key with its default; a test keeps it
equal to the defaults declared here.

A config file is small and written by hand, so the reader refuses what only a mistake or an
attack produces, each in one line: a file over :data:`MAX_CONFIG_BYTES`, more than
:data:`MAX_CONFIG_NODES` keys and values (counted with YAML aliases expanded, so an alias bomb
is refused in milliseconds instead of filling memory), or nesting deeper than
:data:`MAX_CONFIG_DEPTH`. Anchors and aliases within those bounds work as YAML says.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .actions import ActionsConfig
from .errors import ConfigError
from .gate import GateConfig
from .hooks.config import HOOK_TYPES, GpioHookConfig, HookConfig
from .motion import MotionConfig
from .redact import REDACTED, redact_text
from .schema import MAX_CAMERA_INDEX, bounds_text, check_bounds, check_number, check_url, opt

__all__ = ["CameraConfig", "Config", "HttpConfig", "config_from_dict", "config_to_dict", "load_config", "redact_text"]

log = logging.getLogger(__name__)

#: Largest config file read, in bytes. The documented config.yaml with every key is about 7 KB.
MAX_CONFIG_BYTES = 1 << 20
#: Most YAML nodes (keys, values, list items) in a config once aliases are expanded.
MAX_CONFIG_NODES = 10_000
#: Deepest nesting of mappings and lists (a hook's event list is at depth 4).
MAX_CONFIG_DEPTH = 32


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
    model_path: str | None = opt(None, "face detector .tflite; null: $GATEKEEPER_FACE_MODEL, then the model shipped in the package")
    download: bool | None = opt(None, "deprecated, ignored: nothing is ever downloaded (the model ships in the package); accepted so older configs load")
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
    on_error: Literal["fail_closed", "deliver"] = opt(
        "fail_closed",
        "when the journal cannot write (full disk): fail_closed holds the gate shut (FAULT) until it can; "
        "deliver keeps opening and delivers OPENs without a record",
    )

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


#: A camera's name: a URL path segment, an MQTT topic level and a metric label as it is.
CAMERA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Keys of one entry of ``cameras:``; exactly one of the first three.
CAMERA_SOURCES = ("camera", "url", "video")
CAMERA_KEYS = (*CAMERA_SOURCES, "zone", "gate", "hooks")


@dataclass(frozen=True)
class CameraConfig:
    """One camera of ``cameras:``, with the top-level defaults already applied.

    ``gate`` is the top-level ``gate:`` with the camera's overrides (and its ``zone``), ``hooks``
    the camera's own list or, without one, the top-level ``hooks:``. A one-camera run
    (``--camera``, ``--url``, ``--video``) is one of these without a source, named by ``name:``.
    """

    name: str
    camera: int | None = None
    url: str | None = None
    video: str | None = None
    gate: GateConfig = GateConfig()
    hooks: tuple[HookConfig, ...] = ()

    @property
    def target(self) -> int | str | None:
        """The live source (a camera index or a URL), or None for a video file or no source."""
        return self.camera if self.camera is not None else self.url


@dataclass(frozen=True)
class Config:
    name: str = opt("gate", "the gate's name, used in MQTT topics and webhook payloads")
    source: SourceConfig = opt(SourceConfig(), "where frames come from")
    detector: DetectorConfig = opt(DetectorConfig(), "face detection")
    motion: MotionConfig = opt(MotionConfig(), "when the face detector runs: only on frames that changed, slower while nobody is in view")
    classifier: ClassifierConfig = opt(ClassifierConfig(), "smile classification")
    gate: GateConfig = opt(GateConfig(), "when the gate opens")
    journal: JournalConfig = opt(JournalConfig(), "the event journal")
    http: HttpConfig = opt(HttpConfig(), "the live view and metrics server (on with --http HOST:PORT)")
    cameras: tuple[CameraConfig, ...] = opt((), "several cameras in one process: a mapping of camera name to its source and overrides")
    hooks: tuple[HookConfig, ...] = opt((), "where events go besides stdout: a list of hooks, each with a 'type'")
    actions: ActionsConfig = opt(ActionsConfig(), "operator controls: open by hand, out of service, in service (page, HTTP, MQTT, a staff button)")

    def camera_list(self) -> tuple[CameraConfig, ...]:
        """The cameras to run: those of ``cameras:``, else one named by ``name:`` without a source
        (the command line gives it: ``--camera``, ``--url`` or ``--video``)."""
        return self.cameras or (CameraConfig(self.name, gate=self.gate, hooks=self.hooks),)

    def for_camera(self, camera: CameraConfig) -> Config:
        """The config one camera runs under: ``name`` is the camera's, ``gate`` and ``hooks`` its own."""
        return dataclasses.replace(self, name=camera.name, gate=camera.gate, hooks=camera.hooks, cameras=())


# -- validation ----------------------------------------------------------------------------------


def _describe(value: Any, limit: int = 80) -> str:
    """The value as an error message shows it: its repr, cut to ``limit`` characters, and its type."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} ({type(value).__name__})"


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
        problem = check_number(path.rpartition(".")[2], value, meta)  # the key's own name says whether it is a duration
        if problem is not None:
            raise ConfigError(f"{path}: {problem}")
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
    data = dict(data)
    cameras = data.pop("cameras", None)
    cfg: Config = _build(Config, data, "")
    if cameras is not None:
        cfg = dataclasses.replace(cfg, cameras=_cameras(cameras, cfg))
        if len(cfg.cameras) > 1 and cfg.actions.button.pin is not None:
            names = ", ".join(c.name for c in cfg.cameras)
            raise ConfigError(f"actions.button.pin: one staff button cannot say which of {len(cfg.cameras)} cameras ({names}) to open; expected null with several cameras (open each from its page, HTTP or MQTT)")
    if cfg.detector.download is not None:
        log.warning("detector.download is deprecated and ignored: gatekeeper never downloads a model (the face detector ships in the package); remove the key")
    return cfg


def _cameras(data: Any, top: Config) -> tuple[CameraConfig, ...]:
    """``cameras:``: name -> source, zone and overrides of ``gate:`` and ``hooks:``, checked as a set."""
    if not isinstance(data, dict):
        raise ConfigError(f"cameras: expected a mapping of camera names to cameras, got {_describe(data)}")
    cameras: list[CameraConfig] = []
    seen: dict[str, str] = {}
    for name, value in data.items():
        path = f"cameras.{name}"
        if not isinstance(name, str) or not CAMERA_NAME.match(name):
            raise ConfigError(f"cameras: camera name {_describe(name)} is not usable; expected 1 to 64 of A-Z a-z 0-9 _ -")
        if name.lower() in seen:
            raise ConfigError(f"{path}: duplicate camera name (cameras.{seen[name.lower()]} already has it; names are compared without case)")
        seen[name.lower()] = name
        cameras.append(_camera(name, value, path, top))
    _check_sources_unique(cameras)
    _check_relays_unique(cameras, top)
    return tuple(cameras)


def _camera(name: str, value: Any, path: str, top: Config) -> CameraConfig:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping with one of {', '.join(CAMERA_SOURCES)}, got {_describe(value)}")
    unknown = sorted(map(str, set(value) - set(CAMERA_KEYS)))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown camera key; expected one of {', '.join(CAMERA_KEYS)}")
    given = [k for k in CAMERA_SOURCES if value.get(k) is not None]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise ConfigError(f"{path}: expected exactly one source, one of {', '.join(CAMERA_SOURCES)}; got {what}")
    (kind,) = given
    if kind == "camera":
        source = _convert(int, value[kind], f"{path}.camera", {"ge": 0, "le": MAX_CAMERA_INDEX})
    else:
        source = _convert(str, value[kind], f"{path}.{kind}", {})
        if not source.strip():
            raise ConfigError(f"{path}.{kind}: expected a {'URL' if kind == 'url' else 'video file path'}, got an empty string")
        if kind == "url":
            try:
                check_url(source)  # the same check as --url: a malformed URL stops the start, not one camera's thread
            except ValueError as exc:
                raise ConfigError(f"{path}.url: {exc}") from None
    overrides = value.get("gate") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{path}.gate: expected a mapping of gate keys to override, got {_describe(overrides)}")
    overrides = dict(overrides)
    if "zone" in value:
        if "zone" in overrides:
            raise ConfigError(f"{path}.zone: given twice, also as {path}.gate.zone; expected one of them")
        overrides["zone"] = value["zone"]
    gate = _override(top.gate, overrides, f"{path}.gate")
    hooks = top.hooks if value.get("hooks") is None else _convert(tuple[HookConfig, ...], value["hooks"], f"{path}.hooks", {})
    return CameraConfig(name, **{kind: source}, gate=gate, hooks=hooks)


def _override(base: Any, overrides: dict[str, Any], path: str) -> Any:
    """``base`` (a config dataclass) with the keys of ``overrides`` validated and replaced."""
    hints = typing.get_type_hints(type(base))
    fields = {f.name: f for f in dataclasses.fields(base)}
    unknown = sorted(map(str, set(overrides) - set(fields)))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown key; expected one of {', '.join(sorted(fields))}")
    changes = {k: _convert(hints[k], v, f"{path}.{k}", dict(fields[k].metadata)) for k, v in overrides.items()}
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as exc:  # cross-field rules in __post_init__
        raise ConfigError(f"{path}: {exc}") from None


def _check_sources_unique(cameras: list[CameraConfig]) -> None:
    first: dict[tuple[str, Any], str] = {}
    for cam in cameras:
        kind = next(k for k in CAMERA_SOURCES if getattr(cam, k) is not None)
        key = (kind, getattr(cam, kind))
        if key in first:
            raise ConfigError(f"cameras.{cam.name}.{kind}: {key[1]!r} is already the source of cameras.{first[key]}; expected one camera per source")
        first[key] = cam.name


_PIN_NUMBER = re.compile(r"^(?:GPIO|BCM)?(\d+)$", re.IGNORECASE)


def _pin_key(pin: str) -> str:
    """One spelling per pin: GPIO17, BCM17 and 17 are the same Broadcom pin."""
    m = _PIN_NUMBER.match(pin.strip())
    return f"GPIO{int(m.group(1))}" if m else pin.strip().upper()


def _check_relays_unique(cameras: list[CameraConfig], top: Config) -> None:
    """Two cameras on one relay pin would open each other's gate, and two MQTT clients with one
    ``client_id`` would throw each other off the broker: both refused, naming the second."""
    pins: dict[str, str] = {}
    clients: dict[str, str] = {}
    for cam in cameras:
        inherited = cam.hooks is top.hooks
        for i, hook in enumerate(cam.hooks):
            where = f"hooks[{i}]" if inherited else f"cameras.{cam.name}.hooks[{i}]"
            also = f" (inherited by cameras.{cam.name})" if inherited else ""
            if isinstance(hook, GpioHookConfig):
                pin = _pin_key(hook.pin)
                if pin in pins and pins[pin] != cam.name:
                    raise ConfigError(f"{where}.pin{also}: relay pin {hook.pin!r} is already the relay of cameras.{pins[pin]}; expected one relay pin per camera")
                pins[pin] = cam.name
            client_id = getattr(hook, "client_id", None)
            if client_id is not None:
                if client_id in clients and clients[client_id] != cam.name:
                    raise ConfigError(f"{where}.client_id{also}: {client_id!r} is already the MQTT client id of cameras.{clients[client_id]}; expected one per camera (null: each its own)")
                clients[client_id] = cam.name


class _LimitError(Exception):
    """A config outside the reader's bounds: what was wrong, where it was noticed, what was expected."""

    def __init__(self, problem: str, mark: Any, expected: str) -> None:
        super().__init__(problem)
        self.problem, self.mark, self.expected = problem, mark, expected


def _too_many(mark: Any, expanded: str = "") -> _LimitError:
    return _LimitError(f"has more than {MAX_CONFIG_NODES} keys and values{expanded}", mark, f"at most {MAX_CONFIG_NODES}")


def _too_deep(mark: Any, expanded: str = "") -> _LimitError:
    return _LimitError(f"nests deeper than {MAX_CONFIG_DEPTH} levels{expanded}", mark, f"at most {MAX_CONFIG_DEPTH} levels of mappings and lists")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (YAML would keep the last) and
    stops composing at :data:`MAX_CONFIG_NODES` nodes or :data:`MAX_CONFIG_DEPTH` levels, before
    a pathological file has been read to its end (pure-Python YAML reads about 50k nodes a second)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)  # an alias adds no node; expand_count() counts it
        mark = self.peek_event().start_mark
        self._nodes += 1
        if self._nodes > MAX_CONFIG_NODES:
            raise _too_many(mark)
        self._depth += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                raise _too_deep(mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_expanded_size(root: yaml.Node) -> None:
    """Raise :class:`_LimitError` when ``root`` has more than :data:`MAX_CONFIG_NODES` nodes, or
    more than :data:`MAX_CONFIG_DEPTH` levels, with every alias expanded.

    An alias is the node it names, shared; the "billion laughs" file nests nine aliases of nine
    aliases nine times. Walking the expanded tree stops after the limit, so this costs at most
    MAX_CONFIG_NODES steps, and an alias inside its own anchor (a cycle) ends at the depth limit.
    """
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_NODES:
            raise _too_many(node.start_mark, " once its aliases (*name) are expanded")
        if depth > MAX_CONFIG_DEPTH:
            raise _too_deep(node.start_mark, " once its aliases (*name) are expanded")
        if isinstance(node, yaml.SequenceNode):
            stack += [(child, depth + 1) for child in node.value]
        elif isinstance(node, yaml.MappingNode):
            stack += [(child, depth + 1) for pair in node.value for child in pair]


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
    name = str(p)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)  # never more: /dev/zero or a 45 MB file is refused unread
        if len(raw) > MAX_CONFIG_BYTES:
            size = p.stat().st_size if p.is_file() else 0
            what = f"{size / (1 << 20):.1f} MiB" if size > MAX_CONFIG_BYTES else f"more than {MAX_CONFIG_BYTES} bytes"
            raise ConfigError(f"config file {name!r} is {what}; expected a YAML file of at most {MAX_CONFIG_BYTES // (1 << 20)} MiB")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {name!r} does not exist; expected a YAML file (see config.yaml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {name!r} cannot be read: {exc}") from None
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expanded_size(node)
        data = None if node is None else loader.construct_document(node)
    except _LimitError as exc:
        raise ConfigError(f"config file {name!r} {exc.problem} (line {exc.mark.line + 1}); expected {exc.expected}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {name!r} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()
    return config_from_dict(data)


def config_to_dict(cfg: Any, *, redact: bool = False) -> Any:
    """The effective values as plain data (for ``--check-config`` and tests).

    ``redact=True`` replaces every set secret (see :data:`SECRET_FIELDS`) with ``<redacted>``
    and masks the secrets inside every other string (see :func:`redact_text`: URL credentials
    and secret query parameters), so the output can be pasted into a ticket.
    """
    if dataclasses.is_dataclass(cfg):
        out = {}
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name)
            if isinstance(cfg, Config) and f.name == "cameras":  # a mapping in the file: name -> camera
                out[f.name] = {c.name: {k: v for k, v in config_to_dict(c, redact=redact).items() if k != "name" and v is not None} for c in value}
                continue
            secret = redact and f.name in SECRET_FIELDS and value is not None
            out[f.name] = REDACTED if secret else config_to_dict(value, redact=redact)
        return out
    if isinstance(cfg, tuple):
        return [config_to_dict(v, redact=redact) for v in cfg]
    if redact and isinstance(cfg, str):
        return redact_text(cfg)
    return cfg
