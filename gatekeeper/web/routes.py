"""The GET routes of the live view: the pages, the picture, the events, health, status, metrics.

Every handler runs on the server's event loop and only reads what the cameras' threads handed
over (:class:`~gatekeeper.web.view.LiveView`); drawing and JPEG encoding go to the loop's
executor (:class:`~gatekeeper.web.snapshot.JpegCache`), so a slow or stuck browser never stalls
a gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.resources
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from .draw import annotate_jpeg
from .hub import sse
from .snapshot import JpegCache
from .view import LiveView

__all__ = ["Routes"]

BOUNDARY = "frame"
HEARTBEAT_S = 10.0  # an SSE comment this often keeps proxies from closing an idle stream


def page(name: str) -> str:
    """One of the pages shipped beside this module (``live.html``, ``cameras.html``)."""
    return importlib.resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _encoder(view: LiveView) -> functools.partial[bytes]:
    g = view.cfg.gate
    return functools.partial(annotate_jpeg, enter=g.enter_threshold, exit_=g.exit_threshold, quality=view.cfg.http.jpeg_quality, zone=g.zone)


class Routes:
    """The GET handlers over the cameras' views (``views``: name -> view, at least one), made on
    the server's event loop; every stream ends once ``closing`` is set."""

    def __init__(self, views: Mapping[str, LiveView], *, name: str, closing: asyncio.Event) -> None:
        self.views = dict(views)
        self.first = next(iter(self.views.values()))  # the first camera's: the http settings are the service's
        self.name = name
        self.closing = closing
        self.jpeg = {camera: JpegCache(v.snapshot, _encoder(v)) for camera, v in self.views.items()}

    def add_to(self, app: web.Application) -> None:
        routes = {
            "/": self.index,
            "/stream.mjpg": self.stream,
            "/events": self.events,
            "/healthz": self.healthz,
            "/status": self.status,
            "/metrics": self.metrics,
            # Every camera's own live view, whatever their number: /cameras/NAME/ and what it loads.
            "/cameras/{camera}": self.camera_slash,
            "/cameras/{camera}/": self.page_of_camera,
            "/cameras/{camera}/stream.mjpg": self.stream,
            "/cameras/{camera}/snapshot.jpg": self.snapshot,
            "/cameras/{camera}/events": self.events,
            "/cameras/{camera}/healthz": self.healthz_of_camera,
            "/cameras/{camera}/status": self.status_of_camera,
        }
        for path, handler in routes.items():
            app.router.add_get(path, handler)

    async def _ticks(self, period: float) -> AsyncIterator[None]:
        """Yields every ``period`` seconds until the server closes."""
        while not self.closing.is_set():
            yield
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.closing.wait(), period)

    def view_of(self, request: web.Request) -> LiveView:
        """The camera a request is about: ``/cameras/NAME/...``, or the only one (404 otherwise)."""
        camera = request.match_info.get("camera")
        if camera is None:
            if len(self.views) == 1:
                return self.first
            raise web.HTTPNotFound(text=f"{len(self.views)} cameras here; expected /cameras/NAME{request.path}, NAME one of {', '.join(self.views)}\n")
        view = self.views.get(camera)
        if view is None:
            raise web.HTTPNotFound(text=f"no camera {camera!r}; expected one of {', '.join(self.views)}\n")
        return view

    # -- pages and pictures --------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        # One camera: its live view, as always. Several: the list of cameras, each linking to its own.
        text = page("live.html") if len(self.views) == 1 else page("cameras.html")
        return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def camera_slash(self, request: web.Request) -> web.Response:
        self.view_of(request)
        raise web.HTTPFound(request.path + "/" + (f"?{request.query_string}" if request.query_string else ""))

    async def page_of_camera(self, request: web.Request) -> web.Response:
        self.view_of(request)
        return web.Response(text=page("live.html"), content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def snapshot(self, request: web.Request) -> web.Response:
        view = self.view_of(request)
        _, jpeg = await self.jpeg[view.name].latest()
        if jpeg is None:
            raise web.HTTPServiceUnavailable(text="no frame yet\n")
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-cache, no-store"})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        view = self.view_of(request)
        cache = self.jpeg[view.name]
        resp = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}", "Cache-Control": "no-cache, no-store"})
        await resp.prepare(request)
        sent = -1
        try:
            await resp.write(f"--{BOUNDARY}\r\n".encode())
            async for _ in self._ticks(1.0 / view.cfg.http.max_fps):
                seq, jpeg = await cache.latest()
                if jpeg is None or seq == sent:
                    continue
                # The closing boundary goes right after the picture: browsers show a part only
                # once the next boundary has arrived.
                head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                await resp.write(head + jpeg + f"\r\n--{BOUNDARY}\r\n".encode())
                sent = seq
        except ConnectionError:
            pass  # the viewer went away
        return resp

    # -- the events ----------------------------------------------------------------------------
    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: ``gate`` (each event, the recent ones first) and ``state``
        (whenever it changes, right behind the events that changed it)."""
        view = self.view_of(request)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        sub = view.hub.subscribe()
        period = 1.0 / min(view.cfg.http.max_fps, 10.0)
        last_state: dict[str, Any] | None = None
        last_write = time.monotonic()
        # One pending get() at a time, never cancelled while waiting: wait_for() on a queue
        # could lose an item that arrives at the very moment of the timeout.
        getter: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(sub.queue.get())
        try:
            await resp.write(b"retry: 2000\n\n")
            while not self.closing.is_set():
                done, _ = await asyncio.wait({getter}, timeout=period)
                if getter in done:
                    # Everything queued goes out now, then the state right behind it, so the
                    # page never lists an OPEN under a state from before it.
                    items = [getter.result()]
                    while not sub.queue.empty():
                        items.append(sub.queue.get_nowait())
                    getter = asyncio.ensure_future(sub.queue.get())
                    await resp.write(b"".join(sse("gate", item, item.get("id")) for item in items))
                    last_write = time.monotonic()
                state = view.live_state()
                if state != last_state:
                    await resp.write(sse("state", state))
                    last_state, last_write = state, time.monotonic()
                elif time.monotonic() - last_write > HEARTBEAT_S:
                    await resp.write(b": keep-alive\n\n")
                    last_write = time.monotonic()
        except ConnectionError:
            pass  # the viewer went away
        finally:
            getter.cancel()
            view.hub.unsubscribe(sub)
        return resp

    # -- health, status, metrics ---------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        """Healthy when every camera is: frames arriving, no FAULT. ``cameras`` has each one's answer."""
        cameras = {name: dict(zip(("ok", "reason"), v.health(), strict=True)) for name, v in self.views.items()}
        bad = [(name, c["reason"]) for name, c in cameras.items() if not c["ok"]]
        if len(self.views) == 1:
            why = next(iter(cameras.values()))["reason"]
        else:
            why = "ok" if not bad else "; ".join(f"camera {name}: {reason}" for name, reason in bad)
        return web.json_response({"ok": not bad, "reason": why, "cameras": cameras}, status=503 if bad else 200)

    async def healthz_of_camera(self, request: web.Request) -> web.Response:
        healthy, why = self.view_of(request).health()
        return web.json_response({"ok": healthy, "reason": why}, status=200 if healthy else 503)

    async def status(self, request: web.Request) -> web.Response:
        """One camera: its status, as always, and ``cameras``. Several: the service's overall fields and ``cameras``."""
        cameras = {name: v.status() for name, v in self.views.items()}
        misdirected = {"refused_for_no_camera": self.first.metrics.refused_for_no_camera.snapshot()["refused"]}
        if len(self.views) == 1:
            return web.json_response({**next(iter(cameras.values())), **misdirected, "cameras": cameras})
        events: dict[str, int] = {}
        for c in cameras.values():
            for kind, n in c["events"].items():
                events[kind] = events.get(kind, 0) + n
        bad = [f"camera {name}: {c['health']}" for name, c in cameras.items() if not c["healthy"]]
        overall = {
            "name": self.name,
            "healthy": not bad,
            "health": "; ".join(bad) or "ok",
            "uptime_s": round(self.first.metrics.uptime(), 3),
            "events": events,
            "states": {name: c["state"] for name, c in cameras.items()},
        }
        return web.json_response({**overall, **misdirected, "cameras": cameras})

    async def status_of_camera(self, request: web.Request) -> web.Response:
        return web.json_response(self.view_of(request).status())

    async def metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        # Collecting reads a few counters; cheap enough for the event loop.
        return web.Response(body=encoder(self.first.registry), headers={"Content-Type": content_type})
