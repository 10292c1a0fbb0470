"""Exceptions raised for user-facing problems, always before any scoring starts.

Every error is a ``dogerm_mergekit.errors.DogeRMError`` (a ``click.ClickException``), so both packages' command lines
behave alike: one line ``Error: ...`` on stderr and exit status 1 (click's usage errors: status 2), no traceback;
``DOGERM_DEBUG=1`` prints the traceback too. ``dogerm_eval.cli`` turns any other exception escaping a command into
an ``EvalError`` the same way (``UnexpectedError``).
"""

from __future__ import annotations

from dogerm_mergekit.errors import DEBUG_ENV, DogeRMError

__all__ = ["DEBUG_ENV", "BenchmarkError", "DataError", "EvalError", "ModelError", "OptionError", "ScoreError",
           "UnexpectedError"]


class EvalError(DogeRMError):
    """Base class of every user-facing evaluation error."""

    def format_message(self) -> str:
        """The message on one line (causes quoted in a message may span several)."""
        return " ".join(self.message.split())


class ModelError(EvalError):
    """A model reference cannot be resolved or is not a one-label sequence-classification RM."""


class DataError(EvalError):
    """Input data is missing or does not have the expected schema."""


class BenchmarkError(EvalError):
    """A benchmark cannot be run with the given settings."""


class OptionError(BenchmarkError):
    """A combination of command-line options that cannot work (or an output path that cannot be written)."""


class ScoreError(EvalError):
    """A model's scores cannot be reported as they are (NaN or infinite scores), raised before any result is written."""


class UnexpectedError(EvalError):
    """Any other exception escaping a command, reported as one line (its traceback with DOGERM_DEBUG=1)."""
