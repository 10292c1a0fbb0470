"""Exceptions raised by dogerm-mergekit: one flat hierarchy whose messages name the problem and the fix.

Library callers catch these; the command lines (ours, and mergekit-yaml's for dogerm merges) print them as one line
and exit with status 1 through :func:`dogerm_mergekit.console.one_line` (``DOGERM_DEBUG=1`` adds the traceback).
"""

from __future__ import annotations

DEBUG_ENV = "DOGERM_DEBUG"


class DogeRMError(Exception):
    """Base class of every error this package raises on purpose; ``message`` names the problem and the fix."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class DogeRMConfigError(DogeRMError, ValueError):
    """A merge configuration or its input checkpoints cannot give a correct DogeRM merge."""


class CheckpointError(DogeRMError):
    """An input checkpoint is missing, unreadable, truncated or corrupt."""


class OutputError(DogeRMError):
    """The output path cannot be written safely (a file, an unrelated folder, or in use by another run)."""


class UnsafePathError(DogeRMError):
    """A file we did not write (a manifest, a listing) names a path outside its folder, or a link leaving it."""

