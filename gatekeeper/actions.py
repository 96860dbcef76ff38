"""Operator actions: staff open the gate by hand, take it out of service and put it back.

An action is a value, :class:`~gatekeeper.events.Action` (``kind``, ``by``, ``via``, ``reason``, ``id``, ``t``).
Whatever thread it comes from (the web server, the MQTT client, the GPIO button) hands it to
:meth:`Controls.submit`, which puts it on a bounded, thread-safe queue and returns a
:class:`Ticket`. Only the frame loop drains the queue (between frames, and on every idle poll
of a live source) and gives each action to the pure :meth:`Gate.act
<gatekeeper.gate.Gate.act>`, which alone decides (the service state and the manual-open rate
limit live there); the events it returns go journal first, hooks after, like every other event::

    controls = Controls()
    ticket = controls.submit(Action("open", by="maria", via="http"))   # any thread
    controls.apply(gate, frame, t, emit)                              # the frame loop
    ticket.wait(2.0), ticket.events                                   # what the gate made of it

Who asks is decided before an action gets here: the web layer authenticates a request
(:mod:`gatekeeper.web.access`) and hands :meth:`Controls.http` the :class:`~gatekeeper.users.Principal`
it found; an MQTT command on a per-user topic names its user, whose role the users file gives.
Where the credential names a person, ``by`` is that person and a ``by`` the caller wrote is kept
as ``claimed_by``, a note.

Every refusal, wherever it happens (no token, a malformed body, an unknown action, a stale or
repeated MQTT command, a full queue, the rate limit), goes through :meth:`ActionStats.refuse`:
one log line naming what was wrong, one counter (``gatekeeper_action_refusals_total{via,
reason}``), and nothing else.

Where actions come from besides this module: ``POST /actions/{kind}`` in :mod:`gatekeeper.web`,
the MQTT command topic in :mod:`gatekeeper.hooks.mqtt` (parsed here by :meth:`Controls.mqtt`),
and the staff push button (:class:`StaffButton`, here).
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .errors import JournalError
from .events import KINDS, MAX_BY, VIAS, Action, ActionError
from .events import clip_text as _clip
from .events import short_repr as _short
from .schema import opt
from .users import allows

if TYPE_CHECKING:
    from .events import Event
    from .gate import Gate
    from .journal import Journal
    from .users import Principal, Users

__all__ = [
    "KINDS",
    "VIAS",
    "Action",
    "ActionError",
    "ActionStats",
    "ActionsConfig",
    "ButtonConfig",
    "Controls",
    "StaffButton",
    "Ticket",
]

log = logging.getLogger(__name__)

MAX_BODY = 4096  # bytes of an HTTP body or MQTT payload; an action is a few dozen
MAX_ID = 64
SEEN_IDS = 10_000  # MQTT command ids remembered (within command_max_age_s) to refuse a repeat


# -- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ButtonConfig:
    """A staff push button on a GPIO input (``actions.button``): a press opens, as a request-to-exit button does."""

    pin: str | None = opt(None, "gpiozero pin name of the staff push button, e.g. GPIO27 or BOARD13; a press opens the gate; null: no button")
    pull_up: bool = opt(True, "true: the button connects the pin to ground (internal pull-up); false: to 3.3 V (internal pull-down)")
    bounce_ms: int = opt(50, "a press within this many ms of the last one is contact bounce and ignored", ge=0, le=5000)
    by: str = opt("staff button", "who the journal names for a press (by)")
    pin_factory: Literal["auto", "mock"] = opt("auto", "auto: the board's own GPIO; mock: gpiozero's MockFactory (tests, demos)")

    def __post_init__(self) -> None:
        if self.pin is not None and not self.pin.strip():
            raise ValueError("pin: expected a gpiozero pin name such as GPIO27, or null for no button; got an empty string")
        if not self.by.strip() or len(self.by) > MAX_BY:
            raise ValueError(f"by: expected 1 to {MAX_BY} characters, got {len(self.by.strip())}")


@dataclass(frozen=True)
class ActionsConfig:
    """Operator actions (``actions:`` in config.yaml). The rate limit of manual opens is the gate's
    (``gate.manual_open_interval_s``); MQTT commands are an option of the MQTT hook."""

    queue_size: int = opt(16, "operator actions waiting for the frame loop; beyond it an action is refused", ge=1, le=1000)
    wait_s: float = opt(2.0, "how long an HTTP action waits for the gate's answer before it is answered 202 (queued)", gt=0, le=30)
    button: ButtonConfig = opt(ButtonConfig(), "a staff push button on a GPIO input")


# -- counting and refusing -----------------------------------------------------------------------


class ActionStats:
    """Counters of actions taken and refused (thread-safe; they only grow)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken: collections.Counter[tuple[str, str]] = collections.Counter()  # (kind, via)
        self.refused: collections.Counter[tuple[str, str]] = collections.Counter()  # (via, reason code)

    def take(self, action: Action) -> None:
        with self._lock:
            self.taken[(action.kind, action.via)] += 1

    def refuse(self, via: str, code: str, message: str, *, level: int = logging.WARNING) -> None:
        """One refused input: logged in one line, then counted under (``via``, ``code``), so
        that whoever sees the count can find the line."""
        log.log(level, "action refused (%s, %s): %s", via, code, message)
        with self._lock:
            self.refused[(via, code)] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        """For /status: ``{"taken": {"open/http": 2}, "refused": {"http/bad_token": 1}}``."""
        with self._lock:
            return {
                "taken": {f"{k}/{v}": n for (k, v), n in sorted(self.taken.items())},
                "refused": {f"{v}/{c}": n for (v, c), n in sorted(self.refused.items())},
            }

    def counts(self) -> tuple[list[tuple[tuple[str, str], int]], list[tuple[tuple[str, str], int]]]:
        with self._lock:
            return sorted(self.taken.items()), sorted(self.refused.items())


