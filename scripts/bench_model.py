#!/usr/bin/env python3
"""Time per face of smile models through LiteRT, as the gate runs them: one thread, one face a call.

    python scripts/bench_model.py [--model model/smile.tflite model/smile_int8.tflite ...] [--calls 3000]

Each model (a ``.tflite`` with its card beside it) scores the same chips, cut by the run-time crop
from the shared clip ``single_face.mp4``, one face per call, after a warm-up; the models take turns
in rounds so that a busy moment of the machine falls on all of them alike. It prints the median and
the 99th percentile per call and the file size; the last line names the slowest model's median
against the budget (1.5 ms per face on one core). Run it alone on the machine (``flock
/tmp/bench.lock``): another process on the cores moves these numbers more than a model does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gatekeeper._native import route_native_stderr  # noqa: E402
from gatekeeper.classify import SmileClassifier  # noqa: E402
from gatekeeper.errors import GatekeeperError  # noqa: E402

BUDGET_MS = 1.5
SHARED = Path(os.environ.get("GATEKEEPER_SHARED") or REPO.parent / "shared")


def clip_chips(clip: Path, limit: int = 64) -> np.ndarray:
    """Up to ``limit`` face chips from a clip, cut as the gate cuts them."""
    import cv2

    from gatekeeper.crop import face_chip
    from gatekeeper.detect import FaceDetector, resolve_face_model

    cap = cv2.VideoCapture(str(clip))
    chips: list[np.ndarray] = []
    with FaceDetector(resolve_face_model(None), video=False) as detector:
        while len(chips) < limit:
            ok, frame = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            chips += [face_chip(rgb, face) for face in detector.detect(rgb)]
    cap.release()
    if not chips:
        raise GatekeeperError(f"no face found in {clip}; expected a clip with a face in view")
    return np.stack(chips)


def time_calls(clf: SmileClassifier, chips: np.ndarray, calls: int) -> list[float]:
    out = []
    for i in range(calls):
        chip = chips[i % len(chips)][None]
        t0 = time.perf_counter()
        clf.predict(chip)
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", type=Path, default=[REPO / "model" / "smile.tflite", REPO / "model" / "smile_int8.tflite"], help="model files (default: the shipped float32 and int8)")
    ap.add_argument("--calls", type=int, default=3000, help="single-face calls per model (default 3000)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds the calls are split into, the models in turn (default 5)")
    ap.add_argument("--clip", type=Path, default=SHARED / "videos" / "single_face.mp4", help="where the faces come from")
    args = ap.parse_args(argv)
    # MediaPipe and LiteRT write to fd 2 from C++ now and then (an unaligned-tensor warning in
    # the middle of a run); as in the gatekeeper command, that goes to a logger, not the terminal.
    route_native_stderr()
    try:
        models = [SmileClassifier(p, threads=1) for p in args.model]  # a bad model fails before any detector runs
        chips = clip_chips(args.clip)
    except GatekeeperError as exc:
        print(f"bench_model: {exc}", file=sys.stderr)
        return 2
    times: list[list[float]] = [[] for _ in models]
    per_round = max(1, args.calls // args.rounds)
    for clf in models:
        time_calls(clf, chips, 200)  # warm-up
    for _ in range(args.rounds):
        for clf, t in zip(models, times, strict=True):
            t += time_calls(clf, chips, per_round)
    print(f"{'model':<56}{'median ms':>10}{'p99 ms':>9}{'KiB':>7}")
    medians = []
    for path, t in zip(args.model, times, strict=True):
        ms = np.asarray(t) * 1000.0
        medians.append(float(np.median(ms)))
        print(f"{path!s:<56}{medians[-1]:>10.3f}{np.percentile(ms, 99):>9.3f}{path.stat().st_size // 1024:>7}")
    worst = int(np.argmax(medians))
    print(f"slowest: {args.model[worst]} {medians[worst]:.3f} ms per face, budget {BUDGET_MS} ms ({'within' if medians[worst] <= BUDGET_MS else 'OVER'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
