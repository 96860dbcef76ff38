"""One small hierarchy of errors; each also inherits the builtin it resembles.

The CLI catches :class:`GatekeeperError` and prints its message as one line with exit status 2,
so every message here must say what was wrong and what was expected. The lowest module of the
package: it imports nothing of it (the command line's parser is :mod:`gatekeeper.command_line`'s).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FrameError",
    "GatekeeperError",
    "HookError",
    "JournalError",
    "ModelError",
    "SourceError",
    "TrainingError",
]


class GatekeeperError(Exception):
    """Base class of every error gatekeeper raises on purpose."""


class ConfigError(GatekeeperError, ValueError):
    """The configuration file or a command-line option is invalid."""


class ModelError(GatekeeperError, RuntimeError):
    """A model file is missing, corrupt, or does not match its model card."""


class SourceError(GatekeeperError, OSError):
    """A video source cannot be opened or read."""


class FrameError(GatekeeperError, ValueError):
    """One frame's picture cannot be decoded (a live camera's damaged JPEG); the source goes on."""


class JournalError(GatekeeperError, OSError):
    """The event journal cannot be opened, read or written."""


class HookError(GatekeeperError, RuntimeError):
    """A hook cannot be set up (no GPIO, missing secret); delivery failures are counted, not raised."""


class TrainingError(GatekeeperError, ValueError):
    """A training run cannot start or go on as asked (a teacher or start model that does not fit
    the data, a resume state of another recipe); raised before any model file is written."""
