"""Where errors meet the command line: every failure of a command as one line ``Error: ...``, exit status 1.

The library raises :class:`~dogerm_mergekit.errors.DogeRMError` and knows nothing of click; the console scripts of
both packages (and ``mergekit-yaml`` on a dogerm configuration) run their work inside :func:`one_line`.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import click

from dogerm_mergekit.errors import DEBUG_ENV, DogeRMError


class CommandError(click.ClickException):
    """A failure as click prints it: one line (a message spanning lines is joined), the traceback with DOGERM_DEBUG=1."""

    def format_message(self) -> str:
        return " ".join(self.message.split())

    def show(self, file: IO[Any] | None = None) -> None:
        if os.environ.get(DEBUG_ENV) and self.__cause__ is not None:
            traceback.print_exception(self.__cause__, file=file or click.get_text_stream("stderr"))
        super().show(file)


def as_command_error(error: BaseException, doing: str) -> CommandError:
    """``error`` as one line: our own errors as they are, any other as ``<doing> failed: <type>: <first line>``."""
    if isinstance(error, DogeRMError):
        return CommandError(error.message)
    text = str(error).strip().splitlines()
    return CommandError(f"{doing} failed: {error.__class__.__name__}: {text[0] if text else 'no message'} "
                        f"(set {DEBUG_ENV}=1 for the traceback)")


@contextmanager
def one_line(doing: str) -> Iterator[None]:
    """Let click's own exceptions through; any other exception met while ``doing`` becomes a :class:`CommandError`."""
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except Exception as error:
        raise as_command_error(error, doing) from error
