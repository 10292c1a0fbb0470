"""Exceptions raised by dogerm-mergekit: one flat hierarchy whose messages name the problem and the fix.

Every error is a ``click.ClickException``, so any command line (ours, and mergekit-yaml's for dogerm merges)
prints it as one line and exits with status 1; set ``DOGERM_DEBUG=1`` to see the traceback too.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import click

DEBUG_ENV = "DOGERM_DEBUG"


class DogeRMError(click.ClickException):
    """Base class of every error this package raises on purpose."""

    def show(self, file: IO[Any] | None = None) -> None:
        if os.environ.get(DEBUG_ENV):
            traceback.print_exception(self, file=file or click.get_text_stream("stderr"))
        super().show(file)


class DogeRMConfigError(DogeRMError, ValueError):
    """A merge configuration or its input checkpoints cannot give a correct DogeRM merge."""


class CheckpointError(DogeRMError):
    """An input checkpoint is missing, unreadable, truncated or corrupt."""


class OutputError(DogeRMError):
    """The output path cannot be written safely (a file, an unrelated folder, or in use by another run)."""


class UnsafePathError(DogeRMError):
    """A file we did not write (a manifest, a listing) names a path outside its folder, or a link leaving it."""


@contextmanager
def one_line(doing: str) -> Iterator[None]:
    """Let our errors and click's through; turn any other exception (mergekit's, transformers', the OS's) met while
    ``doing`` into a :class:`DogeRMError` of one line (the traceback with ``DOGERM_DEBUG=1``)."""
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except Exception as error:
        text = str(error).strip().splitlines()
        raise DogeRMError(f"{doing} failed: {error.__class__.__name__}: {text[0] if text else 'no message'} "
                          f"(set {DEBUG_ENV}=1 for the traceback)") from error
