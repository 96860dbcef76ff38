"""The park under load: N simulated gates publishing to a broker, ``gatekeeper park`` journaling them.

    flock /tmp/bench.lock python scripts/bench_park.py --gates 200 --rate 1 --seconds 120 --broker nats
    python scripts/bench_park.py --gates 20 --seconds 20          # a smoke run on a local mosquitto

Each gate is the real MQTT hook (:class:`gatekeeper.hooks.mqtt.MqttHook`, QoS 1, its retained
state and availability, its last will), fed events at ``--rate`` a second with jitter, so what
the park reads is what gates publish. The park is a real ``gatekeeper park`` process. ``--broker
mosquitto`` starts a local mosquitto (``max_queued_messages`` raised for a park); ``--broker nats``
a three-node NATS cluster (``tests/nats_cluster.py``), each gate given the three nodes as its
``brokers`` (rotated, so the gates spread over the nodes), the park given them all (on the first node while it lives); halfway
through (``--kill-at``) the second node is killed (SIGKILL).

Reported (one JSON object on stdout): events sent, journaled, lost (sent but not in the park's
journal after ``--drain`` seconds: must be 0), duplicates journaled (rows minus distinct ids:
must be 0) and duplicates delivered by the broker (dropped by the journal's unique id);
publish-to-journal latency p50/p99/max (the hook's ``publish()`` call to the journal row's
time, both this machine's wall clock); with ``--page``, the same to the event's first showing
on its tile in ``/events`` (what the page reads; the tiles it has at the end should be all N); the
park process's CPU (% of one core over the run, its CPU seconds, and those per 1000 events sent) and
RSS (max); /status's gate count; after the kill, for each gate, the time until its next
acknowledged publish (max and p99: "every gate publishing again"), and the latency of the
events sent outside the kill's window (the cluster stalls for seconds while it elects new
stream leaders: docs/operating.md, MQTT: several brokers).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from gatekeeper.events import Event, EventType, new_event_id  # noqa: E402
from gatekeeper.hooks.base import Delivery  # noqa: E402
from gatekeeper.hooks.config import MqttHookConfig  # noqa: E402
from gatekeeper.hooks.mqtt import MqttHook  # noqa: E402

PREFIX = "bench"
KINDS = [EventType.OPEN] * 6 + [EventType.DENY] * 2 + [EventType.FACE_LOST] * 2


class TimedHook(MqttHook):
    """The MQTT hook, noting when each of its events was acknowledged by the broker."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.acked: list[float] = []

    def _follow(self, delivery: Delivery) -> None:
        self.acked.append(time.time())
        super()._follow(delivery)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mosquitto(work: Path) -> tuple[subprocess.Popen[bytes], list[str]]:
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 0\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, [f"127.0.0.1:{port}"]


