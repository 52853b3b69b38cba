"""Datasets in the CDVAE/DiffCSP CSV layout, parsed once and cached as tensors on disk.

A CSV (optionally gzip-compressed) has a ``cif`` column with one structure per row and usually a
``material_id`` column. A user's own data can also be a folder of ``.cif`` files
(:meth:`CrystalDataset.from_cif_folder`, :func:`load_user_data`), split into train / validation
with a fixed seed by :func:`split_dataset`. Rows are parsed with pymatgen, Niggli-reduced and canonicalised
(:meth:`Crystal.from_structure`), then stored as concatenated tensors in a cache file keyed by the
source file's name and content (SHA-256) and the settings, so a second load takes milliseconds.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from crystalflow.cache import cache_dir, file_sha256, read_torch_cache
from crystalflow.crystals.batch import CrystalBatch
from crystalflow.crystals.crystal import Crystal
from crystalflow.errors import DataError, InputError

#: the standard benchmarks and their files; Perov-5 and Carbon-24 have no train split here, so
#: ``train`` is ``val.csv`` minus a held-out selection slice (see ``../shared/data/README.md``)
DATASETS: dict[str, dict[str, str]] = {
    "mp_20": {"train": "train.csv.gz", "val": "val.csv.gz", "test": "test.csv.gz"},
    "perov_5": {"train": "val.csv.gz", "val": "val.csv.gz", "test": "test.csv.gz"},
    "carbon_24": {"train": "val.csv.gz", "val": "val.csv.gz", "test": "test.csv.gz"},
}
#: size of the held-out selection slice carved out of ``val.csv`` where there is no train split
HELD_OUT = 400
#: where a benchmark has a train split, the first rows of ``val.csv`` that stay held out for
#: selection when a run also trains on the rest of ``val.csv`` (``CrystalTrainOptions.train_on_val``;
#: the composition pipeline's selection uses the same first 1,000 rows)
SELECTION_ROWS = 1000
#: bump when the processing changes, so stale caches are not reused
_CACHE_VERSION = "1"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The benchmark data directory: the argument, else ``$CRYSTALFLOW_DATA``.

    Raises:
        DataError: when neither is given or the directory does not exist.
    """
    chosen = data_dir if data_dir is not None else os.environ.get("CRYSTALFLOW_DATA")
    if not chosen:
        raise DataError("no data directory: give data_dir or set CRYSTALFLOW_DATA", parameters=("data_dir",))
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise DataError(f"data directory does not exist: {path}")
    return path


def cache_file_for(path: Path, tag: str, kind: str = "") -> Path:
    """Cache file of a processed ``path``: keyed by its file name, the SHA-256 of its content and
    ``tag`` (the processing settings), so a changed source or setting never reuses it, while a copy
    or a re-stamped file (same bytes, new modification time) still does.

    Raises:
        DataError: ``path`` is not a file.
    """
    if not path.is_file():
        raise DataError(f"no such dataset file: {path}")
    key = hashlib.sha1(f"{path.name}|{file_sha256(path)}|{tag}".encode()).hexdigest()[:16]
    return cache_dir() / f"{path.name.split('.')[0]}-{kind + '-' if kind else ''}{key}.pt"


@dataclass(frozen=True)
class SkippedRow:
    """A row (or file) of the input that was left out, and why: returned as data, so the caller
    decides how to report it (the command line prints ``warning: skipping row ID: REASON``).

    Attributes:
        row: the row's ``material_id`` (or file name); reason: one line.
    """

    row: str
    reason: str


