#!/usr/bin/env python3
"""Soak test: replay the clips through the real pipeline for a long time and watch RSS and latency.

    python scripts/soak.py [--minutes 30] [--clips A.mp4 ...] [--config PATH] [--realtime] [--out soak.json]

Not run in CI. Every ``--interval-s`` (default 60 s) it prints one line: frames and frames/s in
that interval, frame-to-decision latency (decoded frame to its event lines written) median, p99
and max, and the resident set size now and at its peak. At the end it fits a line through RSS
and through p99 latency over time, so that "flat" is a number: a leak shows as MB per minute.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench.py beside this file
from bench import DEFAULT_CLIPS, REPO, looped_frames, peak_rss_mb

from gatekeeper.app import StdoutSink, build_pipeline
from gatekeeper.config import load_config


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
    ap.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    ap.add_argument("--interval-s", type=float, default=60.0, help="seconds per report line (default 60)")
    ap.add_argument("--clips", nargs="+", type=Path, default=DEFAULT_CLIPS, help="video files (default: the shared clips)")
    ap.add_argument("--config", type=Path, help="config file for the pipeline (default: built-in defaults)")
    ap.add_argument("--realtime", action="store_true", help="pace frames at the clips' own rate instead of as fast as possible")
    ap.add_argument("--out", type=Path, help="also write the per-interval rows as JSON here")
    args = ap.parse_args(argv)

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
