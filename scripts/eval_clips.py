#!/usr/bin/env python3
"""Frame-level smile accuracy on the hand-labelled replay clips (../shared/videos/labels.yaml).

    python scripts/eval_clips.py [--model model/smile.tflite] [--labels PATH]

For every frame labelled ``smile`` or ``neutral`` it runs the run-time path (detector in VIDEO
mode, crop, classifier) and reports, per clip and label, how many frames score above the gate's
enter threshold, with the score range: the gate needs smiles well above and neutral faces well
below, frame after frame, not just on average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.capture_file import FileSource
from gatekeeper.classify import SmileClassifier
from gatekeeper.config import Config
from gatekeeper.detect import FaceDetector, resolve_face_model
from gatekeeper.gate import Gate
from gatekeeper.pipeline import Pipeline


def main() -> int:
    shared = Path(os.environ.get("GATEKEEPER_SHARED", "../shared"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--labels", default=str(shared / "videos" / "labels.yaml"))
    args = ap.parse_args()
    cfg = Config()
    labels = yaml.safe_load(Path(args.labels).read_text())
    clf = SmileClassifier(args.model)
    report = {}
    for clip, spec in labels.items():
        seg = {}
        for first, last, lab in spec["segments"]:
            for f in range(first, last + 1):
                seg[f] = lab
        with FaceDetector(resolve_face_model(None), min_confidence=cfg.detector.min_confidence, min_face_px=cfg.detector.min_face_px) as det:
            pipe = Pipeline(det, clf, Gate(cfg.gate))
            scores: dict[str, list[float]] = {"smile": [], "neutral": []}
            source = FileSource(Path(args.labels).parent / clip)
            for frame in source:
                faces = pipe.score_faces(frame.image, det.detect(frame.image, frame.t))
                lab = seg.get(frame.index)
                if faces and lab in scores:
                    scores[lab].append(max(faces, key=lambda f: f.box[2] * f.box[3]).score)
            source.close()
        rows = {}
        for lab, s in scores.items():
            if s:
                a = np.array(s)
                above = float((a >= cfg.gate.enter_threshold).mean())
                rows[lab] = {"frames": len(a), "above_enter": round(above, 3), "min": round(float(a.min()), 3), "median": round(float(np.median(a)), 3), "max": round(float(a.max()), 3)}
        report[clip] = rows
        print(clip, json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
