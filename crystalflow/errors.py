"""Exceptions that the command line turns into one-line errors with a non-zero exit."""

from __future__ import annotations


class CrystalflowError(Exception):
    """Base class for user-facing errors (bad input, missing data, incompatible checkpoint).

    The CLI prints ``error: <message>`` and exits with status 2; library users catch it like any
    exception. Internal bugs are *not* CrystalflowErrors and keep their tracebacks.

    Messages name the library's parameters (``num_samples must be >= 1``) and list them in
    :attr:`parameters`; the command line shows its flags instead (``--num-samples must be >= 1``,
    :func:`crystalflow.cli.flag_message`), so the library speaks the caller's language.

    Args:
        message: the one-line message.
        parameters: names of the function parameters (Python identifiers) the message refers to.
    """

    def __init__(self, message: str = "", *, parameters: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.parameters = tuple(parameters)


class InputError(CrystalflowError, ValueError):
    """The user's input is malformed or impossible (unknown element, bad formula, bad CIF...)."""


class DataError(CrystalflowError):
    """A dataset or data directory is missing or unreadable."""


class CheckpointError(CrystalflowError):
    """A checkpoint is missing, corrupt or does not fit the requested task."""
