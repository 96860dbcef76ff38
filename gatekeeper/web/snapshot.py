"""Snapshots: the newest processed frame and what the gate made of it, handed from the frame loop
to the server in one slot, and encoded as JPEG once however many clients watch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import FrameError

if TYPE_CHECKING:
    import numpy as np

    from ..capture import Frame
    from ..gate import TrackedFace

__all__ = ["JpegCache", "Snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The newest processed frame and what the gate made of it (handed to the server as is)."""

    seq: int
    picture: Frame  # the source makes a new frame each time, so no copy is needed
    faces: tuple[TrackedFace, ...]  # with their track ids, from the gate
    score: float | None  # the deciding face's

    @property
    def frame(self) -> int:
        return self.picture.index

    @property
    def t(self) -> float:
        return self.picture.t

    @property
    def image(self) -> np.ndarray:
        """The RGB picture: a live MJPEG frame the pipeline did not need in full is decoded here,
        on the server's side, and only when someone watches (raises :class:`FrameError`)."""
        return self.picture.image


class JpegCache:
    """Encodes each new snapshot once, however many clients watch (on the server's executor).

    ``latest`` gives the newest snapshot (None before the first frame), ``encode`` turns one into
    JPEG. A picture that cannot be decoded (a damaged JPEG from the camera) leaves the last good
    one up.
    """

    def __init__(self, latest: Callable[[], Snapshot | None], encode: Callable[[Snapshot], bytes]) -> None:
        self._latest = latest
        self._encode = encode
        self._seq = -1
        self._jpeg: bytes | None = None
        self._lock = asyncio.Lock()

    async def latest(self) -> tuple[int, bytes | None]:
        """(sequence number, JPEG) of the newest snapshot; (-1, None) before the first."""
        snap = self._latest()
        if snap is None:
            return -1, None
        if snap.seq == self._seq:
            return self._seq, self._jpeg
        async with self._lock:
            if snap.seq != self._seq:
                try:
                    jpeg = await asyncio.get_running_loop().run_in_executor(None, self._encode, snap)
                except FrameError:  # a damaged JPEG from the camera: the last good picture stays up
                    jpeg = self._jpeg
                self._seq, self._jpeg = snap.seq, jpeg
        return self._seq, self._jpeg
