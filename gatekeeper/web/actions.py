"""The HTTP side of operator actions: ``POST /cameras/NAME/actions/KIND``, or ``/actions/KIND`` on
a one-camera service.

The route is outside the middleware of the GET routes: it authenticates the request itself,
first, before anything else is looked at (so the answer to a caller without a credential is the
same 401 whether the camera exists or not), from the ``Authorization`` header only (never a
``?token=``: a link on another site cannot carry a header), and needs the ``operator`` role. A
browser sends HTTP Basic credentials by itself, also with a form another site posts here, so an
action authenticated by Basic must say it is JSON (``Content-Type: application/json``), which a
cross-site form cannot send. Each refusal is one line, counted as an action refusal (under the
camera's controls, or the service's for no camera) and as an access refusal. The camera's
controls then parse the body and act (:meth:`Controls.http <gatekeeper.actions.Controls.http>`),
with the person the credential names as ``by``. The request is read (at most
:data:`~gatekeeper.actions.MAX_BODY` bytes) and handed to them on the executor, since they wait
for the gate's answer.

A request for no camera of the service (``/cameras/lane9/...``, or ``/actions/KIND`` where there
are several) is a refusal like any other: a 404 that names no camera, one log line (which does
name them, for the operator) and one count under ``no_camera``, in the service's own
:class:`~gatekeeper.actions.ActionStats` (``camera=""`` in ``/metrics``, ``refused_for_no_camera``
in ``/status``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiohttp import web

from ..actions import MAX_BODY, ActionStats
from ..events import clip_text
from ..users import Principal
from .access import Authenticator, Refusal, forbidden
from .view import LiveView

__all__ = ["ActionRoute"]


class ActionRoute:
    """``POST .../actions/{kind}`` for the cameras' views (``views``: name -> view); ``refusals``
    counts the requests for no camera of them."""

    def __init__(self, views: Mapping[str, LiveView], refusals: ActionStats, auth: Authenticator) -> None:
        self.views = dict(views)
        self.refusals = refusals
        self.auth = auth

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/actions/{kind}", self.post)
        app.router.add_post("/cameras/{camera}/actions/{kind}", self.post)

    async def post(self, request: web.Request) -> web.Response:
        kind, camera = request.match_info["kind"], request.match_info.get("camera")
        if camera is None:
            view = next(iter(self.views.values())) if len(self.views) == 1 else None
        else:
            view = self.views.get(camera)
        principal = await self._authenticate(request, view)
        if isinstance(principal, web.Response):
            return principal
        if camera is None and view is None:
            return self._no_camera(request, None, "several cameras here; expected POST /cameras/NAME/actions/KIND")
        if view is None:
            return self._no_camera(request, camera, "no such camera")
        controls = view.controls
        if request.content_length is not None and request.content_length > MAX_BODY:
            body = b"x" * (MAX_BODY + 1)  # not read: refused as too long, after the token check
        else:
            body = await request.content.read(MAX_BODY + 1)
        answer = await asyncio.get_running_loop().run_in_executor(None, lambda: controls.http(kind, principal, body, remote=request.remote))
        return web.json_response(answer.body, status=answer.status)

    async def _authenticate(self, request: web.Request, view: LiveView | None) -> Principal | web.Response:
        """The principal of an action request with the operator role, or the refusal's answer
        (counted under ``view``'s controls, or the service's when it names no camera here)."""
        stats = view.controls.stats if view is not None else self.refusals
        asked = f"{clip_text(request.match_info['kind'])!r} from {request.remote or 'unknown'}"
        if not self.auth.enabled:
            detail = "operator actions need http.token or http.users in the config"
            stats.refuse("http", "no_token_configured", f"{asked}: {detail}")
            return web.json_response({"refused": "no_token_configured", "detail": detail}, status=403)
        header = request.headers.get("Authorization")
        who = await asyncio.get_running_loop().run_in_executor(None, self.auth.identify, header, None, request.remote)  # an scrypt: off the event loop
        refusal = who if isinstance(who, Refusal) else forbidden(who, "operator")
        if refusal is None and header is not None and header.strip().lower().startswith("basic") and request.content_type != "application/json":
            refusal = Refusal("not_json", who.role if isinstance(who, Principal) else None, f"{who}: Basic credentials on a request that is not Content-Type: application/json (a cross-site form?)", status=415)
        if refusal is None:
            assert isinstance(who, Principal)
            return who
        stats.refuse("http", refusal.code, f"{asked}: {refusal.message}", level=logging.DEBUG if refusal.code == "throttled" else logging.WARNING)  # a throttle: logged once, at its start
        self.auth.refuse(refusal, asked, log=False)
        detail = {"forbidden": "your role may not act; expected operator or admin", "not_json": "expected Content-Type: application/json"}.get(refusal.code, "a token is required: Authorization: Bearer TOKEN" if self.auth.users is None else "a credential is required: HTTP Basic NAME:SECRET, or Authorization: Bearer NAME:SECRET or TOKEN")
        headers = self.auth.challenge() if refusal.status == 401 else refusal.headers
        return web.json_response({"refused": refusal.code, "detail": detail}, status=refusal.status, headers=headers)

    def _no_camera(self, request: web.Request, camera: str | None, detail: str) -> web.Response:
        """The refusal of a request for no camera here (``camera``: the name it gave, if any):
        logged with the cameras there are and counted, answered without naming them."""
        asked = repr(clip_text(request.match_info["kind"])) + ("" if camera is None else f" for camera {clip_text(camera)!r}")
        why = "no camera named" if camera is None else "no such camera"
        self.refusals.refuse("http", "no_camera", f"{asked} from {request.remote or 'unknown'}: {why}; expected POST /cameras/NAME/actions/KIND, NAME one of {', '.join(self.views)}")
        return web.json_response({"refused": "no_camera", "detail": detail}, status=404)
