"""The values that flow between the stages: what the gate decides and what operators ask for.

:class:`Event` (with its :class:`EventType`) is what the gate decides, the journal records and
the hooks deliver; :class:`FaceScore` is a scored face on its way to the gate; :class:`Action`
is what an operator asked for; :class:`DeliveryState` is where one event stands with one hook.
The gate, the journal, the hooks and the actions all import this module, and it imports none of
them: value types sit below everything that uses them.

>>> event = Event(EventType.OPEN, 12, 0.5, 0.91, "e1", track=1)
>>> event_from_dict(event.to_dict()) == event
True
>>> Action("open", by="maria", via="page").kind
'open'
>>> Action("close", by="maria", via="page")
Traceback (most recent call last):
...
gatekeeper.events.ActionError: action 'close' is unknown; expected one of open, out_of_service, in_service
"""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .errors import GatekeeperError
from .track import Box

__all__ = [
    "KINDS",
    "MAX_BY",
    "MAX_REASON",
    "VIAS",
    "Action",
    "ActionError",
    "Box",
    "DeliveryState",
    "Event",
    "EventType",
    "FaceScore",
    "clip_text",
    "event_from_dict",
    "new_event_id",
    "short_repr",
]


# -- events --------------------------------------------------------------------------------------


class EventType(str, enum.Enum):
    OPEN = "OPEN"
    DENY = "DENY"
    FACE_LOST = "FACE_LOST"
    FAULT = "FAULT"
    RECOVERED = "RECOVERED"
    OUT_OF_SERVICE = "OUT_OF_SERVICE"  # an operator took the gate out of service: no OPEN from smiles
    IN_SERVICE = "IN_SERVICE"  # back in service
    PASSAGE = "PASSAGE"  # the door's contact: the door opened after an OPEN (gatekeeper.door)
    FORCED_OPEN = "FORCED_OPEN"  # the door opened with no OPEN before it
    HELD_OPEN = "HELD_OPEN"  # the door is still open gate.sensor.held_open_s after it opened
    CLOSED = "CLOSED"  # the door closed again

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class FaceScore:
    """A face's box (x, y, w, h in pixels), its smile probability and, once tracked, its track id."""

    box: Box
    score: float
    track: int | None = None  # the tracking stage's id; None before tracking


@dataclass(frozen=True, slots=True)
class Event:
    """Something the gate decided. ``to_dict`` is the stable JSON shape of the event stream."""

    event: EventType
    frame: int
    t: float
    score: float | None
    id: str
    box: Box | None = None
    faces: int = 0
    reason: str | None = None
    track: int | None = None  # the visit's track id (OPEN, DENY, FACE_LOST); None for FAULT, RECOVERED
    by: str | None = None  # operator actions: who (a manual OPEN, OUT_OF_SERVICE, IN_SERVICE); None otherwise
    via: str | None = None  # operator actions: http, mqtt, button or page
    override: bool | None = None  # a manual OPEN: True when the gate was held shut (out of service, fault)
    note: str | None = None  # operator actions: the operator's own words, if any
    camera: str | None = None  # the camera it is about (set by the camera that emits it); None from a bare Gate
    claimed_by: str | None = None  # operator actions by a named credential: the name the caller gave, if any (a note; ``by`` is the credential's owner)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event.value,
            "frame": self.frame,
            "t": round(self.t, 4),
            "score": None if self.score is None else round(self.score, 4),
            "id": self.id,
            "box": None if self.box is None else [round(v, 1) for v in self.box],
            "faces": self.faces,
            "reason": self.reason,
            "track": self.track,
            "by": self.by,
            "via": self.via,
            "override": self.override,
            "note": self.note,
            "camera": self.camera,
            "claimed_by": self.claimed_by,
        }


def new_event_id() -> str:
    return uuid.uuid4().hex


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an :class:`Event` from its :meth:`Event.to_dict` shape."""
    box = data.get("box")
    return Event(
        event=EventType(data["event"]),
        frame=int(data["frame"]),
        t=float(data["t"]),
        score=None if data.get("score") is None else float(data["score"]),
        id=str(data["id"]),
        box=None if box is None else (float(box[0]), float(box[1]), float(box[2]), float(box[3])),
        faces=int(data.get("faces", 0)),
        reason=data.get("reason"),
        track=None if data.get("track") is None else int(data["track"]),  # absent in journals written before tracking
        by=data.get("by"),  # by, via, override, note: absent in journals written before operator actions
        via=data.get("via"),
        override=data.get("override"),
        note=data.get("note"),
        camera=None if data.get("camera") is None else str(data["camera"]),  # absent before cameras
        claimed_by=data.get("claimed_by"),  # absent before named operators
    )


class DeliveryState(str, enum.Enum):
    """Where one event stands with one hook."""

    PENDING = "pending"  # not yet delivered; retried after a restart while still fresh
    DELIVERED = "delivered"  # the receiver acknowledged it (HTTP 2xx, MQTT PUBACK, exit 0, relay pulsed)
    FAILED = "failed"  # given up: attempts exhausted, rejected, dropped from a full queue
    EXPIRED = "expired"  # older than the hook's max_age before it could be delivered

    def __str__(self) -> str:
        return self.value


# -- operator actions ----------------------------------------------------------------------------

KINDS = ("open", "out_of_service", "in_service")
VIAS = ("http", "mqtt", "button", "page")
MAX_BY = 64
MAX_REASON = 200


class ActionError(GatekeeperError, ValueError):
    """An action that is not well-formed: an unknown kind, no ``by``, a reason too long."""


def short_repr(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, with its type: what an error says it got."""
    text = repr(value)
    return (text if len(text) <= limit else text[: limit - 3] + "...") + f" ({type(value).__name__})"


def clip_text(value: Any, limit: int = 40) -> str:
    """``str(value)`` with control characters shown as ``?``, cut to ``limit``: safe in a log line."""
    text = str(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _text(value: Any, key: str, limit: int, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise ActionError(f"{key}: expected {'a non-empty' if required else 'a'} string, got {short_repr(value)}")
    if len(value) > limit:
        raise ActionError(f"{key}: expected at most {limit} characters, got {len(value)}")
    if not value.isprintable():
        where = next(i for i, c in enumerate(value) if not c.isprintable())
        raise ActionError(f"{key}: expected printable characters, got a control character at position {where}")
    return value.strip() if required else value


@dataclass(frozen=True, slots=True)
class Action:
    """What an operator asked for. ``t``: wall-clock time it was asked (``time.time()``)."""

    kind: str
    by: str
    via: str
    reason: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    t: float = field(default_factory=time.time)
    claimed_by: str | None = None  # the name the caller gave where ``by`` is the credential's owner (a note only)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ActionError(f"action {clip_text(self.kind)!r} is unknown; expected one of {', '.join(KINDS)}")
        if self.via not in VIAS:
            raise ActionError(f"via: expected one of {', '.join(VIAS)}, got {self.via!r}")
        object.__setattr__(self, "by", _text(self.by, "by", MAX_BY, required=True))
        _text(self.reason, "reason", MAX_REASON, required=False)
        _text(self.claimed_by, "by", MAX_BY, required=False)
