"""The face tracker: ids that last while a face stays in view, driven by scripted boxes.

A script is a list of frames, each a list of boxes; :func:`run` feeds it at 16 frames a second
(exact in binary floating point) and returns the ids of each frame, in the order of its boxes.
"""

from __future__ import annotations

import doctest

import pytest

import gatekeeper.track as track_module
from gatekeeper.track import Box, Tracker, iou

FPS = 16
DT = 1 / FPS
LOST = 0.25  # four frame intervals

A: Box = (100.0, 100.0, 80.0, 80.0)
B: Box = (400.0, 100.0, 80.0, 80.0)  # 300 px (almost four face widths) from A


def moved(box: Box, dx: float, dy: float = 0.0, scale: float = 1.0) -> Box:
    x, y, w, h = box
    cx, cy = x + w / 2 + dx, y + h / 2 + dy
    return (cx - w * scale / 2, cy - h * scale / 2, w * scale, h * scale)


def walk(box: Box, step: float, n: int) -> list[list[Box]]:
    """``n`` frames of one face moving ``step`` px to the right each frame."""
    return [[moved(box, step * i)] for i in range(n)]


def run(frames: list[list[Box]], tracker: Tracker | None = None) -> list[list[int]]:
    tracker = tracker or Tracker(LOST)
    return [[tr.id for tr in tracker.update(boxes, i * DT)] for i, boxes in enumerate(frames)]


CASES = [
    pytest.param([[A]] * 5, [[1]] * 5, id="a face that stays keeps its id"),
    pytest.param(walk(A, 30, 8), [[1]] * 8, id="a face moving less than its width a frame keeps its id"),
    pytest.param(walk(A, 70, 8), [[1]] * 8, id="a face moving almost its width a frame keeps its id"),
    pytest.param([[A], [B]], [[1], [2]], id="a face far from the last is another person"),
    pytest.param([[A], [moved(A, 0, scale=2.5)]], [[1], [2]], id="a face much larger in the same place is another person"),
    pytest.param([[A], [moved(A, 0, scale=1.6)]], [[1], [1]], id="a face coming closer keeps its id"),
    pytest.param([[A, B], [B, A], [A, B]], [[1, 2], [2, 1], [1, 2]], id="two faces keep their ids whatever the order of the boxes"),
    pytest.param([[A], [], [], [], [A]], [[1], [], [], [], [1]], id="missed detections shorter than lost_after_s keep the id"),
    pytest.param([[A], [], [], [], [], [A]], [[1], [], [], [], [], [2]], id="a face back after lost_after_s is a new track"),
    pytest.param([[A], [A, B], [A], [A, B]], [[1], [1, 2], [1], [1, 2]], id="a second face that flickers keeps its id"),
    pytest.param([[A], [B], [A], [B]], [[1], [2], [1], [2]], id="two people seen in turn keep their own ids"),
    pytest.param(
        [[A, moved(A, 90)], [moved(A, 10), moved(A, 80)]],
        [[1, 2], [1, 2]],
        id="two faces close together: each detection goes to its nearest track",
    ),
    pytest.param([[A], [], [], [], [], [], [A], [B]], [[1], [], [], [], [], [], [2], [3]], id="ids are never reused"),
]


@pytest.mark.parametrize(("frames", "expected"), CASES)
def test_track_ids(frames: list[list[Box]], expected: list[list[int]]) -> None:
    assert run(frames) == expected


def test_prediction_carries_a_moving_face_across_missed_frames() -> None:
    """40 px a frame, then three frames unseen: it comes back 160 px (two widths) further on,
    where its velocity says. The same jump from a face that stood still is another person."""
    frames = [*walk(A, 40, 6), [], [], [], [moved(A, 40 * 9)]]
    assert run(frames) == [[1]] * 6 + [[], [], []] + [[1]]
    assert run([[A]] * 6 + [[], [], []] + [[moved(A, 160)]])[-1] == [2]


def test_a_fast_face_is_followed_once_its_velocity_is_known() -> None:
    """Speeding up from 40 to 120 px a frame (one and a half widths): the prediction keeps up."""
    frames = [[moved(A, x)] for x in (0, 40, 80, 120, 200, 300, 410, 530, 650)]
    assert run(frames) == [[1]] * 9


