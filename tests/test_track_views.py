"""Track ids where people look: the live picture, the replay report and the journal."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from standin import StandInPipeline

from gatekeeper.camera import Camera
from gatekeeper.capture import Frame
from gatekeeper.config import Config
from gatekeeper.events import Event, EventType, FaceScore, event_from_dict
from gatekeeper.gate import Gate, GateConfig, TrackedFace
from gatekeeper.report import FrameRecord, draw, render_html
from gatekeeper.serve import Watchers
from gatekeeper.web import LiveView, Snapshot, annotate_jpeg

OPEN = Event(EventType.OPEN, 5, 0.2, 0.93, "a", (10.0, 10.0, 50.0, 50.0), 2, None, 7)
LOST = Event(EventType.FACE_LOST, 9, 0.3, None, "b", None, 1, None, 7)
FAULT = Event(EventType.FAULT, 9, 0.3, None, "c", None, 0, "camera lost")


def snapshot(*faces: TrackedFace) -> Snapshot:
    return Snapshot(0, Frame(np.zeros((200, 400, 3), np.uint8), 0, 0.0), faces, None)


def picture(snap: Snapshot, **kwargs: object) -> np.ndarray:
    jpeg = annotate_jpeg(snap, enter=0.6, exit_=0.4, quality=95, **kwargs)  # type: ignore[arg-type]
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def test_live_picture_labels_each_face_with_its_track() -> None:
    face = TrackedFace((40.0, 60.0, 80.0, 80.0), 0.9, 1, True, True)
    other = TrackedFace((40.0, 60.0, 80.0, 80.0), 0.9, 88, True, True)
    a, b = picture(snapshot(face)), picture(snapshot(other))
    assert np.abs(a.astype(int) - b.astype(int)).max() > 100, "the label differs with the track id"


def test_live_picture_draws_the_zone_and_greys_faces_outside_it() -> None:
    outside = TrackedFace((300.0, 60.0, 60.0, 60.0), 0.9, 2, False, False)
    img = picture(snapshot(outside), zone=(0.25, 0.1, 0.75, 0.9))
    assert img[100, 100].min() > 200, "the zone's left edge (x = 100) is drawn in white"
    b, g, r = (int(v) for v in img[120, 300])  # the left edge of the face's box
    assert abs(b - 150) < 30 and abs(g - 150) < 30 and abs(r - 150) < 30, "a face outside the zone is drawn grey"
    assert picture(snapshot(outside))[100, 100].max() < 30, "no zone drawn for the whole frame"


def test_live_view_snapshot_holds_the_gate_faces_with_tracks() -> None:
    faces = [FaceScore((40.0, 30.0, 50.0, 50.0), 0.3), FaceScore((200.0, 30.0, 60.0, 60.0), 0.8)]
    watchers = Watchers()
    camera = Camera("gate", Config(), StandInPipeline(Gate(GateConfig()), lambda frame: faces), [watchers], watchers.on_frame)  # type: ignore[arg-type]
    view = LiveView(camera)
    watchers.add(view)
    camera.step(Frame(np.zeros((120, 320, 3), np.uint8), 0, 0.0))
    snap = view.snapshot()
    assert snap is not None
    assert [(f.track, f.decides) for f in snap.faces] == [(1, False), (2, True)]


def test_report_table_has_a_track_column() -> None:
    page = render_html(b"png", [OPEN, LOST, FAULT], title="clip")
    assert "<th>faces</th><th>track</th><th>reason</th>" in page
    assert "<td>OPEN</td><td>5</td><td>0.20</td><td>0.930</td><td>2</td><td>7</td><td></td>" in page
    assert "<td>FAULT</td><td>9</td><td>0.30</td><td></td><td>0</td><td></td><td>camera lost</td>" in page


def test_report_plot_names_the_track_of_each_event() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        rows = [FrameRecord(i, i / 30, 0.9, 1) for i in range(12)]
        draw(ax, rows, [OPEN, LOST, FAULT], GateConfig())
        texts = [t.get_text() for t in ax.texts]
    finally:
        plt.close(fig)
    assert "OPEN\nframe 5, track 7" in texts and "FACE_LOST\nframe 9, track 7" in texts and "FAULT\nframe 9" in texts


@pytest.mark.parametrize("event", [OPEN, LOST, FAULT], ids=lambda e: e.event.value)
def test_journal_keeps_the_track(event: Event) -> None:
    assert event_from_dict(event.to_dict()) == event


def test_journal_reads_events_written_before_tracks() -> None:
    old = {k: v for k, v in OPEN.to_dict().items() if k != "track"}
    assert event_from_dict(old).track is None
