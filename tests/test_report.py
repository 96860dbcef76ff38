"""The replay report (gatekeeper/report.py and ``gatekeeper --report``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gatekeeper.capture import Frame
from gatekeeper.cli import main
from gatekeeper.errors import ConfigError
from gatekeeper.gate import Event, EventType, FaceScore, Gate, GateConfig
from gatekeeper.report import FrameRecord, ReplayRecorder, _face_spans, check_report_path, render_html, write_report

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def record_run(scores: list[float | None]) -> ReplayRecorder:
    """Frames at 30 fps through a real Gate, recorded as the app would."""
    gate, rec = Gate(GateConfig()), ReplayRecorder()
    image = np.zeros((8, 8, 3), np.uint8)
    for i, score in enumerate(scores):
        faces = [] if score is None else [FaceScore((10.0, 10.0, 80.0, 80.0), score)]
        for e in gate.update(i, i / 30, faces):
            rec.emit(e)
        rec.on_frame(Frame(image, i, i / 30), SimpleNamespace(gate=gate, last_faces=faces))
    return rec


def test_recorder_keeps_the_deciding_score_and_the_face_count() -> None:
    gate, rec = Gate(GateConfig()), ReplayRecorder()
    faces = [FaceScore((0.0, 0.0, 20.0, 20.0), 0.9), FaceScore((0.0, 0.0, 100.0, 100.0), 0.2)]
    gate.update(0, 0.0, faces)
    rec.on_frame(Frame(np.zeros((8, 8, 3), np.uint8), 0, 0.0), SimpleNamespace(gate=gate, last_faces=faces))
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
