"""The log format of the command-line tools (the bridge, the listener): one line per event on stderr."""

from __future__ import annotations

import logging

__all__ = ["LOG_LEVELS", "log_to_stderr"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_to_stderr(level: str) -> logging.Handler:
    """Send every logger's records at ``level`` and above to stderr, timestamped; return the
    handler (to filter it, and to remove it: a ``main`` called twice in one process logs once)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s] [%(levelname)s] (%(name)s) - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
