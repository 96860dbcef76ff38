"""Tracking and the per-visit gate on clips composed from the shared clips, through the real models.

Each clip is built here with OpenCV from frames of ``../shared/videos`` (nothing is stored):

* **queue**: the man of ``single_face.mp4`` smiles and leaves mid-smile; a third of a second
  later the woman of ``broad_grin.mp4`` steps in and smiles, about 2 s after the first OPEN.
* **ping-pong**: ``single_face.mp4`` forwards, backwards, forwards: one person who smiles, relaxes
  and smiles again in 7 s.
* **side by side**: both people in one frame (``hstack``), the woman's smile 40 frames later and
  her face smaller.
* **background**: a man talking without a smile (``talking_outdoors.mp4``) and a smiling face
  behind him at the side, which comes close (larger than him) for two thirds of a second.
* **photo**: frame 60 of ``single_face.mp4`` (a broad smile) printed with a white border and
  moved by hand: shifted, turned and scaled a little every frame.

Each clip is scored once (detector in VIDEO mode, crop, smile model); the gate variants then
replay the scored frames, as ``scripts/clip_gate.py`` does. One test runs a clip through
:meth:`Pipeline.process` itself and one through the command line.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from gatekeeper.capture_file import FileSource
from gatekeeper.classify import SmileClassifier
from gatekeeper.detect import FaceDetector
from gatekeeper.events import Event, EventType, FaceScore
from gatekeeper.gate import Gate, GateConfig, TrackedFace
from gatekeeper.pipeline import Pipeline, TrackedGate

pytestmark = pytest.mark.slow

FPS = 30
GAP = 10  # frames of empty picture between the two people of the queue: a third of a second
SIDE_DELAY = 40  # frames the right-hand person of the side-by-side clip starts later
MOMENT = (60, 95)  # frames in which the background face comes close (a little over a second)
BACKGROUND_ZONE = (0.0, 0.0, 0.6, 1.0)  # the left 60% of the background clip: the man in front


# -- composing -----------------------------------------------------------------------------------


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return frames
            frames.append(bgr)
    finally:
        cap.release()


def write_clip(path: Path, frames: list[np.ndarray]) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def blank(width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), 110, np.uint8)


def pasted(canvas: np.ndarray, image: np.ndarray, x: int, y: int) -> np.ndarray:
    h, w = image.shape[:2]
    canvas[y : y + h, x : x + w] = image
    return canvas


def letterboxed(bgr: np.ndarray, width: int, height: int, side: int) -> np.ndarray:
    return pasted(blank(width, height), cv2.resize(bgr, (side, side)), (width - side) // 2, (height - side) // 2)


def queue(man: list[np.ndarray], woman: list[np.ndarray]) -> list[np.ndarray]:
    return man[:51] + [blank(640, 360)] * GAP + [letterboxed(f, 640, 360, 360) for f in woman]


def ping_pong(man: list[np.ndarray]) -> list[np.ndarray]:
    return man + man[::-1] + man


def side_by_side(man: list[np.ndarray], woman: list[np.ndarray]) -> list[np.ndarray]:
    right = [letterboxed(f, 360, 360, 300) for f in woman]
    right = [right[0]] * SIDE_DELAY + right
    left = [f[:, 140:500] for f in man]
    left += [left[-1]] * (len(right) - len(left))
    return [np.hstack([a, b]) for a, b in zip(left, right, strict=True)]


def background(front: list[np.ndarray], man: list[np.ndarray]) -> list[np.ndarray]:
    behind = [f[40:360, 130:450] for f in (man + man[::-1]) * 3]  # 320x320, the face about 174 px
    out = []
    for i, f in enumerate(front[:150]):
        canvas = pasted(blank(800, 480), f, 0, 0)
        if MOMENT[0] <= i < MOMENT[1]:
            out.append(pasted(canvas, cv2.resize(behind[i], (440, 440)), 360, 20))  # larger than the man in front
        else:
            out.append(pasted(canvas, cv2.resize(behind[i], (200, 200)), 580, 20))
    return out


def photo_moved_by_hand(smiling: np.ndarray, n: int = 90) -> list[np.ndarray]:
    photo = cv2.copyMakeBorder(smiling[30:350, 130:450], 12, 12, 12, 12, cv2.BORDER_CONSTANT, value=(245, 245, 245))
    ph, pw = photo.shape[:2]
    out = []
    for i in range(n):
        angle = 6 * math.sin(2 * math.pi * i / 37)
        scale = 1 + 0.06 * math.sin(2 * math.pi * i / 53)
        m = cv2.getRotationMatrix2D((pw / 2, ph / 2), angle, scale)
        m[0, 2] += 320 - pw / 2 + 40 * math.sin(2 * math.pi * i / 45)
        m[1, 2] += 240 - ph / 2 + 20 * math.sin(2 * math.pi * i / 29 + 1)
        out.append(cv2.warpAffine(photo, m, (640, 480), dst=blank(640, 480), borderMode=cv2.BORDER_TRANSPARENT))
    return out


# -- scoring once, replaying many times ------------------------------------------------------------


@dataclass(frozen=True)
class ScoredFrame:
    index: int
    t: float
    faces: list[FaceScore]
    size: tuple[int, int]


def score_clip(path: Path, face_model: Path, classifier: SmileClassifier) -> list[ScoredFrame]:
    out = []
    with FaceDetector(face_model, min_confidence=0.7, min_face_px=40.0) as detector:
        scorer = Pipeline(detector, classifier, Gate())
        for frame in FileSource(path):
            faces = scorer.score_faces(frame.image, detector.detect(frame.image, frame.t))
            out.append(ScoredFrame(frame.index, frame.t, faces, (frame.image.shape[1], frame.image.shape[0])))
    return out


@dataclass
class Replay:
    events: list[Event]
    faces: list[tuple[TrackedFace, ...]]  # per frame

    def of(self, kind: EventType) -> list[Event]:
        return [e for e in self.events if e.event is kind]

    @property
    def tracks(self) -> set[int]:
        return {f.track for fs in self.faces for f in fs}


def replay(frames: list[ScoredFrame], **gate: Any) -> Replay:
    g = TrackedGate(Gate(GateConfig(**gate)))  # the tracker, then the gate, as Pipeline.process runs them
    events, faces = [], []
    for fr in frames:
        events += g.step(fr.index, fr.t, fr.faces, fr.size)
        faces.append(g.gate.faces)
    return Replay(events, faces)


@pytest.fixture(scope="module")
def classifier() -> SmileClassifier:
    return SmileClassifier()  # the shipped model, as the CLI finds it


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> dict[str, Path]:
    videos = shared_dir / "videos"
    man, woman = read_frames(videos / "single_face.mp4"), read_frames(videos / "broad_grin.mp4")
    folder = tmp_path_factory.mktemp("composed")
    built = {
        "queue": queue(man, woman),
        "ping_pong": ping_pong(man),
        "side_by_side": side_by_side(man, woman),
        "background": background(read_frames(videos / "talking_outdoors.mp4"), man),
        "photo": photo_moved_by_hand(man[60]),
    }
    return {name: write_clip(folder / f"{name}.mp4", frames) for name, frames in built.items()}


@pytest.fixture(scope="module")
def scored(clips: dict[str, Path], face_model_path: Path, classifier: SmileClassifier) -> dict[str, list[ScoredFrame]]:
    return {name: score_clip(path, face_model_path, classifier) for name, path in clips.items()}


# -- a queue: the next person gets their own decision at once ----------------------------------------


@pytest.mark.parametrize("reopen", ["per_visit", "cooldown"])
def test_queue_second_person_opens_within_the_cooldown_of_the_first(scored: dict[str, list[ScoredFrame]], reopen: str) -> None:
    run = replay(scored["queue"], reopen=reopen)
    first, second = run.of(EventType.OPEN)  # exactly two
    (lost,) = run.of(EventType.FACE_LOST)
    assert first.track != second.track and run.tracks == {first.track, second.track}
    assert 18 <= first.frame <= 45, "the man opens during his smile"
    assert lost.track == first.track and 51 <= lost.frame < 51 + GAP, "his visit ends in the gap"
    assert 51 + GAP + 17 <= second.frame <= 51 + GAP + 36, "the woman opens during her smile"
    assert second.t - first.t < GateConfig().cooldown_s, "the cooldown did not hold the next person back"


# -- one person, one OPEN -------------------------------------------------------------------------


def test_one_person_smiling_twice_opens_once(scored: dict[str, list[ScoredFrame]]) -> None:
    run = replay(scored["ping_pong"])
    assert [e.frame for e in run.of(EventType.OPEN)] == [run.of(EventType.OPEN)[0].frame]
    assert len(run.tracks) == 1, "one person, one track for 7 s"
    assert run.of(EventType.FACE_LOST) == []


def test_one_person_smiling_twice_opens_again_with_reopen_cooldown(scored: dict[str, list[ScoredFrame]]) -> None:
    opens = replay(scored["ping_pong"], reopen="cooldown").of(EventType.OPEN)
    assert len(opens) >= 2 and len({e.track for e in opens}) == 1
    assert all(b.t - a.t >= GateConfig().cooldown_s for a, b in itertools.pairwise(opens))


# -- two faces side by side -------------------------------------------------------------------------


def test_side_by_side_tracks_keep_to_their_person(scored: dict[str, list[ScoredFrame]]) -> None:
    run = replay(scored["side_by_side"])
    assert len(run.tracks) == 2
    for track in run.tracks:
        sides = {f.box[0] + f.box[2] / 2 < 360 for fs in run.faces for f in fs if f.track == track}
        assert len(sides) == 1, f"track {track} moved from one person to the other"


@pytest.mark.parametrize(
    ("zone", "left", "first", "last"),
    [
        pytest.param((0.0, 0.0, 1.0, 1.0), True, 18, 45, id="whole frame: the larger face (left) decides"),
        pytest.param((0.0, 0.0, 0.5, 1.0), True, 18, 45, id="left half"),
        pytest.param((0.5, 0.0, 1.0, 1.0), False, SIDE_DELAY + 17, SIDE_DELAY + 36, id="right half: the smaller face decides"),
    ],
)
def test_side_by_side_the_zone_picks_who_decides(scored: dict[str, list[ScoredFrame]], zone: tuple[float, ...], left: bool, first: int, last: int) -> None:
    run = replay(scored["side_by_side"], zone=zone)
    (opened,) = run.of(EventType.OPEN)
    assert opened.box is not None and (opened.box[0] + opened.box[2] / 2 < 360) is left
    assert first <= opened.frame <= last


# -- a face in the background ---------------------------------------------------------------------


def test_a_face_outside_the_zone_never_decides(scored: dict[str, list[ScoredFrame]]) -> None:
    run = replay(scored["background"], zone=BACKGROUND_ZONE)
    assert run.events == [], "the man in front neither smiles nor stays 6 s; the smiling face behind him is outside the zone"
    behind = [f for fs in run.faces for f in fs if f.box[0] + f.box[2] / 2 > 0.6 * 800]
    assert len(behind) > 100 and not any(f.in_zone or f.decides for f in behind)


def test_without_a_zone_a_face_that_comes_close_takes_the_decision(scored: dict[str, list[ScoredFrame]]) -> None:
    """What gate.zone is for: the face behind, larger for a moment, decides and opens."""
    (opened,) = replay(scored["background"]).of(EventType.OPEN)
    assert MOMENT[0] <= opened.frame < MOMENT[1]
    assert opened.box is not None and opened.box[0] + opened.box[2] / 2 > 0.6 * 800


# -- a photo moved by hand ------------------------------------------------------------------------


def test_a_photo_moved_by_hand_never_opens_with_require_onset(scored: dict[str, list[ScoredFrame]]) -> None:
    run = replay(scored["photo"], require_onset=True)
    assert run.of(EventType.OPEN) == []
    assert len(run.tracks) == 1, "the tracker follows the photo as it moves"
    assert all(fs and fs[0].score >= GateConfig().exit_threshold for fs in run.faces), "the photo smiles in every frame"


def test_a_photo_moved_by_hand_opens_without_require_onset(scored: dict[str, list[ScoredFrame]]) -> None:
    """The default's limit (docs/operating.md, "When the gate opens"): without the onset rule a photo of a smile opens."""
    assert len(replay(scored["photo"]).of(EventType.OPEN)) == 1


