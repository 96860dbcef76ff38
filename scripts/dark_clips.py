#!/usr/bin/env python3
"""The labelled clips as a dark entrance would film them, replayed through the gate.

    python scripts/dark_clips.py [--stops 2.5] [--noise 6] [--quality 50] [--out DIR]

``gatekeeper eval`` measures single faces under the lighting axis; this measures the gate. Every
clip of the shared labels files (``videos/labels.yaml``, ``labels-expressions.yaml``,
``talking/labels.yaml``) is rewritten frame by frame as an underexposed camera would record it
(:func:`~gatekeeper.training.lighting.underexposed_frame`: ``--stops`` darker in linear light,
read noise of ``--noise`` grey levels on every pixel, the camera's JPEG at ``--quality``), then
stored as Motion-JPEG at quality 95 beside a copy of its labels, and
``tools/replay_check.py`` replays every copy through ``gatekeeper --video`` with the built-in
defaults, as ``tests/test_replay.py`` does with the originals. ``--stops 0 --noise 0 --quality
95`` is the control: the same rewriting with nothing darkened, so that what the re-encoding alone
changes is not blamed on the dark.

Prints replay_check's line for every clip and one summary line per labels file; exits 1 if any
clip fails. A smile missed in the dark keeps the gate shut (it fails closed); a talking face that
opens it does not.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.training.lighting import underexposed_frame
from gatekeeper.training.options import shared_dir

LABEL_FILES = ("labels.yaml", "labels-expressions.yaml", "talking/labels.yaml")


def rewrite(src: Path, dst: Path, stops: float, noise: float, quality: int, seed: int) -> int:
    """``src`` darkened frame by frame into ``dst`` (Motion-JPEG, the source's frame rate); returns the frames written."""
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise SystemExit(f"dark_clips: cannot read {src}; expected a video file OpenCV decodes")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    rng = np.random.default_rng(seed)
    writer, frames = None, 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if writer is None:
                writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frame.shape[1], frame.shape[0]))
                writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
            writer.write(underexposed_frame(frame, rng, stops, noise, quality))
            frames += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    return frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stops", type=float, default=2.5, help="how much darker, in stops of linear light (default 2.5)")
    ap.add_argument("--noise", type=float, default=6.0, help="read noise, grey levels on every pixel (default 6)")
    ap.add_argument("--quality", type=int, default=50, help="the camera's JPEG quality (default 50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="where the rewritten clips go (default: a temporary folder, removed after)")
    args = ap.parse_args()
    if args.stops < 0 or args.noise < 0 or not 1 <= args.quality <= 100:
        raise SystemExit("dark_clips: expected --stops >= 0, --noise >= 0 and --quality from 1 to 100")

    shared = shared_dir()
    tool = shared / "tools" / "replay_check.py"
    if not tool.is_file():
        raise SystemExit(f"dark_clips: {tool} not found; expected the shared folder (GATEKEEPER_SHARED) with tools/replay_check.py")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out or scratch)
        failed = 0
        print(f"footage {args.stops:g} stops darker, read noise {args.noise:g}, JPEG {args.quality}", flush=True)
        for i, name in enumerate(LABEL_FILES):
            labels_path = shared / "videos" / name
            labels = yaml.safe_load(labels_path.read_text(encoding="utf-8"))
            folder = out / Path(name).with_suffix("")
            folder.mkdir(parents=True, exist_ok=True)
            copied = {}
            for j, (clip, spec) in enumerate(labels.items()):
                dst = folder / (Path(clip).stem + ".avi")
                frames = rewrite(labels_path.parent / clip, dst, args.stops, args.noise, args.quality, args.seed + 1000 * i + j)
                if spec.get("frames") and frames != spec["frames"]:
                    raise SystemExit(f"dark_clips: {clip} decoded to {frames} frames, its labels say {spec['frames']}; expected every frame kept")
                copied[str(dst)] = spec
            subset = folder / "labels.yaml"
            subset.write_text(yaml.safe_dump(copied), encoding="utf-8")
            proc = subprocess.run([sys.executable, str(tool), "--cmd", f"{sys.executable} -m gatekeeper.cli", f"--extra=--dry-run --config {os.devnull}", "--labels", str(subset)],
                                  capture_output=True, text=True)
            print(proc.stdout.replace(str(folder) + "/", ""), end="", flush=True)
            if proc.returncode not in (0, 1):
                raise SystemExit(f"dark_clips: replay_check failed on {name}: {proc.stderr.strip()[-300:]}")
            failed += proc.returncode
            print(f"== {name}: {'all passed' if proc.returncode == 0 else 'some failed'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
