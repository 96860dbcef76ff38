"""The gate state machine: every rule of ``gatekeeper.gate``, driven by scripted frames.

The scripts go through the path that runs in production: the tracker gives the faces their
track ids, then the gate decides (:class:`gatekeeper.pipeline.TrackedGate`, as
``Pipeline.process`` runs them). A box that stays put (or moves less than a face width) is one
person, a box elsewhere is another.

A script is a list of steps ``(what, frame, t)``: ``what`` is the list of faces of that frame, or
FAULT / RECOVER. :func:`feed` runs it through a gate and returns ``[(event, frame), ...]``.
Frames are 1/16 s apart so that every frame time is exact in binary floating point and the
expected frame of each event follows from the config without rounding doubts.
"""

from __future__ import annotations

import dataclasses
import doctest
import itertools
import json
import math
from collections.abc import Sequence
from typing import Any

import pytest

import gatekeeper.gate as gate_module
from gatekeeper.events import Event, EventType, FaceScore
from gatekeeper.gate import Gate, GateConfig, GateState
from gatekeeper.pipeline import TrackedGate

FPS = 16
DT = 1 / FPS

# With BASE: a smile must be held 4 frames, cooldown is 16 frames, DENY comes 32 frames into a
# visit, FACE_LOST 4 frames after the last face.
BASE: dict[str, Any] = {
    "enter_threshold": 0.6,
    "exit_threshold": 0.4,
    "hold_frames": 4,
    "hold_seconds": None,
    "cooldown_s": 1.0,
    "deny_after_s": 2.0,
    "lost_after_s": 0.25,
    "reopen": "per_visit",
}
COOLDOWN = {"reopen": "cooldown"}  # the same person may open again after cooldown_s

SMILE, MID, NEUTRAL = 0.9, 0.5, 0.1  # above enter, between exit and enter, below exit

BOX = (100.0, 100.0, 80.0, 80.0)
NEAR = (110.0, 104.0, 80.0, 80.0)  # the same person moving a little (less than a face width)
FAR = (400.0, 100.0, 80.0, 80.0)  # centre 300 px away: another person
BIG_LEFT = (50.0, 100.0, 120.0, 120.0)
SMALL_RIGHT = (420.0, 100.0, 60.0, 60.0)
SMALL_LEFT = (80.0, 130.0, 60.0, 60.0)  # where BIG_LEFT was, shrunk: same centre
BIG_RIGHT = (390.0, 70.0, 120.0, 120.0)  # where SMALL_RIGHT was, grown: same centre


@dataclasses.dataclass(frozen=True)
class Op:
    kind: str
    reason: str = "camera lost"
    cause: str = "pipeline"


FAULT = Op("fault")
RECOVER = Op("recover", "frames arriving again")
SOURCE_LOST, SOURCE_BACK = Op("fault", "camera lost", "source"), Op("recover", "frames arriving again", "source")
JOURNAL_FULL, JOURNAL_BACK = Op("fault", "disk full", "journal"), Op("recover", "journal writable again", "journal")

Box = tuple[float, float, float, float]
Faces = list[FaceScore]
Step = tuple[Faces | Op, int, float]


def faces(score: float, n: int, box: Box = BOX) -> list[Faces]:
    return [[FaceScore(box, score)] for _ in range(n)]


def smile(n: int, box: Box = BOX) -> list[Faces]:
    return faces(SMILE, n, box)


def neutral(n: int, box: Box = BOX) -> list[Faces]:
    return faces(NEUTRAL, n, box)


def gap(n: int) -> list[Faces]:
    return [[] for _ in range(n)]


def pair(a: tuple[Box, float], b: tuple[Box, float], n: int) -> list[Faces]:
    """``n`` frames with two faces, each given as (box, score)."""
    return [[FaceScore(*a), FaceScore(*b)] for _ in range(n)]


def script(*parts: list[Faces] | Op, fps: float = FPS) -> list[Step]:
    """Number the frames of ``parts`` from 0 at ``fps``; an Op takes the number and time of the next frame."""
    steps: list[Step] = []
    frame = 0
    for part in parts:
        if isinstance(part, Op):
            steps.append((part, frame, frame / fps))
            continue
        for fs in part:
            steps.append((fs, frame, frame / fps))
            frame += 1
    return steps


def feed_events(gate: Gate, steps: Sequence[Step], size: tuple[int, int] | None = None) -> list[Event]:
    """The events of ``steps`` through the tracker and ``gate``; a fault's end goes through the
    tracker too (its tracks unseen for lost_after_s end with it)."""
    tracked = TrackedGate(gate)
    events: list[Event] = []
    for what, frame, t in steps:
        if isinstance(what, Op):
            if what.kind == "fault":
                events += gate.fault(frame, t, what.reason, cause=what.cause)
            else:
                events += tracked.recover(frame, t, what.reason, cause=what.cause)
        else:
            events += tracked.step(frame, t, what, size)
    return events


def feed(gate: Gate, steps: Sequence[Step], size: tuple[int, int] | None = None) -> list[tuple[str, int]]:
    return [(e.event.value, e.frame) for e in feed_events(gate, steps, size)]


def make_gate(**overrides: Any) -> Gate:
    return Gate(GateConfig(**{**BASE, **overrides}))


def tracked(**overrides: Any) -> TrackedGate:
    """The tracker and a gate of BASE with ``overrides``, for frames fed one by one."""
    return TrackedGate(make_gate(**overrides))


# -- every transition, as a table ----------------------------------------------------------------