class Ticket:
    """An action on its way to the gate; :meth:`wait` for what the gate made of it."""

    def __init__(self, action: Action) -> None:
        self.action = action
        self.events: list[dict[str, Any]] = []  # the events it led to, as Event.to_dict()
        self.refused: tuple[str, str] | None = None  # (code, message) when refused
        self._done = threading.Event()

    def wait(self, timeout: float) -> bool:
        """True once the gate has decided (or the action was refused before it got there)."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def finish(self, events: Iterable[Event] = (), refused: tuple[str, str] | None = None) -> None:
        self.events = [e.to_dict() for e in events]
        self.refused = refused
        self._done.set()


# -- the controls: one entry point for every source of actions ----------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer to an action request: status and JSON body."""

    status: int
    body: dict[str, Any]


class Controls:
    """The operator controls of one gate: the action queue, its counters, and the parsers of
    what HTTP and MQTT deliver. Thread-safe: :meth:`submit`, :meth:`http` and :meth:`mqtt` run
    on any thread; :meth:`apply` only on the frame loop."""

    def __init__(self, config: ActionsConfig | None = None, *, users: Users | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or ActionsConfig()
        self.users = users  # the people of http.users: the roles of per-user MQTT command topics
        self.stats = ActionStats()
        self.button: StaffButton | None = None
        self._queue: queue.Queue[Ticket] = queue.Queue(self.config.queue_size)
        self._clock = clock
        self._seen: collections.OrderedDict[str, float] = collections.OrderedDict()  # MQTT command id -> when it arrived
        self._seen_lock = threading.Lock()
        self._ids: tuple[Journal, str] | None = None  # where ids seen outlive a restart (see remember_ids)
        self._running = True

    # -- any thread --------------------------------------------------------------------------
    def submit(self, action: Action) -> Ticket:
        """Queue ``action`` for the frame loop; a full queue or a stopped gate refuses it at once."""
        ticket = Ticket(action)
        if not self._running:
            return self._refused(ticket, action.via, "not_running", f"{action.kind} by {action.by}: the gate is not running")
        try:
            self._queue.put_nowait(ticket)
        except queue.Full:
            return self._refused(ticket, action.via, "queue_full", f"{action.kind} by {action.by}: {self.config.queue_size} actions already wait for the frame loop (actions.queue_size)")
        return ticket

    def remember_ids(self, journal: Journal, scope: str) -> None:
        """Keep the MQTT command ids seen in ``journal`` too (under ``scope``, the camera's name),
        so that a command replayed after a restart, within its max age, is refused as a repeat."""
        self._ids = (journal, scope)

    def attach(self, hooks: Iterable[Any], *, in_service: bool = True, via: str | None = None) -> None:
        """Take MQTT commands from every MQTT hook with ``commands: true`` (call before the hooks
        start), and tell those hooks the service state the gate starts in (``via``: of the
        OUT_OF_SERVICE in force, ``schedule`` for the opening hours)."""
        for hook in hooks:
            config = getattr(hook, "config", None)
            if getattr(config, "commands", False) and hasattr(hook, "on_command"):
                hook.on_command = functools.partial(self.mqtt, max_age_s=config.command_max_age_s)
            if hasattr(hook, "set_in_service"):
                hook.set_in_service(in_service, via)

    def start_button(self) -> None:
        """The staff push button of ``actions.button`` (none when its pin is null); raises
        :class:`~gatekeeper.errors.HookError` for a pin that cannot be used."""
        if self.config.button.pin is not None and self.button is None:
            self.button = StaffButton(self.config.button, self)

    def stop(self) -> None:
        """The frame loop has ended: what is queued and what comes later is refused; the button is released."""
        self._running = False
        if self.button is not None:
            self.button.close()
        for ticket in self.drain():
            self._refused(ticket, ticket.action.via, "not_running", f"{ticket.action.kind} by {ticket.action.by}: the gate stopped before it could act")

    def _refused(self, ticket: Ticket, via: str, code: str, message: str) -> Ticket:
        self.stats.refuse(via, code, message)
        ticket.finish(refused=(code, message))
        return ticket

    # -- the frame loop ----------------------------------------------------------------------
    def drain(self) -> list[Ticket]:
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def apply(self, gate: Gate, frame: int, t: float, emit: Callable[[list[Event]], list[Event] | None]) -> None:
        """Hand every queued action to ``gate.act`` and its events to ``emit`` (journal, hooks,
        sinks), which returns the events that happened (None: all of them)."""
        for ticket in self.drain():
            action = ticket.action
            events = gate.act(action, frame, t)
            if not events:
                code, message = gate.refusal or ("refused", "refused by the gate")
                self._refused(ticket, action.via, code, f"{action.kind} by {action.by}: {message}")
                continue
            happened = emit(events)
            if happened is not None and len(happened) < len(events):
                # The journal could not record the OPEN (journal.on_error: fail_closed): no hook saw it.
                self._refused(ticket, action.via, "not_recorded", f"{action.kind} by {action.by}: the journal cannot record it, so it did not happen (journal.on_error: fail_closed)")
                continue
            self.stats.take(action)
            log.info("action %s by %s via %s%s: %s", action.kind, action.by, action.via, f" ({action.reason})" if action.reason else "", ", ".join(f"{e.event.value} {e.id}" for e in events))
            ticket.finish(events if happened is None else happened)  # as emitted: with the camera's name

    # -- HTTP (the server's executor thread) -------------------------------------------------
    def http(self, kind: str, principal: Principal, body: bytes, *, remote: str | None = None, wait_s: float | None = None) -> Answer:
        """``POST /actions/{kind}`` from ``principal`` (authenticated, its role checked, by the
        web layer) with the raw body; waits up to ``wait_s`` (``actions.wait_s``) for the gate."""
        who = f"from {remote or 'unknown'}"
        if kind not in KINDS:
            return self._http_refusal(404, "unknown_action", f"{_clip(kind)!r} {who}: unknown action", f"unknown action {_clip(kind)!r}; expected one of {', '.join(KINDS)}")
        try:
            action = self._parse_http(kind, body, principal.name)
        except ActionError as exc:
            return self._http_refusal(400, "malformed", f"{kind} {who}: {exc}", str(exc), via="http")
        ticket = self.submit(action)
        if not ticket.wait(self.config.wait_s if wait_s is None else wait_s):
            return Answer(202, {"queued": True, "action": action.id, "detail": "the gate has not answered yet; see the events"})
        if ticket.refused is not None:
            code, message = ticket.refused
            return Answer(409 if code in ("rate_limited", "no_change") else 503, {"refused": code, "detail": message, "action": action.id})  # 503: queue full, not running, not recorded
        return Answer(200, {"action": action.id, "events": ticket.events})

    def _http_refusal(self, status: int, code: str, log_message: str, detail: str, via: str = "http") -> Answer:
        self.stats.refuse(via, code, log_message)
        return Answer(status, {"refused": code, "detail": detail})

    @staticmethod
    def _parse_http(kind: str, body: bytes, owner: str | None) -> Action:
        if len(body) > MAX_BODY:
            raise ActionError(f"body: expected at most {MAX_BODY} bytes of JSON, got {len(body)}")
        try:
            data = json.loads(body.decode("utf-8")) if body.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ActionError(f"body: expected JSON such as {{\"by\": \"maria\", \"reason\": \"...\"}}, got invalid JSON ({exc.__class__.__name__})") from None
        if not isinstance(data, dict):
            raise ActionError(f"body: expected a JSON object with 'by' (and 'reason'), got {_short(data)}")
        unknown = sorted(set(data) - {"by", "reason", "via"})
        if unknown:
            raise ActionError(f"body: unknown key {_clip(unknown[0])!r}; expected by, reason (and via: http or page)")
        via = data.get("via", "http")
        if via not in ("http", "page"):
            raise ActionError(f"via: expected 'http' or 'page', got {_short(via)}")
        return _named(kind, owner, data.get("by"), via, data.get("reason"))

    # -- MQTT (the MQTT client's thread) -----------------------------------------------------
    def mqtt(self, payload: bytes, *, max_age_s: float = 10.0, retained: bool = False, user: str | None = None) -> Ticket | None:
        """A command from ``<prefix>/<gate>/command``: JSON ``{"action", "by", "reason", "id",
        "ts"}`` (``ts``: Unix seconds when it was sent). Refused, once each: malformed, an unknown
        action, a ``ts`` further than ``max_age_s`` (``command_max_age_s``) from now (stale, or from the future), an
        ``id`` already seen, a message the broker retained (it would act again at every reconnect).
        ``user``: the user level of a per-user topic ``<prefix>/<gate>/command/<user>``, which
        only that broker user may write (the broker's ACL); the command is theirs, and refused
        unless the users file gives them the operator or admin role; ``by`` is then optional.
        Returns the ticket of an accepted command, else None."""
        now = self._clock()
        if retained:
            self.stats.refuse("mqtt", "retained", "a retained message on the command topic; expected commands published without retain (clear it: publish an empty retained message)")
            return None
        if user is not None and not self._mqtt_user_may_act(user):
            return None
        try:
            data = self._parse_mqtt(payload, named=user is not None)
        except ActionError as exc:
            self.stats.refuse("mqtt", "malformed", str(exc))
            return None
        kind = data["action"]
        if kind not in KINDS:
            self.stats.refuse("mqtt", "unknown_action", f"command {data['id']!r}{_of(user)}: unknown action {_clip(kind)!r}; expected one of {', '.join(KINDS)}")
            return None
        age = now - data["ts"]
        if abs(age) > max_age_s:
            when = f"{age:.1f} s old" if age > 0 else f"{-age:.1f} s in the future"
            self.stats.refuse("mqtt", "stale", f"command {data['id']!r} ({kind} by {_clip(user or data['by'])}): ts is {when}; expected within command_max_age_s={max_age_s:g} s of now")
            return None
        with self._seen_lock:
            # An id is remembered for twice the max age from its arrival: its ts was at most
            # max_age_s ahead of then, so by the time it is forgotten a replay is stale.
            while self._seen and (len(self._seen) >= SEEN_IDS or now - next(iter(self._seen.values())) > 2 * max_age_s):
                self._seen.popitem(last=False)
            repeated = data["id"] in self._seen
            if not repeated:
                self._seen[data["id"]] = now
                repeated = not self._remembered_new(data["id"], now, 2 * max_age_s)
        if repeated:
            self.stats.refuse("mqtt", "repeated", f"command {data['id']!r} ({kind} by {_clip(user or data['by'])}): this id was already received; expected a new id per command")
            return None
        try:
            action = _named(kind, user, data.get("by"), "mqtt", data.get("reason"), data["id"])
        except ActionError as exc:
            self.stats.refuse("mqtt", "malformed", f"command {data['id']!r}: {exc}")
            return None
        return self.submit(action)

    def _remembered_new(self, command_id: str, now: float, keep_s: float) -> bool:
        """Record a command id new to this run in the journal; False if an earlier run saw it.

        A journal that cannot write leaves the memory of this run alone to judge: the command's
        event then meets the journal's own ``on_error`` rule like every other event.
        """
        if self._ids is None:
            return True
        journal, scope = self._ids
        try:
            return journal.remember_command(scope, command_id, now, now + keep_s)
        except JournalError as exc:
            log.error("command %r: its id is not remembered across a restart: %s", command_id, exc)
            return True

    def _mqtt_user_may_act(self, user: str) -> bool:
        """Whether the user of a per-user command topic is a person of the users file with a role
        that acts; if not, one refusal (an action refusal and an access refusal, one line)."""
        role, code = (None, "unknown_user") if self.users is None else self.users.standing(user)
        if code is None and role is not None and allows(role, "operator"):
            return True
        code = code or "forbidden"
        why = {"unknown_user": "no such user in http.users", "expired": "their entry in http.users has expired"}.get(code, f"role {role} may not act; expected operator or admin")
        self.stats.refuse("mqtt", code, f"a command on the topic of user {_clip(user)!r}: {why}")
        if self.users is not None:
            self.users.refusals.refuse(code, role, None)
        return False

    @staticmethod
    def _parse_mqtt(payload: bytes, *, named: bool = False) -> dict[str, Any]:
        example = '{"action": "open", "by": "maria", "id": "<unique>", "ts": <unix seconds>}'
        if len(payload) > MAX_BODY:
            raise ActionError(f"command: expected at most {MAX_BODY} bytes of JSON, got {len(payload)}")
        try:
            data = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ActionError(f"command: expected JSON such as {example}, got {_short(payload)}") from None
        if not isinstance(data, dict):
            raise ActionError(f"command: expected a JSON object such as {example}, got {_short(data)}")
        unknown = sorted(set(data) - {"action", "by", "reason", "id", "ts"})
        if unknown:
            raise ActionError(f"command: unknown key {_clip(unknown[0])!r}; expected action, by, reason, id, ts")
        for key in ("action", "id") if named else ("action", "by", "id"):
            if not isinstance(data.get(key), str) or not data[key].strip():
                raise ActionError(f"command: {key}: expected a non-empty string, got {_short(data.get(key))}")
        if len(data["id"]) > MAX_ID:
            raise ActionError(f"command: id: expected at most {MAX_ID} characters, got {len(data['id'])}")
        ts = data.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
            raise ActionError(f"command: ts: expected the Unix time in seconds it was sent, got {_short(ts)}")
        return data


def _of(user: str | None) -> str:
    return "" if user is None else f" of user {_clip(user)!r}"


def _named(kind: str, owner: str | None, claimed: Any, via: str, reason: Any, action_id: str | None = None) -> Action:
    """The action of ``owner``, the person a credential names, with the name the caller wrote
    (``claimed``) kept as ``claimed_by`` where it says something else; ``owner`` None (the shared
    ``http.token``, which names nobody; the shared MQTT command topic): ``by`` is ``claimed``."""
    ids = {} if action_id is None else {"id": action_id}
    if owner is None:
        return Action(kind, claimed, via, reason, **ids)
    if claimed is None or (isinstance(claimed, str) and claimed.strip() in ("", owner)):
        claimed = None
    return Action(kind, owner, via, reason, claimed_by=claimed, **ids)


# -- the staff push button -------------------------------------------------------------------------


class StaffButton:
    """A push button on a GPIO input (gpiozero ``Button``): each press submits an ``open``
    (``via: button``). Debounced twice: gpiozero's ``bounce_time`` where the pin driver does
    it, and here (a press within ``bounce_ms`` of the last is bounce, counted and logged at
    debug), since not every driver (gpiozero's mock) does. A button held down is one press; the
    gate's ``manual_open_interval_s`` refuses presses that come too fast to be bounce.

    Raises :class:`~gatekeeper.errors.HookError` when the pin cannot be used.
    """

    def __init__(self, config: ButtonConfig, controls: Controls, *, clock: Callable[[], float] = time.monotonic) -> None:
        if config.pin is None:
            raise ValueError("StaffButton needs actions.button.pin")
        self.config = config
        self.controls = controls
        self._clock = clock
        self._last_press: float | None = None
        self.presses = 0  # edges seen, bounce included
        self.device = _button_device(config)
        self.device.when_pressed = self._pressed

    def _pressed(self) -> None:
        now = self._clock()
        self.presses += 1
        last, self._last_press = self._last_press, now
        if last is not None and now - last < self.config.bounce_ms / 1000:
            self.controls.stats.refuse("button", "bounce", f"press {1000 * (now - last):.0f} ms after the last (actions.button.bounce_ms={self.config.bounce_ms})", level=logging.DEBUG)
            return
        self.controls.submit(Action("open", self.config.by, "button"))

    def close(self) -> None:
        self.device.close()


def _button_device(config: ButtonConfig) -> Any:
    """The gpiozero ``Button`` of ``config`` (imported here: a gate without a button never loads gpiozero)."""
    from gpiozero import Button

    from .pins import gpio_input

    bounce = config.bounce_ms / 1000 if config.bounce_ms else None
    return gpio_input(Button, config, bounce_time=bounce, name="actions.button", what="the button")
