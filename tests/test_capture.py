"""Frame sources against real faults: a local MJPEG camera that drops, stalls, refuses and ends
(read by the real OpenCV/FFmpeg backend), damaged copies of a real clip, and scripted captures
for the cases no real file produces (frames of the wrong type, exact frame-by-frame handover).
"""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from mjpeg_server import MjpegServer, jpeg_frames_from_video, numbered_jpeg_frames
from polling import wait_for
from videofiles import faststart, garbled, truncated

import gatekeeper.capture_file as capture_file
import gatekeeper.capture_live as capture_live
from gatekeeper.capture import Frame, SourceStatus
from gatekeeper.capture_file import FileSource
from gatekeeper.capture_live import LiveSource
from gatekeeper.capture_open import check_camera_index
from gatekeeper.errors import FrameError, SourceError
from gatekeeper.mjpeg import jpeg_flaw, jpeg_size
from gatekeeper.undecodable import Undecodable

# Small backoff and timeouts so that faults play out in a second, not in minutes.
FAST = {"reconnect_initial_s": 0.05, "reconnect_max_s": 0.4, "open_timeout_s": 1.0, "read_timeout_s": 0.5}


@pytest.fixture(scope="module")
def clip(shared_dir: Path) -> Path:
    return shared_dir / "videos" / "single_face.mp4"


@pytest.fixture(scope="module")
def clip_jpegs(clip: Path) -> list[bytes]:
    return jpeg_frames_from_video(clip, count=30)


@pytest.fixture
def camera(clip_jpegs: list[bytes]) -> Iterator[MjpegServer]:
    with MjpegServer(clip_jpegs, fps=30) as cam:
        yield cam


@pytest.fixture
def live() -> Iterator[list[LiveSource]]:
    """Collects the live sources a test opens and closes them whatever happens."""
    sources: list[LiveSource] = []
    yield sources
    for src in sources:
        src.close()


def take(src: LiveSource, n: int, timeout: float = 10.0) -> list[Frame]:
    """The next ``n`` frames the source hands over (fails after ``timeout`` s)."""
    got: list[Frame] = []
    deadline = time.monotonic() + timeout
    for frame in src.frames(poll_s=0.05):
        if frame is not None:
            got.append(frame)
            if len(got) == n:
                return got
        if time.monotonic() > deadline or src.status.ended:
            break
    raise AssertionError(f"got {len(got)} of {n} frames in {timeout:g} s; status {src.status}")


# -- the test camera itself ------------------------------------------------------------------------


def test_opencv_ffmpeg_reads_the_mjpeg_test_stream(camera: MjpegServer) -> None:
    cap = cv2.VideoCapture(camera.url)
    try:
        assert cap.isOpened()
        assert cap.getBackendName() == "FFMPEG"
        shapes = [cap.read()[1].shape for _ in range(5)]
    finally:
        cap.release()
    assert shapes == [(360, 640, 3)] * 5


# -- live source: reconnects, backoff, stalls ---------------------------------------------------------


def test_a_stream_refused_at_start_is_bad_input(camera: MjpegServer) -> None:
    camera.refuse()
    with pytest.raises(SourceError, match="cannot open video source"):
        LiveSource(camera.url, **FAST)


def test_nothing_listening_is_bad_input() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(SourceError):
        LiveSource(f"http://127.0.0.1:{port}/stream.mjpg", **FAST)


def test_frames_carry_wall_clock_time_and_rgb_pixels(camera: MjpegServer, live: list[LiveSource]) -> None:
    src = LiveSource(camera.url, **FAST)
    live.append(src)
    frames = take(src, 3)
    assert all(abs(f.t - time.time()) < 30 for f in frames)
    assert [f.t for f in frames] == sorted(f.t for f in frames)
    assert frames[0].image.shape == (360, 640, 3) and frames[0].image.dtype == np.uint8


def test_an_mjpeg_camera_hands_its_frames_over_undecoded(camera: MjpegServer, clip_jpegs: list[bytes], live: list[LiveSource]) -> None:
    src = LiveSource(camera.url, **FAST)
    live.append(src)
    frame = take(src, 1)[0]
    assert not frame.decoded and frame.decode_s == 0.0
    assert frame.size == (640, 360) and not frame.decoded  # from the JPEG header
    grey = frame.grey(160)
    assert grey.shape == (90, 160) and not frame.decoded  # decoded at 1/4 scale, not in full
    expected = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)  # now it is
    assert frame.decoded and frame.decode_s > 0
    # libjpeg's 1/4-scale decode is an area average: within a grey level of one made from the picture
    area = cv2.resize(expected, (160, 90), interpolation=cv2.INTER_AREA)
    assert float(np.abs(grey.astype(int) - area).mean()) < 1.0
    assert any(np.array_equal(frame.image, cv2.cvtColor(cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)) for j in clip_jpegs)


