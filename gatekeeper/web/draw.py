"""The picture of the live view: the frame with the gate's zone and each face's box, track id
and score drawn on it, as JPEG (on the server's side, never on the frame loop)."""

from __future__ import annotations

import cv2

from ..gate import WHOLE_FRAME
from .snapshot import Snapshot

__all__ = ["annotate_jpeg"]


def annotate_jpeg(snap: Snapshot, *, enter: float, exit_: float, quality: int, zone: tuple[float, ...] = WHOLE_FRAME) -> bytes:
    """``snap``'s picture as JPEG with the zone (unless the whole frame) and each face's box:
    green for a smile that counts, amber inside the hysteresis band, red below it, grey outside
    the zone. Raises :class:`~gatekeeper.errors.FrameError` for a picture that cannot be decoded."""
    img = cv2.cvtColor(snap.image, cv2.COLOR_RGB2BGR)  # a new array: the frame itself stays untouched
    thickness = max(2, img.shape[1] // 320)
    if tuple(zone) != WHOLE_FRAME:
        height, width = img.shape[:2]
        corners = [(round(zone[0] * width), round(zone[1] * height)), (round(zone[2] * width), round(zone[3] * height))]
        cv2.rectangle(img, corners[0], corners[1], (255, 255, 255), max(1, thickness // 2))
    for face in snap.faces:
        x, y, w, h = (round(v) for v in face.box)
        # BGR: green, amber, red; grey outside the zone.
        color = (80, 200, 60) if face.score >= enter else (0, 180, 255) if face.score >= exit_ else (60, 60, 230)
        if not face.in_zone:
            color = (150, 150, 150)
        cv2.rectangle(img, (x, y), (x + w, y + h), color, thickness)
        label = f"#{face.track} {face.score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)
        top = max(y - th - base - 4, 0)
        cv2.rectangle(img, (x, top), (x + tw + 6, top + th + base + 4), color, -1)
        cv2.putText(img, label, (x + 3, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 2, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
