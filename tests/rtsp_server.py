#!/usr/bin/python3
"""A real RTSP server on the loopback for the tests: GStreamer's RTSP server playing one clip in a loop.

    /usr/bin/python3 tests/rtsp_server.py CLIP.mp4 --port PORT [--path /x]
    /usr/bin/python3 tests/rtsp_server.py --check    # exit 0 when all it needs is installed

It runs with the system python3, which has GObject introspection (Debian's python3-gi); the
project's virtual environment does not. The clip's H.264 access units are read once (qtdemux,
h264parse) and pushed through an appsrc again and again with increasing timestamps, so the
stream never ends and nothing is re-encoded. Each client gets its own copy of the stream, from
the clip's first frame. Prints ``ready rtsp://127.0.0.1:PORT/x`` on stdout once it serves;
SIGTERM or SIGINT stop it. Failures are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import dataclass
from typing import Any

PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
ELEMENTS = ("filesrc", "qtdemux", "h264parse", "appsink", "appsrc", "rtph264pay")


def fail(message: str) -> None:
    print(f"rtsp_server: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def load_gstreamer():
    """GLib, Gst and GstRtspServer, or one line saying which Debian packages to install."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstApp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstApp, GstRtspServer  # noqa: F401 (GstApp: the appsink methods)
    except (ImportError, ValueError) as exc:
        fail(f"GStreamer's RTSP server cannot be loaded by {sys.executable} ({exc}); install it with: apt-get install {PACKAGES}")
    Gst.init(None)
    missing = [name for name in ELEMENTS if Gst.ElementFactory.find(name) is None]
    if missing:
        fail(f"GStreamer elements missing: {', '.join(missing)}; install them with: apt-get install {PACKAGES}")
    return GLib, Gst, GstRtspServer


@dataclass
class AccessUnit:
    data: bytes
    pts: int
    dts: int | None
    duration: int


def read_access_units(gst: Any, clip: str) -> tuple[Any, list[AccessUnit], int]:
    """The clip's H.264 as byte-stream access units (SPS/PPS before every key frame), its caps and
    its length in nanoseconds."""
    pipeline = gst.parse_launch(
        "filesrc name=src ! qtdemux ! h264parse config-interval=-1 "
        "! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
    )
    pipeline.get_by_name("src").set_property("location", clip)
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(gst.State.PLAYING)
    units: list[AccessUnit] = []
    caps = None
    none = gst.CLOCK_TIME_NONE
    try:
        while (sample := sink.try_pull_sample(10 * gst.SECOND)) is not None:
            buf = sample.get_buffer()
            caps = caps or sample.get_caps()
            ok, info = buf.map(gst.MapFlags.READ)
            if not ok:
                fail(f"cannot read a buffer of {clip}")
            units.append(AccessUnit(bytes(info.data), buf.pts, None if buf.dts == none else buf.dts, buf.duration))
            buf.unmap(info)
        bus = pipeline.get_bus()
        error = bus.pop_filtered(gst.MessageType.ERROR)
        if error is not None:
            fail(f"cannot read {clip}: {error.parse_error()[0].message}")
    finally:
        pipeline.set_state(gst.State.NULL)
    if not units or caps is None:
        fail(f"no H.264 video found in {clip}")
    # Decoding order comes first: with B-frames the first DTS is before the first PTS.
    start = min(min(u.pts for u in units), *(u.dts for u in units if u.dts is not None))
    for u in units:
        u.pts -= start
        if u.dts is not None:
            u.dts -= start
    length = max(u.pts + u.duration for u in units)
    return caps, units, length


def serve(clip: str, port: int, path: str) -> None:
    glib, gst, rtsp = load_gstreamer()
    caps, units, length = read_access_units(gst, clip)

    def on_need_data(src, _length: int, state: dict[str, int]) -> None:
        i = state["next"]
        state["next"] = i + 1
        loop, unit = divmod(i, len(units))
        au = units[unit]
        buf = gst.Buffer.new_wrapped(au.data)
        buf.pts = loop * length + au.pts
        if au.dts is not None:
            buf.dts = loop * length + au.dts
        buf.duration = au.duration
        src.emit("push-buffer", buf)

    def on_media_configure(_factory, media) -> None:
        src = media.get_element().get_child_by_name("src")
        src.set_property("caps", caps)
        src.connect("need-data", on_need_data, {"next": 0})

    factory = rtsp.RTSPMediaFactory()
    factory.set_launch("( appsrc name=src format=time ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(False)
    factory.connect("media-configure", on_media_configure)
    server = rtsp.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        fail(f"cannot listen on 127.0.0.1:{port}")
    main_loop = glib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        glib.unix_signal_add(glib.PRIORITY_DEFAULT, sig, main_loop.quit)
    print(f"ready rtsp://127.0.0.1:{port}{path}", flush=True)
    main_loop.run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip", nargs="?", help="an MP4 with H.264 video")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", default="/x")
    ap.add_argument("--check", action="store_true", help="only check that GStreamer and its RTSP server are installed")
    args = ap.parse_args()
    if args.check:
        load_gstreamer()
        print("ok")
        return
    if not args.clip:
        ap.error("a clip is needed (or --check)")
    serve(args.clip, args.port, args.path)


if __name__ == "__main__":
    main()