def jpeg(img: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, list(params))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(("size", "width", "expected"), [((640, 360), 160, (160, 90)), ((1280, 720), 160, (160, 90)), ((1920, 1080), 160, (160, 90)), ((320, 180), 160, (160, 90)), ((100, 60), 160, (100, 60)), ((642, 362), 160, (160, 90))])
def test_a_jpeg_frame_grey_copy_is_as_wide_as_asked(size: tuple[int, int], width: int, expected: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    frame = Frame.from_jpeg(jpeg(img), 0, 0.0)
    assert frame.grey(width).shape == (expected[1], expected[0])
    assert not frame.decoded
    pixels = Frame(cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg(img), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), 0, 0.0)
    assert pixels.grey(width).shape == (expected[1], expected[0])


def test_jpeg_size_reads_the_frame_header_of_baseline_and_progressive_jpegs() -> None:
    img = np.zeros((37, 91, 3), np.uint8)
    assert jpeg_size(jpeg(img)) == (91, 37)
    assert jpeg_size(jpeg(img, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)) == (91, 37)
    assert jpeg_size(jpeg(img)[:40]) is None  # cut off before the frame header
    assert jpeg_size(b"\xff\xd8\xff\xda\x00\x08") is None  # scan data before any frame header
    assert jpeg_size(b"GIF89a...") is None
    assert jpeg_size(b"") is None


def test_a_jpeg_frame_that_cannot_be_decoded_says_so() -> None:
    good = jpeg(np.zeros((64, 64, 3), np.uint8))
    header_only = good[: good.index(b"\xff\xda")]  # a sound header, no picture data
    frame = Frame.from_jpeg(header_only, 7, 0.0)
    assert frame.size == (64, 64)
    with pytest.raises(FrameError, match=r"^frame 7: not a decodable JPEG"):
        frame.image  # noqa: B018
    with pytest.raises(ValueError, match="its image or its JPEG"):
        Frame(None, 0, 0.0)


def test_an_mjpeg_part_that_is_no_jpeg_is_skipped_and_counted(live: list[LiveSource]) -> None:
    good = jpeg(np.full((48, 64, 3), 128, np.uint8))
    with MjpegServer([good, b"not a jpeg at all", jpeg(np.zeros((8, 8, 3), np.uint8))], fps=60) as cam:
        src = LiveSource(cam.url, **FAST)
        live.append(src)
        wait_for(lambda: src.status.skipped >= 4, 5, "the bad parts skipped")
        frames = take(src, 2)
    assert all(f.size == (64, 48) for f in frames)  # the 8x8 JPEG is too small for the detector, like a non-JPEG


def test_an_mjpeg_camera_sending_no_jpeg_says_data_arrives_that_cannot_be_decoded(live: list[LiveSource]) -> None:
    garbage = b"<html>camera firmware error</html>" * 30  # 1020 bytes a part
    with MjpegServer([garbage], fps=100) as cam:
        src = LiveSource(cam.url, **FAST)
        live.append(src)
        wait_for(lambda: src.status.skipped >= 40, 10, "the garbage parts skipped")
        said = re.fullmatch(
            rf"source '{re.escape(cam.url)}': data arrives but cannot be decoded: (\d+) of the last (\d+) parts "
            r"\(([\d.]+) kB in ([\d.]+) s\) were no picture \(last: not JPEG\)",
            src.undecodable_fault(5.0) or "",
        )
        assert said is not None, src.undecodable_fault(5.0)
        bad, parts, kb = int(said[1]), int(said[2]), float(said[3])
        assert bad == parts >= 40 and kb == pytest.approx(parts * 1.02, abs=0.1)
        assert src.status.undecodable >= bad and src.status.read == 0 and src.status.reconnects == 0  # the connection is fine: no reconnect
        assert src.status.fault is None, "the connection is not at fault"
        cam.frames = [jpeg(np.full((48, 64, 3), 128, np.uint8))]  # the camera heals
        take(src, 1)
        src.frame_decoded()  # as the camera's loop says once the frame has gone through
        assert src.undecodable_fault(5.0) is None
        cam.frames = [garbage]
        wait_for(lambda: src.undecodable_fault(5.0) is not None, 5, "garbage again")
        assert int(re.findall(r"(\d+) of the last", src.undecodable_fault(5.0) or "")[0]) < bad, "counted afresh after a good frame"
    time.sleep(0.3)
    assert src.undecodable_fault(0.2) is None, "a camera that fell silent is not said to send data"


