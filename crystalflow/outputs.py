"""Output folders the commands write into: checked before any work, safe file names, a manifest.

One place for "where do a run's files go":

* :func:`prepare_output_dir` runs *before* any sampling, training or relaxation: it creates the
  folder, proves it writable (a temporary file is created and removed) and refuses a non-empty
  folder unless ``overwrite`` is given, in which case it removes the files the previous run wrote
  (listed in the folder's manifest :data:`MANIFEST`; without a manifest, the ``*.cif``, ``*.pdb``
  and ``summary.csv`` directly in the folder). Other files and subfolders are never touched.
* :func:`safe_stems` turns user-supplied ids (a CSV's ``material_id``) into file stems that cannot
  leave the folder and never collide.
* :func:`record_outputs` appends written file names to the manifest, so the next ``--overwrite``
  clears exactly them.
* :func:`prepare_output_file` is the same check for a single output file (a CSV, a plot): an
  existing file is refused unless ``overwrite`` is given; :func:`check_run_dir` for a training
  run's folder (``--resume`` continues a used one, ``--overwrite`` starts it again).
* :func:`write_checked` writes structures with their check (:func:`crystalflow.checks.check_structure`)
  and returns the summary rows (:data:`CHECKED_COLUMNS`); :func:`write_ranked` does the same for
  the ranked candidates of the composition pipeline; :func:`write_summary_csv` writes a run's
  ``summary.csv`` and :func:`warn_failed_checks` counts the failures on stderr.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from crystalflow.errors import InputError

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from crystalflow.checks import StructureCheck

__all__ = ["CHECKED_COLUMNS", "MANIFEST", "RUN_FILES", "SUMMARY_COLUMNS", "check_run_dir",
           "output_name", "prepare_output_dir", "prepare_output_file", "record_outputs",
           "safe_stems", "warn_failed_checks", "write_checked", "write_ranked", "write_samples",
           "write_summary_csv"]

#: file in an output folder listing (one name a line) the files crystalflow wrote there
MANIFEST = ".crystalflow-files"
#: what a run writes, removed by ``overwrite`` from a folder that has no manifest
_DEFAULT_OUTPUTS = ("*.cif", "*.pdb", "summary.csv")
#: characters kept in a file stem; anything else becomes ``_``
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")


def prepare_output_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Create and check an output folder before any work is done.

    Args:
        path: the folder (created with its parents when missing).
        overwrite: allow a non-empty folder; the files the previous run wrote are removed.

    Returns:
        The folder as a :class:`~pathlib.Path`.

    Raises:
        InputError: ``path`` is a file or lies under a file, cannot be created or written, or is
            not empty while ``overwrite`` is False.
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} is a file; give a folder path with --out")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise InputError(f"output folder {out} lies under the file {blocker}; give another --out")
    _create_writable(out, "output folder", "--out")
    if any(out.iterdir()):
        if not overwrite:
            raise InputError(f"output folder {out} is not empty; give an empty --out or add "
                             "--overwrite to replace the previous run's files")
        _remove_previous(out)
    return out


def prepare_output_file(path: str | os.PathLike, *, overwrite: bool = False,
                        option: str = "--out") -> Path:
    """Check an output file's place before any work is done (the file itself is not created).

    Args:
        path: the file; its folder is created when missing.
        overwrite: allow replacing an existing file (only that file is ever replaced).
        option: the command-line option named in the messages.

    Raises:
        InputError: ``path`` is a folder, lies under a file, its folder is not writable, or it
            exists while ``overwrite`` is False.
    """
    out = Path(path).expanduser()
    if out.is_dir():
        raise InputError(f"{option} {out} is a folder; give a file name")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise InputError(f"{option} {out} lies under the file {blocker}; give another {option}")
    _create_writable(out.parent, "folder", option)
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; give another {option} or add --overwrite to replace it")
    return out


#: what a training run writes into its folder (``--overwrite`` replaces exactly these)
RUN_FILES = ("last.pt", "best.pt", "log.csv")


def check_run_dir(path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Check a training run's folder before the data is read (the run creates it later, so a
    refused request leaves nothing behind).

    The folder may not be a file or lie under one, and it (or the nearest existing parent) must be
    writable. Without ``resume`` it may not hold a previous run (any of :data:`RUN_FILES`; other
    files such as a captured ``train.out`` are fine); ``overwrite`` allows that and removes the
    previous run's :data:`RUN_FILES` (other files are kept).

    Raises:
        InputError: one line naming the folder and the way out (``--resume`` / ``--overwrite``).
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} is a file; give a folder path with --out")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"output folder {out} lies under the file {existing}; give another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"output folder {out} is not writable ({existing}); give a writable --out")
    previous = [name for name in RUN_FILES if (out / name).exists()]
    if resume or not previous:
        return out
    if not overwrite:
        raise InputError(f"output folder {out} holds a previous run ({', '.join(previous)}); "
                         "continue it with --resume, give a new --out, or add --overwrite to "
                         "start again (replacing those files)")
    for name in previous:
        (out / name).unlink(missing_ok=True)
    return out


def _create_writable(folder: Path, what: str, option: str) -> None:
    """Create ``folder`` (with parents) and prove it writable with a temporary probe file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".crystalflow-probe-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise InputError(f"{what} {folder} is not writable ({exc.strerror or exc}); "
                         f"give a writable {option}") from None


