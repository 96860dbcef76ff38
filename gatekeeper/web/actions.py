"""The HTTP side of operator actions: ``POST /cameras/NAME/actions/KIND``, or ``/actions/KIND`` on
a one-camera service.

The route is outside the token middleware: the camera's controls check the bearer token
themselves (never a ``?token=``: a link or a form on another site cannot carry it), parse the
body and count and log each refusal (:meth:`Controls.http <gatekeeper.actions.Controls.http>`).
Here the request is read (at most :data:`~gatekeeper.actions.MAX_BODY` bytes) and handed to them
on the executor, since they wait for the gate's answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web

from ..actions import MAX_BODY
from .access import bearer_token
from .view import LiveView

__all__ = ["ActionRoute"]


class ActionRoute:
    """``POST .../actions/{kind}`` for the cameras' views (``views``: name -> view)."""

    def __init__(self, views: Mapping[str, LiveView]) -> None:
        self.views = dict(views)

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/actions/{kind}", self.post)
        app.router.add_post("/cameras/{camera}/actions/{kind}", self.post)

    async def post(self, request: web.Request) -> web.Response:
        """An unknown camera is answered without naming the cameras there are."""
        camera = request.match_info.get("camera")
        if camera is None and len(self.views) > 1:
            return web.json_response({"refused": "no_camera", "detail": "several cameras here; expected POST /cameras/NAME/actions/KIND"}, status=404)
        view = next(iter(self.views.values())) if camera is None else self.views.get(camera)
        if view is None:
            return web.json_response({"refused": "no_camera", "detail": "no such camera"}, status=404)
        controls = view.controls
        header = request.headers.get("Authorization")
        credentials = None if header is None else bearer_token(header)
        if request.content_length is not None and request.content_length > MAX_BODY:
            body = b"x" * (MAX_BODY + 1)  # not read: refused as too long, after the token check
        else:
            body = await request.content.read(MAX_BODY + 1)
        kind = request.match_info["kind"]
        answer = await asyncio.get_running_loop().run_in_executor(None, lambda: controls.http(kind, credentials, body, remote=request.remote))
        return web.json_response(answer.body, status=answer.status)