def test_what_a_part_that_is_no_picture_is_called() -> None:
    good = jpeg(np.full((48, 64, 3), 128, np.uint8))
    sof = good.index(b"\xff\xc0")
    cases = {
        b"": "an empty part",
        b"<html>error</html>": "not JPEG",
        b"\xff\xd8\xff\xda\x00\x08": "damaged JPEG header",
        jpeg(np.zeros((8, 8, 3), np.uint8)): "a picture of 8x8 pixels, smaller than 16x16",
        good[: len(good) // 2]: "truncated JPEG (no end marker)",
        good: None,
        good + b"\r\n\x00" * 8: None,  # padding after the end marker
        good[: sof + 40] + b"\x55" * 500 + b"\xff\xd9": None,  # a sound look over damaged data: only decoding tells
    }
    assert {data: jpeg_flaw(data, jpeg_size(data)) for data in cases} == cases


def test_a_frame_that_failed_after_a_good_one_counts_in_the_old_count() -> None:
    tally = Undecodable(SourceStatus())
    tally.arrived(100, 0)
    tally.arrived(100, 1)  # frame 1 arrives before frame 0 has gone through
    tally.decoded()  # frame 0 went through
    tally.failed(1, "damaged JPEG data")  # frame 1 belongs to the count closed by frame 0
    assert tally.says(10.0) is None and tally.status.undecodable == tally.status.skipped == 1
    tally.rejected(50, "not JPEG")
    tally.arrived(100, 2)
    tally.failed(2, "damaged JPEG data")
    said = tally.says(10.0) or ""
    assert said.startswith("data arrives but cannot be decoded: 2 of the last 2 parts (150 bytes in ") and said.endswith("were no picture (last: damaged JPEG data)"), said
    assert tally.status.undecodable == 3


def test_after_a_drop_it_reconnects_and_counts_it(camera: MjpegServer, live: list[LiveSource]) -> None:
    src = LiveSource(camera.url, **FAST)
    live.append(src)
    before = take(src, 5)
    assert src.status.reconnects == 0
    camera.drop()
    wait_for(lambda: src.status.reconnects == 1, 10, "a reconnect after the drop")
    after = take(src, 5)
    assert camera.connections == 2
    indices = [f.index for f in before + after]
    assert indices == sorted(set(indices)), "frame indices go on increasing across a reconnect"
    assert src.status.fault is None


def test_a_stream_that_ends_is_reopened_each_time(clip_jpegs: list[bytes], live: list[LiveSource]) -> None:
    with MjpegServer(clip_jpegs, fps=60, max_frames=4) as cam:
        src = LiveSource(cam.url, **FAST)
        live.append(src)
        frames = take(src, 14)
        assert src.status.reconnects >= 2
        assert cam.connections == src.status.reconnects + 1
        assert [f.index for f in frames] == sorted({f.index for f in frames})


def test_refused_reconnects_back_off_exponentially_then_recover(camera: MjpegServer, live: list[LiveSource]) -> None:
    src = LiveSource(camera.url, **FAST)
    live.append(src)
    take(src, 3)
    camera.refuse()
    refused_from = len(camera.attempts)
    # 0.05, 0.1, 0.2, 0.4, 0.4 s apart: six refused attempts take at least 1.15 s.
    wait_for(lambda: len(camera.attempts) >= refused_from + 6, 15, "six refused reconnect attempts")
    times = camera.attempts[refused_from : refused_from + 6]
    gaps = np.diff(times)
    expected = [min(FAST["reconnect_initial_s"] * 2**k, FAST["reconnect_max_s"]) for k in range(len(gaps))]
    # Lower bounds only: a wait can run late on a busy machine, never early.
    assert all(g >= e * 0.9 for g, e in zip(gaps, expected, strict=True)), f"gaps {gaps.round(3)} expected at least {expected}"
    assert gaps[-1] < 5.0, "the wait is capped by reconnect_max_s (with a generous margin for load)"
    assert src.status.reconnects == 0, "a refused attempt is not a reconnect"
    assert src.status.fault is not None and "cannot open" in src.status.fault
    camera.resume()
    take(src, 3)
    assert src.status.reconnects == 1
    assert src.status.fault is None


def test_a_stalled_stream_times_out_and_reconnects(camera: MjpegServer, live: list[LiveSource]) -> None:
    src = LiveSource(camera.url, **FAST)
    live.append(src)
    take(src, 3)
    camera.stall()
    # Without a read timeout FFmpeg would block for 30 s; with it the stall is noticed at once.
    wait_for(lambda: src.status.fault is not None, 5, "the stalled read to time out")
    camera.resume()
    take(src, 3)
    assert src.status.reconnects >= 1
    assert src.status.fault is None


def test_it_gives_up_after_max_reconnects(camera: MjpegServer, live: list[LiveSource]) -> None:
    src = LiveSource(camera.url, **{**FAST, "max_reconnects": 2})
    live.append(src)
    take(src, 2)
    camera.refuse()
    # frames() returns once the source has given up: the loop below ends by itself.
    deadline = time.monotonic() + 10
    for _ in src.frames(poll_s=0.05):
        assert time.monotonic() < deadline, "the source never gave up"
    assert src.status.ended
    assert src.status.fault is not None


# -- live source: the newest frame only ---------------------------------------------------------------


def test_a_slow_consumer_gets_newest_frames_and_drops_are_counted(live: list[LiveSource]) -> None:
    jpegs = numbered_jpeg_frames(60)
    with MjpegServer(jpegs, fps=60) as cam:
        src = LiveSource(cam.url, **FAST)
        live.append(src)
        got: list[Frame] = []
        for frame in src.frames(poll_s=0.05):
            if frame is None:
                continue
            got.append(frame)
            time.sleep(0.05)  # the consumer: a pipeline three frame periods slow
            if len(got) == 12:
                break
        src.close()
    indices = [f.index for f in got]
    assert indices == sorted(set(indices)), f"frames handed over out of order: {indices}"
    assert np.mean(np.diff(indices)) > 1.5, f"the consumer was handed a backlog instead of the newest frame: {indices}"
    # Every frame read was either handed over, dropped for a newer one, or is the one still waiting.
    pending = 1 if src._latest is not None else 0
    assert src.status.read == len(got) + src.status.dropped + pending
    # And each frame handed over is the picture read with that index (the server numbers them).
    for f in got:
        level = round((f.index % 60) * 250 / 59)
        assert abs(float(f.image.mean()) - level) < 3, (f.index, f.image.mean(), level)


class ScriptedCapture:
    """A stand-in for cv2.VideoCapture whose read() returns what the test puts in, when it does."""

    def __init__(self) -> None:
        self.script: queue.Queue[tuple[bool, object]] = queue.Queue()
        self.reads = 0
        self.closed = False

    def read(self) -> tuple[bool, object]:
        while True:
            try:
                item = self.script.get(timeout=0.02)
            except queue.Empty:
                if self.closed:
                    return False, None
                continue
            self.reads += 1
            return item

    def set(self, prop: int, value: float) -> bool:
        return True

    def release(self) -> None:
        pass


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch, live: list[LiveSource]) -> Iterator[ScriptedCapture]:
    cap = ScriptedCapture()
    monkeypatch.setattr(capture_live, "open_capture", lambda target, **kw: cap)
    yield cap
    cap.closed = True  # lets the capture thread out of read() so close() can join it