HOLD_CASES = [
    pytest.param({}, script(smile(6)), [("OPEN", 3)], id="held smile opens on the hold_frames-th frame"),
    pytest.param({}, script(neutral(5), smile(4)), [("OPEN", 8)], id="neutral then a held smile"),
    pytest.param({}, script(smile(3), neutral(3)), [], id="a smile one frame too short does not open"),
    pytest.param({"hold_frames": 1}, script(neutral(2), smile(1)), [("OPEN", 2)], id="hold_frames 1 opens on the first smiling frame"),
    pytest.param({}, script(smile(3), faces(0.3, 1), smile(4)), [("OPEN", 7)], id="dip below exit resets the hold"),
    pytest.param({}, script(smile(2), faces(MID, 2)), [], id="before OPEN, a score between exit and enter breaks the hold"),
    pytest.param({}, script(smile(2), faces(MID, 1), smile(4)), [("OPEN", 6)], id="a dip below enter during the hold starts it again"),
    pytest.param({"hold_threshold": 0.4}, script(smile(2), faces(MID, 2)), [("OPEN", 3)], id="hold_threshold at exit: hysteresis from the first frame"),
    pytest.param({"hold_threshold": 0.5}, script(smile(2), faces(0.5, 2)), [("OPEN", 3)], id="exactly hold_threshold continues the hold"),
    pytest.param({"hold_threshold": 0.5}, script(smile(2), faces(0.49, 1), smile(3)), [], id="just below hold_threshold breaks the hold"),
    pytest.param({}, script(smile(4), faces(MID, 6)), [("OPEN", 3)], id="after OPEN, scores between the thresholds keep the smile: no second OPEN"),
    pytest.param(
        {**COOLDOWN, "cooldown_s": 0.0},
        script(smile(4), faces(MID, 6), faces(0.3, 1), smile(4)),
        [("OPEN", 3), ("OPEN", 14)],
        id="after OPEN the smile ends only below exit; a new held smile opens again",
    ),
    pytest.param(
        {},
        script(*[part for _ in range(6) for part in (smile(3), faces(MID, 1))]),
        [],
        id="talking: a smile-like mouth that flickers every fourth frame never opens",
    ),
    pytest.param({}, script(faces(MID, 12)), [], id="score between exit and enter cannot start a smile"),
    pytest.param({}, script(faces(MID, 3), smile(4)), [("OPEN", 6)], id="scores between the thresholds before a smile do not count"),
    pytest.param({}, script(faces(0.6, 4)), [("OPEN", 3)], id="exactly enter starts and holds"),
    pytest.param({"hold_threshold": 0.4}, script(faces(0.6, 1), faces(0.4, 3)), [("OPEN", 3)], id="exactly enter starts and exactly a lower hold_threshold continues"),
    pytest.param({}, script(faces(0.59, 12)), [], id="just below enter never starts"),
    pytest.param({}, script(smile(3), faces(0.39, 1), faces(MID, 6)), [], id="just below exit ends the smile and mid scores cannot restart it"),
    pytest.param(
        {"enter_threshold": 0.6, "exit_threshold": 0.6},
        script(smile(2), faces(0.59, 1), smile(4)),
        [("OPEN", 6)],
        id="exit equal to enter: no hysteresis",
    ),
    pytest.param({"hold_seconds": 0.5, "hold_frames": 100}, script(smile(10)), [("OPEN", 8)], id="hold_seconds replaces hold_frames"),
    pytest.param({"hold_seconds": 0.5}, script(neutral(3), smile(10)), [("OPEN", 11)], id="hold_seconds counts from the first smiling frame"),
    pytest.param({"hold_seconds": 0.5}, script(smile(8)), [], id="hold_seconds not reached"),
    pytest.param({"hold_seconds": 0.5}, script(smile(5), faces(0.3, 1), smile(9)), [("OPEN", 14)], id="hold_seconds restarts after a dip"),
]

PER_VISIT_CASES = [
    pytest.param({}, script(smile(40)), [("OPEN", 3)], id="one OPEN for a smile held on and on"),
    pytest.param({}, script(smile(4), neutral(2), smile(60)), [("OPEN", 3)], id="a second smile of the same visit does not open, cooldown or not"),
    pytest.param(
        {},
        script(*[part for _ in range(8) for part in (smile(6), neutral(14))]),
        [("OPEN", 3)],
        id="talking and smiling on and off for 10 s: one OPEN",
    ),
    pytest.param({}, script(smile(4), gap(1), smile(40)), [("OPEN", 3)], id="a one-frame detection gap does not start a new visit"),
    pytest.param(
        {"cooldown_s": 3.0},
        script(smile(6), gap(4), neutral(2), smile(4)),
        [("OPEN", 3), ("FACE_LOST", 9), ("OPEN", 15)],
        id="queue: the next person opens at once, well within cooldown_s of the last OPEN",
    ),
    pytest.param(
        {"cooldown_s": 3.0},
        script(smile(6), smile(6, FAR)),
        [("OPEN", 3), ("FACE_LOST", 9), ("OPEN", 9)],
        id="queue: the next person steps in elsewhere while the first is still tracked",
    ),
    pytest.param({}, script(smile(4), gap(20), smile(4)), [("OPEN", 3), ("FACE_LOST", 7), ("OPEN", 27)], id="a face that left and came back is a new visit"),
    pytest.param(
        {},
        script(pair((BIG_LEFT, SMILE), (SMALL_RIGHT, NEUTRAL), 6), pair((SMALL_LEFT, NEUTRAL), (BIG_RIGHT, SMILE), 6)),
        [("OPEN", 3), ("OPEN", 9)],
        id="two people side by side: each opens once, when it is the largest",
    ),
    pytest.param(
        {},
        script(pair((BIG_LEFT, SMILE), (SMALL_RIGHT, NEUTRAL), 6), pair((SMALL_LEFT, SMILE), (BIG_RIGHT, NEUTRAL), 3), pair((BIG_LEFT, SMILE), (SMALL_RIGHT, NEUTRAL), 6)),
        [("OPEN", 3)],
        id="the first person deciding again later does not open twice",
    ),
]

