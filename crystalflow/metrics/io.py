"""Reading the inputs of an evaluation: directories of CIF samples and CDVAE-layout CSV splits.

A bad CIF in a sample directory is reported and counted, never fatal; a missing or empty sample
directory is an :class:`~crystalflow.errors.InputError`; a missing or malformed reference CSV is a
:class:`~crystalflow.errors.DataError`.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from pymatgen.core import Structure

from crystalflow.errors import DataError, InputError
from crystalflow.metrics._parallel import parallel_map

__all__ = [
    "ReferenceSet",
    "SampleSet",
    "UnreadableCIFWarning",
    "group_csp_predictions",
    "load_reference_csv",
    "load_sample_dir",
    "parse_cif",
    "read_cif_file_or_error",
    "read_cif_files",
    "read_reference_table",
]


class UnreadableCIFWarning(UserWarning):
    """A CIF file or string could not be parsed; the structure is skipped and counted."""


def parse_cif(text: str) -> Structure:
    """The first structure of a CIF string (pymatgen's parser, no symmetrisation); the same parser
    as the crystals' (:func:`crystalflow.crystals.crystal.structure_from_cif`).

    Raises:
        InputError: the text holds no readable structure.
    """
    from crystalflow.crystals.crystal import structure_from_cif

    return structure_from_cif(text)


def _parse_or_error(text: str) -> Structure | str:
    """Worker: the parsed structure, or the error message."""
    try:
        return parse_cif(text)
    except InputError as exc:
        return str(exc)


def read_cif_file_or_error(path: str | Path) -> Structure | str:
    """The structure in a CIF file, or the reason it cannot be read (never raises)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read file: {exc}"
    return _parse_or_error(text)


@dataclass(frozen=True)
class SampleSet:
    """Structures read from a sample directory.

    Attributes:
        names: file stems of the readable structures, aligned with ``structures``.
        structures: the readable structures.
        failed: ``(file name, reason)`` of each unreadable file.
    """

    names: tuple[str, ...]
    structures: tuple[Structure, ...] = field(repr=False)
    failed: tuple[tuple[str, str], ...] = ()

    @property
    def num_files(self) -> int:
        """Readable plus unreadable files."""
        return len(self.structures) + len(self.failed)

    def __len__(self) -> int:
        return len(self.structures)


def read_cif_files(
    paths: Sequence[Path], *, workers: int = 1, progress: bool = True
) -> list[Structure | str]:
    """Parse CIF files (in parallel); each entry is a Structure or an error message."""
    return parallel_map(
        read_cif_file_or_error, [str(p) for p in paths], workers=workers, progress=progress, desc="read CIFs"
    )


def load_sample_dir(directory: str | Path, *, workers: int = 1, progress: bool = True) -> SampleSet:
    """Every ``*.cif`` in a directory (sorted by name), unreadable files counted and warned about.

    Raises:
        InputError: the directory does not exist or holds no CIF file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"sample directory {directory} does not exist")
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".cif" and p.is_file())
    if not paths:
        raise InputError(f"sample directory {directory} holds no .cif files")
    parsed = read_cif_files(paths, workers=workers, progress=progress)
    names, structures, failed = [], [], []
    for path, result in zip(paths, parsed):
        if isinstance(result, str):
            failed.append((path.name, result))
        else:
            names.append(path.stem)
            structures.append(result)
    for name, reason in failed:
        warnings.warn(f"{directory / name}: {reason}", UnreadableCIFWarning, stacklevel=2)
    return SampleSet(tuple(names), tuple(structures), tuple(failed))


@dataclass(frozen=True)
class ReferenceSet:
    """Structures of a CDVAE-layout CSV split (``material_id`` and ``cif`` columns).

    Attributes:
        path: the CSV file.
        ids: material ids (as strings), aligned with ``structures``.
        structures: the parsed structures.
    """

    path: Path
    ids: tuple[str, ...]
    structures: tuple[Structure, ...] = field(repr=False)

    def __len__(self) -> int:
        return len(self.structures)


def read_reference_table(path: str | Path, limit: int | None = None):
    """The ``material_id`` and ``cif`` columns of a CDVAE-layout CSV (gzip allowed) as a DataFrame.

    Raises:
        DataError: the file is missing, unreadable or lacks the two columns.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"reference file {path} does not exist")
    try:
        table = pd.read_csv(path, nrows=limit)
    except Exception as exc:
        raise DataError(f"cannot read reference file {path}: {exc}") from exc
    missing = {"material_id", "cif"} - set(table.columns)
    if missing:
        raise DataError(f"reference file {path} lacks column(s) {sorted(missing)}")
    keep = ["material_id", "cif"] + [c for c in ("pretty_formula", "formula") if c in table.columns]
    table = table[keep].copy()
    table["material_id"] = table["material_id"].astype(str)
    return table