def image(level: int, shape: tuple[int, ...] = (48, 64, 3), dtype: type = np.uint8) -> np.ndarray:
    return np.full(shape, level, dtype=dtype)


def test_never_a_stale_frame_after_a_newer_one_exists(scripted: ScriptedCapture, live: list[LiveSource]) -> None:
    src = LiveSource("scripted", **FAST)
    live.append(src)
    frames = src.frames(poll_s=0.05)
    for level in (10, 20, 30):
        scripted.script.put((True, image(level)))
    wait_for(lambda: src.status.read == 3, 5, "three frames read")
    first = next(f for f in frames if f is not None)
    assert first.index == 2 and first.image[0, 0, 0] == 30, "the newest of three waiting frames is handed over"
    assert src.status.dropped == 2
    scripted.script.put((True, image(40)))
    wait_for(lambda: src.status.read == 4, 5, "a fourth frame read")
    second = next(f for f in frames if f is not None)
    assert second.index == 3 and second.image[0, 0, 0] == 40
    assert src.status.dropped == 2, "a frame taken in time is not a drop"


def test_a_camera_that_opens_but_sends_nothing_is_retried_with_backoff(monkeypatch: pytest.MonkeyPatch, live: list[LiveSource]) -> None:
    opened: list[float] = []

    class DeadOnArrival(ScriptedCapture):
        def read(self) -> tuple[bool, object]:
            return False, None  # accepts the connection, then hangs up before the first frame

    def open_dead(target: object, **kw: object) -> ScriptedCapture:
        opened.append(time.monotonic())
        return DeadOnArrival()

    monkeypatch.setattr(capture_live, "open_capture", open_dead)
    src = LiveSource("dead", **FAST)
    live.append(src)
    wait_for(lambda: len(opened) >= 5, 10, "five connection attempts")
    gaps = np.diff(opened[:5])
    expected = [min(FAST["reconnect_initial_s"] * 2**k, FAST["reconnect_max_s"]) for k in range(len(gaps))]
    assert all(g >= e * 0.9 for g, e in zip(gaps, expected, strict=True)), f"gaps {gaps.round(3)}: retried without backing off"
    assert src.status.read == 0 and src.status.fault is not None


