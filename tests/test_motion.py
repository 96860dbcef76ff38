"""The detector runs only where something changed (gatekeeper.motion), and the gate decides the same.

The schedule alone on synthetic pictures (what counts as a change, the idle rate, the refresh),
its config keys, then the real thing: every labelled clip of ../shared/videos through the real
pipeline (MediaPipe, the smile model, the gate) with the detector on every frame and with the
schedule, the two event streams compared. A camera that sends the same picture again (a still
scene, a frozen or low-rate encoder) and an empty entrance before someone walks up are composed
from the same clips.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from gatekeeper.capture import Frame
from gatekeeper.capture_file import FileSource
from gatekeeper.config import Config
from gatekeeper.config_load import load_config
from gatekeeper.motion import DetectSchedule, MotionConfig

FACE = (200.0, 100.0, 160.0, 160.0)  # x, y, w, h in pixels of a 640x360 frame


def scene(level: int = 90) -> np.ndarray:
    """A 640x360 grey picture with some texture (an empty entrance)."""
    rng = np.random.default_rng(0)
    img = np.full((360, 640, 3), level, np.uint8)
    img[::40, :] = 30
    img += rng.integers(0, 4, img.shape, dtype=np.uint8)
    return img


def test_a_picture_that_does_not_change_is_detected_once_then_at_the_refresh() -> None:
    s = DetectSchedule(MotionConfig(refresh_s=1.0))
    img = scene()
    due = [s.due(Frame(img, 0, i / 30), []) for i in range(61)]  # two seconds at 30 fps
    assert [i for i, d in enumerate(due) if d] == [0, 30, 60]
    assert (s.detected, s.skipped) == (3, 58)


def test_camera_noise_is_no_change_but_a_mouth_in_a_face_is() -> None:
    s = DetectSchedule(MotionConfig())
    img = scene()
    assert s.due(Frame(img, 0, 0.0), [FACE])
    noisy = np.clip(img.astype(int) + np.random.default_rng(1).integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
    assert not s.due(Frame(noisy, 0, 1 / 30), [FACE])
    # A mouth-sized change (32x12 pixels: 0.17% of the frame, 1.5% of the face) inside the
    # face: a smile starting.
    mouth = img.copy()
    mouth[212:224, 264:296] = 200
    assert s.due(Frame(mouth, 0, 2 / 30), [FACE])
    # The same change with nobody in view is below the frame's share: nothing to detect.
    empty = DetectSchedule(MotionConfig())
    assert empty.due(Frame(img, 0, 0.0), [])
    assert not empty.due(Frame(mouth, 0, 0.5), [])


def test_while_nobody_is_in_view_a_changing_picture_is_detected_at_idle_fps() -> None:
    s = DetectSchedule(MotionConfig(idle_fps=10.0))
    frames = [scene(level=60 + 40 * (i % 2)) for i in range(30)]  # the light flickers every frame
    due = [i for i, img in enumerate(frames) if s.due(Frame(img, 0, i / 30), [])]
    assert due == list(range(0, 30, 3))  # every 0.1 s
    # with a face in view, every changed frame
    s = DetectSchedule(MotionConfig(idle_fps=10.0))
    assert [i for i, img in enumerate(frames) if s.due(Frame(img, 0, i / 30), [FACE])] == list(range(30))


def test_a_slow_change_adds_up_until_it_counts() -> None:
    # Compared with the last detected frame, not the previous one: a brightening of 1 level per
    # frame is never a change between two frames, but is one after pixel_threshold frames.
    s = DetectSchedule(MotionConfig(pixel_threshold=12, refresh_s=100))
    due = [i for i in range(40) if s.due(Frame(scene(level=60 + i), i, i), [FACE])]
    assert due == [0, 13, 26, 39]


def test_a_frame_of_another_size_is_detected() -> None:
    s = DetectSchedule(MotionConfig())
    assert s.due(Frame(scene(), 0, 0.0), [])
    assert s.due(Frame(np.zeros((480, 640, 3), np.uint8), 1, 0.2), [])  # at the next look


def test_motion_defaults_and_switch(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("motion: {enabled: false, idle_fps: 5}\n")
    assert load_config(path).motion == MotionConfig(enabled=False, idle_fps=5.0)
    assert Config().motion.enabled


# -- the real pipeline on the labelled clips -------------------------------------------------------


def replay(frames: Iterable[Frame], cfg: Config) -> tuple[list[tuple[str, float, int | None]], DetectSchedule | None]:
    """(event, t, track) of every event of the frames through a pipeline built from ``cfg``."""
    from gatekeeper.pipeline import build_pipeline

    pipeline = build_pipeline(cfg)
    try:
        events = [(e.event.value, e.t, e.track) for frame in frames for e in pipeline.process(frame)]
    finally:
        pipeline.close()
    return events, pipeline.motion


EVERY_FRAME = Config(motion=MotionConfig(enabled=False))


def replay_both(frames: Iterable[Frame]) -> tuple[list[tuple[str, float, int | None]], list[tuple[str, float, int | None]], DetectSchedule | None]:
    """The frames through two pipelines side by side, one with detection on every frame
    (EVERY_FRAME), one with the schedule (the defaults): their events and the schedule. Each
    frame is read once and each pipeline gets its own Frame of the picture (as two replays of the
    clip would give them, without decoding it twice)."""
    from gatekeeper.pipeline import build_pipeline

    full, skipping = build_pipeline(EVERY_FRAME), build_pipeline(Config())
    events: tuple[list[tuple[str, float, int | None]], list[tuple[str, float, int | None]]] = ([], [])
    try:
        for frame in frames:
            for pipeline, out in zip((full, skipping), events, strict=True):
                out.extend((e.event.value, e.t, e.track) for e in pipeline.process(Frame(frame.image, frame.index, frame.t, frame.decode_s)))
    finally:
        full.close()
        skipping.close()
    return events[0], events[1], skipping.motion
#: The promise: no OPEN comes more than this much later than with detection on every frame.
MAX_DELAY_S = 0.1


def same_decisions(full: list[tuple[str, float, int | None]], skipping: list[tuple[str, float, int | None]]) -> None:
    assert [e for e, _, _ in skipping] == [e for e, _, _ in full], f"every frame: {full}\nskipping: {skipping}"
    for (kind, t_full, _), (_, t_skip, _) in zip(full, skipping, strict=True):
        if kind == "OPEN":
            assert t_full - 1e-6 <= t_skip <= t_full + MAX_DELAY_S, f"OPEN at {t_skip:.3f} s, {t_full:.3f} s with detection on every frame"


def clip_frames(path: Path) -> Iterator[Frame]:
    source = FileSource(path)
    try:
        yield from source
    finally:
        source.close()


@pytest.mark.slow
@pytest.mark.parametrize("labels_file", ["labels.yaml", "labels-expressions.yaml"])
def test_every_labelled_clip_decides_the_same_with_the_detector_skipping(shared_dir: Path, face_model_path: Path, labels_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEKEEPER_FACE_MODEL", str(face_model_path))
    videos = shared_dir / "videos"
    clips = list(yaml.safe_load((videos / labels_file).read_text()))
    assert len(clips) == {"labels.yaml": 3, "labels-expressions.yaml": 9}[labels_file]
    skipped = 0
    for clip in clips:
        full, skipping, motion = replay_both(clip_frames(videos / clip))
        same_decisions(full, skipping)
        assert motion is not None and motion.detected > 0
        skipped += motion.skipped
    assert skipped > 0, "the schedule skipped no frame of these clips"


def as_camera_jpegs(frames: Iterable[Frame], quality: int = 85) -> list[tuple[bytes, int, float]]:
    """Each frame as a live MJPEG camera sends it: a JPEG (with its index and time)."""
    import cv2

    out = []
    for f in frames:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        out.append((buf.tobytes(), f.index, f.t))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("clip", ["single_face.mp4", "face_noface.mov", "no_face.mp4", "broad_grin.mp4"])
def test_jpeg_frames_are_decoded_only_where_the_detector_runs_and_decide_the_same(shared_dir: Path, face_model_path: Path, clip: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An MJPEG camera's frames reach the pipeline undecoded (Frame.from_jpeg): compared as grey
    copies decoded at reduced scale, decoded in full only when the detector runs on them, with
    the same events as the same JPEGs decoded in full and detected on every frame."""
    from gatekeeper.pipeline import build_pipeline

    monkeypatch.setenv("GATEKEEPER_FACE_MODEL", str(face_model_path))
    jpegs = as_camera_jpegs(clip_frames(shared_dir / "videos" / clip))
    full, _ = replay((Frame(Frame.from_jpeg(j, i, t).image, i, t) for j, i, t in jpegs), EVERY_FRAME)
    pipeline = build_pipeline(Config())
    try:
        frames = [Frame.from_jpeg(j, i, t) for j, i, t in jpegs]
        skipping = [(e.event.value, e.t, e.track) for frame in frames for e in pipeline.process(frame)]
    finally:
        pipeline.close()
    same_decisions(full, skipping)
    motion = pipeline.motion
    assert motion is not None and motion.skipped > 0
    assert pipeline.decoded == sum(f.decoded for f in frames) == motion.detected  # only the detected frames, in full


