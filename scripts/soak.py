#!/usr/bin/env python3
"""Soak test: the pipeline replaying clips, or (``--service``) the whole service as a park runs it.

    python scripts/soak.py [--minutes 30] [--clips A.mp4 ...] [--config PATH] [--realtime] [--out soak.json]
    python scripts/soak.py --service [--minutes 60] [--sample-s 60] [--workdir DIR] [--out soak.json]

Not run in CI. Without ``--service``: Every ``--interval-s`` (default 60 s) it prints one line: frames and frames/s in
that interval, frame-to-decision latency (decoded frame to its event lines written) median, p99
and max, and the resident set size now and at its peak. At the end it fits a line through RSS
and through p99 latency over time, so that "flat" is a number: a leak shows as MB per minute.

``--service`` runs one ``gatekeeper`` process with 8 loopback MJPEG cameras (``tests/mjpeg_server.py``,
640x360 at 30 fps: cam0 still, cam1 moving, cam2-cam4 a person walking up and smiling in a loop,
cam5 freezing 4 s in every 20, cam6 hanging up every 3 s, cam7 sending parts that are no JPEG),
its journal on disk, a webhook to a local receiver that goes down for 8 s in every 45, MQTT to a
mosquitto that is restarted every 60 s (persistent, with a persistent-session subscriber), and an
operator action every 3 s (open, out of service, back in service; over HTTP and MQTT in turn).
Every ``--sample-s`` it samples the service's RSS, open file descriptors, threads, the journal's
size and the hook backlog (deliveries pending in the journal). At the end it brings the receivers
back, lets the backlog drain, stops the service (SIGINT), fits a line through each sample series
after ``--warmup-min``, checks the events against the receivers (every OPEN delivered at least
once, duplicates only of the same event, nothing lost) and prints a pass/fail per target. Exit
status 0 only when every target passed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench.py beside this file
from bench import DEFAULT_CLIPS, REPO, looped_frames, peak_rss_mb

from gatekeeper.app import StdoutSink
from gatekeeper.config_load import load_config
from gatekeeper.pipeline import build_pipeline


def rss_mb() -> float:
    """Resident set size now (not the peak): what a leak makes grow."""
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def slope_per_minute(t_s: list[float], values: list[float]) -> float | None:
    if len(t_s) < 2:
        return None
    return float(np.polyfit(np.asarray(t_s) / 60.0, np.asarray(values), 1)[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--service", action="store_true", help="soak the whole service: 8 cameras with faults, hooks, operator actions")
    ap.add_argument("--minutes", type=float, help="how long to run (default 30; 60 with --service)")
    ap.add_argument("--sample-s", type=float, default=60.0, help="--service: seconds between samples (default 60)")
    ap.add_argument("--warmup-min", type=float, default=5.0, help="--service: minutes left out of the fits (default 5, at most half the run)")
    ap.add_argument("--workdir", type=Path, help="--service: where the journal and logs go (default: a temporary folder)")
    ap.add_argument("--interval-s", type=float, default=60.0, help="seconds per report line (default 60)")
    ap.add_argument("--clips", nargs="+", type=Path, default=DEFAULT_CLIPS, help="video files (default: the shared clips)")
    ap.add_argument("--config", type=Path, help="config file for the pipeline (default: built-in defaults)")
    ap.add_argument("--realtime", action="store_true", help="pace frames at the clips' own rate instead of as fast as possible")
    ap.add_argument("--out", type=Path, help="also write the per-interval rows as JSON here")
    ap.add_argument("--model-workers", type=int, help="--service: the service's model_workers (default: its own default)")
    args = ap.parse_args(argv)
    if (args.minutes is not None and args.minutes <= 0) or args.sample_s <= 0 or args.warmup_min < 0:
        ap.error("expected --minutes and --sample-s above 0 and --warmup-min of at least 0")
    # SIGTERM (a timeout, `kill`) ends the run as Ctrl-C does: the cleanup stops the service, the
    # broker and the cameras instead of leaving them running.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.service:
        from soak_service import service_soak  # beside this file

        return service_soak(args.minutes if args.minutes is not None else 60.0, sample_s=args.sample_s, warmup_min=args.warmup_min, workdir=args.workdir, out=args.out, model_workers=args.model_workers)
    if args.minutes is None:
        args.minutes = 30.0

    pipeline = build_pipeline(load_config(args.config))
    sink = StdoutSink(open(os.devnull, "w", encoding="utf-8"))  # event lines are written, as the CLI does
    rows: list[dict[str, Any]] = []
    latencies: list[float] = []
    frames_in_interval = 0
    started = time.monotonic()
    end = started + args.minutes * 60.0
    next_report = started + args.interval_s
    print(f"soak: {args.minutes:g} min over {', '.join(c.name for c in args.clips)}; RSS at start {rss_mb():.1f} MB", flush=True)
    print(f"{'minute':>7}{'frames':>8}{'fps':>8}{'lat med ms':>12}{'lat p99 ms':>12}{'lat max ms':>12}{'RSS MB':>9}{'peak MB':>9}", flush=True)
    try:
        for _, frame in looped_frames(args.clips, 10**12):
            decoded = time.perf_counter()
            if args.realtime:
                # Frame times run on across loops from 0: pace them against the soak's start.
                delay = started + frame.t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                decoded = time.perf_counter()
            for event in pipeline.process(frame):
                sink.emit(event)
            latencies.append(time.perf_counter() - decoded)
            frames_in_interval += 1
            now = time.monotonic()
            if now >= next_report:
                lat = np.asarray(latencies) * 1000.0
                row = {
                    "minute": round((now - started) / 60.0, 2),
                    "frames": frames_in_interval,
                    "fps": round(frames_in_interval / args.interval_s, 1),
                    "latency_median_ms": round(float(np.median(lat)), 3),
                    "latency_p99_ms": round(float(np.percentile(lat, 99)), 3),
                    "latency_max_ms": round(float(lat.max()), 3),
                    "rss_mb": round(rss_mb(), 1),
                    "peak_rss_mb": round(peak_rss_mb(), 1),
                }
                rows.append(row)
                print(f"{row['minute']:>7}{row['frames']:>8}{row['fps']:>8}{row['latency_median_ms']:>12}{row['latency_p99_ms']:>12}{row['latency_max_ms']:>12}{row['rss_mb']:>9}{row['peak_rss_mb']:>9}", flush=True)
                latencies.clear()
                frames_in_interval = 0
                next_report += args.interval_s
            if now >= end:
                break
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    finally:
        pipeline.close()
        sink.stream.close()

    minutes = [r["minute"] * 60.0 for r in rows]
    rss_slope = slope_per_minute(minutes, [r["rss_mb"] for r in rows])
    lat_slope = slope_per_minute(minutes, [r["latency_p99_ms"] for r in rows])
    if rows:
        print(f"\nRSS {rows[0]['rss_mb']} -> {rows[-1]['rss_mb']} MB, trend {rss_slope if rss_slope is None else round(rss_slope, 3)} MB/min; "
              f"p99 latency {rows[0]['latency_p99_ms']} -> {rows[-1]['latency_p99_ms']} ms, trend {lat_slope if lat_slope is None else round(lat_slope, 3)} ms/min")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "rss_mb_per_min": rss_slope, "p99_ms_per_min": lat_slope, "clips": [c.name for c in args.clips], "repo": str(REPO)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
