"""Stderr is gatekeeper's own log: what native libraries (MediaPipe, LiteRT, libjpeg) write to
file descriptor 2 goes to the ``gatekeeper.native`` logger, shown with ``--log-level debug``.
Each test runs the real command in its own process, where fd 2 is real."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from test_cli import ENV_FACE_MODEL, NATIVE_LOG_SETTINGS, REPO, run_gatekeeper

#: A line of gatekeeper's log (cli._setup_logging), or its one-line error.
OWN_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: |gatekeeper: error: )")


def truncated_jpeg(path: Path, picture: np.ndarray) -> Path:
    """A JPEG cut at 60%: OpenCV still decodes it, and libjpeg says "Premature end of JPEG file"
    on fd 2 as it does (a photo copied off a card too soon, a USB camera's damaged frame)."""
    ok, data = cv2.imencode(".jpg", picture)
    assert ok
    path.write_bytes(data[: int(len(data) * 0.6)].tobytes())
    return path


def test_score_keeps_libjpeg_off_stderr(tmp_path: Path, smiling_frame_bgr: np.ndarray, face_model_path: Path) -> None:
    path = truncated_jpeg(tmp_path / "cut.jpg", smiling_frame_bgr)
    proc = run_gatekeeper(["score", str(path)], tmp_path, {ENV_FACE_MODEL: str(face_model_path)})
    assert (proc.returncode, proc.stderr) == (0, "")
    assert json.loads(proc.stdout)["path"] == str(path)


# The command as a program, with a native library writing to fd 2 in the middle of the run: the
# truncated JPEG is read by OpenCV (libjpeg writes its warning from C), once logging is set up.
NOISY_RUN = """
import sys, cv2
from gatekeeper import cli
setup, noise = cli._setup_logging, sys.argv.pop()
def noisy_setup(level):
    setup(level)
    assert cv2.imread(noise) is not None
cli._setup_logging = noisy_setup
sys.argv[0] = "gatekeeper"
sys.exit(cli.main())
"""


def run_noisy(tmp_path: Path, picture: np.ndarray, *args: str) -> subprocess.CompletedProcess[str]:
    noise = truncated_jpeg(tmp_path / "cut.jpg", picture)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    assert not set(env) & set(NATIVE_LOG_SETTINGS)
    return subprocess.run([sys.executable, "-c", NOISY_RUN, *args, str(noise)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_native_output_during_a_run_goes_to_the_log(tmp_path: Path, smiling_frame_bgr: np.ndarray) -> None:
    quiet = run_noisy(tmp_path, smiling_frame_bgr, "--video", "missing.mp4")
    assert quiet.returncode == 2
    assert quiet.stderr == "gatekeeper: error: video file 'missing.mp4' does not exist; expected a readable video file (mp4, mov, avi...)\n"

    debug = run_noisy(tmp_path, smiling_frame_bgr, "--video", "missing.mp4", "--log-level", "debug")
    assert debug.returncode == 2
    assert re.search(r"^\S+ \S+ DEBUG gatekeeper\.native: Premature end of JPEG file$", debug.stderr, re.MULTILINE), debug.stderr
    assert all(OWN_LINE.match(line) for line in debug.stderr.splitlines()), debug.stderr


def test_a_replay_writes_only_its_own_log_to_stderr(tmp_path: Path, shared_dir: Path, face_model_path: Path) -> None:
    """The run that showed "Logging before InitGoogle()" and "Input tensor memory is not
    aligned" now and then, from the detector in the frame loop."""
    config = tmp_path / "gate.yaml"
    config.write_text(f"journal: {{path: {tmp_path / 'journal.sqlite3'}}}\n")
    clip = shared_dir / "videos" / "single_face.mp4"
    proc = run_gatekeeper(["--video", str(clip), "--config", str(config)], tmp_path, {ENV_FACE_MODEL: str(face_model_path)})
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["event"] for line in proc.stdout.splitlines()] == ["OPEN"]
    lines = proc.stderr.splitlines()
    assert lines and all(OWN_LINE.match(line) for line in lines), proc.stderr