_FORMULA_SUM = re.compile(r"_chemical_formula_sum\s+(?:'([^']*)'|\"([^\"]*)\"|(\S+))")


def _row_formula(row) -> str | None:
    """Reduced formula of a table row from its formula column or the CIF's formula sum."""
    from pymatgen.core import Composition

    for col in ("pretty_formula", "formula"):
        value = row.get(col)
        if isinstance(value, str) and value:
            try:
                return Composition(value).reduced_formula
            except Exception:
                pass
    m = _FORMULA_SUM.search(row["cif"])
    if m:
        try:
            return Composition(next(g for g in m.groups() if g)).reduced_formula
        except Exception:
            return None
    return None


def load_reference_csv(
    path: str | Path,
    *,
    limit: int | None = None,
    formulas: set[str] | None = None,
    workers: int = 1,
    progress: bool = True,
) -> ReferenceSet:
    """Parse the structures of a CDVAE-layout CSV split (the first ``limit`` rows if given).

    Args:
        path: the CSV (gzip allowed).
        limit: only the first ``limit`` rows.
        formulas: only rows whose reduced formula is in this set (read from the
            ``pretty_formula``/``formula`` column or the CIF's ``_chemical_formula_sum``, so other
            rows are never parsed); rows whose formula cannot be told are kept.
        workers: processes for parsing.
        progress: show a progress bar.

    Raises:
        DataError: the file is missing or malformed, or one of its CIFs is unreadable.
    """
    table = read_reference_table(path, limit)
    if formulas is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row_formulas = [_row_formula(row) for _, row in table.iterrows()]
        table = table[[f is None or f in formulas for f in row_formulas]]
    parsed = parallel_map(
        _parse_or_error, table["cif"].tolist(), workers=workers, progress=progress, desc="read reference"
    )
    for mid, result in zip(table["material_id"], parsed):
        if isinstance(result, str):
            raise DataError(f"{path}: structure {mid}: {result}")
    return ReferenceSet(Path(path), tuple(table["material_id"]), tuple(parsed))


_SAMPLE_SUFFIX = re.compile(r"^(?P<id>.+)_(?P<k>\d+)$")


def group_csp_predictions(directory: str | Path, ids: Sequence[str]) -> dict[str, list[Path]]:
    """Prediction files per reference id: ``DIR/<id>.cif`` and ``DIR/<id>_<k>.cif`` (k = 0, 1, ...).

    Files whose stem names no reference are ignored. Ids without a file map to an empty list.

    Raises:
        InputError: the directory does not exist or holds no CIF file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"prediction directory {directory} does not exist")
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".cif" and p.is_file())
    if not paths:
        raise InputError(f"prediction directory {directory} holds no .cif files")
    groups: dict[str, list[tuple[int, Path]]] = {i: [] for i in ids}
    for path in paths:
        stem = path.stem
        if stem in groups:
            groups[stem].append((-1, path))
            continue
        m = _SAMPLE_SUFFIX.match(stem)
        if m and m["id"] in groups:
            groups[m["id"]].append((int(m["k"]), path))
    return {i: [p for _, p in sorted(g)] for i, g in groups.items()}