def test_lost_lists_the_tracks_that_ended_at_that_update() -> None:
    tracker = Tracker(LOST)
    tracker.update([A, B], 0.0)
    lost_per_frame = []
    for i in range(1, 7):
        tracker.update([A] if i < 3 else [], i * DT)
        lost_per_frame.append([(tr.id, tr.last_t) for tr in tracker.lost])
    assert lost_per_frame == [[], [], [], [(2, 0.0)], [], [(1, 2 * DT)]]
    assert tracker.tracks == []


def test_lost_after_zero_keeps_consecutive_frames_and_ends_at_the_first_miss() -> None:
    tracker = Tracker(0.0)
    assert run([[A], [A], [A], [], [A]], tracker) == [[1], [1], [1], [], [2]]


def test_expire_ends_tracks_not_seen_for_lost_after_s() -> None:
    tracker = Tracker(LOST)
    tracker.update([A], 0.0)
    assert tracker.expire(LOST - DT) == []  # not yet
    assert [tr.id for tr in tracker.expire(5.0)] == [1]
    assert [tr.id for tr in tracker.update([A], 5.0)] == [2]


@pytest.mark.parametrize("end", ["update", "expire"])
def test_update_and_expire_agree_at_exactly_lost_after_s(end: str) -> None:
    """One rule for both ways a track ends: unseen for lost_after_s or more (LOST is exact in binary)."""
    tracker = Tracker(LOST)
    tracker.update([A, B], 0.0)
    tracker.update([A], LOST - DT)
    if end == "update":
        tracker.update([A], LOST)
    else:
        assert [tr.id for tr in tracker.expire(LOST)] == [2]
    assert [tr.id for tr in tracker.lost] == [2]
    assert [tr.id for tr in tracker.tracks] == [1]


def test_a_sighting_exactly_lost_after_s_later_continues_the_track() -> None:
    tracker = Tracker(LOST)
    tracker.update([A], 0.0)
    assert [tr.id for tr in tracker.update([A], LOST)] == [1]
    assert tracker.lost == []


def test_expire_right_after_an_update_keeps_what_it_saw_even_with_lost_after_zero() -> None:
    tracker = Tracker(0.0)
    tracker.update([A], 1.0)
    assert tracker.expire(1.0) == []
    assert [tr.id for tr in tracker.expire(1.0 + DT)] == [1]


def test_a_track_knows_when_it_was_first_and_last_seen() -> None:
    tracker = Tracker(LOST)
    for i, boxes in enumerate([[A], [A], [], [moved(A, 5)]]):
        out = tracker.update(boxes, i * DT)
    (tr,) = out
    assert (tr.id, tr.box, tr.first_t, tr.last_t, tr.hits, tr.age) == (1, moved(A, 5), 0.0, 3 * DT, 3, 3 * DT)
    assert tracker.tracks == [tr]


def test_no_boxes_no_tracks() -> None:
    tracker = Tracker(LOST)
    assert tracker.update([], 0.0) == []
    assert tracker.tracks == [] and tracker.lost == []


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param((0, 0, 10, 10), (0, 0, 10, 10), 1.0, id="the same box"),
        pytest.param((0, 0, 10, 10), (5, 0, 10, 10), 50 / 150, id="half overlapping"),
        pytest.param((0, 0, 10, 10), (10, 0, 10, 10), 0.0, id="touching"),
        pytest.param((0, 0, 0, 0), (0, 0, 0, 0), 0.0, id="empty boxes"),
    ],
)
def test_iou(a: Box, b: Box, expected: float) -> None:
    assert iou(a, b) == pytest.approx(expected)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"lost_after_s": -1.0}, id="negative lost_after_s"),
        pytest.param({"max_move": 0.0}, id="max_move 0"),
        pytest.param({"min_iou": 0.0}, id="min_iou 0"),
        pytest.param({"max_scale": 0.5}, id="max_scale below 1"),
        pytest.param({"smoothing": 0.0}, id="smoothing 0"),
    ],
)
def test_tracker_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Tracker(**kwargs)


def test_module_docstring_example_holds() -> None:
    result = doctest.testmod(track_module, verbose=False)
    assert result.attempted >= 3
    assert result.failed == 0
