"""``crystalflow`` command line: one sub-module per command, each with ``register(subparsers)``.

A command module defines ``register(subparsers) -> None`` that adds its parser and sets
``func=callable(args) -> int`` as the parser default. Errors derived from
:class:`crystalflow.errors.CrystalflowError`, and argument errors, become one line on stderr and
exit status 2. Building the parser imports no heavy library (torch, torch_geometric, pymatgen):
command modules import those inside their ``run`` functions, so ``--help`` and argument errors
answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import Sequence

from crystalflow.errors import CrystalflowError

#: command modules, in the order they appear in ``crystalflow --help``
COMMAND_MODULES = ("train", "predict", "generate", "evaluate", "templates", "protein")


class OneLineErrorParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``error: ...``, exit status 2), like the
    commands' own input errors; sub-command parsers inherit the class."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command registered."""
    from crystalflow import __version__

    parser = OneLineErrorParser(
        prog="crystalflow", description="Flow matching for crystals and protein backbones."
    )
    parser.add_argument("--version", action="version", version=f"crystalflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"crystalflow.cli.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet
            if exc.name == f"crystalflow.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


#: library parameters whose command-line flag is not ``--`` + the name with dashes
FLAGS = {"out_dir": "--out", "allow_unseen": "--allow-unseen-elements", "num_outputs": "--num-samples",
         "temperature": "--steer-temperature", "refine_top": "--reward-relax-top",
         "independent": "--independent-particles"}


def flag_message(exc: BaseException) -> str:
    """The message of a library error with the parameters it names (``exc.parameters``, see
    :class:`crystalflow.errors.CrystalflowError`) written as this command line's flags:
    ``num_samples must be >= 1`` becomes ``--num-samples must be >= 1``."""
    import re

    text = str(exc)
    for name in getattr(exc, "parameters", ()):
        flag = FLAGS.get(name, "--" + name.replace("_", "-"))
        text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flag, text)
    return text


def print_skipped(rows: Sequence, limit: int | None = None) -> None:
    """Report input rows a library call left out (its ``skipped_rows``,
    :class:`~crystalflow.crystals.dataset.SkippedRow`) on stderr: one line
    ``warning: skipping row ID: REASON`` per row, or for the first ``limit`` rows followed by
    ``warning: N more rows skipped (M in all)``."""
    shown = list(rows if limit is None else rows[:limit])
    for r in shown:
        print(f"warning: skipping row {r.row}: {' '.join(r.reason.split())}", file=sys.stderr)
    if len(rows) > len(shown):
        print(f"warning: {len(rows) - len(shown)} more rows skipped ({len(rows)} in all)", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings of a command: one line ``warning: ...`` on stderr (never on stdout, which may
    carry ``--json``), without the source line Python shows by default."""
    text = " ".join(str(message).split())
    print(f"warning: {text}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crystalflow`` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, an argument error: already printed
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            # deprecations inside libraries are for their developers (Python hides them from users
            # too; pytest's filters would otherwise print torch_geometric's on its first import)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            return int(args.func(args) or 0)
    except CrystalflowError as exc:
        print(f"error: {flag_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