@pytest.mark.parametrize("clip", ["single_face.mp4", "broad_grin.mp4", "excited_talk_laugh.mp4"])
def test_shared_smiling_clips_still_open_in_time_with_require_onset(shared_dir: Path, face_model_path: Path, classifier: SmileClassifier, clip: str) -> None:
    labels = {}
    for name in ("labels.yaml", "labels-expressions.yaml"):
        labels.update(yaml.safe_load((shared_dir / "videos" / name).read_text()))
    expect = labels[clip]["expect"]
    opens = [e.frame for e in replay(score_clip(shared_dir / "videos" / clip, face_model_path, classifier), require_onset=True).of(EventType.OPEN)]
    assert opens, f"{clip}: no OPEN with require_onset"
    assert expect["open_not_before"] <= opens[0] <= expect["open_by"], opens


# -- the real frame loop and the command line -------------------------------------------------------


def test_pipeline_process_passes_the_frame_size_for_the_zone(clips: dict[str, Path], scored: dict[str, list[ScoredFrame]], face_model_path: Path, classifier: SmileClassifier) -> None:
    """Pipeline.process (the app's loop) gives the same events as the replay of the scored frames."""
    expected = replay(scored["side_by_side"], zone=(0.5, 0.0, 1.0, 1.0)).events
    with FaceDetector(face_model_path, min_confidence=0.7, min_face_px=40.0) as detector:
        pipeline = Pipeline(detector, classifier, Gate(GateConfig(zone=(0.5, 0.0, 1.0, 1.0))))
        events = [e for frame in FileSource(clips["side_by_side"]) for e in pipeline.process(frame)]
    assert [(e.event, e.frame, e.track) for e in events] == [(e.event, e.frame, e.track) for e in expected]


@pytest.fixture
def queue_events(clips: dict[str, Path], face_model_path: Path, tmp_path: Path) -> Iterator[list[dict[str, Any]]]:
    config = tmp_path / "gate.yaml"
    config.write_text("gate:\n  require_onset: true\n")
    env = {**os.environ, "GATEKEEPER_FACE_MODEL": str(face_model_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", "--video", str(clips["queue"]), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    yield [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_command_line_events_carry_the_track(queue_events: list[dict[str, Any]]) -> None:
    """Both people of the queue walk up neutral, so the onset rule lets both open; every event
    keeps its old keys and gains ``track``."""
    assert [(e["event"], e["track"]) for e in queue_events] == [("OPEN", 1), ("FACE_LOST", 1), ("OPEN", 2)]
    assert all({"event", "frame", "t", "score", "id", "box", "faces", "reason", "track"} <= set(e) for e in queue_events)
