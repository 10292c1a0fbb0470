"""Exceptions raised by dogerm-mergekit."""


class DogeRMError(Exception):
    """Base class of every error this package raises on purpose."""


class DogeRMConfigError(DogeRMError, ValueError):
    """A merge configuration or its input checkpoints cannot give a correct DogeRM merge."""
