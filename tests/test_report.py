"""The replay report (gatekeeper/report.py and ``gatekeeper --report``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from gatekeeper.capture import Frame
from gatekeeper.cli import main
from gatekeeper.errors import ConfigError
from gatekeeper.events import Event, EventType, FaceScore
from gatekeeper.gate import Gate, GateConfig
from gatekeeper.pipeline import TrackedGate
from gatekeeper.report import (
    FrameRecord,
    ReplayRecorder,
    _face_spans,
    check_report_path,
    draw,
    render_html,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


#: The synthetic runs below hold a smile for a few frames: the hold is counted in frames here.
FRAME_HOLD = GateConfig(hold_seconds=None)


def record_run(scores: list[float | None], start: float | None = None) -> ReplayRecorder:
    """Frames at 30 fps through the real tracker and Gate, recorded as the app would.

    A file's times (i / 30), or with ``start`` a live source's: the wall clock from ``start``.
    """
    tracked, rec = TrackedGate(Gate(FRAME_HOLD)), ReplayRecorder(live=start is not None)
    image = np.zeros((8, 8, 3), np.uint8)
    for i, score in enumerate(scores):
        faces = [] if score is None else [FaceScore((10.0, 10.0, 80.0, 80.0), score)]
        t = i / 30 + (start or 0.0)
        for e in tracked.step(i, t, faces):
            rec.emit(e)
        rec.on_frame(Frame(image, i, t), SimpleNamespace(gate=tracked.gate, last_faces=tracked.faces))
    return rec


def drawn(rec: ReplayRecorder, **kw: object) -> tuple[Any, Any]:
    """The report's axes for a recorded run (and the figure, to close)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.6), dpi=110, layout="constrained")
    draw(ax, rec.rows, rec.events, GateConfig(), live=rec.live, **kw)  # type: ignore[arg-type]
    fig.canvas.draw()  # lays out the ticks
    return fig, ax


LIVE_START = 1_795_989_651.71  # a camera's first frame, in Unix seconds (the example)


def test_a_live_runs_report_plots_seconds_since_the_start() -> None:
    import matplotlib.pyplot as plt

    scores: list[float | None] = [None] * 5 + [0.2] * 10 + [0.9] * 12 + [None] * 15  # 42 frames, 1.4 s
    rec = record_run(scores, start=LIVE_START)
    assert [e.event for e in rec.events] == [EventType.OPEN, EventType.FACE_LOST]
    fig, ax = drawn(rec, title="camera 0")
    try:
        left, right = ax.get_xlim()
        assert left == 0.0 and 41 / 30 < right < 2.0, (left, right)  # the run, not 0 to 1.8e9
        (line,) = ax.get_lines()[:1]
        xs = line.get_xdata()
        assert xs[0] == 0.0 and xs[-1] == pytest.approx(41 / 30)
        assert ax.get_xlabel() == "seconds since the start"
        start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(LIVE_START))
        assert f"from {start} local time" in ax.get_title()
        # The time of day along the top.
        (top,) = ax.child_axes
        labels = [t.get_text() for t in top.get_xticklabels() if t.get_text()]
        assert labels and all(len(text) == 8 and text.count(":") == 2 for text in labels), labels
    finally:
        plt.close(fig)


def test_a_files_report_plots_the_position_in_the_file() -> None:
    import matplotlib.pyplot as plt

    fig, ax = drawn(record_run([0.9] * 30))
    try:
        assert ax.get_xlim() == pytest.approx((0.0, 1.0)) and ax.get_xlabel() == "t (s)" and not ax.child_axes
    finally:
        plt.close(fig)


def test_a_live_runs_html_report_gives_local_time_and_seconds_since_the_start(tmp_path: Path) -> None:
    rec = record_run([0.9] * 8, start=LIVE_START)
    rec.events.append(Event(EventType.FAULT, 8, LIVE_START + 2.5, None, "f1", None, 0, "source ended"))  # after the last frame
    page = write_report(tmp_path / "live.html", rec.rows, rec.events, GateConfig(), title="camera 0", live=True).read_text()
    assert "<th>local time</th><th>since start (s)</th>" in page
    opened = time.strftime("%H:%M:%S", time.localtime(LIVE_START + 5 / 30))
    assert f"<td>OPEN</td><td>5</td><td>{opened}." in page and "<td>0.17</td>" in page
    assert "<td>FAULT</td><td>8</td>" in page and "<td>2.50</td>" in page
    assert "1795989" not in page  # never the Unix time


def test_recorder_keeps_the_deciding_score_and_the_face_count() -> None:
    tracked, rec = TrackedGate(Gate(FRAME_HOLD)), ReplayRecorder()
    faces = [FaceScore((0.0, 0.0, 20.0, 20.0), 0.9), FaceScore((0.0, 0.0, 100.0, 100.0), 0.2)]
    tracked.step(0, 0.0, faces)
    rec.on_frame(Frame(np.zeros((8, 8, 3), np.uint8), 0, 0.0), SimpleNamespace(gate=tracked.gate, last_faces=tracked.faces))
    assert rec.rows == [FrameRecord(0, 0.0, 0.2, 2)]  # the largest face decides, not the best score


