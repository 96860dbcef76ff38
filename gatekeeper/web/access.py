"""Who may ask: the credential every route but ``/healthz`` needs, and secrets kept out of the log.

Two kinds of credential, either or both configured:

* ``http.token``: one shared token, an admin credential that names nobody, carried as
  ``Authorization: Bearer TOKEN`` (the scheme in any case, as RFC 7235 has it) or ``?token=TOKEN``.
* ``http.users``: one credential per person (:mod:`gatekeeper.users`), carried as HTTP Basic
  (``Authorization: Basic base64(NAME:SECRET)``, what a browser asks for and then sends with the
  page's streams by itself) or as ``Authorization: Bearer NAME:SECRET`` or ``?token=NAME:SECRET``.

:class:`Authenticator` says who a request is from (a :class:`~gatekeeper.users.Principal`) or why
it is refused; every comparison of a secret is constant-time. The GET routes need the ``viewer``
role (:func:`auth_required`); the action routes (:mod:`gatekeeper.web.actions`) authenticate
themselves, from the header only (never ``?token=``: a link on another site cannot carry a
header), need ``operator``, and count and log each refusal as an action refusal too. Every
refusal is one log line without the secret and one count in
``gatekeeper_auth_refusals_total{reason, role}``.

Failed credentials are limited (:mod:`gatekeeper.throttle`): after 10 from one remote address, or
naming one user, within 60 s, that address (or name) is refused for 60 s with ``throttled`` (HTTP
429 and ``Retry-After``) before any secret is checked, so a flood of wrong secrets costs no scrypt.
Each throttled request is counted; the log has one line when a throttle starts, none per request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric

from ..throttle import FailureLimit
from ..users import AuthRefusals, Principal, Users, allows

__all__ = ["AuthRefusalsCollector", "Authenticator", "Refusal", "auth_required", "mask_secrets"]

#: Routes that answer without a token: the health checks a load balancer or systemd polls.
_HEALTHZ = re.compile(r"^(/cameras/[^/]+)?/healthz$")
#: Routes that check their own token (bearer only).
_ACTIONS = re.compile(r"^(/cameras/[^/]+)?/actions/")
_TOKEN_PARAM = re.compile(r"(?i)(token=)[^&\s'\"\\]*")
_BEARER = re.compile(r"(?i)((?:bearer|basic)\s+)[^\s'\"\\]+")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_log = logging.getLogger("gatekeeper.users")


def mask_secrets(text: str, token: str | None = None) -> str:
    """``text`` with ``token=...`` values, bearer credentials and ``token`` itself replaced by ``***``.

    >>> mask_secrets("GET /status?token=abc&x=1 HTTP/1.1")
    'GET /status?token=***&x=1 HTTP/1.1'
    """
    if token:
        text = text.replace(token, "***")
    return _BEARER.sub(r"\1***", _TOKEN_PARAM.sub(r"\1***", text))


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: ``code`` (the count's reason), the ``role`` of the user it named
    (None: none), a ``message`` for the log (no secret) and the HTTP ``status``."""

    code: str
    role: str | None
    message: str
    status: int = 401
    claimed: str | None = None  # the user name the credential gave, if any
    retry_after: float | None = None  # throttled: seconds until it is taken again

    @property
    def headers(self) -> dict[str, str]:
        """``Retry-After`` (whole seconds) for a throttled request, else nothing."""
        return {} if self.retry_after is None else {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class Authenticator:
    """Who a request is from, by ``token`` (``http.token``) and ``users`` (``http.users``);
    refusals are counted in ``refusals`` (the users' own, so MQTT's count with them)."""

    def __init__(self, token: str | None, users: Users | None, *, limit: FailureLimit | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.token = token
        self.users = users
        self.refusals = users.refusals if users is not None else AuthRefusals()
        self.limit = limit or FailureLimit()
        self._clock = clock

    @property
    def enabled(self) -> bool:
        """Whether any credential is configured (without one, GET routes are open and actions refused)."""
        return bool(self.token) or self.users is not None

    def challenge(self) -> CIMultiDict[str]:
        """The ``WWW-Authenticate`` headers of a 401: Basic (a browser then asks for a name and
        secret) where there are users, Bearer for the token."""
        headers: CIMultiDict[str] = CIMultiDict()
        if self.users is not None:
            headers.add("WWW-Authenticate", 'Basic realm="gatekeeper", charset="UTF-8"')
        headers.add("WWW-Authenticate", "Bearer")
        return headers

    def identify(self, header: str | None, query_token: str | None = None, remote: str | None = None) -> Principal | Refusal:
        """The principal of an ``Authorization`` header (else of a ``?token=``), or the refusal;
        ``remote``: the address asking, throttled after too many failures (module notes)."""
        now = self._clock()
        at = [("address", remote)] if remote else []
        wait = self.limit.retry_after(at, now)
        who = self._identify(header, query_token, now) if wait is None else Refusal("throttled", None, f"too many failed credentials from {remote}", 429, retry_after=wait)
        if isinstance(who, Refusal) and who.code not in ("no_token", "throttled"):
            keys = at + ([("user", who.claimed)] if who.claimed is not None else [])
            for kind, value in self.limit.failed(keys, now):
                shown = "".join(c if c.isprintable() else "?" for c in value[:64])
                _log.warning(
                    "access throttled: %d failed credentials within %g s %s %r; refused for %g s without checking (counted as reason throttled)",
                    self.limit.failures, self.limit.window_s, "from address" if kind == "address" else "naming user", shown, self.limit.window_s,
                )
        return who

    def _identify(self, header: str | None, query_token: str | None, now: float) -> Principal | Refusal:
        if header is not None and header.strip():
            scheme, _, credentials = header.strip().partition(" ")
            if scheme.lower() == "bearer":
                return self._bearer(credentials.strip(), now)
            if scheme.lower() == "basic" and self.users is not None:
                return self._basic(credentials.strip(), now)
            return Refusal("no_token", None, f"an Authorization header of scheme {scheme[:20]!r}, which is not taken here")
        if query_token:
            return self._bearer(query_token, now)
        return Refusal("no_token", None, "no credentials")

    def _bearer(self, given: str, now: float) -> Principal | Refusal:
        matches_token = bool(self.token) and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), str(self.token).encode())
        if matches_token:
            return Principal(None, "admin")
        if self.users is not None and ":" in given:
            name, _, secret = given.partition(":")
            return self._user(name, secret, now)
        return Refusal("bad_token", None, "wrong bearer token")

    def _basic(self, encoded: str, now: float) -> Principal | Refusal:
        try:
            name, sep, secret = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return Refusal("malformed_credentials", None, "Basic credentials that are not base64 of UTF-8 NAME:SECRET")
        if not sep:
            return Refusal("malformed_credentials", None, "Basic credentials without ':'; expected NAME:SECRET")
        return self._user(name, secret, now)

    def _user(self, name: str, secret: str, now: float) -> Principal | Refusal:
        assert self.users is not None
        shown = "".join(c if c.isprintable() else "?" for c in name[:64])
        wait = self.limit.retry_after([("user", name)], now)
        if wait is not None:  # checked before the scrypt
            return Refusal("throttled", self.users.role_of(name), f"too many failed credentials naming user {shown!r}", 429, retry_after=wait)
        user, why = self.users.verify(name, secret)
        if why is None and user is not None:
            return Principal(user.name, user.role)
        messages = {"unknown_user": f"unknown user {shown!r}", "bad_password": f"wrong secret for user {shown!r}", "expired": f"the credential of user {shown!r} has expired"}
        return Refusal(str(why), None if user is None else user.role, messages.get(str(why), str(why)), claimed=name)

    def refuse(self, refusal: Refusal, where: str, *, log: bool = True) -> None:
        """Count ``refusal`` (and log it in one line naming ``where`` it was asked, unless the caller logs it)."""
        level = logging.INFO if refusal.code == "no_token" else logging.WARNING  # a browser's first request asks without
        if refusal.code == "throttled":
            log = False  # identify() logged the throttle once; each request only counts
        self.refusals.refuse(refusal.code, refusal.role, f"{where}: {refusal.message}" if log else None, level=level)