REOPEN_COOLDOWN_CASES = [
    pytest.param(COOLDOWN, script(smile(40)), [("OPEN", 3)], id="one OPEN per smile even when held past the cooldown"),
    pytest.param(COOLDOWN, script(smile(4), neutral(2), smile(10)), [("OPEN", 3)], id="cooldown blocks a second OPEN"),
    pytest.param(
        COOLDOWN, script(smile(4), neutral(2), smile(20)), [("OPEN", 3), ("OPEN", 19)], id="a new smile held into the end of the cooldown opens when it ends"
    ),
    pytest.param(
        COOLDOWN, script(smile(4), neutral(16), smile(4)), [("OPEN", 3), ("OPEN", 23)], id="second OPEN after the smile ends and the cooldown passes"
    ),
    pytest.param({**COOLDOWN, "cooldown_s": 0.0}, script(smile(4), neutral(1), smile(4)), [("OPEN", 3), ("OPEN", 8)], id="cooldown 0: each new smile opens"),
    pytest.param(
        COOLDOWN,
        script(smile(4), gap(20), smile(4)),
        [("OPEN", 3), ("FACE_LOST", 7), ("OPEN", 27)],
        id="a face that left and came back smiling opens again",
    ),
    pytest.param(
        COOLDOWN,
        script(smile(4), gap(1), smile(40)),
        [("OPEN", 3)],
        id="a one-frame detection gap inside an opened smile does not re-arm OPEN",
    ),
    pytest.param(
        COOLDOWN,
        script(smile(6), gap(4), neutral(2), smile(4)),
        [("OPEN", 3), ("FACE_LOST", 9), ("OPEN", 15)],
        id="the cooldown guards the same visit only: the next person opens at once",
    ),
    pytest.param(
        {**COOLDOWN, "cooldown_s": 0.0},
        script(pair((BIG_LEFT, SMILE), (SMALL_RIGHT, NEUTRAL), 6), pair((SMALL_LEFT, SMILE), (BIG_RIGHT, NEUTRAL), 3), pair((BIG_LEFT, SMILE), (SMALL_RIGHT, NEUTRAL), 6)),
        [("OPEN", 3)],
        id="a smile that opened goes on while another person decides: it does not open again",
    ),
]

DENY_CASES = [
    pytest.param({}, script(neutral(80)), [("DENY", 32)], id="DENY once per visit"),
    pytest.param({}, script(gap(5), neutral(40)), [("DENY", 37)], id="DENY counts from the first frame of the visit"),
    pytest.param({}, script(faces(MID, 40)), [("DENY", 32)], id="scores between the thresholds are no smile for DENY"),
    pytest.param({}, script(smile(4), neutral(60)), [("OPEN", 3)], id="an OPEN in the visit prevents DENY"),
    pytest.param({}, script(neutral(29), smile(4)), [("OPEN", 32)], id="an OPEN on the deny frame wins"),
    pytest.param({}, script(neutral(40), smile(4)), [("DENY", 32), ("OPEN", 43)], id="OPEN still possible after DENY"),
    pytest.param({}, script(neutral(30), smile(6)), [("DENY", 32), ("OPEN", 33)], id="DENY during a hold, then the hold completes"),
    pytest.param(
        {},
        script(neutral(40), gap(5), neutral(40)),
        [("DENY", 32), ("FACE_LOST", 43), ("DENY", 77)],
        id="a new visit gets its own DENY",
    ),
    pytest.param({}, script(neutral(20), gap(3), neutral(20)), [("DENY", 32)], id="a brief gap does not restart the deny timer"),
]

LOST_CASES = [
    pytest.param({}, script(neutral(10), gap(10)), [("FACE_LOST", 13)], id="face lost after lost_after_s, once"),
    pytest.param({}, script(neutral(10), gap(3), neutral(10)), [], id="brief gap: no FACE_LOST"),
    pytest.param({}, script(gap(50)), [], id="nobody ever: no events"),
    pytest.param({"lost_after_s": 0.0}, script(neutral(2), gap(3)), [("FACE_LOST", 2)], id="lost_after_s 0 ends the visit on the first empty frame"),
    pytest.param(
        {}, script(neutral(2), gap(5), neutral(2), gap(5)), [("FACE_LOST", 5), ("FACE_LOST", 12)], id="each visit ends with its own FACE_LOST"
    ),
]

FACE_CASES = [
    pytest.param({}, script(pair((SMALL_RIGHT, SMILE), (BIG_LEFT, NEUTRAL), 10)), [], id="largest face decides: a smaller smiling face does not open"),
    pytest.param({}, script(pair((SMALL_RIGHT, NEUTRAL), (BIG_LEFT, SMILE), 4)), [("OPEN", 3)], id="largest face decides: the larger smiling face opens"),
    pytest.param({}, script(pair((BIG_LEFT, SMILE), (SMALL_RIGHT, NEUTRAL), 4)), [("OPEN", 3)], id="the order of the faces does not matter"),
    pytest.param({}, script(smile(3), smile(4, FAR)), [("FACE_LOST", 6), ("OPEN", 6)], id="jump of the deciding face: another person, whose hold starts"),
    pytest.param({}, script(smile(2), smile(2, NEAR)), [("OPEN", 3)], id="a small move continues the hold"),
    pytest.param({}, script(*[smile(1, FAR if i % 2 else BOX) for i in range(12)]), [], id="two people alternating cannot add up one smile"),
    pytest.param(
        {},
        script(pair((BIG_LEFT, SMILE), (SMALL_RIGHT, SMILE), 3), pair((SMALL_LEFT, SMILE), (BIG_RIGHT, SMILE), 4)),
        [("OPEN", 6)],
        id="another person becoming the largest face restarts the hold",
    ),
    pytest.param({}, script(smile(3), gap(1), smile(4, FAR)), [("FACE_LOST", 6), ("OPEN", 7)], id="a jump across a one-frame gap does not add two smiles"),
]

