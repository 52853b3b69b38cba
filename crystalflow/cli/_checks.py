"""Argument types shared by every command: numeric options checked while the command line is parsed.

Each function is an ``argparse`` ``type=``: it converts the text or raises
:class:`argparse.ArgumentTypeError`, which the parser (:func:`crystalflow.cli.build_parser`) turns
into one line ``error: argument --steps: ...`` and exit status 2 before anything is imported or
computed. The messages name the value given and what to give instead. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, TypeVar

T = TypeVar("T", int, float)

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


def _bounded(convert: Callable[[str], T], ok: Callable[[T], bool], what: str, name: str,
             doc: str) -> Callable[[str], T]:
    """An argparse type: ``convert`` the text, then require ``ok`` (error: ``must be <what>``)."""

    def check(text: str) -> T:
        value = convert(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    check.__name__ = check.__qualname__ = name
    check.__doc__ = doc
    return check


positive_int = _bounded(_int, lambda v: v >= 1, "a whole number >= 1", "positive_int",
                        "A whole number >= 1 (counts, steps, sizes, threads, workers, limits).")
nonnegative_int = _bounded(_int, lambda v: v >= 0, "a whole number >= 0", "nonnegative_int",
                           "A whole number >= 0 (0 switches the feature off, e.g. ``--val-size 0``).")
positive_float = _bounded(_float, lambda v: v > 0, "a number > 0", "positive_float",
                          "A finite number > 0 (tolerances, time limits).")
nonnegative_float = _bounded(_float, lambda v: v >= 0, "a number >= 0", "nonnegative_float",
                             "A finite number >= 0 (learning rates, loss weights, slopes).")
probability = _bounded(_float, lambda v: 0 <= v <= 1, "a number between 0 and 1", "probability",
                       "A number in [0, 1] (shares, times on the unit interval, decay rates).")
fraction = _bounded(_float, lambda v: 0 < v < 1, "a number strictly between 0 and 1", "fraction",
                    "A number strictly between 0 and 1 (a held-out share leaving both parts non-empty).")