@pytest.mark.parametrize(
    "bad",
    [
        image(9, (48, 64)),  # greyscale
        image(9, (48, 64, 4)),  # BGRA
        image(9, dtype=np.float32),  # float pixels
        image(9, (8, 8, 3)),  # too small to hold a face
        None,  # ok but no image
    ],
    ids=["grey", "bgra", "float", "tiny", "none"],
)
def test_live_frames_of_the_wrong_type_are_skipped_and_counted(scripted: ScriptedCapture, live: list[LiveSource], bad: object) -> None:
    src = LiveSource("scripted", **FAST)
    live.append(src)
    scripted.script.put((True, bad))
    scripted.script.put((True, image(77, (120, 160, 3))))
    frame = take(src, 1)[0]
    assert frame.image.shape == (120, 160, 3) and frame.image[0, 0, 0] == 77
    assert src.status.skipped == 1
    assert src.status.reconnects == 0


# -- file source: damaged files -----------------------------------------------------------------------


def play(path: Path) -> tuple[list[Frame], FileSource]:
    src = FileSource(path)
    try:
        return list(src), src
    finally:
        src.close()


@pytest.mark.parametrize(("name", "count"), [("single_face.mp4", 72), ("face_noface.mov", 169), ("no_face.mp4", 95)])
def test_an_intact_clip_plays_every_frame_and_skips_none(shared_dir: Path, name: str, count: int) -> None:
    # no_face.mp4's container estimates 98 frames and holds 95: an estimate is not damage.
    frames, src = play(shared_dir / "videos" / name)
    assert [f.index for f in frames] == list(range(count))
    assert src.status.skipped == 0 and src.status.ended


def test_a_file_cut_short_plays_what_is_left(clip: Path, tmp_path: Path) -> None:
    # A streaming-ready copy (index first), cut after 60 % of its bytes: a download that stopped.
    cut = truncated(faststart(clip, tmp_path / "faststart.mp4"), tmp_path / "cut.mp4", 0.6)
    frames, src = play(cut)
    assert 20 <= len(frames) < 72
    assert [f.index for f in frames] == list(range(len(frames)))
    assert src.status.skipped == 72 - len(frames), "the frames the index promised and the data lacks are counted"
    assert src.status.ended


def test_an_mp4_cut_before_its_index_is_bad_input_with_a_clear_message(clip: Path, tmp_path: Path) -> None:
    # The shared clip keeps its index (moov) at the end: cut at 60 % nothing can be demuxed.
    with pytest.raises(SourceError, match=r"cannot be opened; expected a video OpenCV/FFmpeg can read"):
        FileSource(truncated(clip, tmp_path / "cut.mp4", 0.6))


