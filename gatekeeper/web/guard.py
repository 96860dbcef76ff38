"""Requests the HTTP parser refuses: a short 400 that echoes nothing, one masked warning line.

aiohttp's own answer to a request line or header over 8190 bytes, or a malformed URL, repeats
the start of the offending line (with any ``?token=``) in the 400 body, and logs it with a
traceback. Served through :class:`GuardedAppRunner`, the client gets a fixed line and the log one
warning with any token masked. Errors of our own handlers (5xx) keep aiohttp's handling: their
tracebacks are bugs worth seeing.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, InvalidHeader, InvalidURLError, LineTooLong

from .access import mask_secrets

__all__ = ["GuardedAppRunner"]

log = logging.getLogger(__name__)


def _one_line(text: str, limit: int = 160) -> str:
    """The first line of ``text``, control characters escaped and cut to ``limit`` characters."""
    first = text.strip().split("\n", 1)[0]
    printable = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in first)
    return printable if len(printable) <= limit else printable[: limit - 3] + "..."


def _what_was_wrong(exc: BaseException | None) -> str:
    if isinstance(exc, LineTooLong):
        return "request line or header field too long"
    if isinstance(exc, InvalidURLError):
        return "malformed URL"
    if isinstance(exc, InvalidHeader):
        return "malformed header"
    if isinstance(exc, BadHttpMethod):
        return "not an HTTP request"
    return "malformed request"


class _GuardedRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, answering requests its parser refuses without echoing them."""

    secret: str | None = None  # set per server by _GuardedServer

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        what = _what_was_wrong(exc)
        detail = mask_secrets(_one_line(message or str(exc or "")), self.secret)
        # Scanners and TLS clients on a plain HTTP port are routine: their first line is not worth a warning.
        level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.WARNING
        log.log(level, "bad request from %s: %d, %s: %s", request.remote, status, what, detail)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        resp = web.Response(status=status, text=f"{status} {phrase}: {what}\n")
        resp.force_close()
        return resp


class _GuardedServer(web.Server):
    """An aiohttp server whose connections are handled by :class:`_GuardedRequestHandler`."""

    secret: str | None = None

    def __call__(self) -> web.RequestHandler:
        handler = _GuardedRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.secret = self.secret
        return handler


class GuardedAppRunner(web.AppRunner):
    """``AppRunner`` serving through :class:`_GuardedServer` (aiohttp offers no option for it);
    ``secret`` is masked in what it logs."""

    def __init__(self, app: web.Application, *, secret: str | None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._secret = secret

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # the same object, only its protocol factory differs
        assert isinstance(server, _GuardedServer)
        server.secret = self._secret
        return server
