"""Face detection: where the model comes from (configured path, environment, the copy shipped in
the package, never the network) and the MediaPipe detector on a real frame."""

from __future__ import annotations

import ast
import hashlib
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

import gatekeeper
import gatekeeper.detect as detect
from gatekeeper.detect import ENV_FACE_MODEL, PACKAGED_FACE_MODEL, FaceDetector, packaged_face_model, resolve_face_model
from gatekeeper.errors import ModelError

REPO = Path(__file__).resolve().parents[1]
NAME = "blaze_face_short_range.tflite"


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No model from the environment."""
    monkeypatch.delenv(ENV_FACE_MODEL, raising=False)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every way out of this process fails loudly, and is counted."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return attempts


def model_file(directory: Path, content: bytes = b"model") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / NAME
    path.write_bytes(content)
    return path


# -- resolve_face_model --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("available", "winner"),
    [
        pytest.param({"configured", "env"}, "configured", id="configured path first"),
        pytest.param({"env"}, "env", id="then GATEKEEPER_FACE_MODEL"),
        pytest.param(set(), "packaged", id="then the packaged file"),
    ],
)
@pytest.mark.usefixtures("no_env")
def test_resolve_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[object], available: set[str], winner: str) -> None:
    configured = model_file(tmp_path / "configured") if "configured" in available else None
    if "env" in available:
        monkeypatch.setenv(ENV_FACE_MODEL, str(model_file(tmp_path / "env")))

    path = resolve_face_model(str(configured) if configured else None)

    expected = {"configured": tmp_path / "configured" / NAME, "env": tmp_path / "env" / NAME, "packaged": PACKAGED_FACE_MODEL}[winner]
    assert path == expected
    assert no_network == []


@pytest.mark.usefixtures("no_env")
def test_default_config_resolves_the_packaged_official_file_offline(no_network: list[object], face_model_path: Path) -> None:
    """No config, no environment variable, no network: the model shipped in the package, which is
    the official file (the same bytes as ../shared's copy)."""
    path = resolve_face_model(None)
    assert path == PACKAGED_FACE_MODEL
    assert path.parent == Path(gatekeeper.__file__).resolve().parent / "assets"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == detect.FACE_MODEL_SHA256
    assert path.read_bytes() == face_model_path.read_bytes()
    assert no_network == []


def test_the_packaged_model_has_its_licence_notice_beside_it() -> None:
    notice = PACKAGED_FACE_MODEL.with_name(NAME + ".LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in notice and "Version 2.0, January 2004" in notice
    assert detect.FACE_MODEL_SHA256 in notice


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "cannot be read", id="missing"),
        pytest.param(b"", "is damaged", id="empty"),
        pytest.param(b"TFL3" * 1000, "is damaged", id="another file"),
        pytest.param("truncated", "is damaged", id="truncated copy"),
    ],
)
def test_a_damaged_or_missing_packaged_model_is_refused(tmp_path: Path, face_model_path: Path, content: bytes | str | None, expected: str) -> None:
    path = tmp_path / NAME
    if content == "truncated":
        path.write_bytes(face_model_path.read_bytes()[:-1])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError) as info:
        packaged_face_model(path)
    message = str(info.value)
    assert message.startswith(f"the packaged face detector model {str(path)!r} {expected}")
    assert "reinstall gatekeeper" in message and ENV_FACE_MODEL in message
    assert "\n" not in message


def test_packaged_model_is_checked_when_resolved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_FACE_MODEL, raising=False)
    fake = model_file(tmp_path, b"not the official model")
    monkeypatch.setattr(detect, "PACKAGED_FACE_MODEL", fake)
    with pytest.raises(ModelError, match="is damaged"):
        resolve_face_model(None)


@pytest.mark.usefixtures("no_env")
def test_configured_path_expands_the_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = model_file(tmp_path / "models")
    assert resolve_face_model(f"~/models/{NAME}") == path


@pytest.mark.parametrize(
    ("configured", "env", "expected"),
    [
        pytest.param("missing.tflite", None, "detector.model_path points at", id="configured path missing"),
        pytest.param("missing.tflite", "GOOD", "detector.model_path points at", id="configured path missing, never replaced by the env"),
        pytest.param("DIR", None, "detector.model_path points at", id="configured path is a directory"),
        pytest.param(None, "missing.tflite", f"{ENV_FACE_MODEL} points at", id="env var pointing nowhere, never replaced by the packaged file"),
        pytest.param(None, "DIR", f"{ENV_FACE_MODEL} points at", id="env var pointing at a directory"),
    ],
)
@pytest.mark.usefixtures("no_env")
def test_named_model_that_is_not_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: str | None, env: str | None, expected: str
) -> None:
    good = model_file(tmp_path / "good")

    def where(value: str | None) -> str | None:
        return {None: None, "GOOD": str(good), "DIR": str(tmp_path)}.get(value, str(tmp_path / str(value)))

    if env is not None:
        monkeypatch.setenv(ENV_FACE_MODEL, where(env))
    with pytest.raises(ModelError) as info:
        resolve_face_model(where(configured))
    message = str(info.value)
    assert message.startswith(expected)
    assert "which is not a file" in message and NAME in message