def _previous_files(out: Path) -> list[Path]:
    """Files of the previous run: the manifest's names (only plain names directly in ``out``),
    else the default output patterns."""
    manifest = out / MANIFEST
    if manifest.is_file():
        names = [n.strip() for n in manifest.read_text().splitlines()]
        return [out / n for n in names if n and n == Path(n).name and n not in (".", "..")]
    return [p for pattern in _DEFAULT_OUTPUTS for p in out.glob(pattern)]


def _remove_previous(out: Path) -> None:
    for file in _previous_files(out):
        if file.is_file() or file.is_symlink():
            file.unlink()
    (out / MANIFEST).unlink(missing_ok=True)


def _safe_stem(identifier: str) -> str:
    stem = _UNSAFE.sub("_", str(identifier))  # separators, control characters, spaces...
    stem = stem.replace("..", "__").lstrip(".")
    return stem or "row"


def safe_stems(ids: Sequence[str]) -> list[str]:
    """File stems for ids: never leave the folder, never collide.

    Path separators, ``..``, leading dots, control characters and every character outside
    ``[A-Za-z0-9._+=-]`` become ``_``; an empty result becomes ``row``. Repeated stems get the
    suffixes ``__2``, ``__3``... in order of appearance, and one warning says how many ids were
    duplicated.
    """
    stems = [_safe_stem(i) for i in ids]
    taken = set(stems)
    seen: dict[str, int] = {}
    out: list[str] = []
    duplicated = 0
    for stem in stems:
        count = seen.get(stem, 0) + 1
        seen[stem] = count
        if count == 1:
            out.append(stem)
            continue
        duplicated += 1
        k = count
        while f"{stem}__{k}" in taken:
            k += 1
        seen[stem] = k
        new = f"{stem}__{k}"
        taken.add(new)
        out.append(new)
    if duplicated:
        warnings.warn(f"{duplicated} id(s) repeat an earlier id (after making them safe file names); "
                      "their files get the suffixes __2, __3, ...", stacklevel=2)
    return out


def record_outputs(path: str | os.PathLike, names: Iterable[str]) -> None:
    """Add written file names (relative to the folder) to its manifest (rewritten atomically)."""
    from crystalflow.crystals.crystal import write_text_atomic

    manifest = Path(path) / MANIFEST
    known = manifest.read_text().splitlines() if manifest.is_file() else []
    listed = set(known)
    new = [n for n in (str(x) for x in names) if n not in listed and not listed.add(n)]
    if new:
        write_text_atomic(manifest, "".join(f"{n}\n" for n in known + new))


