"""What every command of the command layer shares: the command's name, the argument parser that
reports a bad option in one line, logging set-up and the default config file.

The command layer is this module, :mod:`gatekeeper.cli` (the ``gatekeeper`` command),
:mod:`gatekeeper.commands` (its subcommands) and :mod:`gatekeeper.demo`; they import the
library, and nothing in the library imports them (``tests/test_layers.py`` reads the imports).
This module sits at the bottom of the layer, so the commands share it without importing each
other.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import ConfigError

__all__ = ["CLI_NAME", "EXIT_BAD_INPUT", "ArgumentParser", "default_config_path", "setup_logging"]

#: The command's name: the top-level parser's ``prog`` and the prefix of every error line.
CLI_NAME = "gatekeeper"
#: The exit status of bad input (an invalid config or option, a missing file or model).
EXIT_BAD_INPUT = 2


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` that reports a bad option as a :class:`~gatekeeper.errors.ConfigError`: one
    line and exit status 2 through the CLI, instead of a usage block."""

    def error(self, message: str):  # type: ignore[override]
        # The CLI prefixes "gatekeeper: error:"; a subcommand names itself ("gatekeeper score: ...").
        where = "" if self.prog == CLI_NAME else f"{self.prog}: "
        raise ConfigError(f"{where}{message} (see {self.prog} --help)")


def setup_logging(level: str) -> None:
    """Log lines on stderr at ``level``; third-party chatter kept to warnings."""
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # mediapipe.tasks imports matplotlib (for its drawing helpers), which logs at INFO when it
    # builds its font cache; that is not ours to report.
    logging.getLogger("matplotlib").setLevel(max(logging.WARNING, logging.getLogger().level))
    # MediaPipe and LiteRT log through glog/absl to stderr; keep them to warnings and worse.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def default_config_path(given: str | None) -> Path | None:
    """``--config``: the path given, else ``./config.yaml`` when present, else None (built-in defaults)."""
    if given:
        return Path(given)
    local = Path("config.yaml")
    return local if local.is_file() else None
