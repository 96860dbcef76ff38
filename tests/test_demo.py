"""``gatekeeper demo``, as the README's quick start runs it: the clip shipped in the package through
the real pipeline, with no camera, no config and no environment variable; a dry run that leaves
the user's journal alone."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from polling import wait_for

import gatekeeper.cli as cli
import gatekeeper.demo as demo
from gatekeeper.errors import SourceError
from gatekeeper.events import Event

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


class DemoProcess:
    """``gatekeeper demo`` running with the live view: its stdout lines as they come, and GETs."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.port = demo.pick_port("127.0.0.1", 0)
        cmd = [*gatekeeper_command(), "demo", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, cwd=tmp_path, env=demo_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")), daemon=True),  # type: ignore[union-attr]
            threading.Thread(target=lambda: self.err.extend(iter(self.proc.stderr.readline, "")), daemon=True),  # type: ignore[union-attr]
        ]
        for reader in self._readers:
            reader.start()

    @property
    def token(self) -> str:
        """The run's own http.token, from the address the demo prints (``/?token=...``)."""
        line = wait_for(lambda: next((x for x in self.err if "live view at " in x), None), 60, "the live view's address")
        return line.split("?token=", 1)[1].split()[0]

    def get(self, path: str) -> tuple[int, str, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
        except OSError:
            return 0, "", ""

    def status(self) -> dict:
        return json.loads(self.get("/status")[2] or "{}")

    def events(self) -> list[str]:
        return [e["event"] for e in events("".join(self.lines))]

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C; the exit status and stderr."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        self._finish()
        return self.proc.returncode, "".join(self.err)

    def _finish(self) -> None:
        """The readers take the last lines (the pipes end with the process), then the pipes close."""
        for reader in self._readers:
            reader.join(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._finish()


@pytest.mark.slow
def test_demo_with_the_live_view_loops_until_ctrl_c(tmp_path: Path) -> None:
    """What the README's quick start shows: someone who opens the page after the first pass still
    sees the gate open, because the clip plays again, each pass a new visit."""
    run = DemoProcess(tmp_path)
    try:
        wait_for(lambda: run.events().count("OPEN") >= 2, 120, "a second OPEN on stdout", interval=0.1)
        status, kind, body = run.get("/")
        assert status == 200 and kind.startswith("text/html") and "<html" in body.lower()
        state = run.status()
        assert not state["ended"] and state["events"]["OPEN"] >= 2
        assert run.proc.poll() is None
        code, err = run.interrupt()  # Ctrl-C ends it at once
    finally:
        run.kill()
    assert code == 0, err[-3000:]
    assert f"live view at http://127.0.0.1:{run.port}/" in err and "until Ctrl-C" in err
    seen = run.events()
    assert seen[:3] == ["OPEN", "FACE_LOST", "OPEN"] and set(seen) <= {"OPEN", "FACE_LOST"}
    assert not (tmp_path / "state").exists()


@pytest.mark.slow
def test_demo_with_a_number_of_loops_then_holds_the_page_open_and_its_controls_act(tmp_path: Path) -> None:
    """After the passes the page stays up; it shows Open and the service switch (the demo makes its
    own token), and they work after the clip has ended too (--hold-open). One demo answers both
    (they were two demos, of one pass and of two)."""
    run = DemoProcess(tmp_path, "--loops", "2", "--hold-open", "120")
    try:
        status, _, page = wait_for(lambda: (got := run.get(f"/?token={run.token}"))[0] and got, 60, "the page", interval=0.1)  # the address is printed before the server listens
        assert status == 200 and 'id="open"' in page and 'id="service"' in page
        state = wait_for(lambda: (s := run.status()).get("ended") and s, 120, "the end of the second pass", interval=0.1)
        assert state["events"]["OPEN"] == 2
        assert state["frames"]["processed"] == 2 * 72 + round(demo.GAP_S * 30)
        assert run.proc.poll() is None, "the page should stay up after the last pass"
        wait_for(lambda: run.events() == ["OPEN", "FACE_LOST", "OPEN"], 10, "the passes' events on stdout", interval=0.1)
        assert run.status()["controls"] is True
        body = json.dumps({"by": "demo visitor", "via": "page"}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{run.port}/actions/open", data=body, headers={"Authorization": f"Bearer {run.token}"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer = json.loads(resp.read())
        assert [(e["event"], e["reason"], e["by"], e["via"]) for e in answer["events"]] == [("OPEN", "manual", "demo visitor", "page")]
        wait_for(lambda: run.events() == ["OPEN", "FACE_LOST", "OPEN", "OPEN"], 10, "the manual OPEN on stdout", interval=0.1)
        code, err = run.interrupt()
    finally:
        run.kill()
    assert code == 0, err[-3000:]
    assert "the clip plays 2 times" in err
    assert "action open by demo visitor via page" in err
    assert run.events() == ["OPEN", "FACE_LOST", "OPEN", "OPEN"]
    assert not (tmp_path / "state").exists()


# -- the looped clip -----------------------------------------------------------------------------


def test_looped_clip_is_one_stream_with_an_empty_gap_between_passes() -> None:
    clip = demo.LoopedClip(demo.DEMO_CLIP, loops=2)
    frames = list(clip)
    gap = round(demo.GAP_S * clip.fps)
    assert clip.fps == 30 and len(frames) == 2 * 72 + gap
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(f.t == f.index / 30 for f in frames)
    first, blank, second = frames[:72], frames[72 : 72 + gap], frames[72 + gap :]
    assert all(f.image.shape == (360, 640, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(not f.image.any() for f in blank) and all(f.image.any() for f in first + second)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, second, strict=True))
    assert clip.status.read == len(frames) and clip.status.ended and clip.status.skipped == 0
    clip.close()


def test_looped_clip_without_a_count_plays_until_closed() -> None:
    clip = demo.LoopedClip(demo.DEMO_CLIP)
    period = 72 + round(demo.GAP_S * clip.fps)
    frames = list(itertools.islice(clip, 3 * period + 1))  # three passes and the start of a fourth
    assert frames[-1].index == 3 * period and frames[-1].image.any()
    assert not clip.status.ended
    clip.close()


@pytest.mark.slow
def test_looped_clip_is_paced_at_the_clip_rate_across_passes() -> None:
    clip = demo.LoopedClip(demo.DEMO_CLIP, realtime=True, loops=2)
    start = time.monotonic()
    frames = list(clip)
    assert time.monotonic() - start >= frames[-1].t == (2 * 72 + round(demo.GAP_S * 30) - 1) / 30
    clip.close()


@pytest.mark.parametrize("bad", ["missing.mp4", "dir"])
def test_looped_clip_opens_the_file_at_once(tmp_path: Path, bad: str) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(SourceError):
        demo.LoopedClip(tmp_path / bad)


@pytest.mark.slow
def test_each_pass_of_the_demo_is_a_new_visit_that_opens_the_gate(face_model_path: Path) -> None:
    """The packaged clip through the real pipeline with the demo's settings (the defaults), three
    passes as fast as they go: three OPENs, a FACE_LOST in each gap."""
    from gatekeeper.camera import Camera
    from gatekeeper.config import Config
    from gatekeeper.pipeline import build_pipeline

    seen: list[Event] = []

    class Sink:
        def emit(self, event: Event) -> None:
            seen.append(event)

        def close(self) -> None:
            pass

    cfg = Config()
    app = Camera(cfg.name, cfg, build_pipeline(cfg), [Sink()])
    try:
        app.run(demo.LoopedClip(demo.DEMO_CLIP, loops=3))
    finally:
        app.close()
    assert [e.to_dict()["event"] for e in seen] == ["OPEN", "FACE_LOST", "OPEN", "FACE_LOST", "OPEN"]


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
def runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The gates the demo runs (stood in for: only what it asks for is looked at): the config,
    the run's options, whether the journal's folder exists while it runs, and the number of
    passes of its clip (None: until stopped)."""
    import gatekeeper.serve as serve

    calls: list[dict[str, Any]] = []

    def fake_serve(cfg: Any, options: Any) -> None:
        source = options.open_video(options.video, realtime=options.realtime)
        calls.append({"cfg": cfg, "options": options, "journal_dir_exists": Path(cfg.journal.path).parent.is_dir(), "loops": source.loops})
        source.close()

    monkeypatch.setattr(serve, "serve", fake_serve)
    return calls


def test_the_demo_is_a_realtime_dry_replay_of_the_packaged_clip(runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    from gatekeeper.config import Config, HttpConfig, JournalConfig

    monkeypatch.setattr(demo, "pick_port", lambda host, port: 8080)
    assert demo.main([]) == 0
    (run,) = runs
    options = run["options"]
    assert (Path(options.video), options.realtime) == (demo.DEMO_CLIP, True)
    assert run["loops"] is None  # the clip plays until Ctrl-C
    assert options.http == "127.0.0.1:8080"
    # built-in defaults, so no hooks, and the journal in a temporary folder that is gone now; a
    # token of the run's own for the page's operator controls
    cfg = run["cfg"]
    assert cfg.http.token is not None and len(cfg.http.token) >= 16
    assert cfg == Config(journal=JournalConfig(path=cfg.journal.path), http=HttpConfig(token=cfg.http.token))
    journal = Path(cfg.journal.path)
    assert journal.name == "journal.sqlite3" and run["journal_dir_exists"] and not journal.parent.exists()


def test_without_the_web_extra_the_demo_runs_in_the_terminal(runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo, "_has_web_extra", lambda: False)
    assert demo.main([]) == 0
    assert runs[0]["options"].http is None
    assert runs[0]["loops"] == 1  # one pass, as with --no-http
    assert "needs the 'web' extra" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "loops"),
    [([], None), (["--loops", "3"], 3), (["--no-http"], 1), (["--no-http", "--loops", "2"], 2), (["--loops", "1"], 1)],
)
def test_how_many_passes_the_demo_plays(runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, argv: list[str], loops: int | None) -> None:
    monkeypatch.setattr(demo, "pick_port", lambda host, port: 8080)
    assert demo.main(argv) == 0
    assert runs[0]["loops"] == loops


@pytest.mark.parametrize("argv", [["--port", "0"], ["--port", "70000"], ["--hold-open", "-1"], ["--loops", "0"], ["--loops", "two"], ["--bogus"]])
def test_bad_demo_options_are_one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("gatekeeper: error: gatekeeper demo: ")
