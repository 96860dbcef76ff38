"""What a camera costs: N local MJPEG streams, gatekeeper over them in real processes.

    flock /tmp/bench.lock python scripts/bench_cameras.py --cameras 1 4 8

Serves N MJPEG-over-HTTP streams on loopback (``tests/mjpeg_server.py``, 30 fps, 640x360 JPEG
at quality 80, as a cheap IP camera sends them) and runs ``gatekeeper --url ...`` over them, a
real process reading real streams, the events read from its stdout. For each N, in turn:

* **idle, still**: an empty entrance: one picture with camera noise (every JPEG differs);
* **idle, moving**: nobody in view, but the picture moves all the time (a shared clip of
  drifting clouds): the detector runs at ``motion.idle_fps``;
* **face**: a person walks up and smiles (``single_face.mp4``, then 1 s of the empty entrance,
  in a loop: an OPEN and a FACE_LOST every 3.4 s);
* **faults** (N >= 2): the face loop on every camera while cam0 freezes for 4 s and cam1 hangs
  up every 3 s; the frame-to-event latency and the OPENs of the other cameras (one per pass of
  the loop: none lost).

For each: CPU per camera in % of one core (utime + stime from ``/proc/<pid>/stat`` over the
window, divided by N), resident memory (VmRSS, all processes), frame-to-event latency (the time
an event line is read minus its ``t``, the wall-clock time the frame was captured: decode,
detect, classify, gate, journal and stdout), events, and the frames dropped (a newer one came
first), handed over to the pipeline and decoded in full (the source's and pipeline's own counts,
from the log line each process writes at its end; an MJPEG frame the pipeline only compares is
decoded at reduced scale, not in full).

``--mode service`` (the default) runs one gatekeeper process for all N cameras (``cameras:`` in
its config), sharing the models; ``--mode processes`` runs one process per camera (RSS summed),
for comparison. The machine is shared: CPU time is the process's own, but latency includes
waiting for a core.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from mjpeg_server import MjpegServer  # noqa: E402  (the tests' camera: one implementation)

SHARED = Path(os.environ.get("GATEKEEPER_SHARED", ROOT.parent / "shared"))
VIDEOS = SHARED / "videos"
SIZE = (640, 360)
FPS = 30.0
TICKS = os.sysconf("SC_CLK_TCK")


# -- the pictures the cameras send -------------------------------------------------------------------


def jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def clip_images(name: str) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(VIDEOS / name))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        out.append(cv2.resize(img, SIZE, interpolation=cv2.INTER_AREA))
    cap.release()
    if not out:
        raise SystemExit(f"bench_cameras: cannot read {VIDEOS / name}; expected the shared clips (set GATEKEEPER_SHARED)")
    return out


def still_scene(count: int = 60) -> list[bytes]:
    """An empty entrance: one picture, camera noise (sigma 2 grey levels) in each frame."""
    base = clip_images("no_face.mp4")[0].astype(np.float32)
    rng = np.random.default_rng(0)
    return [jpeg(np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)) for _ in range(count)]


def moving_scene() -> list[bytes]:
    """Nobody in view, the picture moving: the shared clip of drifting clouds, back and forth."""
    frames = [jpeg(img) for img in clip_images("no_face.mp4")]
    return frames + frames[::-1]


def face_loop(still: list[bytes]) -> list[bytes]:
    """Someone walks up and smiles, then 1 s of the empty entrance: one visit per pass."""
    return [jpeg(img) for img in clip_images("single_face.mp4")] + still[: round(FPS)]


# -- the gatekeepers ---------------------------------------------------------------------------------


@dataclass
class Gatekeeper:
    """One ``gatekeeper --url`` process, its events read from stdout as they come."""

    proc: subprocess.Popen[str]
    events: list[tuple[float, dict]] = field(default_factory=list)  # (time read, event)
    stderr: str = ""

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.time()
            if line.startswith("{"):
                self.events.append((now, json.loads(line)))

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            _, self.stderr = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()
        self._reader.join(timeout=5)

    def source_counts(self) -> list[dict]:
        """The source counters of each camera, from the log lines written at the end."""
        return [json.loads(m.group(1)) for m in re.finditer(r"done: .* source (\{.*\})", self.stderr)]


def start_gatekeepers(urls: list[str], config: str, mode: str, tmp: Path) -> list[Gatekeeper]:
    """One process for every camera (``service``: cameras cam0..camN-1), or one per camera."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start(path: Path, extra: list[str]) -> Gatekeeper:
        argv = [sys.executable, "-m", "gatekeeper.cli", "--config", str(path), "--dry-run", *extra]
        return Gatekeeper(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT))

    if mode == "service":
        path = tmp / "service.yaml"
        path.write_text(config + "cameras:\n" + "".join(f"  cam{i}: {{url: {json.dumps(url)}}}\n" for i, url in enumerate(urls)))
        return [start(path, [])]
    path = tmp / "process.yaml"
    path.write_text(config)
    return [start(path, ["--url", url]) for url in urls]