@dataclass(frozen=True)
class CrystalDataset:
    """Crystals stored as concatenated tensors (indexable, collatable).

    Attributes:
        frac: ``[N, 3]`` float64; lattice: ``[B, 6]`` float64; atom_types: ``[N]`` int64;
        num_atoms: ``[B]`` int64; material_ids: B identifiers; skipped: rows that failed to parse;
        skipped_rows: those rows and their reasons (:class:`SkippedRow`; the ``material_id`` of a
        CSV row, the file name of a CIF file), also on cache hits; a subset has none.
    """

    frac: torch.Tensor
    lattice: torch.Tensor
    atom_types: torch.Tensor
    num_atoms: torch.Tensor
    material_ids: tuple[str, ...]
    skipped: int = 0
    skipped_rows: tuple[SkippedRow, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_offsets", torch.cat([torch.zeros(1, dtype=torch.long), self.num_atoms.cumsum(0)]))

    def __len__(self) -> int:
        return int(self.num_atoms.shape[0])

    def __getitem__(self, i: int) -> Crystal:
        lo, hi = int(self._offsets[i]), int(self._offsets[i + 1])
        return Crystal(self.frac[lo:hi], self.lattice[i], self.atom_types[lo:hi], self.material_ids[i])

    def subset(self, indices: Sequence[int]) -> "CrystalDataset":
        """A dataset of the given rows, in that order."""
        return CrystalDataset.from_crystals([self[int(i)] for i in indices], skipped=0)

    def batch(self, indices: Sequence[int], dtype: torch.dtype = torch.float32) -> CrystalBatch:
        """Collate the given rows into a :class:`CrystalBatch` (the same batch as
        ``collate([self[i] for i in indices])``, gathered with tensor indexing, no Python loop)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if idx.numel() == 0:
            raise ValueError("cannot collate an empty list of crystals")
        counts = self.num_atoms[idx]
        crystal = torch.repeat_interleave(torch.arange(idx.numel()), counts)
        first = torch.cumsum(counts, 0) - counts
        atom = self._offsets[idx][crystal] + torch.arange(crystal.numel()) - first[crystal]
        return CrystalBatch(
            frac=self.frac[atom].to(dtype), lattice=self.lattice[idx].to(dtype),
            atom_types=self.atom_types[atom], batch=crystal, num_atoms=counts,
            material_ids=tuple(self.material_ids[i] for i in idx.tolist()),
        )

    @classmethod
    def from_crystals(cls, crystals: Sequence[Crystal], skipped: int = 0,
                      skipped_rows: Sequence[SkippedRow] = ()) -> "CrystalDataset":
        if not crystals:
            raise DataError("no valid crystals")
        return cls(
            frac=torch.cat([c.frac for c in crystals]).double(),
            lattice=torch.stack([c.lattice for c in crystals]).double(),
            atom_types=torch.cat([c.atom_types for c in crystals]),
            num_atoms=torch.tensor([c.num_atoms for c in crystals], dtype=torch.long),
            material_ids=tuple(str(c.material_id) for c in crystals),
            skipped=skipped,
            skipped_rows=tuple(skipped_rows),
        )

    @classmethod
    def from_csv(
        cls, path: str | os.PathLike, *, niggli: bool = True, workers: int = 2, progress: bool = True,
        use_cache: bool = True, warn: bool = True,
    ) -> "CrystalDataset":
        """Parse a CDVAE-layout CSV (gzip ok), using the on-disk cache when it is fresh.

        Malformed rows are skipped, listed in ``skipped_rows`` (also on cache hits) and counted in
        ``skipped``; with ``warn`` each also gives a warning (``skipping row ID: REASON``).
        """
        path = Path(path)
        cache_file = cache_file_for(path, f"{niggli}|{_CACHE_VERSION}")
        cached = _load_cached(cls, cache_file) if use_cache else None
        if cached is not None:
            _warn_skipped(cached.skipped_rows, "row ", warn)  # as the first parse did
            return cached
        rows = read_cif_table(path)
        args = [(cif, mid, niggli) for mid, cif in zip(rows["material_id"], rows["cif"])]
        ds = _parse_rows(cls, args, list(rows["material_id"]), "row ", workers, progress,
                         f"parsing {path.name}", warn)
        if use_cache:
            _save_cached(ds, cache_file)
        return ds

    @classmethod
    def from_cif_folder(
        cls, folder: str | os.PathLike, *, niggli: bool = True, workers: int = 2,
        progress: bool = True, use_cache: bool = True, warn: bool = True,
    ) -> "CrystalDataset":
        """Parse every ``*.cif`` file of a folder (not recursive); ids are the file names' stems.

        Cached like :meth:`from_csv`, keyed by the names, sizes and modification times of the
        files. A file that cannot be parsed is skipped and listed in ``skipped_rows`` by its file
        name (also on cache hits); with ``warn`` it also gives a warning naming it.

        Raises:
            DataError: the folder does not exist, holds no ``.cif`` file, or none can be parsed.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"no such folder: {folder}")
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() == ".cif")
        if not files:
            raise DataError(f"no .cif files in {folder}")
        listing = "|".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
        key = hashlib.sha1(f"{folder.resolve()}|{listing}|{niggli}|{_CACHE_VERSION}".encode()).hexdigest()[:16]
        cache_file = cache_dir() / f"cifdir-{folder.name}-{key}.pt"
        cached = _load_cached(cls, cache_file) if use_cache else None
        if cached is not None:
            _warn_skipped(cached.skipped_rows, "", warn)
            return cached
        args = []
        for f in files:
            try:
                text = f.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                text = f"unreadable file: {exc}"
            args.append((text, f.stem, niggli))
        ds = _parse_rows(cls, args, [f.name for f in files], "", workers, progress,
                         f"parsing {folder.name}/", warn)
        if use_cache:
            _save_cached(ds, cache_file)
        return ds


