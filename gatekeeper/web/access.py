"""Who may ask: the token every route but ``/healthz`` needs, and secrets kept out of the log.

With ``http.token`` set, a request carries it as ``Authorization: Bearer TOKEN`` (the scheme in
any case, as RFC 7235 has it) or as ``?token=TOKEN``. The action routes are left to
:mod:`gatekeeper.web.actions`: they take the token only as a bearer header, and count and log
each refusal.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["bearer_token", "mask_secrets", "token_required"]

#: Routes that answer without a token: the health checks a load balancer or systemd polls.
_HEALTHZ = re.compile(r"^(/cameras/[^/]+)?/healthz$")
#: Routes that check their own token (bearer only).
_ACTIONS = re.compile(r"^(/cameras/[^/]+)?/actions/")
_TOKEN_PARAM = re.compile(r"(?i)(token=)[^&\s'\"\\]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"\\]+")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer_token(header: str) -> str | None:
    """The credentials of an ``Authorization: Bearer ...`` header (scheme in any case), else None.

    >>> bearer_token("bearer abc"), bearer_token("Bearer  abc"), bearer_token("Basic abc")
    ('abc', 'abc', None)
    """
    scheme, _, credentials = header.strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def mask_secrets(text: str, token: str | None = None) -> str:
    """``text`` with ``token=...`` values, bearer credentials and ``token`` itself replaced by ``***``.

    >>> mask_secrets("GET /status?token=abc&x=1 HTTP/1.1")
    'GET /status?token=***&x=1 HTTP/1.1'
    """
    if token:
        text = text.replace(token, "***")
    return _BEARER.sub(r"\1***", _TOKEN_PARAM.sub(r"\1***", text))


def token_required(token: str | None) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The middleware that asks every request but the health checks and the actions for ``token``
    (none asked when ``token`` is None)."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token and not _HEALTHZ.match(request.path) and not _ACTIONS.match(request.path):
            given = bearer_token(request.headers.get("Authorization", ""))
            if given is None:
                given = request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise web.HTTPUnauthorized(text="a token is required: Authorization: Bearer TOKEN or ?token=TOKEN\n", headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return check
