"""Keep native libraries' chatter (MediaPipe, LiteRT, FFmpeg) off the user's stderr.

MediaPipe and LiteRT print INFO lines from C++ straight to file descriptor 2 when a model is
loaded or closed, bypassing Python logging. A gate's stderr is its log, and a bad-input error
must be one clear line, so while native code sets up or tears down we point fd 2 at a temporary
file and pass what it caught to the ``gatekeeper.native`` logger at DEBUG level (WARNING for
lines that look like errors), where ``--log-level debug`` shows them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

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
                line = raw.strip()
                if line:
                    bad = (line.startswith(("E", "F")) and not line.startswith("E0000 00:00")) or "ERROR" in line
                    log.log(logging.WARNING if bad and not failed else logging.DEBUG, "%s", line)