@pytest.mark.parametrize("keep_index_first", [False, True], ids=["index-last", "index-first"])
def test_garbage_in_the_middle_is_skipped_and_counted(clip: Path, tmp_path: Path, keep_index_first: bool) -> None:
    src_file = faststart(clip, tmp_path / "fs.mp4") if keep_index_first else clip
    bad = garbled(src_file, tmp_path / "garbled.mp4", 0.4, 0.5)
    frames, src = play(bad)
    indices = [f.index for f in frames]
    assert indices[0] == 0 and indices[-1] == 71, "it plays on after the damage, to the end"
    assert indices == sorted(set(indices))
    assert src.status.skipped == 72 - len(frames) > 0, "the frames lost to the damage are counted"
    assert [f.t for f in frames] == [i / 30 for i in indices], "t stays the position in the file across the gap"


@pytest.mark.parametrize("content", [b"", b"not a video at all\n" * 50, bytes(range(256)) * 100], ids=["empty", "text", "noise"])
def test_a_file_that_is_not_a_video_is_bad_input(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=str(path)):
        FileSource(path)


class ScriptedFile:
    """A stand-in for a cv2.VideoCapture on a file: a fixed list of read() results."""

    def __init__(self, reads: list[tuple[bool, object]], count: int) -> None:
        self.reads = list(reads)
        self.count = count

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FPS: 25.0, cv2.CAP_PROP_FRAME_COUNT: float(self.count)}.get(prop, 0.0)

    def read(self) -> tuple[bool, object]:
        return self.reads.pop(0) if self.reads else (False, None)

    def release(self) -> None:
        pass


def test_file_frames_of_the_wrong_type_or_size_are_skipped_and_counted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    reads: list[tuple[bool, object]] = [
        (True, image(1, (8, 8, 3))),  # too small: skipped, and the file still opens
        (True, image(2)),
        (True, image(3, (48, 64))),  # greyscale
        (False, None),  # undecodable
        (True, image(5, (120, 160, 3))),  # another size is a valid frame
        (True, image(6, dtype=np.uint16)),
        (True, image(7)),
    ]
    monkeypatch.setattr(capture_file, "open_capture", lambda target, **kw: ScriptedFile(reads, count=len(reads)))
    path = tmp_path / "scripted.mp4"
    path.write_bytes(b"x")
    frames, src = play(path)
    assert [(f.index, int(f.image[0, 0, 0])) for f in frames] == [(1, 2), (4, 5), (6, 7)]
    assert [f.t for f in frames] == [1 / 25, 4 / 25, 6 / 25]
    assert src.status.skipped == 4
    assert src.status.read == 3


def test_live_source_loops_a_file_path(clip: Path, live: list[LiveSource]) -> None:
    # LiveSource takes any cv2.VideoCapture target; at the end of a file it opens it again.
    src = LiveSource(str(clip), **FAST)
    live.append(src)
    assert take(src, 1)[0].image.shape == (360, 640, 3)
    wait_for(lambda: src.status.reconnects >= 1, 10, "the file to be reopened at its end")
    assert src.status.read + src.status.dropped >= 72


# -- camera indices --------------------------------------------------------------------------

OUT_OF_RANGE = [-1, -2, 100, 200, 2147483648, 2**63]


@pytest.mark.parametrize("index", OUT_OF_RANGE)
def test_a_camera_index_out_of_range_never_reaches_opencv(monkeypatch: pytest.MonkeyPatch, index: int) -> None:
    """-1 segfaulted inside OpenCV, 2147483648 raised from inside cv2, and 100 and up are read by
    OpenCV as a backend code plus an index: each is refused before OpenCV sees it."""

    def not_called(*args: object) -> None:
        raise AssertionError("cv2.VideoCapture was called")

    monkeypatch.setattr(cv2, "VideoCapture", not_called)
    with pytest.raises(SourceError, match=rf"^camera index {index} is out of range; expected 0 to 99 \(0 is the first camera\)$"):
        LiveSource(index, **FAST)


def test_camera_indices_in_range_are_taken() -> None:
    assert [check_camera_index(i) for i in (0, 1, 99)] == [0, 1, 99]
    with pytest.raises(SourceError):
        check_camera_index(True)  # type: ignore[arg-type]  # a bool is not an index


@pytest.mark.parametrize("text", ["-1", "-2", "2147483648"])
def test_cli_refuses_an_out_of_range_camera_in_one_line(text: str, tmp_path: Path) -> None:
    """In a real process, so that a crash inside OpenCV would show as one."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-m", "gatekeeper.cli", "--camera", text], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"gatekeeper: error: argument --camera: camera index {text} is out of range; expected 0 to 99 (0 is the first camera) (see gatekeeper --help)\n"