def repeated(frames: Iterable[Frame], times: int) -> Iterator[Frame]:
    """Each frame sent ``times`` times at ``times`` x the rate: a camera at 30 fps whose picture
    changes at 10 (a still scene, a low-rate encoder)."""
    for frame in frames:
        for k in range(times):
            yield Frame(frame.image, frame.index * times + k, frame.t + k / (30.0 * times), frame.decode_s)


def after_an_empty_entrance(path: Path, empty: Path, seconds: float) -> Iterator[Frame]:
    """``seconds`` of the first picture of ``empty`` (nobody in view, a still scene), then ``path``."""
    import cv2

    first = next(clip_frames(empty)).image
    frames = list(clip_frames(path))  # the size of the clip's frames
    h, w = frames[0].image.shape[:2]
    still = np.ascontiguousarray(cv2.resize(first, (w, h)))
    n = round(seconds * 30)
    for i in range(n):
        yield Frame(still, i, i / 30)
    for f in frames:
        yield Frame(f.image, n + f.index, n / 30 + f.t, f.decode_s)


@pytest.mark.slow
def test_a_repeated_picture_skips_the_detector_and_opens_as_soon(shared_dir: Path, face_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEKEEPER_FACE_MODEL", str(face_model_path))
    path = shared_dir / "videos" / "single_face.mp4"
    full, skipping, motion = replay_both(repeated(clip_frames(path), 3))
    assert [e for e, _, _ in full] == ["OPEN"]
    same_decisions(full, skipping)
    assert motion is not None and motion.skipped >= motion.detected  # two frames in three are copies


@pytest.mark.slow
def test_someone_walking_up_to_an_empty_entrance_opens_within_the_promise(shared_dir: Path, face_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEKEEPER_FACE_MODEL", str(face_model_path))
    videos = shared_dir / "videos"
    for clip in ("single_face.mp4", "broad_grin.mp4"):
        full, skipping, motion = replay_both(after_an_empty_entrance(videos / clip, videos / "no_face.mp4", 2.0))
        assert "OPEN" in [e for e, _, _ in full], clip
        same_decisions(full, skipping)
        assert motion is not None and motion.skipped >= 55  # the empty entrance: 2 of its 60 frames detected
