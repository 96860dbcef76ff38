"""Keep native libraries' chatter (MediaPipe, LiteRT, libjpeg, FFmpeg) off the user's stderr.

MediaPipe and LiteRT print lines from C++ straight to file descriptor 2, bypassing Python
logging: INFO lines when a model is loaded or closed, and now and then in the middle of a run
"WARNING: Logging before InitGoogle() is written to STDERR" followed by "Input tensor memory is
not aligned ... Reallocating memory and copying data" (absl, which reads no environment
variable to quiet it). libjpeg says "Premature end of JPEG file" for a damaged photo or a
USB camera's damaged MJPEG frame. A gate's stderr is its log, and a bad-input error must be one
clear line, so:

* :func:`route_native_stderr` (the ``gatekeeper`` command, for the whole run) gives Python's
  own stderr a copy of the real one and points fd 2 at a pipe; a thread passes each line that
  arrives there to the ``gatekeeper.native`` logger;
* :func:`captured_stderr` (around model set-up and teardown, wherever the code runs) points fd 2
  at a temporary file for the duration and does the same with what it caught.

Lines go to the logger at DEBUG level (WARNING for lines that look like errors), where
``--log-level debug`` shows them, with the secrets of any URL in them masked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

from .redact import redact_text
from .worker import Worker

__all__ = ["captured_stderr", "route_native_stderr"]

log = logging.getLogger("gatekeeper.native")


@contextlib.contextmanager
def captured_stderr() -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters, some test runners)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            # The caller turns the failure into one clear error; what the library said about
            # it stays at DEBUG.
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for raw in tmp.read().decode("utf-8", "replace").splitlines():
                _log_line(raw, quiet=failed)


def _log_line(raw: str, *, quiet: bool = False) -> None:
    line = redact_text(raw.strip())  # FFmpeg and GStreamer name the URL they open, password and all
    if line:
        bad = (line.startswith(("E", "F")) and not line.startswith("E0000 00:00")) or "ERROR" in line
        log.log(logging.WARNING if bad and not quiet else logging.DEBUG, "%s", line)


def route_native_stderr() -> Callable[[], None] | None:
    """For the rest of the process (until the returned function is called): ``sys.stderr``
    writes to a copy of the real stderr, and what native code writes to fd 2 goes, line by
    line, to the ``gatekeeper.native`` logger (which writes to ``sys.stderr``). Child processes
    inherit the pipe: the hooks capture their commands' output themselves.

    Returns the function that puts fd 2 back, or None when there is no real fd 2 to route.
    A native library that aborts the process loses its last words unless they reached the
    logger first; ``--log-level debug`` shows them while the process lives.
    """
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no stderr, or not a real file (embedded, some test runners)
        return None
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    saved = sys.stderr
    encoding = getattr(saved, "encoding", None) or "utf-8"
    sys.stderr = os.fdopen(real, "w", buffering=1, encoding=encoding, errors="backslashreplace")

    def forward() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for raw in pipe:
                _log_line(raw.decode("utf-8", "replace"))

    reader = Worker(forward, "native-stderr")
    reader.start()

    def restore() -> None:
        # The copy stays open: logging handlers made meanwhile still write to it.
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's write end: the reader gets what is left, then EOF
        reader.finish(1.0)  # a child that still holds the pipe must not hold up the exit
        sys.stderr = saved

    return restore