def read_cif_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV with a ``cif`` column; add ``material_id`` from the row index if missing."""
    try:
        frame = pd.read_csv(path)
    except Exception as exc:
        raise DataError(f"cannot read CSV {path}: {exc}") from exc
    if "cif" not in frame.columns:
        raise DataError(f"{path} has no 'cif' column")
    if "material_id" not in frame.columns:
        frame["material_id"] = [f"row{i}" for i in range(len(frame))]
    frame["material_id"] = frame["material_id"].astype(str)
    return frame


def _parse_row(arg: tuple[str, str, bool]) -> tuple | str:
    """Parse one row in a worker; return plain numpy arrays (torch tensors would be passed
    between processes as file descriptors, which runs out of descriptors on large files)."""
    cif, mid, niggli = arg
    try:
        c = Crystal.from_cif_string(cif, niggli=niggli, material_id=mid)
        return c.frac.numpy(), c.lattice.numpy(), c.atom_types.numpy(), mid
    except InputError as exc:
        return str(exc)
    except Exception as exc:  # a bad row must never stop a whole dataset
        return f"{type(exc).__name__}: {exc}"


def _parse_rows(cls, args: list[tuple[str, str, bool]], names: list[str], kind: str, workers: int,
                progress: bool, desc: str, warn: bool = True) -> CrystalDataset:
    """Parse ``(cif, id, niggli)`` rows (in worker processes when many); failures are skipped,
    listed in ``skipped_rows`` under their ``names`` (with a warning ``skipping {kind}NAME: ...``
    if ``warn``) and counted in ``skipped``.

    Raises:
        DataError: when no row can be parsed (the message shows the first failure).
    """
    bar = dict(total=len(args), desc=desc, disable=not progress, unit="cif")
    if workers > 1 and len(args) > 200:
        with get_context("spawn").Pool(workers) as pool:
            results = list(tqdm(pool.imap(_parse_row, args, chunksize=64), **bar))
    else:
        results = [_parse_row(a) for a in tqdm(args, **bar)]
    crystals: list[Crystal] = []
    failures: list[SkippedRow] = []
    for (_, mid, _), name, res in zip(args, names, results):
        if isinstance(res, str):
            failures.append(SkippedRow(str(name), res))
        else:
            frac, lattice, types, _ = res
            crystals.append(Crystal(torch.from_numpy(frac), torch.from_numpy(lattice),
                                    torch.from_numpy(types), mid))
    _warn_skipped(failures, kind, warn)
    if not crystals:
        first = failures[0]
        raise DataError(f"none of the {len(args)} structures could be parsed; first: "
                        f"{kind}{first.row}: {first.reason}")
    return cls.from_crystals(crystals, skipped=len(failures), skipped_rows=failures)


def _warn_skipped(rows: Sequence[SkippedRow], kind: str, warn: bool) -> None:
    """One ``skipping {kind}ID: REASON`` warning per skipped row when ``warn``."""
    if warn:
        for r in rows:
            warnings.warn(f"skipping {kind}{r.row}: {r.reason}")


def _load_cached(cls, cache_file: Path) -> CrystalDataset | None:
    """The cached dataset; ``None`` when absent or corrupt (then removed with a warning), or when
    it was written before skipped rows were kept and has some (it is parsed again)."""

    def build(blob: dict) -> CrystalDataset | None:
        rows = blob.pop("skipped_rows", None)
        if rows is None and int(blob.get("skipped", 0)):
            return None
        skipped_rows = tuple(SkippedRow(str(row), str(reason)) for row, reason in rows or ())
        return cls(**{k: (tuple(v) if k == "material_ids" else v) for k, v in blob.items()},
                   skipped_rows=skipped_rows)

    return read_torch_cache(cache_file, build)


def _save_cached(ds: CrystalDataset, cache_file: Path) -> None:
    """Write the dataset's tensors atomically (temporary file, then ``os.replace``)."""
    blob = {k: getattr(ds, k) for k in ("frac", "lattice", "atom_types", "num_atoms", "skipped")}
    blob["material_ids"] = list(ds.material_ids)
    blob["skipped_rows"] = [[r.row, r.reason] for r in ds.skipped_rows]
    tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
    torch.save(blob, tmp)
    os.replace(tmp, cache_file)