@pytest.mark.parametrize(
    ("faces", "expected"),
    [
        ([], []),
        ([0, 0], []),
        ([1, 1, 0, 0, 2, 1], [(0.0, 2.0), (4.0, 6.0)]),
        ([0, 1, 1], [(1.0, 3.0)]),
    ],
)
def test_face_spans(faces: list[int], expected: list[tuple[float, float]]) -> None:
    rows = [FrameRecord(i, float(i), None, n) for i, n in enumerate(faces)]
    assert _face_spans(rows, 1.0) == expected


@pytest.mark.parametrize(("name", "ok"), [("out.png", True), ("out.HTML", True), ("out.jpg", False), ("out", False), ("missing/out.png", False)])
def test_check_report_path(tmp_path: Path, name: str, ok: bool) -> None:
    if ok:
        assert check_report_path(tmp_path / name) == tmp_path / name
    else:
        with pytest.raises(ConfigError, match="--report"):
            check_report_path(tmp_path / name)


def test_png_report_is_an_image_of_the_run(tmp_path: Path) -> None:
    import matplotlib.image

    rec = record_run([None] * 5 + [0.2] * 10 + [0.9] * 12 + [None] * 15)  # visit, smile: OPEN, leave: FACE_LOST
    assert [e.event for e in rec.events] == [EventType.OPEN, EventType.FACE_LOST]
    out = write_report(tmp_path / "run.png", rec.rows, rec.events, GateConfig(), title="synthetic")
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    height, width, _ = matplotlib.image.imread(out).shape
    assert width > 800 and height > 300


def test_html_report_embeds_the_plot_and_lists_events(tmp_path: Path) -> None:
    rec = record_run([0.9] * 8)
    rec.events.append(Event(EventType.FAULT, 8, 0.3, None, "f1", None, 0, "camera <lost>"))
    out = write_report(tmp_path / "run.html", rec.rows, rec.events, GateConfig(), title="a & b")
    page = out.read_text()
    assert "data:image/png;base64," in page
    assert "<td>OPEN</td>" in page and "<td>FAULT</td>" in page
    assert "camera &lt;lost&gt;" in page and "a &amp; b" in page  # text from events is escaped


def test_html_report_without_events_says_so() -> None:
    assert "no events" in render_html(b"png", [], title="t")


def test_report_path_is_checked_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--video", str(tmp_path / "missing.mp4"), "--report", str(tmp_path / "out.jpg"), "--config", os.devnull]) == 2
    assert capsys.readouterr().err.strip() == f"gatekeeper: error: --report '{tmp_path / 'out.jpg'}': expected a file name ending in .png or .html"


def test_report_without_matplotlib_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["--video", str(tmp_path / "missing.mp4"), "--report", str(tmp_path / "out.png"), "--config", os.devnull]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gatekeeper: error: --report needs the 'report' extra (matplotlib is not installed); install it with: pip install 'gatekeeper[report]'"]


@pytest.mark.slow
def test_report_of_a_shared_clip(shared_dir: Path, face_model_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "single_face.html"
    env = {**os.environ, "GATEKEEPER_FACE_MODEL": str(face_model_path), "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "gatekeeper.cli", "--video", str(shared_dir / "videos" / "single_face.mp4"), "--report", str(out), "--config", os.devnull]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = out.read_text()
    assert "data:image/png;base64," in page
    assert "<td>OPEN</td>" in page


@pytest.mark.slow
def test_report_of_a_live_stream(shared_dir: Path, face_model_path: Path, tmp_path: Path) -> None:
    from mjpeg_server import MjpegServer, jpeg_frames_from_video

    frames = jpeg_frames_from_video(shared_dir / "videos" / "single_face.mp4", count=1000)  # the whole clip, looped
    config = tmp_path / "config.yaml"
    config.write_text("journal: {enabled: false}\n")
    out = tmp_path / "live.html"
    env = {**os.environ, "GATEKEEPER_FACE_MODEL": str(face_model_path), "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    with MjpegServer(frames, fps=30) as cam:
        cmd = [sys.executable, "-m", "gatekeeper.cli", "--url", cam.url, "--report", str(out), "--config", str(config)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        try:
            assert proc.stdout is not None
            events = []
            for line in proc.stdout:  # the gate's events, one JSON object a line
                events.append(json.loads(line)["event"])
                if "OPEN" in events:
                    break
            proc.send_signal(signal.SIGTERM)  # an operator's orderly stop; the report is written after it
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0 and "OPEN" in events, err[-2000:]
    page = out.read_text()
    assert "<th>local time</th><th>since start (s)</th>" in page
    since = [float(cell) for cell in re.findall(r"<td>\d\d:\d\d:\d\d\.\d\d</td><td>(-?[\d.]+)</td>", page)]
    assert since and all(0 <= s < 120 for s in since), since  # seconds since the start, not Unix time
