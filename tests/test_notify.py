"""systemd's notification protocol (gatekeeper.notify): the pure parts with the time passed in,
the sender and the notifier's thread against a real unix datagram socket standing in for
systemd's.

The whole service under ``NOTIFY_SOCKET`` (a real ``gatekeeper`` process on a live camera) is in
``test_notify_service.py``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fake_systemd import FakeSystemd

from gatekeeper.notify import (
    LoopState,
    Notifier,
    ServiceNotifier,
    Watchdog,
    describe,
    dump_stacks_on_abort,
    notify_address,
    pending,
    watchdog_interval,
)

# -- the protocol's pieces --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@gatekeeper/notify", b"\0gatekeeper/notify"),
        ("@x", b"\0x"),
    ],
)
def test_notify_address(value: str, expected: str | bytes) -> None:
    assert notify_address(value) == expected


@pytest.mark.parametrize("value", ["run/notify", "@", "vsock:2:1234", " /run/notify"])
def test_a_notify_address_that_is_neither_a_path_nor_abstract_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="expected an absolute path or @name"):
        notify_address(value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "4242"}, 1.5),  # for this process (pid 4242)
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}, None),  # for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "ten"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env, pid=4242) == expected


def test_a_bad_watchdog_usec_is_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gatekeeper.notify"):
        assert watchdog_interval({"WATCHDOG_USEC": "ten"}) is None
    assert [r.getMessage() for r in caplog.records] == ["WATCHDOG_USEC='ten' is not a positive whole number of microseconds; no watchdog pings"]


# -- a real socket standing in for systemd's ------------------------------------------------------


@pytest.fixture(params=["path", "abstract"])
def systemd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeSystemd]:
    address: str | bytes = str(tmp_path / "notify.sock") if request.param == "path" else b"\0gatekeeper-test-" + uuid.uuid4().hex.encode()
    fake = FakeSystemd(address)
    yield fake
    fake.close()


def test_a_message_is_one_datagram_of_lines(systemd: FakeSystemd) -> None:
    notifier = Notifier(notify_address(systemd.env_value))
    try:
        assert notifier.send("READY=1", "STATUS=ready: lane1 first frame in")
        assert notifier.send("WATCHDOG=1")
    finally:
        notifier.close()
    systemd.wait_for("WATCHDOG")
    assert systemd.log() == [{"READY": "1", "STATUS": "ready: lane1 first frame in"}, {"WATCHDOG": "1"}]


def test_a_manager_gone_is_logged_once_per_run_of_failures(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "nobody.sock"))
    try:
        with caplog.at_level(logging.WARNING, logger="gatekeeper.notify"):
            assert not notifier.send("WATCHDOG=1")
            assert not notifier.send("WATCHDOG=1")
    finally:
        notifier.close()
    assert notifier.failures == 2
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "cannot notify the service manager at NOTIFY_SOCKET" in lines[0] and "WATCHDOG not sent" in lines[0], lines


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"WATCHDOG_USEC": "2000000"}, {"NOTIFY_SOCKET": "relative/notify"}])
def test_without_a_notify_socket_nothing_runs(env: dict[str, str]) -> None:
    notify = ServiceNotifier.from_environ(env)
    assert not notify.enabled
    before = threading.active_count()
    with notify:
        notify.status("loading the models")
        notify.watch({"lane1": fake_camera()}, threading.Event())  # type: ignore[dict-item]
        assert threading.active_count() == before, "no thread without NOTIFY_SOCKET"
        notify.stopping("stop requested")


# -- what the frame loops tell: pure, time passed in ----------------------------------------------


def loop(name: str = "lane1", turned: float | None = 100.0, frames: int = 10, **kw: Any) -> LoopState:
    return LoopState(name, turned, frames, **kw)


@pytest.mark.parametrize(
    ("state", "is_in"),
    [
        (loop(frames=0), False),  # started, no frame yet
        (loop(turned=None, frames=0), False),  # not started
        (loop(frames=1), True),
        (loop(frames=0, fault="no frame for 2 s"), True),  # no first frame within its watchdog: FAULT raised
        (loop(frames=0, ended="source ended"), True),
        (loop(frames=0, ended="source ended", failed="RuntimeError: boom"), True),
    ],
)
def test_when_a_camera_no_longer_holds_ready_back(state: LoopState, is_in: bool) -> None:
    assert state.is_in is is_in
    assert pending([state, loop("lane9")]) == ([] if is_in else ["lane1"])


@pytest.mark.parametrize(
    ("loops", "ready", "expected"),
    [
        ([loop()], True, "ready: lane1 first frame in"),
        ([loop()], False, "lane1 running"),
        ([loop(frames=0, fault="no frame for 2 s")], True, "ready: lane1 FAULT before a first frame (no frame for 2 s)"),
        ([loop(fault="no frame for 2 s")], True, "ready: lane1 first frame in, now FAULT (no frame for 2 s)"),
        ([loop(ended="source ended"), loop("lane2", fault="a\nb")], False, "lane1 ended (source ended); lane2 FAULT (a b)"),
        ([loop(ended="stopped", failed="RuntimeError: boom")], False, "lane1 failed (RuntimeError: boom)"),
        ([loop(fault="x" * 400)], False, "lane1 FAULT (" + "x" * 157 + "...)"),
    ],
)
def test_status_lines(loops: list[LoopState], ready: bool, expected: str) -> None:
    assert describe(loops, ready=ready) == expected


def test_the_watchdog_pings_every_interval_while_the_loops_turn() -> None:
    dog = Watchdog(1.0)
    sent = [now for now in (0.0, 0.25, 0.5, 0.99, 1.0, 1.4, 2.1, 2.5, 3.2) if dog.ping([loop(turned=now - 0.05)], now)]
    assert sent == [0.0, 1.0, 2.1, 3.2]


@pytest.mark.parametrize(
    ("state", "stuck"),
    [
        (loop(turned=99.0), None),  # turned 1 s ago: within stall_s
        (loop(turned=97.9), "frame loop has not turned for 2.1 s"),  # stuck in a stage
        (loop(turned=99.9, frames=0, fault="no frame for 2 s"), None),  # faulted, still polling: alive
        (loop(turned=50.0, ended="source ended"), None),  # a finite source that ended is not watched
        (loop(turned=99.9, ended="stopped", failed="RuntimeError: boom"), "frame loop ended with an error (RuntimeError: boom)"),
        (loop(turned=None, frames=0), None),  # not started yet
    ],
)
def test_what_stops_the_pings(state: LoopState, stuck: str | None) -> None:
    dog = Watchdog(2.0)
    assert dog.stuck([state, loop("lane2", turned=99.95)], now=100.0) == ({} if stuck is None else {"lane1": stuck})
    assert dog.ping([state, loop("lane2", turned=99.95)], now=100.0) is (stuck is None)


def test_a_stuck_loop_stops_the_pings_until_it_turns_again() -> None:
    dog = Watchdog(1.0)
    assert dog.ping([loop(turned=10.0), loop("lane2", turned=10.0)], 10.0)
    pings = []
    for step in range(1, 41):  # lane1 turns every 0.1 s; lane2 hangs at 11.5 and turns again at 14.0
        now = 10.0 + step / 10
        lane2 = now if now <= 11.5 or now >= 14.0 else 11.5
        if dog.ping([loop(turned=now), loop("lane2", turned=lane2)], now):
            pings.append(round(now, 1))
    # From 12.6 lane2 is past the stall limit (1 s without a turn): no ping at 13.0, the next
    # comes when lane2 turns again.
    assert pings == [11.0, 12.0, 14.0]


def test_the_watchdog_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="interval_s must be positive, got 0"):
        Watchdog(0)


# -- the notifier's thread over fake cameras, its clock passed in -----------------------------------


def fake_camera(turned: float | None = None, frames: int = 0) -> SimpleNamespace:
    """What the notifier reads of a :class:`~gatekeeper.camera.Camera`."""
    return SimpleNamespace(turned=turned, frames=frames, gate=SimpleNamespace(faults={}), ended=None, error=None)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_ready_waits_for_every_camera_then_pings_follow_the_loops(systemd: FakeSystemd) -> None:
    clock = Clock(1000.0)
    lane1, lane2 = fake_camera(turned=1000.0), fake_camera(turned=1000.0)
    stopping = threading.Event()
    notify = ServiceNotifier(Notifier(notify_address(systemd.env_value)), 1.0, clock=clock)
    with notify:
        notify.watch({"lane1": lane1, "lane2": lane2}, stopping)  # type: ignore[dict-item]
        systemd.wait_for("STATUS", "waiting for the first frame of lane1, lane2")
        lane1.frames = 1
        systemd.wait_for("STATUS", "waiting for the first frame of lane2")
        assert systemd.times("READY") == []
        lane2.gate.faults = {"source": "no frame for 2 s"}  # lane2 never sent a frame: its FAULT lets READY go
        _, ready = systemd.wait_for("READY", "1")
        assert ready["STATUS"] == "ready: lane1 first frame in; lane2 FAULT before a first frame (no frame for 2 s)"
        systemd.wait_for("WATCHDOG", "1")
        systemd.wait_for("STATUS", "lane1 running; lane2 FAULT (no frame for 2 s)")
        # The clock stands still: no second ping, however long the real wait.
        time.sleep(0.6)
        assert len(systemd.times("WATCHDOG")) == 1
        # Both loops turn as time goes on (lane2 faulted but polling): one ping per interval.
        for now, pings in ((1000.5, 1), (1001.0, 2), (1001.5, 2), (1002.0, 3)):
            lane1.turned = lane2.turned = now
            clock.now = now
            mark = time.monotonic()
            if pings > len(systemd.times("WATCHDOG")):
                systemd.wait_for("WATCHDOG", "1", after=mark)
            else:
                time.sleep(0.6)  # the notifier ticks every 0.25 s: it had its chances
            assert len(systemd.times("WATCHDOG")) == pings, (now, systemd.log())
        # lane1 hangs: 1.5 s of clock without a turn stops the pings and says so.
        lane2.turned = 1003.5
        clock.now = 1003.5
        mark = time.monotonic()
        _, stuck = systemd.wait_for("STATUS", "stuck", after=mark)
        assert stuck["STATUS"] == "stuck: lane1: frame loop has not turned for 1.5 s; watchdog pings stopped"
        time.sleep(0.6)
        assert systemd.times("WATCHDOG", after=mark) == []
        # It turns again: the pings resume at once (the last was more than an interval ago).
        lane1.turned = lane2.turned = 1003.6
        clock.now = 1003.6
        systemd.wait_for("WATCHDOG", "1", after=mark)
        systemd.wait_for("STATUS", "lane1 running; lane2 FAULT", after=mark)
        # SIGTERM sets the service's stop event: STOPPING at once, nothing after it.
        stopping.set()
        stop_t, stop = systemd.wait_for("STOPPING", "1")
        assert stop["STATUS"] == "stopping: stop requested (SIGTERM or SIGINT); delivering what is queued"
    time.sleep(0.3)
    assert [m for t, m in systemd.messages if t > stop_t] == []
    assert sum("READY" in m for m in systemd.log()) == 1
    assert sum("STOPPING" in m for m in systemd.log()) == 1, "close() after the stop request sends no second STOPPING"


def test_without_a_watchdog_ready_and_status_still_go(systemd: FakeSystemd) -> None:
    cam = fake_camera(turned=time.monotonic(), frames=3)
    notify = ServiceNotifier(Notifier(notify_address(systemd.env_value)), None)
    with notify:
        notify.watch({"gate": cam}, threading.Event())  # type: ignore[dict-item]
        systemd.wait_for("READY", "1")
        cam.ended = "source ended"
        systemd.wait_for("STATUS", "gate ended (source ended)", timeout=5)
    _, stop = systemd.wait_for("STOPPING", "1")
    assert stop["STATUS"] == "stopping: delivering what is queued"
    assert systemd.times("WATCHDOG") == []


def test_the_environment_picks_the_socket_and_the_interval(systemd: FakeSystemd) -> None:
    notify = ServiceNotifier.from_environ({"NOTIFY_SOCKET": systemd.env_value, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())})
    with notify:
        assert notify.enabled and notify.watchdog is not None and notify.watchdog.interval_s == 2.0
        notify.status("loading the models")
        notify.status("loading the models")  # unchanged: not sent again
    systemd.wait_for("STOPPING")
    assert systemd.log() == [{"STATUS": "loading the models"}, {"STOPPING": "1", "STATUS": "stopping: delivering what is queued"}]


def test_the_examples_in_the_docs_run() -> None:
    import doctest

    import gatekeeper.notify

    result = doctest.testmod(gatekeeper.notify, verbose=False)
    assert result.attempted >= 8 and result.failed == 0, result


def test_no_stacks_on_abort_without_a_real_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", None)
    assert dump_stacks_on_abort() is False


# -- the example unit ---------------------------------------------------------------------------------

UNIT = Path(__file__).resolve().parents[1] / "examples" / "gatekeeper.service"


def service_keys(text: str) -> dict[str, str]:
    section, keys = "", {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            keys[key] = value
    return keys


def test_the_example_unit_is_a_notify_service_with_a_watchdog() -> None:
    keys = service_keys(UNIT.read_text())
    assert keys["Type"] == "notify"
    assert keys["NotifyAccess"] == "main", "only the service itself may speak for it (not a hook's command)"
    assert int(keys["WatchdogSec"]) >= 10, "a frame under load must not look stuck"
    assert keys["Restart"] == "always"


@pytest.mark.parametrize(("change", "complaint"), [(None, None), (("WatchdogSec=30", "WatchdogSec=thirty"), "Failed to parse sec value")])
def test_systemd_accepts_the_example_unit(tmp_path: Path, change: tuple[str, str] | None, complaint: str | None) -> None:
    analyze = shutil.which("systemd-analyze")
    # CI installs it (.ci/run): a missing tool fails here, it does not skip.
    assert analyze is not None, "systemd-analyze is not installed; expected Debian's systemd package (.ci/run installs it)"
    # The unit as installed, its ExecStart pointing at this checkout's command (verify wants it to exist).
    text = UNIT.read_text().replace("/opt/gatekeeper/.venv/bin/gatekeeper", str(Path(sys.executable).with_name("gatekeeper")))
    if change is not None:
        text = text.replace(*change)
    unit = tmp_path / "gatekeeper.service"
    unit.write_text(text)
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    if complaint is None:
        assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")
    else:
        assert complaint in proc.stderr, "the check can see a bad unit"
