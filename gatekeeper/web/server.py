"""The server: aiohttp on an event loop of its own, on a worker thread of its own.

:class:`WebServer` puts the routes together (:class:`~gatekeeper.web.routes.Routes`, the actions
of :class:`~gatekeeper.web.actions.ActionRoute`), behind the credential middleware
(:func:`~gatekeeper.web.access.auth_required`: ``http.token``, ``http.users``) and the guard against requests the HTTP parser
refuses (:class:`~gatekeeper.web.guard.GuardedAppRunner`), and starts and stops them, over
HTTPS when ``http.tls`` names a certificate (the page's streams, SSE and MJPEG, with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Mapping

from aiohttp import web

from ..errors import ConfigError
from ..tls import server_context
from ..users import shared_users
from ..worker import Worker
from .access import Authenticator, AuthRefusalsCollector, auth_required
from .actions import ActionRoute
from .address import check_exposure
from .guard import GuardedAppRunner
from .routes import Routes
from .view import LiveView

__all__ = ["WebServer"]

log = logging.getLogger(__name__)


class WebServer:
    """aiohttp on its own event loop and thread, serving the live views of a service's cameras.

    >>> server = WebServer(views, "127.0.0.1", 8080, name="park")  # doctest: +SKIP
    >>> server.start()                                              # raises ConfigError if it cannot listen
    >>> server.url                                                  # doctest: +SKIP
    'http://127.0.0.1:8080/'
    >>> server.stop()                                               # doctest: +SKIP

    ``views``: one camera's view, or every camera's by name; ``name``: the service's (default:
    the first camera's). A bind beyond loopback without ``http.token`` is refused here, before
    anything listens. ``sock``: a socket already listening on ``host:port``
    (:func:`~gatekeeper.web.address.listen_socket`), to serve on instead of binding at
    :meth:`start`.
    """

    def __init__(self, views: LiveView | Mapping[str, LiveView], host: str, port: int, *, name: str | None = None, sock: socket.socket | None = None) -> None:
        views = {views.name: views} if isinstance(views, LiveView) else dict(views)
        if not views:
            raise ValueError("WebServer: expected at least one camera's LiveView")
        self.views = views
        first = next(iter(views.values()))  # the first camera's: the http settings are the service's
        self.name = first.name if name is None else name
        self.host, self.port = host, port
        self.token = first.cfg.http.token
        check_exposure(host, port, self.token or first.cfg.http.users)
        self.auth = Authenticator(self.token, shared_users(first.cfg.http.users))
        self.ssl = server_context(first.cfg.http.tls)  # ConfigError for a certificate that cannot be used
        AuthRefusalsCollector.register(first.metrics.registry, self.auth.refusals)
        self._sock = sock
        self._worker: Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.ssl is not None else 'http'}://{host}:{self.port}/"

    def start(self, timeout: float = 10.0) -> None:
        """Listen and serve on a worker thread; :class:`ConfigError` if the address is unusable."""
        self._worker = Worker(self._serve, "web")
        self._worker.start()
        if not self._ready.wait(timeout):
            raise ConfigError(f"--http {self.host}:{self.port}: the server did not start within {timeout:g} s")
        if self._error is not None:
            self._worker.finish(timeout)
            if isinstance(self._error, OSError):  # address in use, not an address of this machine...
                raise ConfigError(f"--http {self.host}:{self.port}: cannot listen there: {self._error}") from None
            raise RuntimeError(f"web server failed to start: {self._error!r}") from self._error
        log.info("live view on %s", self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Close open streams, stop listening and end the thread."""
        loop, worker = self._loop, self._worker
        if loop is None or worker is None or not worker.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop already stopped
            loop.call_soon_threadsafe(loop.stop)
        if not worker.finish(timeout):
            log.error("web server still busy after %.1f s; left behind", timeout)

    # -- the server thread ---------------------------------------------------------------------
    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start())
        except Exception as exc:  # handed to start() on the caller's thread, which raises it
            self._error = exc
            loop.run_until_complete(self._cleanup())
            loop.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._cleanup())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _start(self) -> None:
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[auth_required(self.auth)])
        Routes(self.views, name=self.name, closing=self._closing).add_to(app)
        ActionRoute(self.views, next(iter(self.views.values())).metrics.refused_for_no_camera, self.auth).add_to(app)
        # Streams end on their own once _closing is set; the timeout only bounds a stuck client.
        self._runner = GuardedAppRunner(app, secret=self.token, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        if self._sock is None:
            site: web.BaseSite = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl)
        else:
            site = web.SockSite(self._runner, self._sock, ssl_context=self.ssl)
        await site.start()
        if self.port == 0:  # an ephemeral port (tests): report the one the system chose
            self.port = int(self._runner.addresses[0][1])

    async def _cleanup(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