def test_the_library_has_no_download_code() -> None:
    """A gate never reaches out to the internet on its own: no module of the package opens URLs.
    Only the webhook hook speaks HTTP, to the receiver its config names, and the MJPEG camera
    reader, to the camera its config or command line names (what OpenCV would do otherwise)."""
    package = Path(gatekeeper.__file__).resolve().parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Attribute) and node.attr in ("urlopen", "urlretrieve"):
                names = [node.attr]
            for name in names:
                if name in ("urllib.request", "urlopen", "urlretrieve", "requests", "httpx") or (name == "http.client" and rel not in ("hooks/webhook.py", "mjpeg.py")):
                    offenders.append(f"{rel}:{node.lineno}: {name}")
    assert offenders == []


# -- FaceDetector --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frame(shared_dir: Path) -> np.ndarray:
    """The first frame of single_face.mp4, RGB."""
    path = shared_dir / "videos" / "single_face.mp4"
    cap = cv2.VideoCapture(str(path))
    try:
        ok, bgr = cap.read()
    finally:
        cap.release()
    assert ok, f"cannot read a frame from {path}"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("video", [pytest.param(False, id="IMAGE mode"), pytest.param(True, id="VIDEO mode")])
def test_finds_the_one_face_with_keypoints_inside_its_box(face_model_path: Path, frame: np.ndarray, video: bool) -> None:
    with FaceDetector(face_model_path, video=video) as det:
        faces = det.detect(frame, 0.0) if video else det.detect(frame)
    assert len(faces) == 1
    (face,) = faces
    x, y, w, h = face.box
    assert 60 <= w <= frame.shape[1] and 60 <= h <= frame.shape[0]
    assert face.keypoints.shape == (6, 2)
    assert np.all((face.keypoints >= [x, y]) & (face.keypoints <= [x + w, y + h]))
    eye_r, eye_l, nose, mouth = face.keypoints[:4]
    assert eye_r[0] < eye_l[0] and max(eye_r[1], eye_l[1]) < nose[1] < mouth[1]  # upright, unmirrored
    assert 0.5 <= face.score <= 1.0
    assert face.area == pytest.approx(w * h)


@pytest.mark.parametrize(
    ("min_face_px", "expected"),
    [pytest.param(0.0, 1, id="no minimum"), pytest.param(1000.0, 0, id="face narrower than the minimum")],
)
def test_min_face_px(face_model_path: Path, frame: np.ndarray, min_face_px: float, expected: int) -> None:
    with FaceDetector(face_model_path, video=False, min_face_px=min_face_px) as det:
        assert len(det.detect(frame)) == expected


def test_no_face_in_a_blank_image(face_model_path: Path) -> None:
    with FaceDetector(face_model_path, video=False) as det:
        assert det.detect(np.full((360, 640, 3), 128, np.uint8)) == []


@pytest.mark.parametrize(
    "times",
    [
        pytest.param([0.0, 0.0, 0.0], id="repeated t"),
        pytest.param([1.0, 0.5, 0.2], id="t going backwards"),
        pytest.param([0.0, 0.0001, 0.0002], id="t closer than a millisecond"),
    ],
)
def test_video_mode_accepts_timestamps_that_do_not_increase(face_model_path: Path, frame: np.ndarray, times: list[float]) -> None:
    with FaceDetector(face_model_path, video=True) as det:
        counts = [len(det.detect(frame, t)) for t in times]
    assert counts == [1] * len(times)


def test_video_mode_needs_t(face_model_path: Path, frame: np.ndarray) -> None:
    with FaceDetector(face_model_path, video=True) as det, pytest.raises(ValueError, match="needs the frame time t"):
        det.detect(frame)


def test_close_twice_is_fine(face_model_path: Path) -> None:
    det = FaceDetector(face_model_path)
    det.close()
    det.close()
    with det:
        pass  # __exit__ closes a third time


def corrupt(kind: str, real: bytes) -> bytes:
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    return {
        "random bytes": noise,
        "random bytes with a TFLite header": noise[:4] + b"TFL3" + noise[8:],
        "truncated copy": real[: len(real) // 2],
        "first 1000 bytes": real[:1000],
        "empty file": b"",
    }[kind]


@pytest.mark.parametrize(
    "kind", ["random bytes", "random bytes with a TFLite header", "truncated copy", "first 1000 bytes", "empty file"]
)
def test_corrupt_model_is_a_model_error(tmp_path: Path, face_model_path: Path, kind: str) -> None:
    path = tmp_path / NAME
    path.write_bytes(corrupt(kind, face_model_path.read_bytes()))
    with pytest.raises(ModelError) as info:
        FaceDetector(path)
    assert str(info.value).startswith(f"face detector model {str(path)!r} ")
    assert "\n" not in str(info.value)


def test_missing_model_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read face detector model"):
        FaceDetector(tmp_path / NAME)


def test_detector_does_not_import_tensorflow(face_model_path: Path) -> None:
    code = (
        "import importlib.util, sys\n"
        "import numpy as np\n"
        "import gatekeeper.detect as d\n"
        f"det = d.FaceDetector({str(face_model_path)!r})\n"
        "det.detect(np.zeros((64, 64, 3), np.uint8), 0.0)\n"
        "det.close()\n"
        "loaded = sorted(k for k, v in sys.modules.items() if v is not None and k.split('.')[0] == 'tensorflow')\n"
        "print(importlib.util.find_spec('tensorflow') is not None, loaded)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    installed, loaded = proc.stdout.strip().splitlines()[-1].split(" ", 1)
    assert loaded == "[]", f"tensorflow modules imported: {loaded} (tensorflow installed: {installed})"
