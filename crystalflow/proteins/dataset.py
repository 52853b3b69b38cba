"""Protein backbone datasets over ``../shared/data/proteins``, parsed once and cached on disk.

Splits (see ``../shared/data/README.md``): ``train`` is every chain of ``db55_unbound`` (Docking
Benchmark 5.5, unbound structures); ``test`` is ``dips_test`` (200 single chains), held out as the
validation and reference set. Chains are cut into continuous segments at breaks and missing
backbone atoms (:func:`~crystalflow.proteins.io.split_segments`); segments shorter than
``min_length`` are dropped; longer ones are cut into fixed-length crops (windows of ``crop``
residues every ``stride`` residues, the last window flush with the segment's end).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from crystalflow.cache import cache_dir, file_sha256, read_torch_cache
from crystalflow.errors import DataError, InputError
from crystalflow.proteins.frames import frames_from_atoms
from crystalflow.proteins.io import find_structure_files, read_backbones, split_segments

#: split name -> folder under ``proteins/``
SPLITS = {"train": "db55_unbound", "test": "dips_test"}
#: bump when the processing changes, so stale caches are not reused
_CACHE_VERSION = "1"


def resolve_protein_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The ``proteins`` folder: ``data_dir`` (the data root or the folder itself), else
    ``$CRYSTALFLOW_DATA``.

    Raises:
        DataError: when neither is given or no ``proteins`` folder is found there.
    """
    from crystalflow.crystals.dataset import resolve_data_dir

    root = resolve_data_dir(data_dir)
    for cand in (root / "proteins", root):
        if all((cand / sub).is_dir() for sub in SPLITS.values()):
            return cand
    raise DataError(f"no protein data under {root} (expected proteins/{{{','.join(SPLITS.values())}}})")


@dataclass(frozen=True)
class BackboneBatch:
    """Padded backbones, centred on the mean CA of each chain (Angstrom).

    Attributes:
        atoms: ``[B, L, 4, 3]`` N, CA, C, O (padding and missing O: zeros).
        rots: ``[B, L, 3, 3]`` residue frames (padding: identity); trans: ``[B, L, 3]`` CA positions.
        mask: ``[B, L]`` bool, real residues; atom_mask: ``[B, L, 4]`` bool, atoms present.
    """

    atoms: torch.Tensor
    rots: torch.Tensor
    trans: torch.Tensor
    mask: torch.Tensor
    atom_mask: torch.Tensor

    @property
    def num_chains(self) -> int:
        return int(self.mask.shape[0])

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(-1)

    @property
    def device(self) -> torch.device:
        return self.atoms.device

    def to(self, device: torch.device | str) -> "BackboneBatch":
        """The same batch on ``device`` (the training loop moves batches with this)."""
        return BackboneBatch(*(getattr(self, f).to(device) for f in
                               ("atoms", "rots", "trans", "mask", "atom_mask")))


def collate_backbones(coords: Sequence[torch.Tensor], dtype: torch.dtype = torch.float32) -> BackboneBatch:
    """Pad a list of ``[L_i, 4, 3]`` backbones (N, CA, C complete; O may be NaN) into a batch."""
    if not coords:
        raise InputError("cannot collate an empty list of backbones")
    b, lmax = len(coords), max(int(c.shape[0]) for c in coords)
    atoms = torch.zeros(b, lmax, 4, 3, dtype=dtype)
    atom_mask = torch.zeros(b, lmax, 4, dtype=torch.bool)
    for i, c in enumerate(coords):
        ok = torch.isfinite(c).all(-1)
        atoms[i, : c.shape[0]] = torch.nan_to_num(c).to(dtype)
        atom_mask[i, : c.shape[0]] = ok
    mask = atom_mask[..., :3].all(-1)
    w = mask.to(dtype).unsqueeze(-1)
    mean_ca = (atoms[:, :, 1] * w).sum(1) / w.sum(1).clamp_min(1)  # [B, 3]
    atoms = (atoms - mean_ca[:, None, None, :]) * atom_mask.unsqueeze(-1)
    rots, trans = frames_from_atoms(atoms[:, :, 0], atoms[:, :, 1], atoms[:, :, 2])
    eye = torch.eye(3, dtype=dtype).expand_as(rots)
    rots = torch.where(mask[..., None, None], rots, eye)
    return BackboneBatch(atoms=atoms, rots=rots, trans=trans * mask.unsqueeze(-1), mask=mask,
                         atom_mask=atom_mask)


def crop_windows(length: int, crop: int, stride: int) -> list[tuple[int, int]]:
    """``(start, stop)`` windows of ``crop`` residues every ``stride``, the last flush with the end."""
    if length <= crop:
        return [(0, length)]
    starts = list(range(0, length - crop + 1, stride))
    if starts[-1] != length - crop:
        starts.append(length - crop)
    return [(s, s + crop) for s in starts]


