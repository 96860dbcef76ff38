"""The declaration helper shared by every config dataclass (see :mod:`gatekeeper.config`)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

__all__ = ["opt"]


def opt(default: Any, doc: str, **bounds: float) -> Any:
    """A config field: its default, a one-line description, and numeric bounds (ge, gt, le)."""
    meta = {"doc": doc, **bounds}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)
