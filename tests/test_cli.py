"""Bad input through the real command line, each in its own process.

Every case must exit with status 2, print exactly one non-empty line on stderr that starts with
``gatekeeper: error:`` (no traceback, no log noise from native libraries), and no OPEN event.
The child gets no OpenCV/glog/TF log settings from the environment of the test run, so the
CLI's own handling of native log output is what is tested.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
ENV_FACE_MODEL = "GATEKEEPER_FACE_MODEL"
# Settings that silence native libraries; the CLI must cope without help from the caller.
NATIVE_LOG_SETTINGS = ("OPENCV_LOG_LEVEL", "OPENCV_FFMPEG_LOGLEVEL", "OPENCV_VIDEOIO_DEBUG", "GLOG_minloglevel", "TF_CPP_MIN_LOG_LEVEL")


@dataclass(frozen=True)
class Case:
    args: list[str]
    expected: str  # a part of the error line
    files: dict[str, str] = field(default_factory=dict)  # name in tmp_path -> how to make it (see make_file)
    env: dict[str, str] = field(default_factory=dict)
    absent: tuple[str, ...] = ()  # never printed, on stdout or stderr (a password)
    also: tuple[str, ...] = ()  # more parts of the error line


CASES = [
    pytest.param(Case(["--video", "{tmp}/missing.mp4"], "missing.mp4' does not exist"), id="missing video file"),
    pytest.param(Case(["--video", "{tmp}/adir"], "adir'", files={"adir": "dir"}), id="a directory as --video"),
    pytest.param(Case(["--video", "{tmp}/clip.mp4"], "clip.mp4'", files={"clip.mp4": "text"}), id="a text file renamed clip.mp4"),
    pytest.param(
        Case(["--video", "{tmp}/single_face.mp4"], "single_face.mp4'", files={"single_face.mp4": "truncated video"}),
        id="a truncated mp4",
    ),
    pytest.param(
        Case(["--config", "{tmp}/c.yaml", "--video", "{video}"], "gate.hold_frame: unknown key", files={"c.yaml": "unknown key"}),
        id="config with an unknown key",
    ),
    pytest.param(
        Case(["--config", "{tmp}/c.yaml", "--video", "{video}"], "gate.hold_frames: expected an integer", files={"c.yaml": "wrong type"}),
        id="config with a wrong type",
    ),
    pytest.param(
        Case(["--config", "{tmp}/c.yaml", "--video", "{video}"], "not valid YAML at line 2", files={"c.yaml": "invalid yaml"}),
        id="config that is not YAML",
    ),
    pytest.param(Case(["--config", "{tmp}/none.yaml", "--video", "{video}"], "none.yaml' does not exist"), id="missing config file"),
    pytest.param(
        Case(["--video", "{video}"], f"{ENV_FACE_MODEL} points at", env={ENV_FACE_MODEL: "{tmp}/nope.tflite"}),
        id="GATEKEEPER_FACE_MODEL pointing at a missing file",
    ),
    pytest.param(
        Case(["--config", "{tmp}/c.yaml", "--video", "{video}"], "detector.model_path points at", files={"c.yaml": "missing face model"}),
        id="detector.model_path pointing at a missing file",
    ),
    pytest.param(
        Case(["--config", "{tmp}/c.yaml", "--video", "{video}"], "(classifier.model_path) does not exist", files={"c.yaml": "missing smile model"}),
        id="classifier.model_path pointing at a missing file",
    ),
    pytest.param(
        Case(
            ["--config", "{tmp}/c.yaml", "--video", "{video}"],
            "is not a TFLite model",
            files={"c.yaml": "corrupt smile model", "smile.tflite": "random bytes"},
        ),
        id="a corrupt smile model",
    ),
    pytest.param(
        Case(
            ["--config", "{tmp}/c.yaml", "--video", "{video}"],
            "has no model card",
            files={"c.yaml": "corrupt smile model", "smile.tflite": "face model"},
        ),
        id="a smile model without its model card",
    ),
    pytest.param(
        Case(["--video", "{video}"], "face detector model", files={"face.tflite": "random bytes"}, env={ENV_FACE_MODEL: "{tmp}/face.tflite"}),
        id="a corrupt face model (random bytes)",
    ),
    pytest.param(
        Case(
            ["--video", "{video}"],
            "face detector model",
            files={"face.tflite": "truncated face model"},
            env={ENV_FACE_MODEL: "{tmp}/face.tflite"},
        ),
        id="a corrupt face model (truncated copy)",
    ),
    pytest.param(Case([], "no source given"), id="no source given"),
    # What was expected, and how to see which cameras there are (the machine's /dev/video* devices).
    pytest.param(
        Case(["--camera", "7"], "cannot open video source 7: ", also=("/dev/video", "list them with `v4l2-ctl --list-devices` (v4l-utils) or `ls /dev/video*`")),
        id="a camera index that does not exist",
    ),
    pytest.param(Case(["--video", "/dev/zero"], "error: '/dev/zero' is not a video file but a character device; expected a readable video file"), id="--video /dev/zero"),
    pytest.param(Case(["--video", "{tmp}/fifo"], "fifo' is not a video file but a named pipe", files={"fifo": "fifo"}), id="--video a named pipe"),
    # The message names the option once, after the one "gatekeeper: error:" prefix.
    pytest.param(Case(["--camera", "abc"], "error: argument --camera: invalid int value: 'abc'"), id="a camera index that is not a number"),
    pytest.param(Case(["score"], "error: gatekeeper score: the following arguments are required: paths"), id="a subcommand without its arguments"),
    # A malformed URL is refused by one check, the same for --url and cameras.NAME.url, whether
    # the gate starts or the config is checked, before anything is opened; its secrets masked.
    *[
        pytest.param(Case([*check, "--url", url], expected, absent=("hunter2",)), id=f"--url {what}{' --check-config' if check else ''}")
        for url, what, expected in [
            ("http://127.0.0.1:99999/x", "with a port out of range", "argument --url: 'http://127.0.0.1:99999/x': its port 99999 is out of range; expected a port from 1 to 65535"),
            ("http://admin:hunter2@127.0.0.1:abc/x", "with a port that is not a number", "'http://admin:<redacted>@127.0.0.1:abc/x': its port is not a number"),
            ("http://admin:hunter2@[::1", "with an unclosed IPv6 bracket", "'http://admin:<redacted>@[::1': its host's '[' has no closing ']'"),
            ("rtsp:///stream", "without a host", "'rtsp:///stream': it has no host; expected a stream URL such as rtsp://"),
        ]
        for check in ([], ["--check-config"])
    ],
    *[
        pytest.param(
            Case([*check, "--config", "{tmp}/c.yaml"], "error: cameras.b.url: 'http://[::1': its host's '[' has no closing ']'", files={"c.yaml": "a camera with a malformed url"}),
            id=f"cameras: one camera's url malformed{' --check-config' if check else ''}",
        )
        for check in ([], ["--check-config"])
    ],
]


def make_file(path: Path, kind: str, shared_dir: Path, face_model_path: Path) -> None:
    video = shared_dir / "videos" / "single_face.mp4"
    contents: dict[str, bytes] = {
        "text": b"hello, I am not a video\n" * 20,
        "truncated video": video.read_bytes()[:2000],
        "unknown key": b"gate:\n  hold_frame: 6\n",
        "wrong type": b"gate:\n  hold_frames: six\n",
        "invalid yaml": b"gate:\n\thold_frames: 6\n",
        "missing face model": f"detector:\n  model_path: {path.parent / 'nope.tflite'}\n".encode(),
        "missing smile model": f"classifier:\n  model_path: {path.parent / 'nope.tflite'}\n".encode(),
        "corrupt smile model": f"classifier:\n  model_path: {path.parent / 'smile.tflite'}\n".encode(),
        "random bytes": np.random.default_rng(3).integers(0, 256, 20_000, dtype=np.uint8).tobytes(),
        "face model": face_model_path.read_bytes(),
        "truncated face model": face_model_path.read_bytes()[:100_000],
        "a camera with a malformed url": f"journal: {{enabled: false}}\ncameras:\n  a: {{video: '{video}'}}\n  b: {{url: 'http://[::1'}}\n".encode(),
    }
    if kind == "dir":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(contents[kind])


def run_gatekeeper(args: list[str], cwd: Path, env: dict[str, str], *, shell_redirect: str = "") -> subprocess.CompletedProcess[str]:
    """``gatekeeper ARGS`` in its own process; ``shell_redirect`` is a redirection the shell
    applies to it (``>&-``: started with stdout closed)."""
    child_env = {k: v for k, v in os.environ.items() if k not in NATIVE_LOG_SETTINGS}
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    child_env.update(env)
    command = [sys.executable, "-m", "gatekeeper.cli", *args]
    if shell_redirect:
        command = ["sh", "-c", f'exec "$0" "$@" {shell_redirect}', *command]
    return subprocess.run(
        command,
        cwd=cwd,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_error_line(tmp_path: Path, shared_dir: Path, face_model_path: Path, case: Case) -> None:
    for name, kind in case.files.items():
        make_file(tmp_path / name, kind, shared_dir, face_model_path)

    def fill(s: str) -> str:
        return s.format(tmp=tmp_path, video=shared_dir / "videos" / "single_face.mp4")

    env = {ENV_FACE_MODEL: str(face_model_path), **{k: fill(v) for k, v in case.env.items()}}
    proc = run_gatekeeper([fill(a) for a in case.args], tmp_path, env)

    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert lines[0].startswith("gatekeeper: error: "), proc.stderr
    assert case.expected in lines[0]
    for part in case.also:
        assert part in lines[0]
    for secret in case.absent:
        assert secret not in proc.stderr + proc.stdout
    assert proc.returncode == 2, proc.stderr
    events = [json.loads(line)["event"] for line in proc.stdout.splitlines() if line.strip()]
    assert "OPEN" not in events



def test_a_well_formed_camera_that_cannot_be_reached_faults_alone(tmp_path: Path, shared_dir: Path, face_model_path: Path) -> None:
    """Of two cameras, one is a well-formed URL where nothing listens: the other plays and opens;
    the absent one says FAULT (with its URL, masked) and gives up after its reconnects, and the
    run ends as usual (exit 0)."""
    with socket.socket() as s:  # a port nothing listens on: bound, never listened
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        config = tmp_path / "c.yaml"
        config.write_text(
            "journal: {enabled: false}\n"
            "source: {watchdog_s: 0.5, reconnect_initial_s: 0.05, reconnect_max_s: 0.1, max_reconnects: 2}\n"
            f"cameras:\n  a: {{video: '{shared_dir / 'videos' / 'single_face.mp4'}'}}\n  b: {{url: 'http://admin:hunter2@127.0.0.1:{port}/x'}}\n"
        )
        proc = run_gatekeeper(["--config", str(config), "--dry-run"], tmp_path, {ENV_FACE_MODEL: str(face_model_path)})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "hunter2" not in proc.stderr + proc.stdout
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [e["event"] for e in events if e["camera"] == "a"] == ["OPEN"]
    (fault,) = [e for e in events if e["camera"] == "b"]
    assert fault["event"] == "FAULT" and f"'http://admin:<redacted>@127.0.0.1:{port}/x'" in fault["reason"], fault


@pytest.mark.parametrize("dry_run", [True, False], ids=["--dry-run", "journal on disk"])
def test_stdout_closed_the_gate_goes_on_with_one_warning(tmp_path: Path, shared_dir: Path, face_model_path: Path, dry_run: bool) -> None:
    """Started with fd 1 not open at all (``>&-``, not a closed pipe): the events fall silent
    with one warning, the gate runs the clip to its end and opens, and the journal is whole
    (no file the gate opened was given fd 1)."""
    journal = tmp_path / "journal.sqlite3"
    args = ["--video", str(shared_dir / "videos" / "single_face.mp4"), "--log-level", "warning"]
    if dry_run:
        args.append("--dry-run")
    else:
        (tmp_path / "c.yaml").write_text(f"journal: {{path: '{journal}'}}\n")
        args += ["--config", str(tmp_path / "c.yaml")]
    env = {ENV_FACE_MODEL: str(face_model_path)}
    proc = run_gatekeeper(args, tmp_path, env, shell_redirect=">&-")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["gatekeeper: warning: stdout is not open; events go to the journal and the hooks, not to stdout"], proc.stderr
    if not dry_run:
        listed = run_gatekeeper(["events", "--journal", str(journal), "--json"], tmp_path, env)
        assert [json.loads(line)["event"]["event"] for line in listed.stdout.splitlines()] == ["OPEN"], listed


def test_demo_with_a_port_that_is_taken_says_so_before_any_address(tmp_path: Path, face_model_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_gatekeeper(["demo", "--port", str(port), "--loops", "1", "--hold-open", "0"], tmp_path, {ENV_FACE_MODEL: str(face_model_path)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"gatekeeper: error: gatekeeper demo: argument --port: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "expected a free port, or no --port for 8080 or else a free one (see gatekeeper demo --help)"
    ], proc.stderr
    assert "live view at" not in proc.stderr + proc.stdout


def test_events_of_a_camera_that_is_not_one_is_an_error(tmp_path: Path, shared_dir: Path, face_model_path: Path) -> None:
    """``events --camera NAME``: a camera of the config or of the journal with no events is
    "no events" (exit 0); a name that is neither is an unknown camera (exit 2), with the names
    there are."""
    journal = tmp_path / "journal.sqlite3"
    config = tmp_path / "c.yaml"
    videos = shared_dir / "videos"
    config.write_text(f"journal: {{path: '{journal}'}}\ncameras:\n  east: {{video: '{videos / 'single_face.mp4'}'}}\n  west: {{video: '{videos / 'no_face.mp4'}'}}\n")
    env = {ENV_FACE_MODEL: str(face_model_path)}
    ran = run_gatekeeper(["--config", str(config)], tmp_path, env)
    assert ran.returncode == 0 and {json.loads(line)["camera"] for line in ran.stdout.splitlines()} == {"east"}, ran.stderr

    proc = run_gatekeeper(["events", "--config", str(config), "--camera", "nope"], tmp_path, env)
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    assert proc.stderr.splitlines() == ["gatekeeper: error: --camera 'nope': no camera of that name in the config or the journal; expected one of east, west"]
    proc = run_gatekeeper(["events", "--journal", str(journal), "--camera", "nope"], tmp_path, env)
    assert proc.returncode == 2 and proc.stderr.splitlines() == ["gatekeeper: error: --camera 'nope': no camera of that name in the journal; expected one of east"], proc.stderr

    quiet = run_gatekeeper(["events", "--config", str(config), "--camera", "west"], tmp_path, env)  # a camera, with no events
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "no events\n")
    east = run_gatekeeper(["events", "--config", str(config), "--camera", "east", "--json"], tmp_path, env)
    assert east.returncode == 0 and [json.loads(line)["event"]["event"] for line in east.stdout.splitlines()] == ["OPEN"], east.stderr
