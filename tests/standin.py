"""A stand-in for the models: detect -> crop -> classify replaced by a script of scored faces.

The tracker and the gate behind it are the real ones, run as the pipeline runs them
(:class:`gatekeeper.pipeline.TrackedGate`): the tests that use it are about what happens around
the gate (actions, faults, the journal, hooks), not about the models.
"""

from __future__ import annotations

from collections.abc import Callable

from gatekeeper.capture import Frame
from gatekeeper.events import Event, FaceScore
from gatekeeper.gate import Gate
from gatekeeper.pipeline import StageTimes, TrackedGate


def nobody(frame: Frame) -> list[FaceScore]:
    return []


class StandInPipeline:
    """A :class:`~gatekeeper.pipeline.Pipeline` whose faces of each frame are ``faces(frame)``
    (scored, not yet tracked) instead of what the models would find."""

    def __init__(self, gate: Gate, faces: Callable[[Frame], list[FaceScore]] = nobody) -> None:
        self.gate = gate
        self.tracked = TrackedGate(gate)
        self.faces = faces
        self.times = StageTimes()
        self.motion = None
        self.decoded = 0

    @property
    def last_faces(self) -> list[FaceScore]:
        return self.tracked.faces

    def process(self, frame: Frame) -> list[Event]:
        return self.tracked.step(frame.index, frame.t, self.faces(frame), frame.size)

    def recover(self, frame: int, t: float, reason: str, *, cause: str = "pipeline") -> list[Event]:
        return self.tracked.recover(frame, t, reason, cause=cause)

    def next_look(self) -> float | None:
        return None  # every frame is looked at

    def close(self) -> None:
        pass