FAULT_CASES = [
    pytest.param({}, script(FAULT, smile(10)), [("FAULT", 0)], id="fault blocks OPEN"),
    pytest.param({}, script(FAULT, smile(2), FAULT, FAULT), [("FAULT", 0)], id="FAULT once per episode"),
    pytest.param(
        {},
        script(smile(3), FAULT, smile(2), RECOVER, smile(4)),
        [("FAULT", 3), ("RECOVERED", 5), ("OPEN", 8)],
        id="fault drops the hold and recovery needs the full hold",
    ),
    pytest.param(
        {}, script(smile(3), FAULT, smile(5), RECOVER, smile(3)), [("FAULT", 3), ("RECOVERED", 8)], id="a smile held through the fault does not open at recovery"
    ),
    pytest.param({}, script(RECOVER, smile(4)), [("OPEN", 3)], id="recover without a fault says nothing"),
    pytest.param({}, script(FAULT, RECOVER, FAULT), [("FAULT", 0), ("RECOVERED", 0), ("FAULT", 0)], id="a fault after recovery is a new episode"),
    pytest.param(
        {}, script(smile(4), FAULT, RECOVER, smile(10)), [("OPEN", 3), ("FAULT", 4), ("RECOVERED", 4)], id="the visit survives a fault: no second OPEN"
    ),
    pytest.param(
        COOLDOWN, script(smile(4), FAULT, RECOVER, smile(10)), [("OPEN", 3), ("FAULT", 4), ("RECOVERED", 4)], id="the cooldown survives a fault"
    ),
    pytest.param({}, script(SOURCE_LOST, JOURNAL_FULL, smile(6)), [("FAULT", 0)], id="two causes at once: one FAULT"),
    pytest.param(
        {}, script(SOURCE_LOST, JOURNAL_FULL, SOURCE_BACK, smile(6)), [("FAULT", 0)], id="one cause over, another still holds the gate shut"
    ),
    pytest.param(
        {},
        script(SOURCE_LOST, JOURNAL_FULL, SOURCE_BACK, smile(2), JOURNAL_BACK, smile(4)),
        [("FAULT", 0), ("RECOVERED", 2), ("OPEN", 5)],
        id="RECOVERED when the last cause ends, in any order",
    ),
    pytest.param({}, script(SOURCE_LOST, JOURNAL_BACK, smile(4)), [("FAULT", 0)], id="the end of a cause that was not in force changes nothing"),
    pytest.param({}, script(SOURCE_LOST, SOURCE_LOST, SOURCE_BACK, smile(4)), [("FAULT", 0), ("RECOVERED", 0), ("OPEN", 3)], id="a cause counts once, however often it is reported"),
]


@pytest.mark.parametrize(("overrides", "steps", "expected"), HOLD_CASES)
def test_hold_and_hysteresis(overrides: dict[str, Any], steps: list[Step], expected: list[tuple[str, int]]) -> None:
    assert feed(make_gate(**overrides), steps) == expected


@pytest.mark.parametrize(("overrides", "steps", "expected"), PER_VISIT_CASES)
def test_one_open_per_visit(overrides: dict[str, Any], steps: list[Step], expected: list[tuple[str, int]]) -> None:
    assert feed(make_gate(**overrides), steps) == expected


@pytest.mark.parametrize(("overrides", "steps", "expected"), REOPEN_COOLDOWN_CASES)
def test_reopen_cooldown(overrides: dict[str, Any], steps: list[Step], expected: list[tuple[str, int]]) -> None:
    assert feed(make_gate(**overrides), steps) == expected


@pytest.mark.parametrize(("overrides", "steps", "expected"), DENY_CASES)
def test_deny(overrides: dict[str, Any], steps: list[Step], expected: list[tuple[str, int]]) -> None:
    assert feed(make_gate(**overrides), steps) == expected


@pytest.mark.parametrize(("overrides", "steps", "expected"), LOST_CASES)
def test_face_lost(overrides: dict[str, Any], steps: list[Step], expected: list[tuple[str, int]]) -> None:
    assert feed(make_gate(**overrides), steps) == expected


@pytest.mark.parametrize(("overrides", "steps", "expected"), FACE_CASES)
def test_deciding_face(overrides: dict[str, Any], steps: list[Step], expected: list[tuple[str, int]]) -> None:
    assert feed(make_gate(**overrides), steps) == expected


@pytest.mark.parametrize(("overrides", "steps", "expected"), FAULT_CASES)
def test_fault_and_recover(overrides: dict[str, Any], steps: list[Step], expected: list[tuple[str, int]]) -> None:
    assert feed(make_gate(**overrides), steps) == expected


# -- frame-rate independence ---------------------------------------------------------------------


def first_open_t(fps: int, **overrides: Any) -> float:
    """Neutral for 1 s, then smiling for 2 s, at ``fps``; the time of the first OPEN."""
    steps = script(neutral(fps), smile(2 * fps), fps=fps)
    opens = [e.t for e in feed_events(make_gate(**overrides), steps) if e.event is EventType.OPEN]
    assert len(opens) == 1
    return opens[0]


@pytest.mark.parametrize("fps", [15, 25, 30, 60])
def test_hold_seconds_opens_after_that_long_at_any_frame_rate(fps: int) -> None:
    t = first_open_t(fps, hold_seconds=0.8)
    assert 1.8 - 1e-9 <= t < 1.8 + 1 / fps


def test_hold_seconds_15_and_60_fps_open_at_the_same_time() -> None:
    assert first_open_t(15, hold_seconds=0.8) == pytest.approx(first_open_t(60, hold_seconds=0.8), abs=1 / 15)


@pytest.mark.parametrize(("fps", "expected_t"), [(15, 1.0 + 11 / 15), (60, 1.0 + 11 / 60)])
def test_hold_frames_counts_frames_not_time(fps: int, expected_t: float) -> None:
    assert first_open_t(fps, hold_frames=12) == pytest.approx(expected_t)


# -- the zone: which faces may decide ------------------------------------------------------------

SIZE = (640, 480)  # BOX and BIG_LEFT have their centres in the left half, FAR and SMALL_RIGHT in the right
RIGHT_HALF = {"zone": (0.5, 0.0, 1.0, 1.0)}

ZONE_CASES = [
    pytest.param(RIGHT_HALF, script(smile(10), neutral(40), gap(5)), [], id="a face outside the zone never decides: no OPEN, DENY or FACE_LOST"),
    pytest.param(RIGHT_HALF, script(smile(4, FAR)), [("OPEN", 3)], id="a face inside the zone decides"),
    pytest.param(RIGHT_HALF, script(pair((BIG_LEFT, NEUTRAL), (SMALL_RIGHT, SMILE), 4)), [("OPEN", 3)], id="the largest face inside the zone decides, a larger one outside does not"),
    pytest.param(
        {"zone": (0.0, 0.0, 0.5, 1.0)},
        script(pair((BIG_LEFT, NEUTRAL), (SMALL_RIGHT, SMILE), 10)),
        [],
        id="a smiling face outside the zone is ignored, however long",
    ),
    pytest.param(
        {"zone": (0.0, 0.0, 0.3, 1.0)},
        script(smile(2), smile(1, NEAR), smile(4, (180.0, 104.0, 80.0, 80.0))),
        [],
        id="a face that steps out of the zone ends its hold",
    ),
    pytest.param({"zone": (0.0, 0.0, 0.3, 1.0)}, script(smile(3), gap(1), smile(1)), [("OPEN", 4)], id="a missed detection does not end a hold in the zone"),
]


