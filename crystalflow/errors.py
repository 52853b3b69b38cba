"""Exceptions that the command line turns into one-line errors with a non-zero exit."""


class CrystalflowError(Exception):
    """Base class for user-facing errors (bad input, missing data, incompatible checkpoint).

    The CLI prints ``error: <message>`` and exits with status 2; library users catch it like any
    exception. Internal bugs are *not* CrystalflowErrors and keep their tracebacks.
    """


class InputError(CrystalflowError, ValueError):
    """The user's input is malformed or impossible (unknown element, bad formula, bad CIF...)."""


class DataError(CrystalflowError):
    """A dataset or data directory is missing or unreadable."""


class CheckpointError(CrystalflowError):
    """A checkpoint is missing, corrupt or does not fit the requested task."""