def start_park(work: Path, brokers: list[str], gates: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    http = free_port()
    journal = work / "park.sqlite3"
    config = work / "park.yaml"
    config.write_text(json.dumps({"broker": {"brokers": brokers, "topic_prefix": PREFIX, "client_id": "bench-park"}, "journal": {"path": str(journal)}, "http": {"event_queue": 4 * gates}}))
    proc = subprocess.Popen([sys.executable, "-m", "gatekeeper.cli", "park", "--config", str(config), "--http", f"127.0.0.1:{http}", "--log-level", "warning"], stderr=open(work / "park.log", "wb"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if status(http)["broker"]["connected"]:
                return proc, http, journal
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the park did not connect within 30 s; see {work / 'park.log'}")


def status(http: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/status", timeout=5) as r:
        return json.load(r)


class ProcSampler:
    """CPU time and RSS of one process, from /proc, sampled every second on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.rss_max_mb, self._stop = pid, 0.0, threading.Event()
        self.cpu0, self.t0 = self.cpu(), time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.rss_max_mb = max(self.rss_max_mb, int(line.split()[1]) / 1024)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        used, wall = self.cpu() - self.cpu0, time.monotonic() - self.t0
        return {"cpu_percent_of_one_core": round(100 * used / wall, 1), "rss_max_mb": round(self.rss_max_mb, 1), "cpu_s": round(used, 2)}


class PageWatcher:
    """A page's event stream (``/events`` of the park at ``url``, what the park's page reads), on a
    thread: when each event id first shows on its gate's tile (``seen``), the gates it has a tile
    for (the page keeps a tile for every gate any message named: the first carries those the park
    knew then), when each ``gates`` message (the changes after the first) arrived, and ``ready``
    once the first message came. tests/test_park.py reads a page with it too."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 300) -> None:
        self.seen: dict[str, float] = {}
        self.tiles: set[str] = set()
        self.messages: list[float] = []
        self.ready = threading.Event()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.resp = urllib.request.urlopen(urllib.request.Request(url + "events", headers=headers), timeout=timeout)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        kind = None
        try:
            for raw in self.resp:
                line = raw.decode().strip()
                if line.startswith("event: "):
                    kind = line[7:]
                if not line.startswith("data: "):
                    continue
                now, body = time.time(), json.loads(line[6:])
                if kind == "gates":
                    self.messages.append(now)
                self.tiles.update(body["gates"])
                for tile in body["gates"].values():
                    for e in tile["recent"]:
                        self.seen.setdefault(e["id"], now)
                self.ready.set()
        except (OSError, ValueError):
            pass  # the park went away at the end


def make_gates(n: int, brokers: list[str]) -> list[TimedHook]:
    gates = []
    for i in range(n):
        order = brokers[i % len(brokers):] + brokers[: i % len(brokers)]  # spread over the nodes
        where: dict[str, Any] = {"brokers": tuple(order)} if len(brokers) > 1 else {"host": order[0].rsplit(":", 1)[0], "port": int(order[0].rsplit(":", 1)[1])}
        cfg = MqttHookConfig(topic_prefix=PREFIX, keepalive_s=5, max_age_s=120.0, queue_size=1024, **where)
        hook = TimedHook(cfg, name=f"mqtt-g{i:03d}", gate=f"g{i:03d}")
        hook.start()
        gates.append(hook)
    for hook in gates:
        hook.wait_connected(30)
    return gates


def drive(gates: list[TimedHook], rate: float, seconds: float, kill: tuple[float, Any] | None) -> tuple[dict[str, float], float | None]:
    """Each gate an event every 1/rate s (jittered) for ``seconds``; returns ids -> send time and when the kill happened."""
    sent: dict[str, float] = {}
    start = time.monotonic()
    nxt = [start + random.uniform(0, 1 / rate) for _ in gates]
    frames = [0] * len(gates)
    killed_at = None
    while time.monotonic() - start < seconds:
        if kill is not None and killed_at is None and time.monotonic() - start >= kill[0]:
            kill[1]()
            killed_at = time.time()
        now = time.monotonic()
        for i, hook in enumerate(gates):
            if nxt[i] <= now:
                frames[i] += 1
                e = Event(random.choice(KINDS), frames[i], frames[i] / 30, 0.9, new_event_id(), camera=hook.gate)
                sent[e.id] = time.time()
                hook.publish(e)
                nxt[i] += random.uniform(0.5, 1.5) / rate
        time.sleep(max(0.0, min(nxt) - time.monotonic()))
    return sent, killed_at


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def results(journal: Path, sent: dict[str, float], gates: list[TimedHook], killed_at: float | None, park: dict[str, Any], page: PageWatcher | None) -> dict[str, Any]:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    rows = db.execute("SELECT id, created_at FROM events").fetchall()
    db.close()
    journaled = {i: c for i, c in rows}
    latency = [1000 * (journaled[i] - t) for i, t in sent.items() if i in journaled]
    out: dict[str, Any] = {
        "gates": len(gates),
        "events_sent": len(sent),
        "events_journaled": len(journaled),
        "events_lost": len(set(sent) - set(journaled)),
        "duplicates_journaled": len(rows) - len(journaled),
        "duplicates_delivered_and_dropped": park["messages"]["duplicates"],
        "latency_ms": {"p50": round(statistics.median(latency), 1) if latency else None, "p99": round(percentile(latency, 0.99), 1), "max": round(max(latency, default=float("nan")), 1)},
        "status_gates": park["summary"]["gates"],
    }
    if page is not None:
        shown = [1000 * (page.seen[i] - t) for i, t in sent.items() if i in page.seen]
        out["page"] = {"tiles": len(page.tiles), "events_shown": len(shown), "latency_ms_p50": round(statistics.median(shown), 1) if shown else None, "latency_ms_p99": round(percentile(shown, 0.99), 1)}
    if killed_at is not None:
        calm = [1000 * (journaled[i] - t) for i, t in sent.items() if i in journaled and not killed_at - 1 <= t <= killed_at + 15]
        out["latency_ms_outside_the_kill"] = {"p50": round(statistics.median(calm), 1) if calm else None, "p99": round(percentile(calm, 0.99), 1), "window": "sent 1 s before to 15 s after the kill left out"}
        back = [min((t for t in g.acked if t > killed_at + 0.001), default=float("inf")) - killed_at for g in gates]
        out["after_kill_s"] = {"max": round(max(back), 2), "p99": round(percentile(back, 0.99), 2), "gates_not_back": sum(b == float("inf") for b in back)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gates", type=int, default=200)
    ap.add_argument("--rate", type=float, default=1.0, help="events per second per gate")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--broker", choices=("mosquitto", "nats"), default="mosquitto")
    ap.add_argument("--kill-at", type=float, default=0.5, help="with --broker nats: kill the second node at this fraction of the run (0: never)")
    ap.add_argument("--page", action="store_true", help="also read /events as a page does: the publish-to-tile latency, and the park's CPU with a page open")
    ap.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the journal to catch up at the end")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_park-"))
    cluster = None
    if args.broker == "nats":
        from nats_cluster import NatsCluster

        (work / "nats").mkdir()
        cluster = NatsCluster(work / "nats")
        cluster.start()
        brokers, broker_proc = list(cluster.brokers), None
    else:
        broker_proc, brokers = start_mosquitto(work)
    park, http, journal = start_park(work, brokers, args.gates)
    gates: list[TimedHook] = []
    try:
        gates = make_gates(args.gates, brokers)
        page = PageWatcher(f"http://127.0.0.1:{http}/") if args.page else None
        sampler = ProcSampler(park.pid)
        kill = (args.seconds * args.kill_at, lambda: cluster.kill(cluster.nodes[1])) if cluster is not None and args.kill_at > 0 else None
        sent, killed_at = drive(gates, args.rate, args.seconds, kill)
        deadline = time.monotonic() + args.drain
        while time.monotonic() < deadline and status(http)["messages"]["journaled"] < len(sent):
            time.sleep(0.5)
        usage = sampler.stop()
        usage["cpu_s_per_1000_events"] = round(1000 * usage["cpu_s"] / max(1, len(sent)), 3)  # fair across runs on a busy machine, where % of wall is not
        report = {**results(journal, sent, gates, killed_at, status(http), page), "park": usage, "broker": args.broker, "rate": args.rate, "seconds": args.seconds}
        print(json.dumps(report, indent=2))
        return 0 if report["events_lost"] == 0 and report["duplicates_journaled"] == 0 else 1
    finally:
        for hook in gates:
            hook.stop()
            hook.release()
        park.terminate()
        park.wait(10)
        if cluster is not None:
            cluster.stop()
        if broker_proc is not None:
            broker_proc.terminate()
            broker_proc.wait(5)


if __name__ == "__main__":
    sys.exit(main())
