"""Between plain data and the config dataclasses: each value checked against its field's type
and bounds on the way in (:func:`convert`, :func:`build`, :func:`override`), every error one
:class:`~gatekeeper.errors.ConfigError` naming the key path; and the effective values as plain
data on the way out (:func:`config_to_dict`, secrets masked on request)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from .config import SECRET_FIELDS, Config
from .errors import ConfigError
from .hooks.config import HOOK_TYPES, HookConfig
from .redact import REDACTED, redact_text
from .schema import bounds_text, check_number

__all__ = ["build", "config_to_dict", "convert", "describe", "override"]


def describe(value: Any, limit: int = 80) -> str:
    """The value as an error message shows it: its repr, cut to ``limit`` characters, and its type."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} ({type(value).__name__})"


def convert(tp: Any, value: Any, path: str, meta: dict[str, Any]) -> Any:
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
        return convert(inner, value, path, meta)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{path}: expected one of {', '.join(map(repr, choices))}, got {describe(value)}")
        return value
    if isinstance(tp, type) and hasattr(tp, "from_config"):  # a value with its own reader (service.hours)
        return tp.from_config(value, path)
    if origin is tuple:
        (inner, _) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {describe(value)}")
        return tuple(convert(inner, v, f"{path}[{i}]", {}) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping of keys, got {describe(value)}")
        return build(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {describe(value)}")
        return value
    if tp in (int, float):
        ok = isinstance(value, int) if tp is int else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            kind = "an integer" if tp is int else "a number"
            raise ConfigError(f"{path}: expected {kind} {bounds_text(meta)}".rstrip() + f", got {describe(value)}")
        value = tp(value)
        problem = check_number(path.rpartition(".")[2], value, meta)  # the key's own name says whether it is a duration
        if problem is not None:
            raise ConfigError(f"{path}: {problem}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {describe(value)}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")  # a bug in the schema, not the file


def _hook(value: Any, path: str) -> HookConfig:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'type' key, got {describe(value)}")
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in HOOK_TYPES:
        raise ConfigError(f"{path}.type: expected one of {', '.join(map(repr, sorted(HOOK_TYPES)))}, got {describe(kind)}")
    return build(HOOK_TYPES[kind], value, path)


def build(cls: type, data: dict[str, Any], path: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(data) - set(fields)))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key; expected one of {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        kwargs[name] = convert(hints[name], value, f"{path}.{name}" if path else name, dict(f.metadata))
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


def override(base: Any, overrides: dict[str, Any], path: str) -> Any:
    """``base`` (a config dataclass) with the keys of ``overrides`` validated and replaced."""
    hints = typing.get_type_hints(type(base))
    fields = {f.name: f for f in dataclasses.fields(base)}
    unknown = sorted(map(str, set(overrides) - set(fields)))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown key; expected one of {', '.join(sorted(fields))}")
    changes = {k: convert(hints[k], v, f"{path}.{k}", dict(fields[k].metadata)) for k, v in overrides.items()}
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as exc:  # cross-field rules in __post_init__
        raise ConfigError(f"{path}: {exc}") from None


def config_to_dict(cfg: Any, *, redact: bool = False) -> Any:
    """The effective values as plain data (for ``--check-config`` and tests).

    ``redact=True`` replaces every set secret (see :data:`SECRET_FIELDS`) with ``<redacted>``
    and masks the secrets inside every other string (see :func:`redact_text`: URL credentials
    and secret query parameters), so the output can be pasted into a ticket.
    """
    if hasattr(cfg, "to_config"):  # a value with its own plain form (service.hours)
        return cfg.to_config()
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
