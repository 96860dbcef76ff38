"""Logging for the entry points: the ``gatekeeper`` commands and the training package's own.

Here, in the library, so that an entry point below the command layer (``gatekeeper eval``'s
:mod:`gatekeeper.training.evaluate`) sets logging up without importing :mod:`gatekeeper.commands`.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["setup_logging"]


def setup_logging(level: str) -> None:
    """Log lines on stderr at ``level``; third-party chatter kept to warnings."""
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # mediapipe.tasks imports matplotlib (for its drawing helpers), which logs at INFO when it
    # builds its font cache; that is not ours to report.
    logging.getLogger("matplotlib").setLevel(max(logging.WARNING, logging.getLogger().level))
    # MediaPipe and LiteRT log through glog/absl to stderr; keep them to warnings and worse.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
