"""The command hook runs real processes: stdin and environment, exit status, timeout, missing executable."""

from __future__ import annotations

import json
import logging
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest

from gatekeeper.events import DeliveryState
from gatekeeper.hooks import CommandHook, CommandHookConfig, close_hooks
from gatekeeper.hooks.base import Delivery, DeliveryError
from gatekeeper.hooks.command import KEEP_BYTES, _communicate


def command(*argv: str, **kw: object) -> CommandHook:
    return CommandHook(CommandHookConfig(argv=argv, **kw), name="cmd", gate="front")  # type: ignore[arg-type]


@pytest.fixture
def started():
    hooks: list[CommandHook] = []

    def start(hook: CommandHook) -> CommandHook:
        hook.start()
        hooks.append(hook)
        return hook

    yield start
    for hook in hooks:
        close_hooks([hook], timeout=2)


def alive(pid: int) -> bool:
    """Running (a zombie left for a non-reaping init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_event_json_on_stdin_and_in_the_environment(tmp_path, started, outcomes, make_event):
    stdin, env_json, env_rest = tmp_path / "stdin", tmp_path / "env_json", tmp_path / "env_rest"
    script = 'cat > "$1"; printf %s "$GATEKEEPER_EVENT" > "$2"; echo "$GATEKEEPER_EVENT_TYPE $GATEKEEPER_EVENT_ID $GATEKEEPER_GATE" > "$3"'
    hook = started(command("/bin/sh", "-c", script, "sh", str(stdin), str(env_json), str(env_rest)))
    got = outcomes(hook)
    event = make_event("OPEN")
    hook.publish(event)

    assert got.final(event.id).state is DeliveryState.DELIVERED
    expected = {**event.to_dict(), "gate": "front"}
    assert json.loads(stdin.read_text()) == expected
    assert json.loads(env_json.read_text()) == expected
    assert env_rest.read_text().split() == ["OPEN", event.id, "front"]


def test_a_failing_command_is_logged_counted_and_not_fatal(started, outcomes, make_event, caplog):
    hook = started(command("/bin/sh", "-c", "echo 'relay controller offline' >&2; exit 3"))
    got = outcomes(hook)
    first, second = make_event(), make_event()
    hook.publish(first)
    hook.publish(second)
    outcome = got.final(first.id)
    assert outcome.state is DeliveryState.FAILED
    assert outcome.error == "'/bin/sh' failed (exit status 3): relay controller offline"
    assert got.final(second.id).state is DeliveryState.FAILED  # the worker went on to the next event
    assert hook.stats.failed == 2 and len(got.attempts) == 2  # never retried
    assert first.id in caplog.text and second.id in caplog.text


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path, started, outcomes, make_event, wait):
    pidfile = tmp_path / "child.pid"
    hook = started(command("/bin/sh", "-c", 'sleep 30 & echo $! > "$1"; wait', "sh", str(pidfile), timeout_s=0.3))
    got = outcomes(hook)
    event = make_event()
    t0 = time.monotonic()
    hook.publish(event)
    outcome = got.final(event.id)
    assert time.monotonic() - t0 < 2.0
    assert outcome.state is DeliveryState.FAILED
    assert outcome.error == "'/bin/sh' timed out after 0.3 s and was killed"
    child = int(pidfile.read_text())
    wait(lambda: not alive(child), timeout=2)


def test_a_missing_executable_is_reported(started, outcomes, make_event):
    hook = started(command("/nonexistent/open-gate"))
    got = outcomes(hook)
    event = make_event()
    hook.publish(event)
    outcome = got.final(event.id)
    assert outcome.state is DeliveryState.FAILED
    assert outcome.error == "cannot run '/nonexistent/open-gate': No such file or directory"


def test_only_open_by_default(make_event):
    hook = command("true")
    assert hook.wants(make_event("OPEN"))
    assert not any(hook.wants(make_event(k)) for k in ("DENY", "FACE_LOST", "FAULT", "RECOVERED"))


def test_a_stale_event_does_not_run_the_command(tmp_path, started, outcomes, make_event):
    marker = tmp_path / "ran"
    hook = started(command("/bin/sh", "-c", 'touch "$1"', "sh", str(marker), max_age_s=10))
    got = outcomes(hook)
    event = make_event()
    hook.publish(event, created_at=time.time() - 11)
    assert got.final(event.id).state is DeliveryState.EXPIRED
    assert not marker.exists()


# 50 MB of "x" on stdout, then a last line on each stream and a failing exit status.
FLOOD = "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo the-end; echo 'last words' >&2; exit 4"


def test_a_command_printing_50_mb_is_read_in_a_bounded_buffer(make_event, caplog):
    """Only the tail of what a command prints is kept: Python's memory stays flat while it prints
    50 MB (communicate() would hold all of it), and its exit status and last words still arrive."""
    hook = command("/bin/sh", "-c", FLOOD, timeout_s=60)
    caplog.set_level(logging.DEBUG, logger="gatekeeper.hooks")
    event = make_event()
    tracemalloc.start()
    try:
        with pytest.raises(DeliveryError) as failed:
            hook.deliver(Delivery(event, time.time()), 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(failed.value) == "'/bin/sh' failed (exit status 4): last words"
    assert peak < 2_000_000, f"{peak / 1e6:.1f} MB held while the command printed 50 MB"
    [stdout_line] = [r.getMessage() for r in caplog.records if "stdout" in r.getMessage()]
    assert f"event {event.id}: stdout (50000009 bytes): ...x" in stdout_line
    assert stdout_line.endswith("x | the-end") and len(stdout_line) < 400


def test_the_kept_tail_of_each_stream_is_bounded():
    proc = subprocess.Popen(
        ["/bin/sh", "-c", "cat >&2; head -c 3000000 /dev/zero | tr '\\0' y; printf ' end'"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = _communicate(proc, b"the event\n", timeout=30)
    assert proc.returncode == 0
    assert out.total == 3_000_004 and len(out.data) <= 2 * KEEP_BYTES and out.data.endswith(b"y end")
    assert out.text(limit=10) == "...yyyyyy end"
    assert err.total == 10 and err.text() == "the event"  # stdin was written, stderr read beside stdout


def test_a_flood_on_stderr_gives_a_short_error(started, outcomes, make_event):
    hook = started(command("/bin/sh", "-c", "head -c 20000000 /dev/zero | tr '\\0' e >&2; exit 1", timeout_s=60))
    got = outcomes(hook)
    event = make_event()
    hook.publish(event)
    outcome = got.final(event.id, timeout=60)
    assert outcome.state is DeliveryState.FAILED
    assert outcome.error == "'/bin/sh' failed (exit status 1): ..." + "e" * 300
