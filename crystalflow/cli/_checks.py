"""Argument types shared by every command: numeric options checked while the command line is parsed.

Each function is an ``argparse`` ``type=``: it converts the text or raises
:class:`argparse.ArgumentTypeError`, which the parser (:func:`crystalflow.cli.build_parser`) turns
into one line ``error: argument --steps: ...`` and exit status 2 before anything is imported or
computed. The messages name the value given and what to give instead. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["fraction", "nonnegative_float", "nonnegative_int", "positive_float", "positive_int",
           "probability"]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (counts, steps, sizes, threads, workers, limits)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """A whole number >= 0 (0 switches the feature off, e.g. ``--val-size 0``)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, tolerances, time limits)."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (loss weights, slopes)."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1] (shares, times on the unit interval, decay rates)."""
    value = _float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number strictly between 0 and 1 (a held-out share that must leave both parts non-empty)."""
    value = _float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number strictly between 0 and 1, got {text!r}")
    return value
