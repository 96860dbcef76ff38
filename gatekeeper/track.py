"""Face tracking: an id per face that lasts while the face stays in view.

Pure and small: no I/O, no clock of its own (``t`` is passed in), no dependency beyond the
standard library. Each :meth:`Tracker.update` takes the boxes of one frame and returns one
:class:`Track` per box, in the same order.

* **association**: every live track predicts where its face is now (constant velocity of the
  box centre, from its last positions). A detection may continue a track when its centre lies
  within ``max_move`` face widths of that prediction, or overlaps it (IoU >= ``min_iou``), and
  its width is within a factor of ``max_scale`` of the track's. Pairs are taken greedily, best
  first (cost: centre distance in face widths plus one minus IoU); a detection left over starts
  a new track.
* **missed detections**: a track that is not seen lives on for ``lost_after_s`` seconds after it
  was last seen, so a detector that misses a frame or two does not split a person in two. It
  ends (and is listed in :attr:`Tracker.lost`) at the first update where it is unseen and that
  long has passed (``lost_after_s`` or more; a sighting exactly then still continues it), or at
  :meth:`Tracker.expire` by the same rule. A track seen in the previous update can always be continued, whatever the
  frame interval, so ``lost_after_s`` below one frame interval means "lost at the first miss",
  not "a new track every frame".

A tracker that has only boxes cannot tell two people apart who take the same place one after
the other within ``lost_after_s``: that needs a gap at least that long.

>>> tracker = Tracker(lost_after_s=0.3)
>>> [tr.id for tr in tracker.update([(100, 100, 80, 80)], t=0.0)]
[1]
>>> [tr.id for tr in tracker.update([(400, 100, 80, 80), (104, 102, 80, 80)], t=0.04)]
[2, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Box", "Track", "Tracker", "intersection", "iou"]

Box = tuple[float, float, float, float]  # x, y, width, height in pixels


@dataclass(frozen=True, slots=True)
class Track:
    """One tracked face as of the last update: its id, its box, and when it was first and last seen."""

    id: int
    box: Box
    first_t: float
    last_t: float
    hits: int  # frames it was seen in

    @property
    def age(self) -> float:
        """Seconds from the first to the last sighting."""
        return self.last_t - self.first_t


@dataclass(slots=True)
class _Live:
    id: int
    box: Box
    first_t: float
    last_t: float
    hits: int
    vx: float = 0.0  # centre velocity, pixels per second
    vy: float = 0.0
    seen_last_update: bool = True

    def predicted(self, t: float) -> Box:
        dt = t - self.last_t
        x, y, w, h = self.box
        return (x + self.vx * dt, y + self.vy * dt, w, h)

    def snapshot(self) -> Track:
        return Track(self.id, self.box, self.first_t, self.last_t, self.hits)


class Tracker:
    """Give each face box an id that lasts while the face stays in view (see the module docs).

    ``lost_after_s``: how long a track outlives its last sighting; ``max_move``: how far (in face
    widths) a face may be from where its track predicts it; ``min_iou``: an overlap that
    continues a track whatever the centre distance; ``max_scale``: how much a face's width may
    change between sightings; ``smoothing``: the weight of the newest motion in the velocity.
    """

    def __init__(self, lost_after_s: float = 0.3, *, max_move: float = 1.0, min_iou: float = 0.3, max_scale: float = 2.0, smoothing: float = 0.5) -> None:
        if lost_after_s < 0 or max_move <= 0 or not 0 < min_iou <= 1 or max_scale < 1 or not 0 < smoothing <= 1:
            raise ValueError(
                "expected lost_after_s >= 0, max_move > 0, 0 < min_iou <= 1, max_scale >= 1 and 0 < smoothing <= 1, "
                f"got lost_after_s={lost_after_s}, max_move={max_move}, min_iou={min_iou}, max_scale={max_scale}, smoothing={smoothing}"
            )
        self.lost_after_s = lost_after_s
        self.max_move = max_move
        self.min_iou = min_iou
        self.max_scale = max_scale
        self.smoothing = smoothing
        self._live: list[_Live] = []
        self._next_id = 1
        self.lost: list[Track] = []  # the tracks that ended at the last update (or expire)

    @property
    def tracks(self) -> list[Track]:
        """Every live track, seen at the last update or not, oldest first."""
        return [lv.snapshot() for lv in self._live]

    def update(self, boxes: Sequence[Box], t: float) -> list[Track]:
        """The track of each box of the frame at time ``t``, in the order of ``boxes``."""
        candidates = []
        for ti, lv in enumerate(self._live):
            if not (lv.seen_last_update or t - lv.last_t <= self.lost_after_s):
                continue
            pred = lv.predicted(t)
            for di, box in enumerate(boxes):
                cost = self._cost(pred, box)
                if cost is not None:
                    candidates.append((cost, ti, di))
        candidates.sort()
        owner: dict[int, _Live] = {}
        taken: set[int] = set()
        for _cost, ti, di in candidates:
            if ti in taken or di in owner:
                continue
            taken.add(ti)
            owner[di] = self._live[ti]

        out = []
        for di, box in enumerate(boxes):
            lv = owner.get(di)
            if lv is None:
                lv = _Live(self._next_id, tuple(box), t, t, 0)  # type: ignore[arg-type]
                self._next_id += 1
                self._live.append(lv)
                taken.add(len(self._live) - 1)
            else:
                self._follow(lv, box, t)
            lv.hits += 1
            out.append(lv.snapshot())
        for ti, lv in enumerate(self._live):
            lv.seen_last_update = ti in taken
        self._expire(t)
        return out

    def expire(self, t: float) -> list[Track]:
        """End the tracks unseen at ``t`` whose faces were last seen ``lost_after_s`` or more
        before ``t`` (the rule of :meth:`update`); returns them.

        For a pause in the frames (a camera that came back): without it, a face seen just
        before the pause would continue its track, however long the pause was.
        """
        self._expire(t)
        return self.lost

    # -- helpers -------------------------------------------------------------------------------
    def _cost(self, pred: Box, box: Box) -> float | None:
        """How well ``box`` continues a track predicted at ``pred``; None: it cannot."""
        pw, bw = pred[2], box[2]
        if min(pw, bw) <= 0 or max(pw, bw) > self.max_scale * min(pw, bw):
            return None
        dx = (pred[0] + pw / 2) - (box[0] + bw / 2)
        dy = (pred[1] + pred[3] / 2) - (box[1] + box[3] / 2)
        distance = (dx * dx + dy * dy) ** 0.5 / max(pw, bw)
        overlap = iou(pred, box)
        if distance > self.max_move and overlap < self.min_iou:
            return None
        return distance + 1.0 - overlap

    def _follow(self, lv: _Live, box: Box, t: float) -> None:
        dt = t - lv.last_t
        if dt > 0:
            ox, oy = lv.box[0] + lv.box[2] / 2, lv.box[1] + lv.box[3] / 2
            nx, ny = box[0] + box[2] / 2, box[1] + box[3] / 2
            a = self.smoothing
            lv.vx = (1 - a) * lv.vx + a * (nx - ox) / dt
            lv.vy = (1 - a) * lv.vy + a * (ny - oy) / dt
        lv.box = tuple(box)  # type: ignore[assignment]
        lv.last_t = t

    def _expire(self, t: float) -> None:
        """End every track unseen at ``t`` (last seen before it) for ``lost_after_s`` or more."""
        keep, lost = [], []
        for lv in self._live:
            (lost if lv.last_t < t and t - lv.last_t >= self.lost_after_s else keep).append(lv)
        self._live = keep
        self.lost = [lv.snapshot() for lv in lost]


def intersection(a: Box, b: Box) -> float:
    """Area shared by two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    inter = intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
