"""``gatekeeper park``: one service for a park of gates, over the broker (cluster) they publish to.

It subscribes to every gate's topics under one prefix (``<prefix>/+/event``, ``/state``,
``/availability``, what each gate's MQTT hook publishes), keeps each gate's latest state,
health and availability (:mod:`~gatekeeper.park.state`), journals every event once in its own
SQLite journal (:mod:`~gatekeeper.park.journal`), and serves the park's page, ``/status`` and
``/metrics`` with actions on any gate through its command topic (:mod:`~gatekeeper.park.web`,
:mod:`~gatekeeper.park.actions`). The MQTT side is :mod:`~gatekeeper.park.listener`; the
config :mod:`~gatekeeper.park.config`; :mod:`~gatekeeper.park.service` wires and runs them.
The command (``gatekeeper park``) is in the command layer (:mod:`gatekeeper.commands`).

Nothing is imported here: ``gatekeeper events`` reads a park journal without loading paho or aiohttp.
"""
