"""scripts/bench_model.py, the per-face timing of smile models: it runs, and prints what it says.
The numbers themselves are read by people (docs/model.md, "The network and what it costs"), never asserted on here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench_model.py"


def run(shared_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEKEEPER_SHARED": str(shared_dir)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


def test_it_times_each_model_and_names_the_slowest_against_the_budget(shared_dir: Path) -> None:
    proc = run(shared_dir, "--calls", "60", "--rounds", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    rows = [ln for ln in lines if ln.startswith(str(REPO / "model"))]
    assert [ln.split()[0] for ln in rows] == [str(REPO / "model" / "smile.tflite"), str(REPO / "model" / "smile_int8.tflite")]
    medians = [float(ln.split()[1]) for ln in rows]
    assert all(m > 0 for m in medians)
    last = re.fullmatch(r"slowest: (\S+) ([0-9.]+) ms per face, budget 1\.5 ms \((within|OVER)\)", lines[-1])
    assert last is not None, lines[-1]
    assert float(last.group(2)) == max(medians)


def test_a_missing_model_is_one_line_and_exit_2(shared_dir: Path, tmp_path: Path) -> None:
    proc = run(shared_dir, "--model", str(tmp_path / "nope.tflite"), "--calls", "10")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "nope.tflite" in proc.stderr and "does not exist" in proc.stderr