@pytest.mark.parametrize(("overrides", "steps", "expected"), ZONE_CASES)
def test_zone(overrides: dict[str, Any], steps: list[Step], expected: list[tuple[str, int]]) -> None:
    assert feed(make_gate(**overrides), steps, SIZE) == expected


def test_a_zone_needs_the_frame_size() -> None:
    with pytest.raises(ValueError, match="needs the frame size"):
        tracked(**RIGHT_HALF).step(0, 0.0, [FaceScore(BOX, 0.9)])


def test_the_whole_frame_needs_no_size() -> None:
    assert feed(make_gate(), script(smile(4))) == [("OPEN", 3)]


# -- onset: refusing a photo ---------------------------------------------------------------------

# onset_s 0.25 s is four frame intervals: five frames below exit in a row show the onset.
ONSET = {"require_onset": True, "onset_s": 0.25}

ONSET_CASES = [
    pytest.param(ONSET, script(smile(40)), [("DENY", 32)], id="a face smiling from its first frame (a photo) never opens"),
    pytest.param(ONSET, script(neutral(5), smile(4)), [("OPEN", 8)], id="seen not smiling for onset_s, then a held smile opens"),
    pytest.param(ONSET, script(neutral(4), smile(10)), [], id="not smiling for less than onset_s is not enough"),
    pytest.param(ONSET, script(neutral(3), faces(MID, 1), neutral(3), smile(6)), [], id="a score between the thresholds breaks the run"),
    pytest.param(ONSET, script(neutral(3), gap(1), neutral(1), smile(4)), [("OPEN", 8)], id="a missed detection does not break the run"),
    pytest.param(ONSET, script(smile(10), neutral(5), smile(4)), [("OPEN", 18)], id="walked up smiling, relaxed, smiled again: opens"),
    pytest.param(ONSET, script(*[part for _ in range(10) for part in (smile(3), neutral(1))]), [("DENY", 32)], id="a photo whose score dips now and then never opens"),
    pytest.param(ONSET, script(neutral(6), smile(8, FAR)), [("FACE_LOST", 9)], id="one person's onset does not count for another"),
    pytest.param(
        ONSET,
        script(pair((BIG_LEFT, SMILE), (SMALL_RIGHT, NEUTRAL), 6), pair((SMALL_LEFT, SMILE), (BIG_RIGHT, SMILE), 4)),
        [("OPEN", 9)],
        id="the onset is seen while the face does not decide",
    ),
    pytest.param({"require_onset": False}, script(smile(4)), [("OPEN", 3)], id="off: a smile from the first frame opens"),
]


@pytest.mark.parametrize(("overrides", "steps", "expected"), ONSET_CASES)
def test_require_onset(overrides: dict[str, Any], steps: list[Step], expected: list[tuple[str, int]]) -> None:
    assert feed(make_gate(**overrides), steps) == expected


# -- tracks in events ----------------------------------------------------------------------------


def test_events_carry_the_track_of_their_visit() -> None:
    events = feed_events(make_gate(), script(smile(6), gap(4), neutral(40), gap(5), FAULT, RECOVER))
    assert [(e.event.value, e.frame, e.track) for e in events] == [
        ("OPEN", 3, 1),
        ("FACE_LOST", 9, 1),
        ("DENY", 42, 2),
        ("FACE_LOST", 53, 2),
        ("FAULT", 55, None),
        ("RECOVERED", 55, None),
    ]


def test_a_face_that_never_decides_gets_no_face_lost() -> None:
    """A face behind the person in front is tracked but is no visit: no FACE_LOST when it goes."""
    events = feed_events(make_gate(), script(pair((BIG_LEFT, NEUTRAL), (SMALL_RIGHT, SMILE), 6), neutral(6, BIG_LEFT), gap(5)))
    assert [(e.event.value, e.frame, e.track) for e in events] == [("FACE_LOST", 15, 1)]


def test_gate_faces_show_tracks_zone_and_the_deciding_face() -> None:
    tg = tracked(zone=(0.0, 0.0, 0.6, 1.0))
    tg.step(0, 0.0, [FaceScore(BIG_RIGHT, 0.2), FaceScore(SMALL_LEFT, 0.3)], SIZE)
    tg.step(1, DT, [FaceScore(SMALL_LEFT, 0.8), FaceScore(BIG_RIGHT, 0.1), FaceScore(BOX, 0.5)], SIZE)
    gate = tg.gate
    assert [(f.box, f.score, f.track, f.in_zone, f.decides) for f in gate.faces] == [
        (SMALL_LEFT, 0.8, 2, True, False),
        (BIG_RIGHT, 0.1, 1, False, False),
        (BOX, 0.5, 3, True, True),
    ]
    assert gate.last_score == 0.5


def test_recovery_after_a_long_pause_ends_the_tracks_of_before() -> None:
    tg = tracked()
    events = tg.step(0, 0.0, [FaceScore(BOX, 0.9)]) + tg.gate.fault(0, 0.0, "camera lost")
    events += tg.recover(1, 10.0, "frames arriving again")
    events += tg.step(1, 10.0, [FaceScore(BOX, 0.9)])
    assert [(e.event.value, e.track) for e in events] == [("FAULT", None), ("RECOVERED", None), ("FACE_LOST", 1)]
    assert tg.gate.faces[0].track == 2


