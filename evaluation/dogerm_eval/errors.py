"""Exceptions raised for user-facing problems, always before any scoring starts."""


class EvalError(Exception):
    """Base class of every user-facing evaluation error."""


class ModelError(EvalError):
    """A model reference cannot be resolved or is not a one-label sequence-classification RM."""


class DataError(EvalError):
    """Input data is missing or does not have the expected schema."""


class BenchmarkError(EvalError):
    """A benchmark cannot be run with the given settings."""
