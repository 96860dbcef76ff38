"""The HTTP side of operator actions: ``POST /cameras/NAME/actions/KIND``, or ``/actions/KIND`` on
a one-camera service.

The route is outside the token middleware: the camera's controls check the bearer token
themselves (never a ``?token=``: a link or a form on another site cannot carry it), parse the
body and count and log each refusal (:meth:`Controls.http <gatekeeper.actions.Controls.http>`).
Here the request is read (at most :data:`~gatekeeper.actions.MAX_BODY` bytes) and handed to them
on the executor, since they wait for the gate's answer.

A request for no camera of the service (``/cameras/lane9/...``, or ``/actions/KIND`` where there
are several) is a refusal like any other: a 404 that names no camera, one log line (which does
name them, for the operator) and one count under ``no_camera``, in the service's own
:class:`~gatekeeper.actions.ActionStats` (``camera=""`` in ``/metrics``, ``refused_for_no_camera``
in ``/status``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web

from ..actions import MAX_BODY, ActionStats
from ..events import clip_text
from .access import bearer_token
from .view import LiveView

__all__ = ["ActionRoute"]


class ActionRoute:
    """``POST .../actions/{kind}`` for the cameras' views (``views``: name -> view); ``refusals``
    counts the requests for no camera of them."""

    def __init__(self, views: Mapping[str, LiveView], refusals: ActionStats) -> None:
        self.views = dict(views)
        self.refusals = refusals

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/actions/{kind}", self.post)
        app.router.add_post("/cameras/{camera}/actions/{kind}", self.post)

    async def post(self, request: web.Request) -> web.Response:
        kind, camera = request.match_info["kind"], request.match_info.get("camera")
        if camera is None and len(self.views) > 1:
            return self._no_camera(request, None, "several cameras here; expected POST /cameras/NAME/actions/KIND")
        view = next(iter(self.views.values())) if camera is None else self.views.get(camera)
        if view is None:
            return self._no_camera(request, camera, "no such camera")
        controls = view.controls
        header = request.headers.get("Authorization")
        credentials = None if header is None else bearer_token(header)
        if request.content_length is not None and request.content_length > MAX_BODY:
            body = b"x" * (MAX_BODY + 1)  # not read: refused as too long, after the token check
        else:
            body = await request.content.read(MAX_BODY + 1)
        answer = await asyncio.get_running_loop().run_in_executor(None, lambda: controls.http(kind, credentials, body, remote=request.remote))
        return web.json_response(answer.body, status=answer.status)

    def _no_camera(self, request: web.Request, camera: str | None, detail: str) -> web.Response:
        """The refusal of a request for no camera here (``camera``: the name it gave, if any):
        logged with the cameras there are and counted, answered without naming them."""
        asked = repr(clip_text(request.match_info["kind"])) + ("" if camera is None else f" for camera {clip_text(camera)!r}")
        why = "no camera named" if camera is None else "no such camera"
        self.refusals.refuse("http", "no_camera", f"{asked} from {request.remote or 'unknown'}: {why}; expected POST /cameras/NAME/actions/KIND, NAME one of {', '.join(self.views)}")
        return web.json_response({"refused": "no_camera", "detail": detail}, status=404)
