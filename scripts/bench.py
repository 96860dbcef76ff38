#!/usr/bin/env python3
"""Benchmark of the gate's run-time path, with the original project's Keras scoring side by side.

    python scripts/bench.py [--frames 2000] [--clips A.mp4 B.mov ...] [--config PATH] [--out artifacts/bench.json]

It replays the clips (default: the shared clips, in turn, looped until ``--frames`` frames) through
the real pipeline, built from a config by ``build_pipeline`` and fed by the app's own
``FileSource``, and reports:

* frames per second end to end (decode + detect + crop + classify + gate + event output);
* per-stage time, median and p99: decode, detect, crop, classify, gate (the pipeline's
  ``StageTimes``; decode runs ahead on the source's thread, so ``decode_wait``, timed around the
  source's iterator, is what the loop itself waited), event output (JSON lines written to a null
  stream, as ``StdoutSink`` writes them);
* latency from a frame being decoded to its event lines being written (frames with events), and
  to its decision (every frame);
* peak RSS of this process after the gate run (which never imports TensorFlow: checked);
* the bare-stage bound: decode alone, detect alone and classify alone over the same frames, summed;
  the pipeline's throughput as a fraction of it is what the plumbing costs;
* time from process start to the first processed frame of ``gatekeeper --video`` in a subprocess,
  with that process's peak RSS;
* the same faces scored the original project's way, ``model.predict`` on a Keras model one chip at
  a time (``smile.keras`` beside the smile model), in a subprocess so that TensorFlow never enters
  this one; the speed-up is a ratio measured in the same run.

The table goes to stdout, the full results as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gatekeeper.app import StdoutSink  # noqa: E402
from gatekeeper.capture import Frame  # noqa: E402
from gatekeeper.capture_file import FileSource  # noqa: E402
from gatekeeper.config import Config  # noqa: E402
from gatekeeper.config_load import load_config  # noqa: E402
from gatekeeper.crop import face_chip  # noqa: E402
from gatekeeper.errors import GatekeeperError  # noqa: E402
from gatekeeper.pipeline import Pipeline, StageTimes, build_pipeline  # noqa: E402

SHARED = Path(os.environ.get("GATEKEEPER_SHARED") or REPO.parent / "shared")
DEFAULT_CLIPS = [SHARED / "videos" / name for name in ("single_face.mp4", "face_noface.mov", "no_face.mp4")]
KERAS_NAME = "smile.keras"


# -- statistics -----------------------------------------------------------------------------------


def summary(samples: Sequence[float], frames: int | None = None) -> dict[str, Any]:
    """Median, p99 and mean of ``samples`` in milliseconds; ``per_frame_ms`` spreads the total over ``frames``."""
    if not samples:
        return {"n": 0, "median_ms": None, "p99_ms": None, "mean_ms": None, "per_frame_ms": 0.0 if frames else None}
    a = np.asarray(samples, dtype=np.float64) * 1000.0
    out = {"n": int(a.size), "median_ms": round(float(np.median(a)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3), "mean_ms": round(float(a.mean()), 3)}
    if frames:
        out["per_frame_ms"] = round(float(a.sum()) / frames, 3)
    return out


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # kilobytes on Linux


# -- the frames: the clips in turn, looped ----------------------------------------------------------


def looped_frames(clips: Sequence[Path], n: int, decode_times: list[float] | None = None, t_start: float = 0.0) -> Iterator[tuple[str, Frame]]:
    """``n`` frames from the clips in turn, again and again, with indices and times that keep
    increasing across loops (the detector's VIDEO mode and the gate both need time to move on).

    Decode time (opening a clip counts towards its first frame) is appended to ``decode_times``.
    """
    index, offset, done = 0, t_start, 0
    while done < n:
        for clip in clips:
            t0 = time.perf_counter()
            source = FileSource(clip)
            it = iter(source)
            last_t = 0.0
            try:
                while done < n:
                    frame = next(it, None)
                    t1 = time.perf_counter()
                    if frame is None:
                        break
                    if decode_times is not None:
                        decode_times.append(t1 - t0)
                    last_t = frame.t
                    yield clip.name, Frame(frame.image, index, offset + frame.t, frame.decode_s)
                    index += 1
                    done += 1
                    t0 = time.perf_counter()  # the consumer's time in between is not decode time
            finally:
                source.close()
            offset += last_t + 1.0 / source.fps
            if done >= n:
                return


# -- the gate run ---------------------------------------------------------------------------------


def run_gate(pipeline: Pipeline, clips: Sequence[Path], n: int) -> dict[str, Any]:
    """The real loop, as a Camera runs it on a file: decode, process, write the event lines."""
    pipeline.times = StageTimes(keep=n + 16)
    sink = StdoutSink(open(os.devnull, "w", encoding="utf-8"))  # closed below
    waited: list[float] = []
    output: list[float] = []
    to_event: list[float] = []
    to_decision: list[float] = []
    per_clip: dict[str, list[float]] = {}
    events: dict[str, int] = {}
    frames = 0
    started = time.perf_counter()
    decoded_at = started
    frame_started = started
    for clip, frame in looped_frames(clips, n, waited):
        decoded_at = time.perf_counter()
        got = pipeline.process(frame)
        t_gate = time.perf_counter()
        for e in got:
            sink.emit(e)
            events[e.event.value] = events.get(e.event.value, 0) + 1
        written = time.perf_counter()
        if got:
            output.append(written - t_gate)
            to_event.append(written - decoded_at)
        to_decision.append(written - decoded_at)
        per_clip.setdefault(clip, []).append(written - frame_started)  # decode of this frame included
        frame_started = written
        frames += 1
    wall = time.perf_counter() - started
    last_t = frame.t
    sink.stream.close()
    s = pipeline.times.samples
    stages = {
        # The source decodes ahead on its own thread: "decode" is its own measurement of each
        # frame (frame.decode_s), "decode_wait" the time the loop actually waited for a frame.
        "decode": summary(s["decode"], frames),
        "decode_wait": summary(waited, frames),
        "detect": summary(s["detect"], frames),
        "crop": summary(s["crop"], frames),
        "classify": summary(s["classify"], frames),
        "gate": summary(s["gate"], frames),
        "event_output": summary(output, frames),
    }
    return {
        "frames": frames,
        "wall_s": round(wall, 3),
        "fps": round(frames / wall, 1),
        "frames_with_faces": len(s["crop"]),
        "events": events,
        "stages": stages,
        "latency": {"frame_to_event": summary(to_event), "frame_to_decision": summary(to_decision)},
        "per_clip_fps": {clip: round(len(v) / sum(v), 1) for clip, v in per_clip.items()},
        "last_t": last_t,
    }


# -- the bare stages, each alone over the same frames --------------------------------------------------


def run_bare(pipeline: Pipeline, clips: Sequence[Path], n: int, t_start: float) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Decode alone, detect alone, classify alone; returns the summaries and each frame's chips."""
    decode: list[float] = []
    for _ in looped_frames(clips, n, decode):
        pass
    detect: list[float] = []
    chips: list[np.ndarray] = []
    # Time moves on from the gate run (t_start), as the detector's VIDEO mode needs.
    for _, frame in looped_frames(clips, n, t_start=t_start):
        t0 = time.perf_counter()
        faces = pipeline.detector.detect(frame.image, frame.t)
        detect.append(time.perf_counter() - t0)
        if faces:
            chips.append(np.stack([face_chip(frame.image, f) for f in faces]))
    classify: list[float] = []
    for c in chips:
        t0 = time.perf_counter()
        pipeline.classifier.predict(c)
        classify.append(time.perf_counter() - t0)
    stages = {"decode": summary(decode, n), "detect": summary(detect, n), "classify": summary(classify, n)}
    per_frame_s = sum(st["per_frame_ms"] for st in stages.values()) / 1000.0
    return {"stages": stages, "sum_per_frame_ms": round(per_frame_s * 1000, 3), "bound_fps": round(1.0 / per_frame_s, 1)}, chips


def litert_one_at_a_time(pipeline: Pipeline, chips: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """The gate's classifier called the way the Keras model is: one chip per call."""
    pipeline.classifier.predict(chips[:1])  # back to batch size 1 before timing
    times, probs = [], []
    for c in chips:
        t0 = time.perf_counter()
        probs.append(pipeline.classifier.predict(c[None])[0])
        times.append(time.perf_counter() - t0)
    return summary(times), np.asarray(probs, dtype=np.float32)


# -- subprocesses: start-up of the real CLI, and Keras ------------------------------------------------

# Runs the real CLI, reporting the wall-clock time at which the first frame has been processed.
STARTUP_BOOT = """
import resource, sys, time
from gatekeeper.camera import Camera
_step = Camera.step
def _timed_step(self, frame):
    _step(self, frame)
    if not getattr(self, "_bench_first", False):
        self._bench_first = True
        print("BENCH_FIRST_FRAME", repr(time.time()), file=sys.stderr, flush=True)
Camera.step = _timed_step
from gatekeeper.cli import main
rc = main(sys.argv[1:])
print("BENCH_END", "tensorflow" in sys.modules, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr, flush=True)
sys.exit(rc)
"""


def measure_startup(clip: Path, config: Path | None, runs: int) -> dict[str, Any]:
    """``gatekeeper --video CLIP`` from process start to its first processed frame, ``runs`` times."""
    out: dict[str, Any] = {"clip": clip.name, "runs": []}
    with tempfile.TemporaryDirectory() as state:
        # The journal of these runs goes to a throw-away state directory, not the user's.
        env = {**os.environ, "XDG_STATE_HOME": state, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        args = ["--video", str(clip), "--config", str(config) if config else os.devnull, "--log-level", "warning"]
        for _ in range(runs):
            spawned = time.time()
            proc = subprocess.run([sys.executable, "-c", STARTUP_BOOT, *args], capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
            ended = time.time()
            first = end = None
            for line in proc.stderr.splitlines():
                if line.startswith("BENCH_FIRST_FRAME"):
                    first = float(line.split()[1])
                elif line.startswith("BENCH_END"):
                    end = line.split()
            if proc.returncode != 0 or first is None or end is None:
                raise RuntimeError(f"the start-up run failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
            out["runs"].append({"to_first_frame_s": round(first - spawned, 3), "total_s": round(ended - spawned, 3), "tensorflow_imported": end[1] == "True", "peak_rss_mb": round(int(end[2]) / 1024.0, 1)})
    firsts = [r["to_first_frame_s"] for r in out["runs"]]
    out["to_first_frame_s"] = round(float(np.median(firsts)), 3)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in out["runs"])
    out["tensorflow_imported"] = any(r["tensorflow_imported"] for r in out["runs"])
    return out


def measure_keras(keras_path: Path, chips: np.ndarray) -> dict[str, Any]:
    """Run :func:`keras_worker` in a subprocess (TensorFlow stays out of this process)."""
    if not keras_path.is_file():
        return {"skipped": f"no Keras model at {keras_path}"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chips.npy"
        np.save(path, chips)
        proc = subprocess.run([sys.executable, __file__, "--keras-worker", str(path), "--keras", str(keras_path)], capture_output=True, text=True, timeout=3600, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"skipped": f"the Keras run failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:] or ''}"}
    return json.loads(lines[-1])


def keras_worker(chips_path: Path, keras_path: Path) -> int:
    """The original project's way of scoring: ``model.predict`` on one chip at a time."""
    t0 = time.perf_counter()
    try:
        import keras  # TensorFlow's Keras: the train extra
    except ImportError:
        print(json.dumps({"skipped": "needs the train extra (pip install '.[train]'): TensorFlow is not installed"}))
        return 0
    import gatekeeper.training.models  # noqa: F401 - registers the custom layers the saved model uses

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = keras.models.load_model(keras_path, compile=False)
    load_s = time.perf_counter() - t0
    chips = np.load(chips_path).astype(np.float32)[..., None]
    model.predict(chips[:1], verbose=0)  # the first call builds the graph; the original paid it once too
    times, probs = [], []
    for c in chips:
        t1 = time.perf_counter()
        p = model.predict(c[None], verbose=0)
        times.append(time.perf_counter() - t1)
        probs.append(float(np.asarray(p).reshape(-1)[0]))
    print(json.dumps({"predict_per_chip": summary(times), "probs": probs, "import_s": round(import_s, 3), "load_s": round(load_s, 3), "keras": keras.__version__, "peak_rss_mb": round(peak_rss_mb(), 1)}))
    return 0


# -- report ---------------------------------------------------------------------------------------


def fmt(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v}{unit}"


def print_table(r: dict[str, Any]) -> None:
    g = r["gate"]
    print(f"\ngatekeeper bench: {g['frames']} frames from {', '.join(r['clips'])}  (load average at start {r['env']['loadavg_start']})")
    print(f"tensorflow imported in the gate measurement: {'YES' if r['tensorflow_in_gate_process'] else 'no'}\n")
    print(f"{'stage':<16}{'median ms':>11}{'p99 ms':>10}{'per frame ms':>14}{'n':>7}   {'alone: per frame ms':>20}")
    bare = r["bare"]["stages"]
    for name, st in g["stages"].items():
        alone = bare.get(name, {}).get("per_frame_ms")
        print(f"{name:<16}{fmt(st['median_ms']):>11}{fmt(st['p99_ms']):>10}{fmt(st['per_frame_ms']):>14}{st['n']:>7}   {fmt(alone):>20}")
    lat = g["latency"]
    print(f"\n{'end to end':<34}{g['fps']:>10} frames/s   ({g['wall_s']} s; per clip: {', '.join(f'{k} {v}' for k, v in g['per_clip_fps'].items())})")
    print(f"{'bare-stage bound (sum alone)':<34}{r['bare']['bound_fps']:>10} frames/s   (pipeline at {r['fraction_of_bound']:.0%} of it)")
    print(f"{'frame -> event lines, p99':<34}{fmt(lat['frame_to_event']['p99_ms'], ' ms'):>13}   (median {fmt(lat['frame_to_event']['median_ms'])}, n={lat['frame_to_event']['n']})")
    print(f"{'frame -> decision, p99':<34}{fmt(lat['frame_to_decision']['p99_ms'], ' ms'):>13}   (median {fmt(lat['frame_to_decision']['median_ms'])})")
    print(f"{'peak RSS (this process)':<34}{r['peak_rss_mb']:>10} MB")
    st = r.get("startup")
    if st:
        print(f"{'start -> first frame (CLI)':<34}{st['to_first_frame_s']:>10} s    (runs {[x['to_first_frame_s'] for x in st['runs']]}; CLI peak RSS {st['peak_rss_mb']} MB; tensorflow imported: {st['tensorflow_imported']})")
    k = r.get("keras", {})
    if "skipped" in k:
        print(f"{'keras predict, one chip':<34}   skipped: {k['skipped']}")
    elif k:
        kp, lp = k["predict_per_chip"], r["litert_one_chip"]
        print(f"{'keras predict, one chip':<34}{kp['median_ms']:>10} ms   (p99 {kp['p99_ms']}; n={kp['n']}; TF import {k['import_s']} s, RSS {k['peak_rss_mb']} MB)")
        print(f"{'LiteRT predict, one chip':<34}{lp['median_ms']:>10} ms   (p99 {lp['p99_ms']})")
        print(f"{'speed-up of scoring (median)':<34}{r['speedup']['scoring_median']:>10}x   (mean {r['speedup']['scoring_mean']}x; |p_keras - p_litert| max {r['speedup']['max_prob_diff']})")
        print(f"{'end to end with keras scoring':<34}{r['speedup']['e2e_fps_with_keras']:>10} frames/s   (derived: this run's frame time with classify replaced; {r['speedup']['e2e']}x)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000, help="frames to replay (the clips are looped); default 2000")
    ap.add_argument("--clips", nargs="+", type=Path, default=DEFAULT_CLIPS, help="video files (default: the shared clips)")
    ap.add_argument("--config", type=Path, help="config file for the pipeline (default: built-in defaults)")
    ap.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench.json", help="JSON results (default artifacts/bench.json)")
    ap.add_argument("--keras", type=Path, help=f"Keras model (default: {KERAS_NAME} beside the smile model)")
    ap.add_argument("--keras-chips", type=int, default=0, help="score at most this many chips with Keras (0: all)")
    ap.add_argument("--startup-runs", type=int, default=3, help="start-up measurements of the CLI (0: skip)")
    ap.add_argument("--keras-worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.keras_worker is not None:
        return keras_worker(args.keras_worker, args.keras)
    if args.frames < 1:
        ap.error("--frames: expected a number >= 1")
    for clip in args.clips:
        if not clip.is_file():
            ap.error(f"--clips: {clip} is not a file")

    try:
        cfg: Config = load_config(args.config)
        pipeline = build_pipeline(cfg)
    except GatekeeperError as exc:  # a missing model or a bad config: one line, as the CLI says it
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    result: dict[str, Any] = {
        "clips": [c.name for c in args.clips],
        "env": {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(), "loadavg_start": [round(x, 2) for x in os.getloadavg()]},
        "args": {"frames": args.frames, "config": str(args.config) if args.config else None},
    }
    try:
        result["gate"] = run_gate(pipeline, args.clips, args.frames)
        # Measured before anything else runs here: this is the gate's own footprint.
        result["peak_rss_mb"] = round(peak_rss_mb(), 1)
        result["tensorflow_in_gate_process"] = "tensorflow" in sys.modules
        print(f"gate measurement done: {result['gate']['fps']} frames/s; 'tensorflow' not in sys.modules: {'tensorflow' not in sys.modules}", file=sys.stderr)
        result["bare"], chips_per_frame = run_bare(pipeline, args.clips, args.frames, t_start=result["gate"]["last_t"] + 1.0)
        result["fraction_of_bound"] = round(result["gate"]["fps"] / result["bare"]["bound_fps"], 3)
        chips = np.concatenate(chips_per_frame) if chips_per_frame else np.zeros((0, 64, 64), np.uint8)
        faces_per_frame = len(chips) / args.frames
        if args.keras_chips:
            chips = chips[: args.keras_chips]
        if len(chips):
            result["litert_one_chip"], litert_probs = litert_one_at_a_time(pipeline, chips)
        keras_path = args.keras or Path(pipeline.classifier.path).with_name(KERAS_NAME)
    finally:
        pipeline.close()
    if args.startup_runs:
        result["startup"] = measure_startup(args.clips[0], args.config, args.startup_runs)
    if len(chips):
        print(f"scoring {len(chips)} chips with Keras model.predict, one at a time (subprocess)...", file=sys.stderr)
        keras = measure_keras(keras_path, chips)
        probs = keras.pop("probs", None)
        result["keras"] = keras
        if "skipped" not in keras:
            kp, lp = keras["predict_per_chip"], result["litert_one_chip"]
            g = result["gate"]
            classify_per_frame = g["stages"]["classify"]["per_frame_ms"]
            frame_ms = 1000.0 / g["fps"]
            # Keras per face instead of LiteRT per frame: the frame time the original way of scoring would give.
            keras_frame_ms = frame_ms - classify_per_frame + kp["mean_ms"] * faces_per_frame
            result["speedup"] = {
                "scoring_median": round(kp["median_ms"] / lp["median_ms"], 1),
                "scoring_mean": round(kp["mean_ms"] / lp["mean_ms"], 1),
                "max_prob_diff": float(f"{np.max(np.abs(np.asarray(probs) - litert_probs)):.3g}") if probs else None,
                "e2e_fps_with_keras": round(1000.0 / keras_frame_ms, 1),
                "e2e": round(keras_frame_ms / frame_ms, 1),
            }
    else:
        result["keras"] = {"skipped": "no faces in the replayed frames"}
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
