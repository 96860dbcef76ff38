"""The park's HTTP side: the page, live tiles over Server-Sent Events, ``/status``, ``/metrics``,
``/healthz`` and ``POST /gates/GATE/actions/KIND``, on aiohttp in a thread of its own.

=============================  ===============================================================
route                          what
=============================  ===============================================================
``/``                          the page: every gate a tile, live
``/events``                    SSE: ``park`` (every tile, then the park's summary) once, then
                               ``gates`` (the tiles that changed, and the summary), at most
                               every ``PUSH_GAP_S``
``/status``                    JSON: the park's summary, broker, journal and every gate's tile
``/gates/GATE``                JSON: one gate's tile (404 for a gate the park never heard of)
``/metrics``                   Prometheus text (:mod:`gatekeeper.park.metrics`)
``/healthz``                   200 while the broker link is up, else 503 (no token asked)
``POST                         an action on that gate (:mod:`gatekeeper.park.actions`); the
/gates/GATE/actions/KIND``     token only as ``Authorization: Bearer``
=============================  ===============================================================

Every route but ``/healthz`` asks for a viewer's credential (``http.token``, or a user of
``http.users``) when one is configured, through the gate's own middleware
(:func:`gatekeeper.web.access.auth_required`); actions need an operator's. And requests the HTTP parser refuses
get the gate's short 400 (:class:`gatekeeper.web.guard.GuardedAppRunner`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from ..errors import ConfigError
from ..web.access import Authenticator, auth_required
from ..web.address import check_exposure
from ..web.guard import GuardedAppRunner
from ..web.hub import EventHub, sse
from ..worker import Worker
from .actions import ParkActions
from .config import ParkHttpConfig
from .state import ParkState

__all__ = ["ParkWeb"]

log = logging.getLogger("gatekeeper.park")

HEARTBEAT_S = 10.0
#: A page is sent changes at most this often: a park of 200 gates changes hundreds of times a
#: second, and a message per change (its tiles and the park's summary) cost CPU for each.
PUSH_GAP_S = 0.25


class ParkWeb:
    """The park's server. ``status()``: the ``/status`` body; ``summary()``: its short part, also
    sent to every page; ``healthy()``: ``(ok, why)``."""

    def __init__(
        self,
        config: ParkHttpConfig,
        state: ParkState,
        hub: EventHub,
        actions: ParkActions,
        auth: Authenticator,
        registry: CollectorRegistry,
        *,
        status: Callable[[], dict[str, Any]],
        summary: Callable[[], dict[str, Any]],
        healthy: Callable[[], tuple[bool, str]],
        host: str,
        port: int,
    ) -> None:
        check_exposure(host, port, config.token or config.users)  # either credential keeps strangers out
        self.config, self.state, self.hub, self.actions, self.auth, self.registry = config, state, hub, actions, auth, registry
        self._status, self._summary, self._healthy = status, summary, healthy
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._worker: Worker | None = None

    @property
    def url(self) -> str:
        return f"http://{f'[{self.host}]' if ':' in self.host else self.host}:{self.port}/"

    def start(self, timeout: float = 10.0) -> None:
        self._worker = Worker(self._thread, "park-web")
        self._worker.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise ConfigError(f"--http {self.host}:{self.port}: cannot listen there: {self._error or 'the server did not start'}")
        log.info("park: page on %s", self.url)

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._worker is not None and self._worker.is_alive():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._worker.finish(timeout)

    def _thread(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
            self._ready.set()
            loop.run_forever()
        except Exception as exc:  # an address in use: start() raises it on the caller's thread
            self._error = exc
            self._ready.set()
        finally:
            if self._closing is not None:
                self._closing.set()
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _listen(self) -> None:
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[auth_required(self.auth)])
        for path, handler in {"/": self.page, "/events": self.events, "/status": self.status, "/gates/{gate}": self.gate, "/metrics": self.metrics, "/healthz": self.healthz}.items():
            app.router.add_get(path, handler)
        app.router.add_post("/gates/{gate}/actions/{kind}", self.act)
        self._runner = GuardedAppRunner(app, secret=self.config.token, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        if self.port == 0:  # an ephemeral port (tests): the one the system chose
            self.port = int(self._runner.addresses[0][1])

    # -- handlers ------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.Response:
        text = importlib.resources.files(__package__).joinpath("park.html").read_text(encoding="utf-8")
        return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self._status())

    async def gate(self, request: web.Request) -> web.Response:
        name = request.match_info["gate"]
        if not self.state.knows(name):
            raise web.HTTPNotFound(text=f"no gate {name!r} in this park\n")
        return web.json_response(self.state.tile(name, now=time.time()))

    async def metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self.registry), headers={"Content-Type": content_type})

    async def healthz(self, request: web.Request) -> web.Response:
        ok, why = self._healthy()
        return web.json_response({"ok": ok, "reason": why}, status=200 if ok else 503)

    async def act(self, request: web.Request) -> web.Response:
        gate, kind = request.match_info["gate"], request.match_info["kind"]
        header = request.headers.get("Authorization")
        body = await request.content.read(64 * 1024)
        answer = await asyncio.get_running_loop().run_in_executor(None, lambda: self.actions.http(gate, kind, header, body, remote=request.remote))
        return web.json_response(answer.body, status=answer.status)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Every tile once, then the tiles that changed: at once after an event, and every
        ``http.resync_s`` those that changed without one (OPENs ageing out of the hour)."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        sub = self.hub.subscribe()
        sent = self.state.tiles(now=time.time())
        getter: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(sub.queue.get())
        assert self._closing is not None
        # The server stopping wakes the page's wait: waiting out resync_s outlived aiohttp's
        # shutdown_timeout (2 s), and a handler ending right on that deadline can make aiohttp
        # raise InvalidStateError (a traceback at SIGTERM, seen once in test_park_page).
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await resp.write(b"retry: 2000\n\n" + sse("park", {"gates": sent, "summary": self._summary()}))
            last_sync = last_write = time.monotonic()
            dropped = 0  # a full queue lost some changes: every tile is looked at again
            while not self._closing.is_set():
                if (gap := PUSH_GAP_S - (time.monotonic() - last_write)) > 0:
                    await asyncio.sleep(gap)  # the changes meanwhile wait in the queue: one message for them all
                done, _ = await asyncio.wait({getter, closing}, timeout=self.config.resync_s, return_when=asyncio.FIRST_COMPLETED)
                names: set[str] = set()
                if getter in done:
                    names.add(getter.result()["gate"])
                    while not sub.queue.empty():
                        names.add(sub.queue.get_nowait()["gate"])
                    getter = asyncio.ensure_future(sub.queue.get())
                if time.monotonic() - last_sync >= self.config.resync_s or sub.dropped != dropped:
                    names.update(self.state.names())
                    last_sync, dropped = time.monotonic(), sub.dropped
                now = time.time()
                changed = {n: t for n in names if (t := self.state.tile(n, now=now)) != sent.get(n)}
                if changed:
                    sent.update(changed)
                    await resp.write(sse("gates", {"gates": changed, "summary": self._summary()}))
                    last_write = time.monotonic()
                elif time.monotonic() - last_write > HEARTBEAT_S:
                    await resp.write(b": keep-alive\n\n")
                    last_write = time.monotonic()
        except ConnectionError:
            pass  # the page went away
        finally:
            getter.cancel()
            closing.cancel()
            self.hub.unsubscribe(sub)
        return resp
