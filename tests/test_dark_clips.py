"""scripts/dark_clips.py rewrites a labelled clip as an underexposed camera films it: every frame
kept (the labels count frames), darkened by the stops asked for, and untouched by the control."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from repo_scripts import load_script


def _mean_brightness(path: Path) -> tuple[int, float]:
    cap = cv2.VideoCapture(str(path))
    means = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        means.append(frame.mean())
    cap.release()
    return len(means), float(np.mean(means))


def test_a_clip_is_rewritten_dark_frame_for_frame_and_the_control_leaves_it_as_it_was(shared_dir: Path, tmp_path: Path) -> None:
    dc = load_script("dark_clips")
    src = shared_dir / "videos" / "single_face.mp4"
    frames, source_mean = _mean_brightness(src)
    assert dc.rewrite(src, tmp_path / "dark.avi", stops=2.5, noise=6.0, quality=50, seed=0) == frames
    assert dc.rewrite(src, tmp_path / "control.avi", stops=0.0, noise=0.0, quality=95, seed=0) == frames
    dark_frames, dark_mean = _mean_brightness(tmp_path / "dark.avi")
    control_frames, control_mean = _mean_brightness(tmp_path / "control.avi")
    assert dark_frames == control_frames == frames
    # 2.5 stops in linear light: 0.455 of the grey level in gamma space (clipping at black lifts it a little).
    assert 0.40 < dark_mean / source_mean < 0.52
    assert abs(control_mean - source_mean) < 2.0
