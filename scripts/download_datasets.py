#!/usr/bin/env python3
"""Fetch the public training data and the face detector model, for a machine with internet.

    python scripts/download_datasets.py --dest ../shared

Writes the layouts that ``gatekeeper train`` reads:

* ``DEST/data/smilesmiled/SMILEs/...``: SMILEsmileD, from the GitHub archive of hromi/SMILEsmileD;
* ``DEST/data/fer2013/<class>/*.png``: FER2013 in class folders, from the Kaggle dataset
  ``msambare/fer2013`` (needs the ``kaggle`` command and an API token in ~/.kaggle/kaggle.json;
  FER2013 is for research use). Its train/ and test/ folders are merged: gatekeeper makes its own
  fixed-seed splits;
* ``DEST/models/blaze_face_short_range.tflite``: the MediaPipe face detector, copied from the package
  (which ships it), checked by SHA-256.

Each step is skipped when its target already exists. Fails with one clear line per problem.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

SMILES_ZIP = "https://github.com/hromi/SMILEsmileD/archive/refs/heads/master.zip"
FER_KAGGLE = "msambare/fer2013"
FER_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def fetch(url: str, timeout: float = 60.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def smilesmiled(dest: Path) -> None:
    target = dest / "data" / "smilesmiled" / "SMILEs"
    if target.is_dir():
        print(f"smilesmiled: {target} exists, skipped")
        return
    print(f"smilesmiled: downloading {SMILES_ZIP}")
    archive = zipfile.ZipFile(io.BytesIO(fetch(SMILES_ZIP)))
    prefix = next(n for n in archive.namelist() if n.rstrip("/").endswith("/SMILEs"))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        members = [n for n in archive.namelist() if n.startswith(prefix)]
        archive.extractall(tmp, members)
        shutil.move(str(Path(tmp) / prefix), target)
    print(f"smilesmiled: {sum(1 for _ in target.rglob('*.jpg'))} images in {target}")


def fer2013(dest: Path) -> None:
    target = dest / "data" / "fer2013"
    if (target / "happy").is_dir():
        print(f"fer2013: {target} exists, skipped")
        return
    if shutil.which("kaggle") is None:
        raise SystemExit("fer2013: the 'kaggle' command is missing; pip install kaggle and put an API token in ~/.kaggle/kaggle.json")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["kaggle", "datasets", "download", "-d", FER_KAGGLE, "-p", tmp, "--unzip"], check=True)
        for cls in FER_CLASSES:
            out = target / cls
            out.mkdir(parents=True, exist_ok=True)
            for part in ("train", "test"):
                for i, f in enumerate(sorted((Path(tmp) / part / cls).glob("*"))):
                    shutil.copy2(f, out / f"{part}_{i:05d}{f.suffix}")
    print(f"fer2013: {sum(1 for _ in target.rglob('*.*'))} images in {target}")


def face_model(dest: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gatekeeper.detect import FACE_MODEL_NAME, packaged_face_model

    target = dest / "models" / FACE_MODEL_NAME
    if target.is_file():
        print(f"face model: {target} exists, skipped")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    # The package ships the official file; packaged_face_model() checks its SHA-256 first.
    shutil.copyfile(packaged_face_model(), target)
    print(f"face model: {target}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default="../shared", help="folder to fill (default ../shared)")
    ap.add_argument("--only", choices=("smilesmiled", "fer2013", "face-model"), action="append")
    args = ap.parse_args()
    dest = Path(args.dest)
    steps = {"smilesmiled": smilesmiled, "fer2013": fer2013, "face-model": face_model}
    try:
        for name in args.only or steps:
            steps[name](dest)
    except (urllib.error.URLError, OSError, subprocess.CalledProcessError) as exc:
        print(f"download failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
