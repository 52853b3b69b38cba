"""Datasets of symmetrised crystals (conventional cell + Wyckoff template), cached on disk.

Every row of a CDVAE-layout CSV is parsed with pymatgen and analysed with spglib
(:func:`crystalflow.symmetry.analyze_structure`, symprec 0.1 as the field's benchmark), giving the
idealised conventional cell with its atoms in the Wyckoff layout's order, the lattice on the
crystal-family constraints and the template (space group, Wyckoff letter and element of every
orbit). The analysis costs ~35-50 ms per structure, so results are cached as tensors in the same
cache directory as :meth:`CrystalDataset.from_csv`, keyed by the source file's name and content,
the symprec and a version; the second load takes milliseconds.

``SymmetricDataset.batch(indices)`` returns a :class:`CrystalBatch` whose ``symmetry`` field holds
the collated :class:`SymmetryBatch` of those crystals.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import torch

from crystalflow.cache import read_torch_cache
from crystalflow.crystals.batch import CrystalBatch
from crystalflow.crystals.crystal import MAX_ATOMIC_NUM, structure_from_cif
from crystalflow.crystals.dataset import (
    DATASETS, HELD_OUT, SkippedRow, cache_file_for, read_cif_table, resolve_data_dir,
)
from crystalflow.errors import DataError, InputError
from crystalflow.symmetry import (
    DEFAULT_SYMPREC,
    CrystalSymmetry,
    SymmetrizedCrystal,
    WyckoffTemplate,
    analyze_structure,
    collate_symmetry,
    crystal_symmetry,
)

__all__ = ["SymmetricDataset", "load_symmetric_split", "analyze_cif", "symmetric_batch"]

_CACHE_VERSION = "2"  # 2: skipped rows and their reasons are kept


def analyze_cif(cif: str, symprec: float = DEFAULT_SYMPREC) -> SymmetrizedCrystal:
    """Parse a CIF string and analyse its symmetry (raises InputError on failure)."""
    return analyze_structure(structure_from_cif(cif), symprec=symprec)


def _analyze_row(arg: tuple[str, str, float]) -> tuple | str:
    """Worker: plain numpy / python results (no tensors across processes)."""
    cif, mid, symprec = arg
    try:
        s = analyze_cif(cif, symprec)
        t = s.template
        if max(t.atom_types) > MAX_ATOMIC_NUM:
            return f"atomic numbers above {MAX_ATOMIC_NUM} are not supported"
        return (t.space_group, "".join(t.letters), list(t.atom_types), s.lattice, s.frac,
                s.atom_types, mid)
    except InputError as exc:
        return str(exc)
    except Exception as exc:  # a bad row must never stop a whole dataset
        return f"{type(exc).__name__}: {exc}"


def symmetric_batch(frac: torch.Tensor, lattice: torch.Tensor, atom_types: torch.Tensor,
                    layouts: Sequence[CrystalSymmetry], material_ids=None,
                    dtype: torch.dtype = torch.float32) -> CrystalBatch:
    """A CrystalBatch with its ``symmetry`` field from per-crystal layouts."""
    num_atoms = torch.tensor([lay.num_atoms for lay in layouts], dtype=torch.long)
    return CrystalBatch(
        frac=frac.to(dtype), lattice=lattice.to(dtype), atom_types=atom_types,
        batch=torch.repeat_interleave(torch.arange(len(layouts)), num_atoms),
        num_atoms=num_atoms, material_ids=material_ids, symmetry=collate_symmetry(layouts),
    )


@dataclass(frozen=True)
class SymmetricDataset:
    """Symmetrised conventional cells as concatenated tensors plus their templates.

    Attributes:
        frac: ``[N, 3]`` float64 idealised coordinates (layout order); lattice: ``[B, 6]`` float64
        (family-constrained); atom_types: ``[N]`` int64; num_atoms: ``[B]`` int64;
        templates: B :class:`WyckoffTemplate`; material_ids: B ids; skipped: rows that failed;
        skipped_rows: those rows and their reasons (:class:`~crystalflow.crystals.dataset.SkippedRow`).
    """

    frac: torch.Tensor
    lattice: torch.Tensor
    atom_types: torch.Tensor
    num_atoms: torch.Tensor
    templates: tuple[WyckoffTemplate, ...]
    material_ids: tuple[str, ...]
    skipped: int = 0
    skipped_rows: tuple[SkippedRow, ...] = ()
    _layouts: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_offsets", torch.cat(
            [torch.zeros(1, dtype=torch.long), self.num_atoms.cumsum(0)]))

    def __len__(self) -> int:
        return int(self.num_atoms.shape[0])

    @property
    def space_groups(self) -> torch.Tensor:
        return torch.tensor([t.space_group for t in self.templates], dtype=torch.long)

    def layout(self, i: int) -> CrystalSymmetry:
        """Symmetry layout of row ``i`` (memoised per dataset, beyond ``crystal_symmetry``'s LRU)."""
        t = self.templates[i]
        lay = self._layouts.get(t)
        if lay is None:
            lay = crystal_symmetry(t)
            self._layouts[t] = lay
        return lay

    def rows(self, i: int) -> slice:
        return slice(int(self._offsets[i]), int(self._offsets[i + 1]))

    def batch(self, indices: Sequence[int], dtype: torch.dtype = torch.float32) -> CrystalBatch:
        """Collate rows into a CrystalBatch with a ``symmetry`` field."""
        idx = [int(i) for i in indices]
        sl = [self.rows(i) for i in idx]
        return symmetric_batch(
            torch.cat([self.frac[s] for s in sl]), self.lattice[idx],
            torch.cat([self.atom_types[s] for s in sl]), [self.layout(i) for i in idx],
            material_ids=tuple(self.material_ids[i] for i in idx), dtype=dtype,
        )

    def subset(self, indices: Sequence[int]) -> "SymmetricDataset":
        idx = [int(i) for i in indices]
        sl = [self.rows(i) for i in idx]
        return SymmetricDataset(
            frac=torch.cat([self.frac[s] for s in sl]), lattice=self.lattice[idx],
            atom_types=torch.cat([self.atom_types[s] for s in sl]), num_atoms=self.num_atoms[idx],
            templates=tuple(self.templates[i] for i in idx),
            material_ids=tuple(self.material_ids[i] for i in idx), skipped=0,
        )

    @classmethod
    def concat(cls, parts: Sequence["SymmetricDataset"]) -> "SymmetricDataset":
        """The rows of ``parts`` one after the other (their skipped rows are kept as data)."""
        if not parts:
            raise ValueError("concat needs at least one dataset")
        return cls(
            frac=torch.cat([p.frac for p in parts]), lattice=torch.cat([p.lattice for p in parts]),
            atom_types=torch.cat([p.atom_types for p in parts]),
            num_atoms=torch.cat([p.num_atoms for p in parts]),
            templates=tuple(t for p in parts for t in p.templates),
            material_ids=tuple(m for p in parts for m in p.material_ids),
            skipped=sum(p.skipped for p in parts),
            skipped_rows=tuple(r for p in parts for r in p.skipped_rows),
        )

    def structure(self, i: int):
        """Row ``i`` as a pymatgen Structure (conventional cell)."""
        from pymatgen.core import Lattice, Structure

        s = self.rows(i)
        return Structure(Lattice.from_parameters(*self.lattice[i].tolist()),
                         self.atom_types[s].tolist(), self.frac[s].numpy())

    # -- I/O ---------------------------------------------------------------------------------

    def _blob(self) -> dict:
        return {
            "frac": self.frac, "lattice": self.lattice, "atom_types": self.atom_types,
            "num_atoms": self.num_atoms, "skipped": self.skipped,
            "space_group": [t.space_group for t in self.templates],
            "letters": ["".join(t.letters) for t in self.templates],
            "orbit_types": [list(t.atom_types) for t in self.templates],
            "material_ids": list(self.material_ids),
        }

    @classmethod
    def _from_blob(cls, blob: dict) -> "SymmetricDataset":
        templates = tuple(
            WyckoffTemplate(int(sg), tuple(letters), tuple(types))
            for sg, letters, types in zip(blob["space_group"], blob["letters"], blob["orbit_types"])
        )
        return cls(frac=blob["frac"], lattice=blob["lattice"], atom_types=blob["atom_types"],
                   num_atoms=blob["num_atoms"], templates=templates,
                   material_ids=tuple(blob["material_ids"]), skipped=int(blob["skipped"]))

    @classmethod
    def from_csv(cls, path: str | os.PathLike, *, symprec: float = DEFAULT_SYMPREC,
                 workers: int = 1, progress: bool = True, use_cache: bool = True,
                 limit: int | None = None, warn: bool = True) -> "SymmetricDataset":
        """Analyse a CDVAE-layout CSV (gzip ok), using the on-disk cache when it is fresh.

        Rows spglib cannot analyse are skipped, listed in ``skipped_rows`` (also on cache hits)
        and counted in ``skipped``; with ``warn`` each also gives a warning.
        """
        path = Path(path)
        cache_file = cache_file_for(path, f"{symprec}|{limit}|sym{_CACHE_VERSION}", kind="sym")
        cached = read_torch_cache(cache_file, lambda blob: (cls._from_blob(blob), blob)) if use_cache else None
        if cached is not None:
            rows = tuple(SkippedRow(str(mid), str(reason)) for mid, reason in cached[1].get("problems", []))
            _warn_skipped(rows, warn)  # as the first analysis did
            return dataclasses.replace(cached[0], skipped_rows=rows)
        table = read_cif_table(path)
        if limit is not None:
            table = table.iloc[:limit]
        args = [(cif, mid, symprec) for mid, cif in zip(table["material_id"], table["cif"])]
        t0 = time.time()
        if workers > 1 and len(args) > 200:
            with get_context("spawn").Pool(workers) as pool:
                results = list(pool.imap(_analyze_row, args, chunksize=32))
        else:
            results = []
            for k, a in enumerate(args):
                results.append(_analyze_row(a))
                if progress and (k + 1) % 1000 == 0:
                    print(f"analysed {k + 1}/{len(args)} rows of {path.name} "
                          f"({time.time() - t0:.0f} s)", flush=True)
        ds, problems = cls._from_results([str(m) for m in table["material_id"]], results, path, warn)
        if use_cache:
            from crystalflow.checkpoint import torch_save_atomic

            torch_save_atomic(ds._blob() | {"problems": problems}, cache_file)
        return ds

    @classmethod
    def from_cif_folder(cls, folder: str | os.PathLike, *, symprec: float = DEFAULT_SYMPREC,
                        progress: bool = True, warn: bool = True) -> "SymmetricDataset":
        """Analyse every ``*.cif`` of a folder (ids: the file stems), as :meth:`from_csv` does a
        CSV's rows (not cached); files spglib cannot analyse are skipped, listed in
        ``skipped_rows`` and, with ``warn``, each gives a warning.

        Raises:
            InputError: the folder holds no ``.cif`` file.
            DataError: no file could be analysed.
        """
        from tqdm.auto import tqdm

        folder = Path(folder)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".cif")
        if not files:
            raise InputError(f"{folder} holds no .cif files")
        results = [_analyze_row((p.read_text(errors="replace"), p.stem, symprec))
                   for p in tqdm(files, disable=not progress, desc="analysing CIFs", unit="file")]
        return cls._from_results([p.stem for p in files], results, folder, warn)[0]

    @classmethod
    def _from_results(cls, ids: Sequence[str], results: Sequence, source: Path, warn: bool = True
                      ) -> tuple["SymmetricDataset", list[tuple[str, str]]]:
        """Collate :func:`_analyze_row` results (a reason string for a failed row, skipped and
        listed in ``skipped_rows``, with a warning if ``warn``) into a dataset; also returns the
        ``(id, reason)`` of the skipped rows."""
        fracs, lats, types, nums, templates, mids = [], [], [], [], [], []
        problems = []
        for mid, res in zip(ids, results):
            if isinstance(res, str):
                problems.append((str(mid), res))
                continue
            sg, letters, orbit_types, lattice, frac, atom_types, _ = res
            templates.append(WyckoffTemplate(int(sg), tuple(letters), tuple(orbit_types)))
            fracs.append(torch.as_tensor(frac, dtype=torch.float64))
            lats.append(torch.as_tensor(lattice, dtype=torch.float64))
            types.append(torch.as_tensor(atom_types, dtype=torch.long))
            nums.append(len(atom_types))
            mids.append(str(mid))
        skipped_rows = tuple(SkippedRow(mid, reason) for mid, reason in problems)
        _warn_skipped(skipped_rows, warn)
        if not templates:
            raise DataError(f"no row of {source} could be analysed")
        ds = cls(frac=torch.cat(fracs), lattice=torch.stack(lats), atom_types=torch.cat(types),
                 num_atoms=torch.tensor(nums, dtype=torch.long), templates=tuple(templates),
                 material_ids=tuple(mids), skipped=len(problems), skipped_rows=skipped_rows)
        return ds, problems