def write_summary_csv(path: str | os.PathLike, rows: Sequence[dict],
                      columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` as ``summary.csv`` in the folder ``path`` (atomically; columns: ``columns``
    or the first row's keys) and record it in the manifest."""
    import csv
    import io

    from crystalflow.crystals.crystal import write_text_atomic

    out = Path(path) / "summary.csv"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns or (rows[0] if rows else [])))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out, buf.getvalue())
    record_outputs(path, ["summary.csv"])
    return out


def warn_failed_checks(rows: Sequence[dict], out_dir: str | os.PathLike) -> int:
    """One line on stderr counting the summary rows whose check failed (``ok`` false); returns
    that count (0: nothing printed)."""
    import sys

    failed = sum(1 for r in rows if not r["ok"])
    if failed:
        print(f"warning: {failed} of {len(rows)} structures failed the check (ok=False, see "
              f"'problem' in {Path(out_dir) / 'summary.csv'})", file=sys.stderr)
    return failed


# -- checked structures ------------------------------------------------------------------------

#: columns of the flow predictions' summary.csv (``predict --p1 / --space-group / --use-space-group``)
CHECKED_COLUMNS = ("id", "rank", "file", "formula", "num_atoms", "space_group",
                   "requested_space_group", "min_distance", "volume", "structure_valid",
                   "composition_valid", "ok", "problem")


def output_name(stem: str, rank: int, num_outputs: int) -> str:
    """``<stem>.cif`` when one structure per id is written, else ``<stem>_<rank>.cif`` (never
    both, so an evaluation never counts a structure twice)."""
    return f"{stem}.cif" if num_outputs == 1 else f"{stem}_{rank}.cif"


def _structure_columns(stem: str, rank: int, name: str, structure: Structure,
                       check: StructureCheck) -> dict:
    """The summary columns every written structure has: where it is and how it was checked."""
    return {"id": stem, "rank": rank, "file": name,
            "formula": structure.composition.formula.replace(" ", ""),
            "num_atoms": len(structure)} | check.to_row() | {
            "min_distance": round(check.min_distance, 4), "volume": round(check.volume, 4)}


def write_checked(out_dir: str | os.PathLike,
                  outputs: Iterable[tuple[str, int, Structure, int | None]],
                  num_outputs: int) -> list[dict]:
    """Check and write structures; return their summary rows (:data:`CHECKED_COLUMNS`).

    Args:
        out_dir: a folder prepared by :func:`prepare_output_dir`.
        outputs: ``(stem, rank, structure, requested space group or None)`` per structure; the
            stems must already be safe (:func:`safe_stems`).
        num_outputs: structures per stem (file names: :func:`output_name`).

    Each file is written atomically and recorded in the folder's manifest; a structure failing
    its check (:func:`crystalflow.checks.check_structure`) is written and flagged (``ok``,
    ``problem``), never dropped.
    """
    from crystalflow.checks import check_structure
    from crystalflow.crystals.crystal import write_text_atomic

    out = Path(out_dir)
    rows, names = [], []
    for stem, rank, structure, requested in outputs:
        name = output_name(stem, rank, num_outputs)
        check = check_structure(structure, requested)
        write_text_atomic(out / name, structure.to(fmt="cif"))
        names.append(name)
        rows.append(_structure_columns(stem, rank, name, structure, check))
    record_outputs(out, names)
    return rows


def write_samples(out: Path, ids: Sequence[str], num_samples: int,
                  structures: Callable[[int], Iterable[Structure]],
                  requested: Sequence[int | None]) -> list[dict]:
    """Write sample ``k`` of every id (``structures(k)``, one per id) with its check against the
    id's requested space group, then ``summary.csv``; returns the summary rows (by id, then
    sample). Ids become safe, unique file stems (:func:`safe_stems`)."""
    stems = safe_stems(ids)
    rows: list[dict] = []
    for k in range(num_samples):
        rows += write_checked(out, ((stem, k, s, g) for stem, s, g in
                                    zip(stems, structures(k), requested)), num_samples)
    order = {stem: i for i, stem in enumerate(stems)}
    rows.sort(key=lambda r: (order[r["id"]], r["rank"]))
    write_summary_csv(out, rows, CHECKED_COLUMNS)
    return rows


# -- ranked predictions of crystalflow.crystal_tasks.pipeline -----------------------------------------------

#: columns of ``predict``'s summary.csv, one row per written structure
SUMMARY_COLUMNS = ("id", "rank", "file", "formula", "num_atoms", "source", "template",
                   "template_id", "distance", "energy_per_atom", "relaxed_energy_per_atom",
                   "space_group", "min_distance", "volume", "structure_valid", "composition_valid",
                   "ok", "problem")


def write_ranked(out_dir: str | os.PathLike, stems: Sequence[str],
                 ranked: Sequence[Sequence], num_outputs: int) -> list[dict]:
    """Write each composition's best :class:`~crystalflow.crystal_tasks.pipeline.Candidate` structures and
    return their summary rows (:data:`SUMMARY_COLUMNS`; write them with
    :func:`write_summary_csv`).

    File names: :func:`output_name`. Files are written atomically and
    recorded in the folder's manifest (:func:`record_outputs`); every structure carries its
    output check (:func:`crystalflow.checks.check_structure`).
    """
    from crystalflow.checks import check_structure
    from crystalflow.crystals.crystal import write_text_atomic

    out = Path(out_dir)
    rows, names = [], []
    for stem, cands in zip(stems, ranked):
        for k, c in enumerate(cands[:num_outputs]):
            name = output_name(stem, k, num_outputs)
            write_text_atomic(out / name, c.structure.to(fmt="cif"))
            names.append(name)
            row = _structure_columns(stem, k, name, c.structure, c.check or check_structure(c.structure))
            rows.append({key: row[key] for key in SUMMARY_COLUMNS if key in row} | {
                "source": c.source, "template": c.template, "template_id": c.template_id,
                "distance": _round(c.distance), "energy_per_atom": _round(c.energy),
                "relaxed_energy_per_atom": _round(c.relaxed_energy)})
    record_outputs(out, names)
    return rows


def _round(x: float | None, digits: int = 5) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)
