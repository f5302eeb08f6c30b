"""The one exception type for a user's mistake.

The bundle, the app and the PACS bridge end a :class:`UserError` with one ``error:`` line and a
non-zero exit; any other exception is a bug and keeps its traceback. It derives from
``ValueError`` so that library callers that catch ``ValueError`` (and the tests written against
them) keep working, but the command lines catch only ``UserError``: a ``ValueError`` raised
inside torch, numpy or pydicom is not reported as the user's fault.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["UserError", "exit_on_user_error"]


class UserError(ValueError):
    """A mistake in what the user gave: a file, a folder, a setting, a prompt. The message names it."""


@contextlib.contextmanager
def exit_on_user_error(logger: logging.Logger) -> Iterator[None]:
    """End a :class:`UserError` raised in the block as ``SystemExit("error: ...")``, logged.

    ``SystemExit`` passes through MONAI's component instantiation (which wraps any ``Exception``
    in a ``RuntimeError`` with a traceback), and Python prints its message as the one line.
    """
    try:
        yield
    except UserError as error:
        logger.error("%s", error)
        raise SystemExit(f"error: {error}") from None
