"""The live view: what the gate sees and why it decided, served over HTTP beside the frame loop.

    gatekeeper --video clip.mp4 --realtime --http 127.0.0.1:8080

=================  ==========================================================================
route              what
=================  ==========================================================================
``/``              the page: live picture with face boxes, smile score against the
                   thresholds, gate state, recent events as they happen
``/stream.mjpg``   the annotated picture as MJPEG (``multipart/x-mixed-replace``)
``/events``        Server-Sent Events: ``gate`` (each event, recent ones first) and ``state``
``/healthz``       200 while frames arrive; 503 before the first frame, after the watchdog
                   fired (FAULT), when frames stopped for ``source.watchdog_s``, or the
                   source ended
``/status``        JSON: state, frame counters, last score, uptime, events by type, hooks
``/metrics``       Prometheus text format, from this view's own registry
``POST             an operator action (``open``, ``out_of_service``, ``in_service``), body
/actions/{kind}``  ``{"by": ..., "reason": ...}``; always needs ``http.token`` as ``Authorization:
                   Bearer``, loopback or not (see :mod:`gatekeeper.actions`)
=================  ==========================================================================

Several cameras (one :class:`LiveView` each, their metrics in one :class:`Metrics`): every
camera's view lives under ``/cameras/{camera}/`` (the page, ``stream.mjpg``, ``events``,
``status``, ``healthz``, ``snapshot.jpg`` and ``POST actions/{kind}``), and also at the routes
above when it is the only one. With several, ``/`` is the list of cameras (``cameras.html``),
``/status`` and ``/healthz`` the overall answer with ``cameras: {name: ...}``, and the routes of
one camera's view without a name answer 404. Every per-camera metric family has a ``camera`` label.

Threads. A camera's thread only calls :meth:`LiveView.on_frame` (stores a reference to the
newest frame in a one-slot handoff and observes a few numbers) and :meth:`LiveView.emit` (counts
the event and queues it for each live-view client). Everything that costs time (drawing the
boxes, JPEG encoding, HTTP) happens on the server's own thread and its executor, so a slow or
stuck browser can never stall the gate.

With ``http.token`` set, every route but ``/healthz`` needs it (:mod:`gatekeeper.web.access`);
a bind beyond loopback refuses to start without one. A request the HTTP parser refuses gets a
short 400 that echoes nothing of the request (:mod:`gatekeeper.web.guard`).

The modules, one job each: :mod:`~gatekeeper.web.server` (the server and its thread),
:mod:`~gatekeeper.web.routes` (the pages, the picture, the events, health, status, metrics),
:mod:`~gatekeeper.web.actions` (``POST .../actions/KIND``), :mod:`~gatekeeper.web.view` (one
camera's live state), :mod:`~gatekeeper.web.snapshot` (the newest frame, encoded once),
:mod:`~gatekeeper.web.draw` (the boxes on it), :mod:`~gatekeeper.web.hub` (the events fanned out
to the clients), :mod:`~gatekeeper.web.metrics` (Prometheus), :mod:`~gatekeeper.web.access`
(tokens), :mod:`~gatekeeper.web.guard` (bad requests), :mod:`~gatekeeper.web.address` (where to
listen).
"""

from __future__ import annotations

from .access import mask_secrets
from .address import check_exposure, is_loopback, listen_socket, parse_listen
from .draw import annotate_jpeg
from .hub import EventHub
from .metrics import Metrics
from .server import WebServer
from .snapshot import Snapshot
from .view import LiveView

__all__ = [
    "EventHub",
    "LiveView",
    "Metrics",
    "Snapshot",
    "WebServer",
    "annotate_jpeg",
    "check_exposure",
    "is_loopback",
    "listen_socket",
    "mask_secrets",
    "parse_listen",
]
