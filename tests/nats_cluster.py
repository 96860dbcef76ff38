"""A NATS cluster on loopback for tests and benchmarks: Debian's ``nats-server`` (2.9), three nodes
by default, each with JetStream (its own store directory and ``server_name``, which JetStream in a
cluster requires) and the MQTT interface (which requires JetStream), routed to each other.

    cluster = NatsCluster(tmp_path)
    cluster.start()                  # returns once every node is ready (see wait_ready)
    cluster.brokers                  # ["127.0.0.1:<mqtt port>", ...]: an MQTT hook's brokers list
    cluster.kill(cluster.nodes[0])   # SIGKILL: no goodbye to its clients or routes
    cluster.restart(cluster.nodes[0])
    cluster.stop()

What it learned about NATS's MQTT (2.9.10), which the tests and docs/operating.md rely on:

* A node that is up is not yet an MQTT broker: the first MQTT CONNECT on a node creates (or looks
  up) the account's MQTT streams ($MQTT_sess, $MQTT_msgs, $MQTT_rmsgs, R3 in a three-node cluster)
  through the JetStream API. Until the cluster has a JetStream meta leader that CONNECT waits, and
  after about 4 s the node drops the connection ("unable to connect: ... timeout"). So ready here
  means: ``/healthz`` says JetStream is current, the routes are up, and an MQTT CONNECT got a
  CONNACK on every node.
* Every CONNECT, clean session or not, goes through the $MQTT_sess stream (the session record and
  the cluster-wide client-id lock). When the node holding that stream's leader dies, CONNECTs on the
  surviving nodes wait for a new leader (a Raft election: seconds, not milliseconds), so a client
  that fails over is connected again some seconds after the loss, not at once.
* A QoS-1 PUBLISH is stored in JetStream ($MQTT_msgs) before its PUBACK, so an acknowledged message
  survives the loss of a node. While that stream has no leader the PUBACK waits, and after about
  4 s the node closes the publisher's connection ("timeout for request type MS"): a client that has
  just failed over can be dropped once more and has to reconnect again.
* A message on its way to a persistent session (clean_session false) when that session's
  connection closes is not resent when the session comes back (on any node): JetStream redelivers
  it after the MQTT ``ack_wait`` (30 s by default; 5 s here), after newer messages. Subscribers
  must not rely on order and should de-duplicate by id (a redelivery can also be a duplicate).
* Retained messages are not safe across a node loss: after a node was killed, a retained message
  published (and acknowledged) on a surviving node was not what new subscribers got for the next
  60 s, on any node; they got the previous retained value, or nothing. Read the live topics
  rather than trusting retained state after a broker failure.
* A client id is unique across the cluster: connecting with an id that is connected on another
  node takes the session over and the other connection is closed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

__all__ = ["NatsCluster", "NatsNode", "nats_exe"]

CLUSTER_NAME = "gk"


def nats_exe() -> str:
    """The nats-server binary; AssertionError naming the package when it is missing (CI installs it)."""
    exe = shutil.which("nats-server") or next((p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if os.access(p, os.X_OK)), None)
    if exe is None:
        raise AssertionError("the NATS cluster tests need nats-server, which is not installed: run `apt-get install nats-server` (CI installs it in .ci/run)")
    return exe


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held open together, so none is handed out twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class NatsNode:
    name: str
    client_port: int
    cluster_port: int
    mqtt_port: int
    http_port: int
    store: Path
    conf: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def broker(self) -> str:
        """``host:port`` of this node's MQTT interface."""
        return f"127.0.0.1:{self.mqtt_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def monitor(self, path: str, timeout: float = 1.0) -> Any:
        """JSON from the node's monitoring endpoint (``/healthz``, ``/jsz?streams=true``, ``/routez``...)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=timeout) as reply:
            return json.loads(reply.read())

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class NatsCluster:
    """``size`` nats-server nodes routed to each other on 127.0.0.1, JetStream and MQTT on each."""

    def __init__(self, workdir: Path, size: int = 3, *, exe: str | None = None, ack_wait: str = "5s") -> None:
        """``ack_wait``: the nodes' ``mqtt.ack_wait`` (NATS's default is 30s; see the module's notes)."""
        self.exe = exe or nats_exe()
        self.workdir = workdir
        ports = _free_ports(4 * size)
        self.nodes = [
            NatsNode(
                name=f"n{i + 1}",
                client_port=ports[4 * i],
                cluster_port=ports[4 * i + 1],
                mqtt_port=ports[4 * i + 2],
                http_port=ports[4 * i + 3],
                store=workdir / f"nats-n{i + 1}",
                conf=workdir / f"nats-n{i + 1}.conf",
                log=workdir / f"nats-n{i + 1}.log",
            )
            for i in range(size)
        ]
        routes = ", ".join(f"nats-route://127.0.0.1:{n.cluster_port}" for n in self.nodes)
        for n in self.nodes:
            n.conf.write_text(
                f"server_name: {n.name}\n"
                f"listen: 127.0.0.1:{n.client_port}\n"
                f"http: 127.0.0.1:{n.http_port}\n"
                f'jetstream {{ store_dir: "{n.store}", max_memory_store: 64MB, max_file_store: 256MB }}\n'
                f"cluster {{ name: {CLUSTER_NAME}, listen: 127.0.0.1:{n.cluster_port}, routes: [{routes}] }}\n"
                f"mqtt {{ listen: 127.0.0.1:{n.mqtt_port}, ack_wait: {ack_wait!r} }}\n"
            )

    @property
    def brokers(self) -> list[str]:
        return [n.broker for n in self.nodes]

    def node_at(self, port: int) -> NatsNode:
        """The node whose MQTT interface listens on ``port``."""
        return next(n for n in self.nodes if n.mqtt_port == port)

    # -- processes ---------------------------------------------------------------------------------
    def _spawn(self, node: NatsNode) -> None:
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen([self.exe, "-c", str(node.conf)], stdout=log, stderr=subprocess.STDOUT)

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for node in self.nodes:
            if not node.running:
                self._spawn(node)
        self.wait_ready(timeout)
        return self

    def kill(self, node: NatsNode, sig: int = signal.SIGKILL) -> None:
        """Kill one node (SIGKILL by default: its clients and routes see the sockets close, nothing more)."""
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(sig)
            node.proc.wait(10)

    def restart(self, node: NatsNode, timeout: float = 30.0) -> None:
        """Start a killed node again with its store, and wait until the cluster is ready."""
        self.kill(node)
        self._spawn(node)
        self.wait_ready(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()

    # -- readiness ---------------------------------------------------------------------------------
    def wait_ready(self, timeout: float = 30.0) -> None:
        """Every running node: JetStream current (``/healthz``), routed to every other running node,
        and its MQTT interface answering CONNECT with a CONNACK. AssertionError with the logs otherwise."""
        deadline = time.monotonic() + timeout
        running = [n for n in self.nodes if n.running]
        pending = {n.name for n in running}
        problem = "not checked yet"
        while pending:
            for node in running:
                if not node.running:
                    raise AssertionError(f"nats-server {node.name} exited with {node.proc.returncode if node.proc else None}:\n{node.log_tail()}")
                if node.name not in pending:
                    continue
                problem = self._not_ready(node, len(running) - 1, max(0.5, deadline - time.monotonic()))
                if problem is None:
                    pending.discard(node.name)
            if pending and time.monotonic() > deadline:
                tails = "\n".join(f"--- {n.name}\n{n.log_tail(15)}" for n in running)
                raise AssertionError(f"NATS cluster not ready within {timeout:g} s: {problem}\n{tails}")
            if pending:
                time.sleep(0.1)

    def _not_ready(self, node: NatsNode, peers: int, budget: float) -> str | None:
        """Why ``node`` is not ready yet, or None when it is."""
        try:
            health = node.monitor("/healthz")
            routes = node.monitor("/routez")
        except (OSError, urllib.error.URLError, ValueError) as exc:
            return f"{node.name}: monitoring not answering ({exc})"
        if health.get("status") != "ok":
            return f"{node.name}: /healthz says {health}"
        routed = {r.get("remote_name") or r.get("remote_id") for r in routes.get("routes", [])}
        if len(routed) < peers:
            return f"{node.name}: {len(routed)} of {peers} routes up"
        if not mqtt_connack(node.mqtt_port, min(budget, 6.0)):
            return f"{node.name}: MQTT CONNECT on port {node.mqtt_port} got no CONNACK"
        return None

    def stream_leaders(self) -> dict[str, str]:
        """Stream name -> the node that leads it (of the MQTT streams), as any running node sees it."""
        for node in self.nodes:
            if not node.running:
                continue
            try:
                data = node.monitor("/jsz?streams=true")
            except (OSError, urllib.error.URLError, ValueError):
                continue
            return {s["name"]: s.get("cluster", {}).get("leader", "") for a in data.get("account_details", []) for s in a.get("stream_detail", [])}
        return {}


def mqtt_connack(port: int, timeout: float) -> bool:
    """Whether an MQTT CONNECT on 127.0.0.1:``port`` gets a successful CONNACK within ``timeout``."""
    done = threading.Event()
    ok: list[bool] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        ok.append(not rc.is_failure)
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ready-{uuid.uuid4().hex[:8]}")
    client.on_connect = on_connect
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except OSError:
        return False
    client.loop_start()
    try:
        return done.wait(timeout) and ok == [True]
    finally:
        client.disconnect()
        client.loop_stop()