def forbidden(principal: Principal, needed: str) -> Refusal | None:
    """The refusal of ``principal`` for what needs the role ``needed``, or None when its role allows it."""
    if allows(principal.role, needed):
        return None
    return Refusal("forbidden", principal.role, f"{principal} may not do what needs the {needed} role", status=403)


def auth_required(auth: Authenticator) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The middleware that asks every request but the health checks and the actions for a
    credential of at least the ``viewer`` role (nothing asked when none is configured)."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if auth.enabled and not _HEALTHZ.match(request.path) and not _ACTIONS.match(request.path):
            # On the executor: a user's secret costs an scrypt, which must not stall the streams.
            who = await asyncio.get_running_loop().run_in_executor(None, auth.identify, request.headers.get("Authorization"), request.query.get("token"), request.remote)
            refusal = who if isinstance(who, Refusal) else forbidden(who, "viewer")
            if refusal is not None:
                auth.refuse(refusal, f"{request.method} {request.path} from {request.remote or 'unknown'}")
                if refusal.status == 429:
                    raise web.HTTPTooManyRequests(text="too many failed credentials; try again later\n", headers=refusal.headers)
                if auth.users is None:  # the token alone: the answer it always had
                    text = "a token is required: Authorization: Bearer TOKEN or ?token=TOKEN"
                else:
                    text = "a credential is required: HTTP Basic NAME:SECRET, Authorization: Bearer NAME:SECRET or TOKEN, or ?token="
                raise web.HTTPUnauthorized(text=text + "\n", headers=auth.challenge())
        return await handler(request)

    return check


class AuthRefusalsCollector:
    """``gatekeeper_auth_refusals_total{reason, role}``: the credentials refused (HTTP, and MQTT
    per-user commands), read from :class:`~gatekeeper.users.AuthRefusals` when Prometheus scrapes."""

    def __init__(self, refusals: AuthRefusals) -> None:
        self.refusals = refusals

    @classmethod
    def register(cls, registry: CollectorRegistry, refusals: AuthRefusals) -> None:
        """Serve ``refusals`` from ``registry`` (once per registry: a second server on it keeps the first's)."""
        if getattr(registry, "_gatekeeper_auth", None) is None:
            registry._gatekeeper_auth = refusals  # type: ignore[attr-defined]
            registry.register(cls(refusals))

    def collect(self) -> list[Metric]:
        family = CounterMetricFamily("gatekeeper_auth_refusals", "Credentials refused, by why and by the role of the user they named (none: no user)", labels=["reason", "role"])
        for (reason, role), n in self.refusals.items():
            family.add_metric([reason, role], n)
        return [family]
