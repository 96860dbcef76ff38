"""Reading a config: a YAML file (:func:`load_config`) or a parsed mapping
(:func:`config_from_dict`) validated into a :class:`~gatekeeper.config.Config`, every problem
one :class:`~gatekeeper.errors.ConfigError` naming the key.

A config file is small and written by hand, so the reader refuses what only a mistake or an
attack produces, each in one line: a file over :data:`MAX_CONFIG_BYTES`, more than
:data:`MAX_CONFIG_NODES` keys and values (counted with YAML aliases expanded, so an alias bomb
is refused in milliseconds instead of filling memory), or nesting deeper than
:data:`MAX_CONFIG_DEPTH`. Anchors and aliases within those bounds work as YAML says; a key given
twice in one mapping is refused.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from pathlib import Path
from typing import Any

import yaml

from .config import Config
from .config_cameras import camera_configs
from .config_values import build, describe
from .errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "MAX_CONFIG_DEPTH", "MAX_CONFIG_NODES", "config_from_dict", "load_config", "read_yaml"]

log = logging.getLogger(__name__)

#: Largest config file read, in bytes. The documented config.yaml with every key is about 7 KB.
MAX_CONFIG_BYTES = 1 << 20
#: Most YAML nodes (keys, values, list items) in a config once aliases are expanded.
MAX_CONFIG_NODES = 10_000
#: Deepest nesting of mappings and lists (a hook's event list is at depth 4).
MAX_CONFIG_DEPTH = 32


def config_from_dict(data: dict[str, Any] | None) -> Config:
    """Validate a parsed mapping into a :class:`Config`; raises :class:`ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping of keys at the top level, got {describe(data)}")
    data = dict(data)
    cameras = data.pop("cameras", None)
    cfg: Config = build(Config, data, "")
    if cameras is not None:
        cfg = dataclasses.replace(cfg, cameras=camera_configs(cameras, cfg))
        if len(cfg.cameras) > 1 and cfg.actions.button.pin is not None:
            names = ", ".join(c.name for c in cfg.cameras)
            raise ConfigError(f"actions.button.pin: one staff button cannot say which of {len(cfg.cameras)} cameras ({names}) to open; expected null with several cameras (open each from its page, HTTP or MQTT)")
    if cfg.detector.download is not None:
        log.warning("detector.download is deprecated and ignored: gatekeeper never downloads a model (the face detector ships in the package); remove the key")
    return cfg


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
        if not isinstance(key, (str, int, float, bool, datetime.date)):
            continue  # complex keys are rejected later as unknown keys
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _timestamp_or_text(loader: _StrictLoader, node: yaml.ScalarNode) -> Any:
    """A date the calendar does not have (2026-13-01) stays text, for its key's own check to refuse by name."""
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError:
        return loader.construct_scalar(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_or_text)


def load_config(path: Path | str | None) -> Config:
    """Read and validate a YAML config file; ``None`` gives the built-in defaults."""
    if path is None:
        return Config()
    return config_from_dict(read_yaml(path))


def read_yaml(path: Path | str, *, what: str = "config file", example: str = "config.yaml") -> Any:
    """The parsed content of a hand-written YAML file, within the reader's bounds; every problem
    one :class:`ConfigError` naming ``what`` (and ``example``, the documented file)."""
    p = Path(path)
    name = str(p)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)  # never more: /dev/zero or a 45 MB file is refused unread
        if len(raw) > MAX_CONFIG_BYTES:
            size = p.stat().st_size if p.is_file() else 0
            size_text = f"{size / (1 << 20):.1f} MiB" if size > MAX_CONFIG_BYTES else f"more than {MAX_CONFIG_BYTES} bytes"
            raise ConfigError(f"{what} {name!r} is {size_text}; expected a YAML file of at most {MAX_CONFIG_BYTES // (1 << 20)} MiB")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {name!r} does not exist; expected a YAML file (see {example})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {name!r} cannot be read: {exc}") from None
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expanded_size(node)
        data = None if node is None else loader.construct_document(node)
    except _LimitError as exc:
        raise ConfigError(f"{what} {name!r} {exc.problem} (line {exc.mark.line + 1}); expected {exc.expected}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{what} {name!r} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()
    return data
