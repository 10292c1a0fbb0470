"""Exceptions raised for user-facing problems, always before any scoring starts.

Every error is a ``dogerm_mergekit.errors.DogeRMError`` (no click in it: library callers catch it), and both
packages' command lines print it alike through ``dogerm_mergekit.console``: one line ``Error: ...`` on stderr and exit
status 1 (click's usage errors: status 2), no traceback; ``DOGERM_DEBUG=1`` prints the traceback too.
``dogerm_eval.cli`` reports any other exception escaping a command the same way.
"""

from __future__ import annotations

from dogerm_mergekit.errors import DEBUG_ENV, DogeRMError

__all__ = ["DEBUG_ENV", "BenchmarkError", "DataError", "EvalError", "ModelError", "OptionError", "ScoreError"]


class EvalError(DogeRMError):
    """Base class of every user-facing evaluation error."""


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