def load_user_data(path: str | os.PathLike, *, progress: bool = True, warn: bool = True) -> CrystalDataset:
    """A user's crystals: a folder of ``.cif`` files or a CSV (gzip ok) with a ``cif`` column.
    Unreadable rows / files are left out and listed in ``skipped_rows`` (with a warning each if
    ``warn``).

    Raises:
        DataError: the path does not exist, is neither, or holds no readable structure.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        return CrystalDataset.from_cif_folder(p, progress=progress, warn=warn)
    if not p.exists():
        raise DataError(f"no such file or folder: {p}")
    if p.name.lower().endswith((".csv", ".csv.gz")):
        return CrystalDataset.from_csv(p, progress=progress, warn=warn)
    raise DataError(f"{p} is neither a folder of .cif files nor a .csv / .csv.gz table")


def split_dataset(ds: CrystalDataset, val_fraction: float = 0.1, test_fraction: float = 0.0,
                  seed: int = 0) -> dict[str, CrystalDataset]:
    """Split rows at random (a permutation seeded by ``seed``) into train / val (/ test).

    Each part keeps the original row order; ``val`` and ``test`` get ``round(n * fraction)``
    rows, at least one when the fraction is positive. The same data and seed always give the
    same split.

    Raises:
        DataError: too few crystals to leave at least one for training.
    """
    n = len(ds)
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError("validation and test fractions must be in [0, 1) and sum to less than 1")
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise DataError(f"{n} crystals are too few to split off {n_val} for validation and "
                        f"{n_test} for test")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    parts = {"val": perm[:n_val], "test": perm[n_val:n_val + n_test], "train": perm[n_val + n_test:]}
    return {k: ds.subset(sorted(v)) for k, v in parts.items() if v}


def load_split(
    dataset: str, split: str, data_dir: str | os.PathLike | None = None, *, progress: bool = True
) -> CrystalDataset:
    """One split of a standard benchmark.

    Args:
        dataset: ``mp_20``, ``perov_5`` or ``carbon_24``.
        split: ``train``, ``val`` or ``test``. Where the benchmark has no train split here,
            ``train`` is ``val.csv`` without its last :data:`HELD_OUT` rows and ``val`` is those rows.
        data_dir: the benchmark root (holding ``mp_20/`` ...), else ``$CRYSTALFLOW_DATA``.
    """
    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; choose from {sorted(DATASETS)}")
    if split not in ("train", "val", "test"):
        raise InputError(f"unknown split {split!r}; choose train, val or test")
    root = resolve_data_dir(data_dir) / dataset
    ds = CrystalDataset.from_csv(root / DATASETS[dataset][split], progress=progress)
    if DATASETS[dataset]["train"] == DATASETS[dataset]["val"] and split != "test":
        n = len(ds)
        idx = range(0, n - HELD_OUT) if split == "train" else range(n - HELD_OUT, n)
        ds = ds.subset(list(idx))
    return ds