def wait_until_running(gates: list[Gatekeeper], timeout: float = 180.0) -> None:
    """Until every process has loaded its models and reads frames (its CPU use settles)."""
    deadline = time.monotonic() + timeout
    last = [g.cpu_s() for g in gates]
    while time.monotonic() < deadline:
        time.sleep(2.0)
        now = [g.cpu_s() for g in gates]
        for g in gates:
            if g.proc.poll() is not None:
                raise SystemExit(f"bench_cameras: gatekeeper exited early: {g.proc.stderr.read()[-2000:] if g.proc.stderr else ''}")
        # Model loading takes a core per process; reading frames far less.
        if all(b - a < 1.0 for a, b in zip(last, now, strict=True)):
            return
        last = now
    raise SystemExit("bench_cameras: the gatekeepers did not settle")


# -- one measurement ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def measure(gates: list[Gatekeeper], cameras: int, seconds: float, healthy: list[int] | None = None) -> dict:
    """CPU per camera, RSS and the events of the next ``seconds``."""
    marks = [len(g.events) for g in gates]
    cpu0, t0 = [g.cpu_s() for g in gates], time.monotonic()
    time.sleep(seconds)
    cpu1, elapsed = [g.cpu_s() for g in gates], time.monotonic() - t0
    per_camera = [(b - a) / elapsed * 100 for a, b in zip(cpu0, cpu1, strict=True)]  # per process
    latencies, events, opens = [], {}, {}
    for i, (g, mark) in enumerate(zip(gates, marks, strict=True)):
        for read_at, e in g.events[mark:]:
            # The camera: named in the event (one service: cam0, cam1...), else the process's index.
            name = str(e.get("camera") or "")
            camera = int(name[3:]) if len(gates) == 1 and name.startswith("cam") else i
            events.setdefault(e["event"], 0)
            events[e["event"]] += 1
            if (healthy is None or camera in healthy) and e["event"] in ("OPEN", "FACE_LOST", "DENY"):
                latencies.append((read_at - e["t"]) * 1000)
            if e["event"] == "OPEN":
                opens[camera] = opens.get(camera, 0) + 1
    return {
        "cpu_per_camera_pct": round(sum(per_camera) / cameras, 2),
        "cpu_process_pct": round(sum(per_camera), 2),
        "rss_mb": round(sum(g.rss_mb() for g in gates), 1),
        "events": events,
        "opens_per_camera": [opens.get(i, 0) for i in range(cameras)],
        "latency_ms": {"n": len(latencies), "p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "max": max(latencies, default=None)},
    }


def run(n: int, window: float, config: str, mode: str, tmp: Path, frames: dict[str, list[bytes]]) -> dict:
    servers = [MjpegServer(frames["still"], fps=FPS).start() for _ in range(n)]
    gates: list[Gatekeeper] = []
    out: dict = {"cameras": n}
    try:
        gates = start_gatekeepers([s.url for s in servers], config, mode, tmp)
        wait_until_running(gates)
        for phase in ("still", "moving", "face"):
            for s in servers:
                s.frames = frames[phase]
            time.sleep(2.0)  # a face already in view when the window opens, the idle rate reached
            out[phase] = measure(gates, n, window)
            print(f"  N={n} {phase}: {json.dumps(out[phase])}", file=sys.stderr, flush=True)
        if n >= 2:
            stop = threading.Event()

            def hang_up_every_3_s() -> None:
                while not stop.wait(3.0):
                    servers[1].drop()

            def freeze_4_s() -> None:
                if not stop.wait(2.0):
                    servers[0].stall()
                    stop.wait(4.0)
                    servers[0].resume()

            threads = [threading.Thread(target=f, daemon=True) for f in (hang_up_every_3_s, freeze_4_s)]
            for t in threads:
                t.start()
            out["faults"] = measure(gates, n, max(window, 10.0), healthy=list(range(2, n)))
            stop.set()
            servers[0].resume()
            print(f"  N={n} faults: {json.dumps(out['faults'])}", file=sys.stderr, flush=True)
    finally:
        for g in gates:
            g.stop()
        for s in servers:
            s.close()
    counts = [c for g in gates for c in g.source_counts()]
    out["source"] = {key: sum(c.get(key, 0) for c in counts) for key in ("read", "dropped", "not_decoded", "decoded", "reconnects")}
    m = [x for g in gates for x in re.finditer(r"face detector ran on (\d+) frames and skipped (\d+)", g.stderr)]
    out["detector"] = {"ran": sum(int(x.group(1)) for x in m if x), "skipped": sum(int(x.group(2)) for x in m if x)}
    return out


def table(results: list[dict]) -> str:
    def cell(r: dict, phase: str, key: str) -> str:
        if phase not in r:
            return "-"
        v = r[phase]["latency_ms"]["p99"] if key == "p99" else r[phase][key]
        return "-" if v is None else f"{v:.1f}"

    lines = [
        "| cameras | mode | motion | CPU/camera idle still | idle moving | face | p99 frame-to-event face | p99 with faults | RSS | frames dropped / handed over / decoded in full |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['cameras']} | {r['mode']} | {r['motion']} | {cell(r, 'still', 'cpu_per_camera_pct')}% | {cell(r, 'moving', 'cpu_per_camera_pct')}% | {cell(r, 'face', 'cpu_per_camera_pct')}% "
            f"| {cell(r, 'face', 'p99')} ms | {cell(r, 'faults', 'p99')} ms | {r['face']['rss_mb']:.0f} MB | {r['source']['dropped']} / {r['source']['read']} / {r['source']['decoded']} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, nargs="+", default=[1, 4, 8], help="numbers of cameras to measure (default 1 4 8)")
    ap.add_argument("--window", type=float, default=10.0, help="seconds each measurement lasts (default 10)")
    ap.add_argument("--motion", choices=("on", "off", "both"), default="on", help="motion.enabled: on (the default config), off (detect every frame), or both")
    ap.add_argument("--mode", choices=("service", "processes"), default="service", help="one gatekeeper process for all cameras (default), or one per camera")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    if any(n < 1 for n in args.cameras) or args.window <= 0:
        ap.error("expected --cameras of at least 1 and a --window above 0")
    still = still_scene()
    frames = {"still": still, "moving": moving_scene(), "face": face_loop(still)}
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-cameras-") as tmp:
        for motion in (("on", "off") if args.motion == "both" else (args.motion,)):
            config = f"motion: {{enabled: {'true' if motion == 'on' else 'false'}}}\n"
            for n in args.cameras:
                print(f"bench_cameras: {n} camera(s), mode {args.mode}, motion {motion}", file=sys.stderr, flush=True)
                results.append({"motion": motion, "mode": args.mode, **run(n, args.window, config, args.mode, Path(tmp), frames)})
    print(table(results))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
