"""The declaration helper shared by every config dataclass (see :mod:`gatekeeper.config`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any

__all__ = ["check_bounds", "opt"]


def opt(default: Any, doc: str, **bounds: float) -> Any:
    """A config field: its default, a one-line description, and numeric bounds (ge, gt, le)."""
    meta = {"doc": doc, **bounds}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def bounds_text(meta: dict[str, Any]) -> str:
    """'>= 0 and <= 1' for a field's bounds metadata."""
    parts = [f">= {meta['ge']}" if "ge" in meta else "", f"> {meta['gt']}" if "gt" in meta else "", f"<= {meta['le']}" if "le" in meta else ""]
    return " and ".join(p for p in parts if p)


def check_bounds(obj: Any) -> None:
    """Raise ValueError naming the first numeric field outside its declared bounds (or NaN).

    The config loader checks bounds as it reads a file; this catches the same mistakes in
    objects built in code (``GateConfig(cooldown_s=-1)``).
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        meta = f.metadata
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        bad = math.isnan(value) or ("ge" in meta and value < meta["ge"]) or ("gt" in meta and value <= meta["gt"]) or ("le" in meta and value > meta["le"])
        if bad:
            raise ValueError(f"{f.name}: expected a value {bounds_text(meta)}, got {value!r}")