def load_symmetric_split(dataset: str, split: str, data_dir: str | os.PathLike | None = None, *,
                         progress: bool = True, symprec: float = DEFAULT_SYMPREC,
                         workers: int = 1) -> SymmetricDataset:
    """One split of a standard benchmark, symmetrised (same split rules as ``load_split``)."""
    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; choose from {sorted(DATASETS)}")
    if split not in ("train", "val", "test"):
        raise InputError(f"unknown split {split!r}; choose train, val or test")
    root = resolve_data_dir(data_dir) / dataset
    ds = SymmetricDataset.from_csv(root / DATASETS[dataset][split], symprec=symprec,
                                   progress=progress, workers=workers)
    if DATASETS[dataset]["train"] == DATASETS[dataset]["val"] and split != "test":
        outside, inside = split_by_csv_rows(ds, root / DATASETS[dataset][split], last=HELD_OUT)
        ds = inside if split == "val" else outside
    return ds


def split_by_csv_rows(ds: SymmetricDataset, csv: str | os.PathLike, *, first: int | None = None,
                      last: int | None = None) -> tuple[SymmetricDataset, SymmetricDataset]:
    """``(rows outside, rows inside)`` the ``first`` or ``last`` rows of the CSV ``ds`` was read
    from. Rows are held out by position in the CSV; analysis may skip rows, so they are matched by
    material id (skipped rows are dropped from both parts, as :meth:`SymmetricDataset.subset` does)."""
    if (first is None) == (last is None):
        raise ValueError("give first or last")
    ids = list(read_cif_table(Path(csv))["material_id"])
    held = set(ids[:first] if first is not None else ids[len(ids) - last:])
    inside = [i for i, m in enumerate(ds.material_ids) if m in held]
    outside = [i for i, m in enumerate(ds.material_ids) if m not in held]
    return ds.subset(outside), ds.subset(inside)


def _warn_skipped(rows: Sequence[SkippedRow], warn: bool) -> None:
    """One ``skipping row ID: REASON`` warning per skipped row when ``warn``."""
    if warn:
        for r in rows:
            warnings.warn(f"skipping row {r.row}: {r.reason}")