def test_tracks_end_only_when_the_last_cause_of_a_fault_ends() -> None:
    """The camera comes back after a long pause while the journal still cannot write: the old
    face's track lives on until the gate recovers, then ends with the RECOVERED."""
    tg = tracked()
    events = tg.step(0, 0.0, [FaceScore(BOX, 0.1)])
    events += tg.gate.fault(0, 0.0, "camera lost", cause="source") + tg.gate.fault(0, 0.0, "disk full", cause="journal")
    events += tg.recover(1, 10.0, "frames arriving again", cause="source")
    assert [tr.id for tr in tg.tracker.tracks] == [1], "not yet: the gate is still shut"
    events += tg.recover(2, 10.5, "journal writable again", cause="journal")
    assert [(e.event.value, e.track, e.reason) for e in events] == [("FAULT", None, "camera lost"), ("RECOVERED", None, "journal writable again"), ("FACE_LOST", 1, None)]
    assert tg.tracker.tracks == []


# -- state ---------------------------------------------------------------------------------------

STATE_CASES = [
    pytest.param(script(), GateState.IDLE, id="idle before any frame"),
    pytest.param(script(gap(3)), GateState.IDLE, id="idle with nobody there"),
    pytest.param(script(neutral(1)), GateState.PRESENT, id="present"),
    pytest.param(script(faces(MID, 3)), GateState.PRESENT, id="present with a score between the thresholds"),
    pytest.param(script(smile(2)), GateState.SMILING, id="smiling"),
    pytest.param(script(smile(4)), GateState.OPENED, id="opened"),
    pytest.param(script(smile(10)), GateState.OPENED, id="still opened while the smile goes on"),
    pytest.param(script(smile(4), neutral(1)), GateState.PRESENT, id="present after the smile ends"),
    pytest.param(script(neutral(2), gap(2)), GateState.PRESENT, id="present during a brief gap"),
    pytest.param(script(neutral(2), gap(5)), GateState.IDLE, id="idle after FACE_LOST"),
    pytest.param(script(FAULT), GateState.FAULT, id="fault"),
    pytest.param(script(smile(3), FAULT, smile(3)), GateState.FAULT, id="fault while faces keep smiling"),
    pytest.param(script(smile(3), FAULT, smile(3), RECOVER), GateState.PRESENT, id="present after recovery: the face is still tracked"),
    pytest.param(script(neutral(2), gap(2), smile(1)), GateState.SMILING, id="the same visit smiling after a brief gap"),
    pytest.param(script(FAULT, RECOVER, smile(1)), GateState.SMILING, id="smiling again after recovery"),
]


@pytest.mark.parametrize(("steps", "expected"), STATE_CASES)
def test_state(steps: list[Step], expected: GateState) -> None:
    gate = make_gate()
    feed(gate, steps)
    assert gate.state is expected
    assert gate.faulted is (expected is GateState.FAULT)


@pytest.mark.parametrize(
    ("frame_faces", "expected"),
    [
        pytest.param([], None, id="no face"),
        pytest.param([FaceScore(BOX, 0.42)], 0.42, id="one face"),
        pytest.param([FaceScore(SMALL_RIGHT, 0.9), FaceScore(BIG_LEFT, 0.2)], 0.2, id="the largest face's score"),
    ],
)
def test_last_score_is_the_deciding_face_score(frame_faces: Faces, expected: float | None) -> None:
    tg = tracked()
    tg.step(0, 0.0, [FaceScore(BOX, 0.77)])
    tg.step(1, DT, frame_faces)
    assert tg.gate.last_score == expected


# -- what the events carry -----------------------------------------------------------------------


def test_open_event_describes_the_deciding_face() -> None:
    gate = make_gate()
    two = pair((SMALL_RIGHT, 0.3), (BIG_LEFT, 0.93), 4)
    (event,) = feed_events(gate, script(two))
    assert (event.event, event.frame, event.t) == (EventType.OPEN, 3, 3 * DT)
    assert (event.score, event.box, event.faces, event.reason) == (0.93, BIG_LEFT, 2, None)


def test_deny_event_says_why() -> None:
    (event,) = feed_events(make_gate(), script(faces(0.2, 33)))
    assert (event.event, event.frame, event.score, event.box, event.faces) == (EventType.DENY, 32, 0.2, BOX, 1)
    assert event.reason == "no smile held within 2 s"


def test_face_lost_event_has_no_face() -> None:
    (event,) = feed_events(make_gate(), script(neutral(2), gap(4)))
    assert (event.event, event.frame, event.t) == (EventType.FACE_LOST, 5, 5 * DT)
    assert (event.score, event.box, event.faces, event.reason) == (None, None, 0, None)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(script(Op("fault", "no frame for 2 s")), [(EventType.FAULT, "no frame for 2 s")], id="fault carries its reason"),
        pytest.param(script(FAULT, RECOVER), [(EventType.FAULT, "camera lost"), (EventType.RECOVERED, "frames arriving again")], id="recover has a default reason"),
    ],
)
def test_fault_events_carry_the_reason(steps: list[Step], expected: list[tuple[EventType, str]]) -> None:
    events = feed_events(make_gate(), steps)
    assert [(e.event, e.reason) for e in events] == expected
    assert all((e.score, e.box, e.faces) == (None, None, 0) for e in events)


def test_event_ids_come_from_the_id_factory_in_order() -> None:
    counter = itertools.count()
    gate = Gate(GateConfig(**BASE), id_factory=lambda: f"ev{next(counter)}")
    events = feed_events(gate, script(neutral(40), smile(4), gap(5), FAULT, RECOVER))
    assert [e.event.value for e in events] == ["DENY", "OPEN", "FACE_LOST", "FAULT", "RECOVERED"]
    assert [e.id for e in events] == ["ev0", "ev1", "ev2", "ev3", "ev4"]


def test_default_event_ids_are_unique_hex() -> None:
    events = feed_events(make_gate(reopen="cooldown", cooldown_s=0.0), script(*[part for _ in range(5) for part in (smile(4), neutral(1))], gap(5)))
    assert len(events) == 6
    ids = [e.id for e in events]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


# keys added later, never renamed: by operator actions (issue 22) and by cameras (issue 23; a bare Gate names none)
NO_OPERATOR = {"by": None, "via": None, "override": None, "note": None, "camera": None, "claimed_by": None}

