"""Building a template library from CSV files (CDVAE layout) and folders of CIF files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from crystalflow.crystals.dataset import read_cif_table
from crystalflow.errors import InputError
from crystalflow.symmetry import DEFAULT_SYMPREC
from crystalflow.templates.library import TemplateLibrary

__all__ = ["build_library", "excluded_ids"]


def excluded_ids(spec: str) -> set[str]:
    """Material ids named by an exclusion: ``file.csv[.gz]`` (all rows), ``file.csv:N`` (its first
    ``N`` rows) or ``file.csv:-N`` (its last ``N`` rows)."""
    path, n = spec, None
    head, _, tail = spec.rpartition(":")
    if head and tail.lstrip("-").isdigit():
        path, n = head, int(tail)
    table = read_cif_table(path)
    if n is not None:
        table = table.iloc[:n] if n >= 0 else table.iloc[n:]
    return {str(m) for m in table["material_id"]}


def build_library(sources: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                  exclude: Sequence[str] = (), symprec: float = DEFAULT_SYMPREC, workers: int = 1,
                  progress: bool = True) -> TemplateLibrary:
    """Analyse every source (CSV with ``material_id`` and ``cif`` columns, or a folder of CIFs)
    and write the library to ``out``.

    Rows (files) spglib cannot analyse are left out without a warning: they come back as the
    returned library's ``skipped_rows`` (:class:`~crystalflow.crystals.dataset.SkippedRow`, with
    their reasons), for the caller to report.

    Args:
        sources: CSV files (gzip ok) or folders of ``.cif`` files.
        out: the library file to write.
        exclude: specs of :func:`excluded_ids`; those crystals are left out (benchmark hygiene).
        symprec: spglib tolerance (A) of the analysis.
        workers: processes for the spglib analysis of CSV rows (cached on disk).

    Raises:
        InputError: a source does not exist or nothing could be analysed.
    """
    from crystalflow.crystals.symmetric import SymmetricDataset

    datasets, names = [], []
    for src in sources:
        path = Path(src)
        if path.is_dir():
            datasets.append(SymmetricDataset.from_cif_folder(path, symprec=symprec,
                                                             progress=progress, warn=False))
        elif path.is_file():
            datasets.append(SymmetricDataset.from_csv(path, symprec=symprec, workers=workers,
                                                      progress=progress, warn=False))
        else:
            raise InputError(f"no such file or folder: {path}")
        names.append(f"{path.name} ({len(datasets[-1])} crystals)")
    drop: set[str] = set()
    for spec in exclude:
        drop |= excluded_ids(spec)
        names.append(f"minus {Path(spec).name}")
    lib = TemplateLibrary.from_symmetric(datasets, exclude=drop, sources=names)
    lib.save(out)
    return lib