@dataclass(frozen=True)
class BackboneDataset:
    """Continuous backbone segments and the crops drawn from them.

    Attributes:
        coords: ``[N, 4, 3]`` float32 atoms of all segments, concatenated.
        seg_lengths: ``[S]`` residues per segment; sources: S identifiers ``file:chain:first_res``.
        crops: ``[C, 3]`` int64 rows ``(segment, start, stop)``: the items of the dataset.
        files: number of files read; skipped: files that held no usable protein chain.
    """

    coords: torch.Tensor
    seg_lengths: torch.Tensor
    sources: tuple[str, ...]
    crops: torch.Tensor
    files: int = 0
    skipped: int = 0

    def __post_init__(self) -> None:
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), self.seg_lengths.cumsum(0)])
        object.__setattr__(self, "_offsets", offsets)

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    @property
    def num_segments(self) -> int:
        return int(self.seg_lengths.shape[0])

    def segment(self, i: int) -> torch.Tensor:
        """``[L, 4, 3]`` atoms of segment ``i``."""
        return self.coords[self._offsets[i]: self._offsets[i + 1]]

    def crop(self, i: int) -> torch.Tensor:
        """``[L, 4, 3]`` atoms of crop ``i``."""
        seg, start, stop = (int(v) for v in self.crops[i])
        return self.segment(seg)[start:stop]

    def batch(self, indices: Sequence[int]) -> BackboneBatch:
        """Collate crops ``indices`` into a padded, centred :class:`BackboneBatch`."""
        return collate_backbones([self.crop(int(i)) for i in indices])

    def with_crops(self, crop: int, stride: int | None = None, min_length: int = 1) -> "BackboneDataset":
        """The same segments cut into new windows (segments shorter than ``min_length`` dropped)."""
        rows = []
        for s, n in enumerate(self.seg_lengths.tolist()):
            if n >= min_length:
                rows += [(s, a, b) for a, b in crop_windows(n, crop, stride or crop)]
        crops = torch.tensor(rows, dtype=torch.long).reshape(-1, 3)
        return BackboneDataset(self.coords, self.seg_lengths, self.sources, crops, self.files, self.skipped)


def _cache_key(files: Sequence[Path], min_length: int) -> str:
    h = hashlib.sha256(f"v{_CACHE_VERSION}|min{min_length}".encode())
    for f in files:
        h.update(f"{f.name}|{file_sha256(f)}\n".encode())
    return h.hexdigest()[:20]


def read_segments(directory: str | os.PathLike, min_length: int = 40,
                  progress: bool = False) -> BackboneDataset:
    """Parse every structure file in ``directory`` into segments (one crop per whole segment).

    Unreadable files and files without a usable protein chain are counted in ``skipped``.
    The result is cached under :func:`cache_dir`, keyed by the files' names and contents.
    """
    files = find_structure_files(directory)
    if not files:
        raise DataError(f"no structure files in {directory}")
    cache = cache_dir() / f"proteins_{Path(directory).name}_{_cache_key(files, min_length)}.pt"
    cached = read_torch_cache(cache, lambda blob: BackboneDataset(
        blob["coords"], blob["seg_lengths"], tuple(blob["sources"]), blob["crops"], blob["files"],
        blob["skipped"]))
    if cached is not None:
        return cached
    coords, lengths, sources, skipped = [], [], [], 0
    for f in tqdm(files, disable=not progress, desc=f"parse {Path(directory).name}", unit="file"):
        try:
            chains = read_backbones(f)
        except InputError:
            skipped += 1
            continue
        segs = [s for ch in chains for s in split_segments(ch, min_length=min_length)]
        skipped += not segs
        for s in segs:
            coords.append(s.coords.float())
            lengths.append(len(s))
            sources.append(s.source)
    if not coords:
        raise DataError(f"no usable backbone segments in {directory}")
    seg_lengths = torch.tensor(lengths, dtype=torch.long)
    crops = torch.stack([torch.arange(len(lengths)), torch.zeros(len(lengths), dtype=torch.long),
                         seg_lengths], dim=1)
    ds = BackboneDataset(torch.cat(coords), seg_lengths, tuple(sources), crops, len(files), skipped)
    tmp = cache.with_name(f".{cache.name}.tmp{os.getpid()}")
    torch.save({"coords": ds.coords, "seg_lengths": ds.seg_lengths, "sources": list(ds.sources),
                "crops": ds.crops, "files": ds.files, "skipped": ds.skipped}, tmp)
    os.replace(tmp, cache)
    return ds


def load_protein_split(split: str, data_dir: str | os.PathLike | None = None, *, crop: int = 128,
                       stride: int | None = 64, min_length: int = 40,
                       progress: bool = False) -> BackboneDataset:
    """Segments of a split cut into training crops.

    Args:
        split: ``train`` (db55_unbound) or ``test`` (dips_test).
        data_dir: the data root (holding ``proteins/``) or the ``proteins`` folder itself.
        crop: crop length; stride: window step (default: ``crop``); min_length: shortest segment kept.
    """
    if split not in SPLITS:
        raise InputError(f"unknown protein split {split!r}; choose from {sorted(SPLITS)}")
    ds = read_segments(resolve_protein_dir(data_dir) / SPLITS[split], min_length, progress)
    return ds.with_crops(crop, stride, min_length)