TO_DICT_CASES = [
    pytest.param(
        Event(EventType.OPEN, 12, 0.123456, 0.876543, "abc", (1.23, 2.0, 3.04, 4.96), 2, None),
        {"event": "OPEN", "frame": 12, "t": 0.1235, "score": 0.8765, "id": "abc", "box": [1.2, 2.0, 3.0, 5.0], "faces": 2, "reason": None, "track": None, **NO_OPERATOR},
        id="OPEN rounds t, score and box",
    ),
    pytest.param(
        Event(EventType.DENY, 3, 6.0, 0.1, "d", (0, 0, 10, 10), 1, "no smile held within 6 s"),
        {"event": "DENY", "frame": 3, "t": 6.0, "score": 0.1, "id": "d", "box": [0, 0, 10, 10], "faces": 1, "reason": "no smile held within 6 s", "track": None, **NO_OPERATOR},
        id="DENY with a reason",
    ),
    pytest.param(
        Event(EventType.FACE_LOST, 7, 1.5, None, "f", None, 0, None),
        {"event": "FACE_LOST", "frame": 7, "t": 1.5, "score": None, "id": "f", "box": None, "faces": 0, "reason": None, "track": None, **NO_OPERATOR},
        id="FACE_LOST without a face",
    ),
    pytest.param(
        Event(EventType.FAULT, 0, 1_700_000_000.123456, None, "x", None, 0, "camera 'cam0' lost"),
        {"event": "FAULT", "frame": 0, "t": 1_700_000_000.1235, "score": None, "id": "x", "box": None, "faces": 0, "reason": "camera 'cam0' lost", "track": None, **NO_OPERATOR},
        id="FAULT at wall-clock time",
    ),
    pytest.param(
        Event(EventType.RECOVERED, 9, 2.0, None, "r", None, 0, "frames arriving again"),
        {"event": "RECOVERED", "frame": 9, "t": 2.0, "score": None, "id": "r", "box": None, "faces": 0, "reason": "frames arriving again", "track": None, **NO_OPERATOR},
        id="RECOVERED",
    ),
    pytest.param(
        Event(EventType.OPEN, 4, 2.5, None, "m", None, 1, "manual", None, "maria", "page", True, "pram"),
        {"event": "OPEN", "frame": 4, "t": 2.5, "score": None, "id": "m", "box": None, "faces": 1, "reason": "manual", "track": None, "by": "maria", "via": "page", "override": True, "note": "pram", "camera": None, "claimed_by": None},
        id="a manual OPEN",
    ),
    pytest.param(
        Event(EventType.OUT_OF_SERVICE, 4, 2.5, None, "o", None, 0, "cleaning", None, "ali", "mqtt", None, "cleaning"),
        {"event": "OUT_OF_SERVICE", "frame": 4, "t": 2.5, "score": None, "id": "o", "box": None, "faces": 0, "reason": "cleaning", "track": None, "by": "ali", "via": "mqtt", "override": None, "note": "cleaning", "camera": None, "claimed_by": None},
        id="OUT_OF_SERVICE",
    ),
]


@pytest.mark.parametrize(("event", "expected"), TO_DICT_CASES)
def test_event_to_dict_shape(event: Event, expected: dict[str, Any]) -> None:
    d = event.to_dict()
    assert d == expected
    assert list(d) == ["event", "frame", "t", "score", "id", "box", "faces", "reason", "track", "by", "via", "override", "note", "camera", "claimed_by"]
    assert json.loads(json.dumps(d)) == d


def test_events_from_a_run_are_json_serialisable() -> None:
    events = feed_events(make_gate(), script(neutral(40), smile(4), gap(5), FAULT, RECOVER))
    lines = [json.dumps(e.to_dict()) for e in events]
    assert [json.loads(line)["event"] for line in lines] == ["DENY", "OPEN", "FACE_LOST", "FAULT", "RECOVERED"]


def test_event_type_prints_as_its_name() -> None:
    assert [str(t) for t in EventType] == ["OPEN", "DENY", "FACE_LOST", "FAULT", "RECOVERED", "OUT_OF_SERVICE", "IN_SERVICE", "PASSAGE", "FORCED_OPEN", "HELD_OPEN", "CLOSED"]


# -- callbacks -----------------------------------------------------------------------------------

CALLBACK_CASES = [
    pytest.param(script(smile(4)), [3], [], id="OPEN calls when_opened"),
    pytest.param(script(neutral(33)), [], [32], id="DENY calls when_denied"),
    pytest.param(script(neutral(40), smile(4)), [43], [32], id="both, in order"),
    pytest.param(script(neutral(2), gap(5), FAULT, RECOVER), [], [], id="FACE_LOST, FAULT and RECOVERED call neither"),
]


@pytest.mark.parametrize(("steps", "opened", "denied"), CALLBACK_CASES)
def test_announce_calls_the_callbacks_and_decide_does_not(steps: list[Step], opened: list[int], denied: list[int]) -> None:
    """An event has happened once the journal holds it: the camera announces it then (see
    test_journal's when_opened test); deciding alone calls nobody."""
    calls: list[Event] = []
    gate = make_gate()
    gate.when_opened = calls.append  # gpiozero style: set after construction
    gate.when_denied = calls.append
    returned = feed_events(gate, steps)
    assert calls == []
    for e in returned:
        gate.announce(e)
    assert [e.frame for e in calls if e.event is EventType.OPEN] == opened
    assert [e.frame for e in calls if e.event is EventType.DENY] == denied
    assert all(any(c is r for r in returned) for c in calls), "the callbacks get the very events decided, nothing else"


def test_callbacks_given_to_the_constructor_are_called_by_announce() -> None:
    seen: list[tuple[str, int]] = []
    gate = Gate(GateConfig(**BASE), when_opened=lambda e: seen.append(("opened", e.frame)))
    (opened,) = feed_events(gate, script(smile(4)))
    assert seen == []
    gate.announce(opened)
    assert seen == [("opened", 3)]


