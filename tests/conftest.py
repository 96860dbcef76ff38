"""Fixtures shared by every test: where the repository and the shared material are.

The shared material (models, videos, data sets) lives beside the checkout in ``../shared`` or
wherever ``$GATEKEEPER_SHARED`` points; it is never copied into the repository. When it is
missing the tests that need it fail with a message saying where it was looked for: a skipped
test would hide a broken checkout.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The package is tested from the checkout, installed or not (``.venv/bin/pytest`` does not put
# the working directory on sys.path the way ``python -m pytest`` does).
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FACE_MODEL_NAME = "blaze_face_short_range.tflite"


def find_shared_dir() -> Path:
    """``$GATEKEEPER_SHARED`` when set, else ``../shared`` beside the repository root."""
    env = os.environ.get("GATEKEEPER_SHARED")
    return Path(env).expanduser() if env else REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where ``config.yaml`` and ``model/`` are)."""
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared material; fails (never skips) when it is not there."""
    path = find_shared_dir()
    if not path.is_dir():
        origin = "$GATEKEEPER_SHARED" if os.environ.get("GATEKEEPER_SHARED") else "../shared beside the checkout"
        pytest.fail(
            f"shared material not found at {path} (from {origin}); expected the folder with models/, "
            "videos/ and data/; set GATEKEEPER_SHARED to its path",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def face_model_path(shared_dir: Path) -> Path:
    """The official MediaPipe face detector model in the shared folder."""
    path = shared_dir / "models" / FACE_MODEL_NAME
    if not path.is_file():
        pytest.fail(f"face detector model not found at {path}; expected {FACE_MODEL_NAME} in {shared_dir / 'models'}", pytrace=False)
    return path


@pytest.fixture(autouse=True, scope="session")
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the journal (XDG state) of every gate that the tests start, in-process or as a
    subprocess, and the caches libraries write (XDG cache: matplotlib's font cache for
    ``--report``), out of the developer's home directory."""
    base = tmp_path_factory.mktemp("xdg")
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_STATE_HOME", str(base / "state"))
    mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def smiling_frame_bgr(shared_dir: Path):
    """Frame 60 of the shared single_face.mp4 (640x360, BGR): a broad smile, the face about
    174 px wide. A real picture for the still-photo tests."""
    import cv2

    cap = cv2.VideoCapture(str(shared_dir / "videos" / "single_face.mp4"))
    try:
        for _ in range(60):
            ok, bgr = cap.read()
            assert ok, "single_face.mp4 has fewer than 60 frames"
    finally:
        cap.release()
    return bgr
