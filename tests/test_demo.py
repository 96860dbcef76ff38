"""``gatekeeper demo``, as the README's quick start runs it: the clip shipped in the package through
the real pipeline, with no camera, no config and no environment variable; a dry run that leaves
the user's journal alone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
import yaml
from polling import wait_for

import gatekeeper.cli as cli
import gatekeeper.demo as demo

SCRIPT = Path(sys.executable).with_name("gatekeeper")


def demo_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment without GATEKEEPER_FACE_MODEL, with its own state directory (where the
    gate's journal would be)."""
    env = {k: v for k, v in os.environ.items() if k != "GATEKEEPER_FACE_MODEL"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return env


def gatekeeper_command() -> list[str]:
    if not SCRIPT.is_file():
        pytest.fail(f"the gatekeeper command is not installed beside {sys.executable}; install the package (pip install -e .)", pytrace=False)
    return [str(SCRIPT)]


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.mark.slow
def test_headless_demo_opens_the_gate(tmp_path: Path) -> None:
    proc = subprocess.run([*gatekeeper_command(), "demo", "--no-http"], cwd=tmp_path, env=demo_env(tmp_path), capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [e["event"] for e in events(proc.stdout)] == ["OPEN"]
    assert "Traceback" not in proc.stderr and "live view" not in proc.stderr
    assert not (tmp_path / "state").exists(), "the demo wrote into the user's journal"
    assert list(tmp_path.iterdir()) == []  # nothing left in the working directory either


@pytest.mark.slow
def test_demo_with_the_live_view(tmp_path: Path) -> None:
    port = demo.pick_port("127.0.0.1", 0)
    cmd = [*gatekeeper_command(), "demo", "--port", str(port), "--hold-open", "120"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=demo_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
        except OSError:
            return 0, "", ""

    try:
        wait_for(lambda: any('"OPEN"' in line for line in lines), 120, "the OPEN on stdout", interval=0.1)
        status, kind, body = get("/")
        assert status == 200 and kind.startswith("text/html") and "<html" in body.lower()
        state = wait_for(lambda: (s := json.loads(get("/status")[2] or "{}")).get("ended") and s, 60, "the end of the clip", interval=0.1)
        assert state["events"]["OPEN"] == 1 and state["frames"]["processed"] == 72
        assert proc.poll() is None, "the page should stay up after the clip ends"
        proc.send_signal(signal.SIGINT)  # Ctrl-C ends the wait at once
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert f"live view at http://127.0.0.1:{port}/" in err
    assert [e["event"] for e in events("".join(lines))] == ["OPEN"]
    assert not (tmp_path / "state").exists()


def test_pick_port_prefers_the_default_and_falls_back_to_a_free_one() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        other = demo.pick_port("127.0.0.1", taken)
        assert other not in (taken, 0)
    with socket.socket() as free:
        free.bind(("127.0.0.1", other))  # it really was free
    assert demo.pick_port("127.0.0.1", other) == other


@pytest.fixture
def run_argv(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The gatekeeper command lines the demo runs, with the config each one names, read while it exists."""
    calls: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        calls.append(argv)
        config = Path(argv[argv.index("--config") + 1])
        calls.append([yaml.safe_dump(yaml.safe_load(config.read_text()))])
        return 0

    monkeypatch.setattr(cli, "main", fake_main)
    return calls


def test_the_demo_is_a_realtime_dry_replay_of_the_packaged_clip(run_argv: list[list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "pick_port", lambda host, port: 8080)
    assert demo.main([]) == 0
    argv, (config,) = run_argv
    assert argv[:3] == ["--video", str(demo.DEMO_CLIP), "--realtime"]
    assert argv[argv.index("--http") + 1] == "127.0.0.1:8080"
    # built-in defaults, so no hooks, and the journal in a temporary folder that is gone now
    settings = yaml.safe_load(config)
    assert set(settings) == {"journal"}
    journal = Path(settings["journal"]["path"])
    assert journal.name == "journal.sqlite3" and not journal.parent.exists()


def test_without_the_web_extra_the_demo_runs_in_the_terminal(run_argv: list[list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo, "_has_web_extra", lambda: False)
    assert demo.main([]) == 0
    assert "--http" not in run_argv[0]
    assert "needs the 'web' extra" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--port", "0"], ["--port", "70000"], ["--hold-open", "-1"], ["--bogus"]])
def test_bad_demo_options_are_one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("gatekeeper: error: gatekeeper demo: ")
