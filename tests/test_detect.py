"""Face detection: where the model comes from (configured path, environment, cache, a checked
download from a real local HTTP server) and the MediaPipe detector on a real frame."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

import gatekeeper.detect as detect
from gatekeeper.detect import ENV_FACE_MODEL, FaceDetector, resolve_face_model
from gatekeeper.errors import ModelError

REPO = Path(__file__).resolve().parents[1]
NAME = "blaze_face_short_range.tflite"


# -- a real HTTP server on the loopback ----------------------------------------------------------


@dataclass
class ModelServer:
    """Serves ``body`` at every path (or ``status`` with no body) and counts the requests."""

    body: bytes = b""
    status: int = 200
    requests: list[str] = field(default_factory=list)
    port: int = 0
    url: str = ""


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    state = ModelServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = state.body if state.status == 200 else b""
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.port = server.server_address[1]
    state.url = f"http://127.0.0.1:{state.port}/models/{NAME}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_connections_to(port: int) -> int:
    """How many sockets of this process are connected to ``port`` on the loopback (Linux /proc)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            with socket.socket(fileno=os.dup(int(name))) as s:
                peer = s.getpeername()
        except OSError:
            continue
        count += isinstance(peer, tuple) and peer[:2] == ("127.0.0.1", port)
    return count


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No model from the environment, and the default cache inside tmp_path."""
    monkeypatch.delenv(ENV_FACE_MODEL, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def model_file(directory: Path, content: bytes = b"model") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / NAME
    path.write_bytes(content)
    return path


# -- resolve_face_model --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("available", "winner"),
    [
        pytest.param({"configured", "env", "cache", "download"}, "configured", id="configured path first"),
        pytest.param({"env", "cache", "download"}, "env", id="then GATEKEEPER_FACE_MODEL"),
        pytest.param({"cache", "download"}, "cache", id="then the cache"),
        pytest.param({"download"}, "download", id="download last"),
    ],
)
@pytest.mark.usefixtures("no_env")
def test_resolve_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_server: ModelServer, available: set[str], winner: str
) -> None:
    cache = tmp_path / "cache"
    configured = model_file(tmp_path / "configured") if "configured" in available else None
    if "env" in available:
        monkeypatch.setenv(ENV_FACE_MODEL, str(model_file(tmp_path / "env")))
    if "cache" in available:
        model_file(cache, b"cached")
    model_server.body = b"downloaded model bytes"
    monkeypatch.setattr(detect, "FACE_MODEL_SHA256", hashlib.sha256(model_server.body).hexdigest())

    path = resolve_face_model(str(configured) if configured else None, cache_dir=cache, url=model_server.url)

    expected = {
        "configured": tmp_path / "configured" / NAME,
        "env": tmp_path / "env" / NAME,
        "cache": cache / NAME,
        "download": cache / NAME,
    }[winner]
    assert path == expected
    assert len(model_server.requests) == (1 if winner == "download" else 0)


@pytest.mark.usefixtures("no_env")
def test_default_cache_dir_follows_xdg_cache_home(tmp_path: Path) -> None:
    cached = model_file(tmp_path / "xdg" / "gatekeeper", b"cached")
    assert detect.default_cache_dir() == tmp_path / "xdg" / "gatekeeper"
    assert resolve_face_model(None, download=False) == cached


@pytest.mark.usefixtures("no_env")
def test_configured_path_expands_the_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = model_file(tmp_path / "models")
    assert resolve_face_model(f"~/models/{NAME}", download=False) == path


@pytest.mark.parametrize(
    ("configured", "env", "expected"),
    [
        pytest.param("missing.tflite", None, "detector.model_path points at", id="configured path missing"),
        pytest.param("missing.tflite", "GOOD", "detector.model_path points at", id="configured path missing, never replaced by the env"),
        pytest.param("DIR", None, "detector.model_path points at", id="configured path is a directory"),
        pytest.param(None, "missing.tflite", f"{ENV_FACE_MODEL} points at", id="env var pointing nowhere"),
        pytest.param(None, "DIR", f"{ENV_FACE_MODEL} points at", id="env var pointing at a directory"),
    ],
)
@pytest.mark.usefixtures("no_env")
def test_named_model_that_is_not_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: str | None, env: str | None, expected: str
) -> None:
    good = model_file(tmp_path / "good")
    model_file(tmp_path / "cache")  # a cached model must not be used instead of a named one

    def where(value: str | None) -> str | None:
        return {None: None, "GOOD": str(good), "DIR": str(tmp_path)}.get(value, str(tmp_path / str(value)))

    if env is not None:
        monkeypatch.setenv(ENV_FACE_MODEL, where(env))
    with pytest.raises(ModelError) as info:
        resolve_face_model(where(configured), cache_dir=tmp_path / "cache", download=False)
    message = str(info.value)
    assert message.startswith(expected)
    assert "which is not a file" in message and NAME in message


@pytest.mark.usefixtures("no_env")
def test_no_model_and_downloads_off(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        resolve_face_model(None, cache_dir=tmp_path / "cache", download=False)
    assert "detector.download: false" in str(info.value)
    assert ENV_FACE_MODEL in str(info.value)


@pytest.mark.usefixtures("no_env")
def test_download_that_cannot_connect(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(ModelError) as info:
        resolve_face_model(None, cache_dir=cache, url=f"http://127.0.0.1:{closed_port()}/x", timeout_s=5)
    message = str(info.value)
    assert "\n" not in message
    assert "download failed" in message and ENV_FACE_MODEL in message
    assert not cache.exists() or list(cache.iterdir()) == []


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(404, b"", "Not Found", id="HTTP 404"),
        pytest.param(200, b"not the model " * 100, "checksum mismatch", id="wrong bytes"),
        pytest.param(200, b"", "checksum mismatch", id="empty body"),
    ],
)
@pytest.mark.usefixtures("no_env")
def test_failed_download_leaves_nothing_in_the_cache(
    tmp_path: Path, model_server: ModelServer, status: int, body: bytes, expected: str
) -> None:
    model_server.status, model_server.body = status, body
    cache = tmp_path / "cache"
    with pytest.raises(ModelError) as info:
        resolve_face_model(None, cache_dir=cache, url=model_server.url)
    message = str(info.value)
    assert expected in message and ENV_FACE_MODEL in message
    assert "\n" not in message
    assert model_server.requests == [f"/models/{NAME}"]
    assert list(cache.iterdir()) == []  # no model, no .part file
    assert open_connections_to(model_server.port) == 0  # the failed response was closed, not left to the GC


@pytest.mark.usefixtures("no_env")
def test_download_with_the_expected_checksum_lands_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_server: ModelServer, face_model_path: Path
) -> None:
    model_server.body = face_model_path.read_bytes()
    monkeypatch.setattr(detect, "FACE_MODEL_SHA256", hashlib.sha256(model_server.body).hexdigest())
    cache = tmp_path / "cache"
    path = resolve_face_model(None, cache_dir=cache, url=model_server.url)
    assert path == cache / NAME
    assert path.read_bytes() == model_server.body
    assert sorted(p.name for p in cache.iterdir()) == [NAME]
    # the second time it comes from the cache
    assert resolve_face_model(None, cache_dir=cache, url=model_server.url) == path
    assert len(model_server.requests) == 1


def test_shared_model_is_the_official_file(face_model_path: Path) -> None:
    assert hashlib.sha256(face_model_path.read_bytes()).hexdigest() == detect.FACE_MODEL_SHA256


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
