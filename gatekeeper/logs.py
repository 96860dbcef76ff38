"""Transitional (issue 31): logging set-up is the command layer's, :func:`gatekeeper.command_line.setup_logging`.

``gatekeeper.training.evaluate`` still imports it from here until its entry point moves to the
command layer; then this module goes.
"""

from __future__ import annotations

from .command_line import setup_logging

__all__ = ["setup_logging"]
