#!/usr/bin/env python3
"""The gate's rule over time, measured on every labelled clip without re-running the model.

    python scripts/clip_gate.py [--model model/smile.tflite] [--set gate.hold_seconds=0.3 ...]

Each clip of ``labels.yaml`` and ``labels-expressions.yaml`` is scored once through the run-time
path (detector in VIDEO mode, crop, classifier; cached per model in ``$XDG_CACHE_HOME/gatekeeper/clip-scores-*.json``),
then fed to the tracker and :class:`gatekeeper.gate.Gate` (``TrackedGate``, the pipeline's own
last two stages) with the default gate config and the ``--set`` overrides. For each clip it prints the OPEN frames, whether they satisfy the clip's ``expect``
block (by ``../shared/tools/replay_check.py``'s own rules), and the time from the start of the
first labelled smile to the first OPEN. Gate rules can be compared in seconds this way; the
real check stays ``replay_check.py`` on the real command.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.capture_file import FileSource
from gatekeeper.classify import SmileClassifier
from gatekeeper.config import Config
from gatekeeper.detect import FaceDetector, resolve_face_model
from gatekeeper.events import EventType, FaceScore
from gatekeeper.gate import Gate
from gatekeeper.pipeline import Pipeline, TrackedGate
from gatekeeper.training.data import default_cache_dir


def score_clip(path: Path, clf: SmileClassifier, cfg: Config) -> list[dict]:
    frames = []
    with FaceDetector(resolve_face_model(None), min_confidence=cfg.detector.min_confidence, min_face_px=cfg.detector.min_face_px) as det:
        pipe = Pipeline(det, clf, Gate(cfg.gate))
        source = FileSource(path)
        try:
            for frame in source:
                faces = pipe.score_faces(frame.image, det.detect(frame.image, frame.t))
                frames.append({"i": frame.index, "t": frame.t, "faces": [[list(f.box), f.score] for f in faces]})
        finally:
            source.close()
    return frames


def replay_check_rules(shared: Path):
    """The ``check(expect, events)`` of ``../shared/tools/replay_check.py``: the same rules as the real check."""
    spec = importlib.util.spec_from_file_location("replay_check", shared / "tools" / "replay_check.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {shared / 'tools' / 'replay_check.py'}; set GATEKEEPER_SHARED")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.check


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key.startswith("gate.") or not value:
            raise SystemExit(f"--set {item!r}: expected gate.KEY=VALUE")
        out[key[5:]] = yaml.safe_load(value)
    return out


def main() -> int:
    shared = Path(os.environ.get("GATEKEEPER_SHARED", "../shared"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--labels", nargs="+", default=[str(shared / "videos" / "labels.yaml"), str(shared / "videos" / "labels-expressions.yaml")])
    ap.add_argument("--set", nargs="*", default=[], metavar="gate.KEY=VALUE")
    ap.add_argument("--cache", default=str(default_cache_dir()), help="where clip scores are cached (default: $XDG_CACHE_HOME/gatekeeper)")
    args = ap.parse_args()
    cfg = Config()
    clf = SmileClassifier(args.model)
    gate_cfg = dataclasses.replace(cfg.gate, **parse_set(args.set))
    check = replay_check_rules(shared)
    digest = hashlib.sha256(clf.path.read_bytes()).hexdigest()[:12]
    failed = 0
    for labels_path in map(Path, args.labels):
        labels = yaml.safe_load(labels_path.read_text())
        for clip, spec in labels.items():
            cache = Path(args.cache) / f"clip-scores-{digest}-{clip}.json"
            if cache.is_file():
                frames = json.loads(cache.read_text())
            else:
                frames = score_clip(labels_path.parent / clip, clf, cfg)
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(frames))
            gate = TrackedGate(Gate(gate_cfg))
            opens, open_t, events = [], [], []
            for fr in frames:
                for e in gate.step(fr["i"], fr["t"], [FaceScore(tuple(b), s) for b, s in fr["faces"]]):
                    events.append(e.to_dict())
                    if e.event is EventType.OPEN:
                        opens.append(e.frame)
                        open_t.append(e.t)
            # Time to OPEN: from the first frame labelled smile to the first OPEN of the window
            # that holds it (negative: opened while the smile was forming).
            smile_starts = [a for a, _, lab in spec.get("segments", []) if lab == "smile"]
            delay = None
            if smile_starts:
                first = smile_starts[0]
                window = next((w for w in spec.get("expect", {}).get("opens_only_in") or [] if w[0] <= first <= w[1]), [first - 15, first + 10**6])
                start_t = next(fr["t"] for fr in frames if fr["i"] >= first)
                delay = next((round(t - start_t, 3) for f, t in zip(opens, open_t, strict=True) if window[0] <= f <= window[1]), None)
            problems = check(spec.get("expect", {}), events)
            failed += bool(problems)
            print(f"{'FAIL' if problems else 'ok  '} {clip:28s} opens {opens} to_open_s {delay} {'; '.join(problems)}")
    print(f"{failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
