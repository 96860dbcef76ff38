"""Operator actions on any gate of the park: ``POST /gates/GATE/actions/KIND``.

The park has no relay: it sends the gate's own MQTT command (``<prefix>/GATE/command``, the JSON
``{"action", "by", "reason", "id", "ts"}`` that :meth:`gatekeeper.actions.Controls.mqtt` judges)
and waits up to ``http.action_wait_s`` for the gate's event with that operator's name. Checked in
this order, each refusal logged and counted with the gate it named: the credential, from the
``Authorization`` header only (``http.token``, or a user of ``http.users`` with the operator or
admin role, judged by the gate's own :class:`~gatekeeper.web.access.Authenticator`), the action's
kind, the gate (404 only after the credential: a stranger learns nothing of the park's gates),
the body, the gate being online (a gate away would never see the command: its session is clean).
Where the credential names a person, the command's ``by`` is that person.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..actions import MAX_BODY
from ..events import KINDS, Action, ActionError, clip_text
from ..users import Principal
from ..web.access import Authenticator, Refusal, forbidden
from .metrics import ActionCounts
from .state import ParkState

__all__ = ["Answer", "ParkActions"]

log = logging.getLogger("gatekeeper.park")

#: The event type each kind of action leads to at the gate.
_EVENT_OF = {"open": "OPEN", "out_of_service": "OUT_OF_SERVICE", "in_service": "IN_SERVICE"}


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


class ParkActions:
    """Judges and sends actions. ``auth``: who a request is from (the gate's
    :class:`~gatekeeper.web.access.Authenticator`: ``http.token``, ``http.users``); ``send(gate,
    kind, by, reason)`` publishes the command and returns it as sent (:class:`RuntimeError` when
    the broker did not take it)."""

    def __init__(self, auth: Authenticator, state: ParkState, send: Callable[[str, str, str, str | None], dict[str, Any]], counts: ActionCounts, *, wait_s: float, clock: Callable[[], float] = time.time) -> None:
        self.auth, self.state, self.send, self.counts = auth, state, send, counts
        self.wait_s = wait_s
        self._clock = clock

    def http(self, gate: str, kind: str, authorization: str | None, body: bytes, *, remote: str | None = None) -> Answer:
        """One request with its ``Authorization`` header (None: none; never a ``?token=``), on
        the server's executor thread: it waits for the broker and the gate."""
        asked = f"{clip_text(kind)!r} on gate {clip_text(gate)!r} from {remote or 'unknown'}"
        if not self.auth.enabled:
            return self._refuse("", kind, 403, "no_token_configured", f"{asked}: no credential configured", "operator actions need http.token or http.users in the park config")
        who = self.auth.identify(authorization, None, remote)
        refusal = who if isinstance(who, Refusal) else forbidden(who, "operator")
        if refusal is not None:
            self.auth.refuse(refusal, f"park action {asked}", log=False)
            return self._refuse("", kind, refusal.status, refusal.code, f"{asked}: {refusal.message}", "an operator's credential is required: Authorization: Bearer TOKEN (or Basic NAME:SECRET)")
        assert isinstance(who, Principal)
        if kind not in KINDS:
            return self._refuse(gate, kind, 404, "unknown_action", f"{asked}: unknown action", f"unknown action {clip_text(kind)!r}; expected one of {', '.join(KINDS)}")
        if not self.state.knows(gate):
            return self._refuse("", kind, 404, "no_gate", f"{asked}: no such gate; expected one of {', '.join(self.state.names()) or '(none yet)'}", f"no gate {clip_text(gate)!r} in this park")
        try:
            action = _parse(kind, body, who.name)
        except ActionError as exc:
            return self._refuse(gate, kind, 400, "malformed", f"{asked}: {exc}", str(exc))
        if self.state.availability(gate) == "offline":
            return self._refuse(gate, kind, 409, "offline", f"{asked}: the gate is offline", f"gate {gate!r} is offline; it would not receive the command")
        after = self._clock() - 0.01
        try:
            command = self.send(gate, kind, action.by, action.reason)
        except RuntimeError as exc:
            return self._refuse(gate, kind, 503, "not_sent", f"{asked}: {exc}", f"the command to gate {gate!r} was not sent: {exc}")
        log.info("park: action %s on gate %s by %s%s: command %s sent", kind, gate, action.by, f" ({action.reason})" if action.reason else "", command["id"])
        want = _EVENT_OF[kind]
        event = self.state.wait_for_event(gate, lambda e: e["event"] == want and e["by"] == action.by and e["via"] == "mqtt", self.wait_s, after=after)
        if event is None:
            self.counts.count(gate, kind, "sent")
            return Answer(202, {"gate": gate, "action": kind, "command": command["id"], "sent": True, "detail": f"gate {gate!r} has not answered yet; see its events"})
        self.counts.count(gate, kind, "done")
        return Answer(200, {"gate": gate, "action": kind, "command": command["id"], "event": event})

    def _refuse(self, gate: str, kind: str, status: int, code: str, log_message: str, detail: str) -> Answer:
        self.counts.count(gate, kind if kind in KINDS else "unknown", f"refused_{code}")
        log.log(logging.DEBUG if code == "throttled" else logging.WARNING, "park: action refused: %s", log_message)  # a throttle: logged once, at its start
        return Answer(status, {"refused": code, "detail": detail, **({"gate": gate} if gate else {})})


def _parse(kind: str, body: bytes, owner: str | None) -> Action:
    """The body ``{"by": ..., "reason": ...}``; ``by`` is the credential's owner where it names
    one (a user of ``http.users``), else the body's (the shared token names nobody)."""
    if len(body) > MAX_BODY:
        raise ActionError(f"body: expected at most {MAX_BODY} bytes of JSON, got {len(body)}")
    try:
        data = json.loads(body.decode("utf-8")) if body.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ActionError('body: expected JSON such as {"by": "maria", "reason": "..."}, got invalid JSON') from None
    if not isinstance(data, dict) or set(data) - {"by", "reason"}:
        raise ActionError('body: expected a JSON object with at most the keys by and reason, such as {"by": "maria"}')
    return Action(kind, owner if owner is not None else data.get("by"), "mqtt", data.get("reason"))