# -- GateConfig ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"enter_threshold": 0.5, "exit_threshold": 0.5}, id="exit equal to enter"),
        pytest.param({"enter_threshold": 1.0, "exit_threshold": 0.0}, id="the widest thresholds"),
        pytest.param({"hold_frames": 1}, id="hold_frames 1"),
        pytest.param({"enter_threshold": 0.5}, id="enter lowered alone: the hold follows it"),
        pytest.param({"hold_threshold": 0.4}, id="hold_threshold at exit"),
        pytest.param({"hold_seconds": 0.01}, id="a short hold_seconds"),
        pytest.param({"cooldown_s": 0.0, "lost_after_s": 0.0}, id="cooldown and lost_after_s 0"),
        pytest.param({"reopen": "cooldown"}, id="reopen cooldown"),
        pytest.param({"zone": (0.2, 0.0, 0.8, 1.0)}, id="a zone"),
        pytest.param({"require_onset": True, "onset_s": 0.1}, id="require_onset"),
    ],
)
def test_gate_config_accepts(kwargs: dict[str, Any]) -> None:
    cfg = GateConfig(**kwargs)
    assert all(getattr(cfg, k) == v for k, v in kwargs.items())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"enter_threshold": 0.6, "exit_threshold": 0.7}, r"exit_threshold=0\.7, enter_threshold=0\.6", id="exit above enter"),
        pytest.param({"exit_threshold": 0.4, "enter_threshold": 0.3}, "exit_threshold <= enter_threshold", id="enter below exit"),
        pytest.param({"enter_threshold": 1.1}, r"enter_threshold: expected a value >= 0 and <= 1, got 1\.1", id="enter above 1"),
        pytest.param({"exit_threshold": -0.1}, r"exit_threshold: expected a value >= 0 and <= 1, got -0\.1", id="exit below 0"),
        pytest.param({"enter_threshold": math.nan}, "enter_threshold: expected a value >= 0 and <= 1, got nan", id="enter is nan"),
        pytest.param({"hold_frames": 0}, "hold_frames: expected a value >= 1, got 0", id="hold_frames 0"),
        pytest.param({"hold_frames": -3}, "hold_frames: expected a value >= 1, got -3", id="hold_frames negative"),
        pytest.param({"hold_threshold": 0.7}, r"hold_threshold must lie between .*hold_threshold=0\.7, enter_threshold=0\.6", id="hold above enter"),
        pytest.param({"hold_threshold": 0.3}, r"exit_threshold=0\.4, hold_threshold=0\.3", id="hold below exit"),
        pytest.param({"reopen": "sometimes"}, "reopen: expected one of 'per_visit', 'cooldown', got 'sometimes'", id="reopen unknown"),
        pytest.param({"zone": (0.5, 0.0, 0.2, 1.0)}, r"zone: expected \[x0, y0, x1, y1\] with 0 <= x0 < x1 <= 1.*got \[0\.5, 0\.0, 0\.2, 1\.0\]", id="zone x0 > x1"),
        pytest.param({"zone": (0.0, 0.0, 1.0)}, "zone: expected", id="zone of three numbers"),
        pytest.param({"zone": (0.0, 0.0, 1.0, 1.5)}, "zone: expected", id="zone beyond the frame"),
        pytest.param({"onset_s": 0.0}, "onset_s: expected a value > 0", id="onset_s 0"),
    ],
)
def test_gate_config_rejects(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GateConfig(**kwargs)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("hold_seconds", 0.0, id="hold_seconds 0 would open on the first smiling frame"),
        pytest.param("hold_seconds", -1.0, id="hold_seconds negative"),
        pytest.param("cooldown_s", -1.0, id="cooldown_s negative"),
        pytest.param("deny_after_s", 0.0, id="deny_after_s 0 would DENY on the first frame"),
        pytest.param("lost_after_s", -0.1, id="lost_after_s negative"),
        pytest.param("cooldown_s", math.nan, id="cooldown_s nan would never allow a second OPEN"),
    ],
)
def test_gate_config_enforces_its_declared_bounds(name: str, value: float) -> None:
    """GateConfig is public API (``Gate(GateConfig(...))``): its declared bounds hold without the YAML loader."""
    with pytest.raises(ValueError, match=name):
        GateConfig(**{name: value})


def test_gate_config_zone_is_stored_as_a_tuple_of_floats() -> None:
    assert GateConfig(zone=[0, 0, 1, 1]).zone == (0.0, 0.0, 1.0, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("gate", "match"),
    [
        pytest.param({"reopen": "sometimes"}, r"gate\.reopen: expected one of 'per_visit', 'cooldown'", id="reopen"),
        pytest.param({"zone": [0.5, 0, 0.2, 1]}, "zone: expected", id="zone out of order"),
        pytest.param({"zone": "all"}, r"gate\.zone: expected a list", id="zone not a list"),
        pytest.param({"require_onset": "yes"}, r"gate\.require_onset: expected true or false", id="require_onset"),
    ],
)
def test_config_file_errors_name_the_gate_key(gate: dict[str, Any], match: str) -> None:
    from gatekeeper.config_load import config_from_dict
    from gatekeeper.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        config_from_dict({"gate": gate})


def test_config_file_reads_the_new_gate_keys() -> None:
    from gatekeeper.config_load import config_from_dict

    gate = config_from_dict({"gate": {"zone": [0.25, 0, 0.75, 1], "reopen": "cooldown", "require_onset": True, "onset_s": 0.5}}).gate
    assert (gate.zone, gate.reopen, gate.require_onset, gate.onset_s) == ((0.25, 0.0, 0.75, 1.0), "cooldown", True, 0.5)


def test_gate_config_bounds_are_declared_for_the_config_loader() -> None:
    meta = {f.name: dict(f.metadata) for f in dataclasses.fields(GateConfig)}
    assert meta["hold_frames"]["ge"] == 1
    assert meta["hold_seconds"]["gt"] == 0
    assert (meta["enter_threshold"]["ge"], meta["enter_threshold"]["le"]) == (0, 1)
    assert all(m["doc"] for m in meta.values())


def test_module_docstring_example_holds() -> None:
    result = doctest.testmod(gate_module, verbose=False)
    assert result.attempted >= 3
    assert result.failed == 0
