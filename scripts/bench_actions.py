#!/usr/bin/env python3
"""What operator actions cost the frame loop, and how long staff wait for the gate's answer.

    python scripts/bench_actions.py [--frames 200000] [--opens 200]

Prints:

* the frame loop's cost of looking for actions with none queued (``Controls.apply`` on an empty
  queue, per frame, in microseconds): what every frame pays for the controls;
* ``Gate.act`` + ``Controls.apply`` for one queued open, in microseconds;
* the round trip of ``POST /actions/open`` through a real aiohttp server and client to a gate
  whose frame loop runs at 30 frames a second (journal on disk, no hooks): median, p95 and max
  milliseconds from sending the request to reading the answer with the OPEN in it. Half a frame
  interval (17 ms) is the expected wait for the loop to come round.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np

from gatekeeper.actions import Action, Controls
from gatekeeper.camera import Camera
from gatekeeper.capture import Frame
from gatekeeper.config import Config, HttpConfig, JournalConfig
from gatekeeper.events import Event
from gatekeeper.gate import Gate, GateConfig
from gatekeeper.hooks import Dispatcher
from gatekeeper.journal import Journal
from gatekeeper.pipeline import TrackedGate
from gatekeeper.serve import Watchers
from gatekeeper.web import LiveView, WebServer

TOKEN = "bench-token-0123456789"


class NoFaces:
    """detect -> classify with nobody in view (the models are not what is measured here); the
    tracker and the gate are the real ones."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.tracked = TrackedGate(gate)
        self.last_faces: list = []

    def process(self, frame: Frame) -> list[Event]:
        return self.tracked.step(frame.index, frame.t, [])

    def recover(self, frame: int, t: float, reason: str, *, cause: str = "pipeline") -> list[Event]:
        return self.tracked.recover(frame, t, reason, cause=cause)

    def next_look(self) -> float | None:
        return None

    def close(self) -> None:
        pass


def empty_apply_us(frames: int) -> float:
    controls, gate = Controls(), Gate()
    start = time.perf_counter()
    for i in range(frames):
        controls.apply(gate, i, i / 30, lambda events: events)
    return (time.perf_counter() - start) / frames * 1e6


def one_open_us(n: int) -> float:
    controls, gate = Controls(), Gate(GateConfig(manual_open_interval_s=0.0))
    total = 0.0
    for i in range(n):
        controls.submit(Action("open", "bench", "http"))
        start = time.perf_counter()
        controls.apply(gate, i, float(i), lambda events: events)
        total += time.perf_counter() - start
    return total / n * 1e6


def http_round_trips(opens: int, folder: Path) -> list[float]:
    cfg = Config(gate=GateConfig(manual_open_interval_s=0.0), http=HttpConfig(token=TOKEN), journal=JournalConfig(path=str(folder / "journal.sqlite3")))
    dispatcher = Dispatcher(Journal(cfg.journal.resolved_path()), [])
    dispatcher.start()
    controls = Controls(cfg.actions)
    watchers = Watchers()
    app = Camera(cfg.name, cfg, NoFaces(Gate(cfg.gate)), [watchers], dispatcher=dispatcher, controls=controls)  # type: ignore[arg-type]
    view = LiveView(app)
    watchers.add(view)
    server = WebServer(view, "127.0.0.1", 0)
    server.start()

    def frames() -> Iterator[Frame]:
        image, i, start = np.zeros((8, 8, 3), np.uint8), 0, time.monotonic()
        while not app.stopping.is_set():
            yield Frame(image, i, time.monotonic() - start)
            i += 1
            time.sleep(max(0.0, start + i / 30 - time.monotonic()))

    loop = threading.Thread(target=app.run, args=(frames(),), daemon=True)
    loop.start()

    async def run() -> list[float]:
        out = []
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as session:
            for _ in range(opens):
                # Requests sent back to back would arrive right after the frame that answered the
                # last one and wait a whole frame: a random pause puts them anywhere in the frame.
                await asyncio.sleep(random.uniform(0.0, 0.05))
                start = time.perf_counter()
                async with session.post(server.url + "actions/open", data=b'{"by": "bench"}', headers=headers) as r:
                    answer = await r.json()
                out.append((time.perf_counter() - start) * 1000)
                assert r.status == 200 and answer["events"][0]["event"] == "OPEN", answer
        return out

    try:
        return asyncio.run(run())
    finally:
        app.stopping.set()
        loop.join(5)
        app.close()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200_000, help="frames for the empty-queue cost")
    ap.add_argument("--opens", type=int, default=200, help="HTTP opens for the round trip")
    args = ap.parse_args(argv)
    print(f"Controls.apply, nothing queued:  {empty_apply_us(args.frames):7.2f} us per frame")
    print(f"one open (Gate.act + apply):     {one_open_us(10_000):7.2f} us")
    with tempfile.TemporaryDirectory() as tmp:
        trips = sorted(http_round_trips(args.opens, Path(tmp)))
    p95 = trips[min(len(trips) - 1, int(0.95 * len(trips)))]
    print(f"POST /actions/open round trip:   median {statistics.median(trips):.1f} ms, p95 {p95:.1f} ms, max {trips[-1]:.1f} ms ({len(trips)} opens, frame loop at 30 fps, journal on disk)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
