"""Crash safety under load: a busy service SIGKILLed at random points, restarted on its journal.

The real ``gatekeeper`` process runs three cameras, each replaying a clip of ``../shared/videos`` at
its own rate, with a signed webhook to a real local HTTP receiver (see conftest.py), while operator
actions over HTTP take the cameras out of service and back every few tens of milliseconds: events
are journaled and delivered all the time. It is killed (SIGKILL) a few times at a random moment
after it has started delivering, and restarted on the same journal; the last run plays its clips
to the end, which resumes and delivers whatever the killed runs left pending. Each kill comes
the moment the receiver has taken a request that it holds for a second before answering, so every
kill leaves at least that event pending, and the next run must send it again.

Then every event the journal holds for the webhook reached the receiver, by id, at least once
(a kill between the receiver's answer and the journal's note of it sends that one again, the
at-least-once promise), nothing reached it that the journal does not hold, and the journal passes
SQLite's ``integrity_check`` after every kill and at the end.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from polling import wait_for

from gatekeeper.journal import Journal

KILLS = 3
CLIPS = {"a": "broad_grin.mp4", "b": "single_face.mp4", "c": "no_face.mp4"}  # 3.1, 2.4 and 4.1 s
TOKEN = "crash-test-token-0123456789"
# Every face opens at once, once per visit; a face gone for 0.1 s is lost: the clips make events.
GATE = {"enter_threshold": 0.0, "exit_threshold": 0.0, "hold_seconds": None, "hold_frames": 2, "cooldown_s": 0.0, "deny_after_s": 600.0, "lost_after_s": 0.1}


def service_config(tmp_path: Path, face_model_path: Path, shared_dir: Path, url: str, secret: str) -> Path:
    config = {
        "detector": {"model_path": str(face_model_path)},
        "gate": GATE,
        "journal": {"path": str(tmp_path / "journal.sqlite3")},
        "http": {"token": TOKEN},
        "cameras": {name: {"video": str(shared_dir / "videos" / clip)} for name, clip in CLIPS.items()},
        # Retried until delivered: an event a kill left pending is resumed by the next run.
        "hooks": [{"type": "webhook", "url": url, "secret": secret, "require_signature": True, "max_age_s": 600, "backoff_max_s": 0.5}],
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


class Operator:
    """Takes each camera out of service and back over HTTP, as fast as the service answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="operator", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        kinds = ("out_of_service", "in_service")
        i = 0
        while not self._stop.wait(0.02):
            camera = list(CLIPS)[i % len(CLIPS)]
            kind = kinds[(i // len(CLIPS)) % 2]
            i += 1
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/cameras/{camera}/actions/{kind}",
                data=json.dumps({"by": "crash-test"}).encode(),
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=2) as answer:
                    answer.read()
                self.answered += 1
            except urllib.error.HTTPError:
                self.answered += 1  # 409 no_change after a restart restored the state: fine
            except OSError:
                pass  # the service is starting, or was just killed

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def integrity(path: Path) -> str:
    db = sqlite3.connect(path)  # read-write: a killed writer's WAL is recovered, as the next run would
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


@pytest.mark.slow
def test_a_busy_service_killed_at_random_delivers_every_journaled_event(
    tmp_path: Path, shared_dir: Path, face_model_path: Path, receiver, secret, closed_port: int
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    rx = receiver()
    config = service_config(tmp_path, face_model_path, shared_dir, rx.url, secret)
    port = closed_port  # free: the service's live view and actions listen there
    argv = [sys.executable, "-m", "gatekeeper.cli", "--config", str(config), "--realtime", "--http", f"127.0.0.1:{port}"]
    journal = tmp_path / "journal.sqlite3"
    operator = Operator(port)
    kills: list[tuple[float, float, int]] = []  # (seconds to the first delivery, then to the kill, deliveries left pending)
    try:
        for run in range(KILLS + 1):
            with (tmp_path / f"run{run}.out").open("w") as out, (tmp_path / f"run{run}.err").open("w") as err:
                proc = subprocess.Popen(argv, stdout=out, stderr=err)
                started = time.monotonic()
                try:
                    before = len(rx.requests)
                    if run == KILLS:  # the last run plays to the end and drains what is pending
                        assert proc.wait(timeout=60) == 0, (tmp_path / f"run{run}.err").read_text()[-3000:]
                        break
                    wait_for(lambda b=before: len(rx.requests) > b, 30, f"run {run} delivering")
                    delivering = time.monotonic() - started
                    after = rng.uniform(0.0, 1.5)
                    time.sleep(after)
                    rx.then(200, delay=1.0)  # the next request is held a second: the kill lands mid-delivery
                    rx.wait_for(len(rx.requests) + 1, timeout=10)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
            assert integrity(journal) == "ok", f"journal damaged by kill {run + 1} (seed {seed})"
            with Journal(journal, readonly=True) as j:
                kills.append((round(delivering, 1), round(after, 2), len(j.pending())))
            assert kills[-1][2] >= 1, f"seed {seed}: kill {run + 1} came mid-delivery, yet nothing was left pending"
    finally:
        operator.stop()

    assert integrity(journal) == "ok"
    with Journal(journal, readonly=True) as j:
        entries = j.entries()
    states = Counter(d.state.value for e in entries for d in e.deliveries)
    journaled = {e.event.id for e in entries if e.deliveries}
    received = Counter(r.id for r in rx.requests)
    duplicates = sum(received.values()) - len(received)
    print(
        f"\ncrash test (seed {seed}): {len(entries)} events journaled in {KILLS + 1} runs, {len(rx.requests)} requests, "
        f"{duplicates} duplicates, kills at {kills}, {operator.answered} operator actions answered, deliveries {dict(states)}"
    )
    assert states == {"delivered": len(journaled)}, f"seed {seed}: not every delivery settled as delivered: {dict(states)}"
    assert set(received) == journaled, (
        f"seed {seed}: lost {sorted(journaled - set(received))[:5]}, unknown {sorted(set(received) - journaled)[:5]}"
    )
    assert all(r.signature_ok and r.json["data"]["id"] == r.id for r in rx.requests)
    # Each kill caught one delivery in flight, and at most one per camera's webhook: only those come twice.
    assert KILLS <= duplicates <= KILLS * len(CLIPS), f"seed {seed}: {duplicates} duplicates for {KILLS} kills"
    assert len(journaled) >= 20, f"seed {seed}: only {len(journaled)} events: the service was not busy"
    assert len({e.event.camera for e in entries}) == len(CLIPS)

