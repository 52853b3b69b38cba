"""Reading protein backbones from PDB / mmCIF files (optionally gzip-compressed) and writing them.

Parsing is biotite's: the first model, the first alternate location, amino-acid residues only
(``filter_amino_acids``, so modified residues such as MSE count). Each chain becomes one
:class:`Backbone` with the N, CA, C, O positions of every residue (NaN where an atom is missing);
:func:`split_segments` then cuts chains at breaks into continuous segments.
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from crystalflow.errors import DataError, InputError
from crystalflow.proteins.frames import BACKBONE_ATOMS

#: a peptide bond longer than this (C_i to N_{i+1}, Angstrom) is a chain break
MAX_PEPTIDE_BOND = 2.0
#: file suffixes understood by :func:`read_backbones` (each also with ``.gz``)
SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")


@dataclass(frozen=True)
class Backbone:
    """The backbone of one chain or continuous segment.

    Attributes:
        coords: ``[L, 4, 3]`` float64 positions of N, CA, C, O (Angstrom; NaN where missing).
        sequence: one-letter codes, ``X`` for unknown residues (length L).
        res_ids: ``[L]`` int64 author residue numbers.
        chain_id: the chain identifier; source: the file (and segment) it came from.
    """

    coords: torch.Tensor
    sequence: str
    res_ids: torch.Tensor
    chain_id: str
    source: str

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    @property
    def ca(self) -> torch.Tensor:
        """``[L, 3]`` CA positions."""
        return self.coords[:, 1]

    def complete(self) -> torch.Tensor:
        """``[L]`` bool: residues with all of N, CA and C present."""
        return torch.isfinite(self.coords[:, :3]).all(-1).all(-1)


def _split_suffix(path: Path) -> tuple[str, bool]:
    """``(format suffix, gzipped)`` of a structure file name."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    fmt = suffixes[-2] if gz and len(suffixes) >= 2 else (suffixes[-1] if suffixes and not gz else "")
    return fmt, gz


def read_atoms(path: str | os.PathLike):
    """Parse a structure file into a biotite ``AtomArray`` (first model).

    Raises:
        InputError: unknown format, missing or unreadable file.
    """
    from biotite.structure.io import pdb, pdbx

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such structure file: {path}")
    fmt, gz = _split_suffix(path)
    if fmt not in SUFFIXES:
        raise InputError(f"{path.name}: unknown structure format (expected one of "
                         f"{', '.join(SUFFIXES)}, optionally .gz)")
    try:
        text = gzip.open(path, "rt").read() if gz else path.read_text()
        handle = io.StringIO(text)
        with warnings.catch_warnings():  # "elements were guessed from atom name" etc.
            warnings.simplefilter("ignore", UserWarning)
            if fmt in (".pdb", ".ent"):
                return pdb.PDBFile.read(handle).get_structure(model=1)
            return pdbx.get_structure(pdbx.CIFFile.read(handle), model=1)
    except InputError:
        raise
    except Exception as exc:  # biotite raises a variety of parse errors
        raise InputError(f"cannot parse {path.name}: {exc}") from exc


def backbones_from_atoms(atoms, source: str = "") -> list[Backbone]:
    """One :class:`Backbone` per chain with at least one amino-acid residue."""
    import biotite.structure as struc
    from biotite.structure.info import one_letter_code

    atoms = atoms[struc.filter_amino_acids(atoms)]
    out = []
    if atoms.array_length() == 0:
        return out
    for chain in struc.chain_iter(atoms):
        starts = struc.get_residue_starts(chain, add_exclusive_stop=True)
        n_res = len(starts) - 1
        coords = np.full((n_res, 4, 3), np.nan)
        seq = []
        for r in range(n_res):
            res = chain[starts[r]:starts[r + 1]]
            for a, name in enumerate(BACKBONE_ATOMS):
                hit = np.nonzero(res.atom_name == name)[0]
                if hit.size:
                    coords[r, a] = res.coord[hit[0]]
            code = one_letter_code(str(res.res_name[0]))
            seq.append(code if code else "X")
        out.append(Backbone(
            coords=torch.from_numpy(coords), sequence="".join(seq),
            res_ids=torch.from_numpy(chain.res_id[starts[:-1]].astype(np.int64)),
            chain_id=str(chain.chain_id[0]), source=source,
        ))
    return out


def read_backbones(path: str | os.PathLike) -> list[Backbone]:
    """Backbones of every protein chain in a PDB / mmCIF file (``.gz`` too).

    Raises:
        InputError: the file is unreadable or holds no protein chain.
    """
    path = Path(path)
    chains = backbones_from_atoms(read_atoms(path), source=path.name)
    if not chains:
        raise InputError(f"{path.name}: no protein chains (no amino-acid residues found)")
    return chains


def split_segments(chain: Backbone, min_length: int = 1,
                   max_peptide_bond: float = MAX_PEPTIDE_BOND) -> list[Backbone]:
    """Cut a chain into continuous segments of complete residues.

    A segment ends at a residue missing N, CA or C, or where the C_i - N_{i+1} distance exceeds
    ``max_peptide_bond``. Segments shorter than ``min_length`` are dropped.
    """
    ok = chain.complete()
    c, n = chain.coords[:-1, 2], chain.coords[1:, 0]
    bonded = (c - n).norm(dim=-1) <= max_peptide_bond  # NaN compares False
    segments: list[Backbone] = []
    start: int | None = None

    def close(stop: int) -> None:
        if start is not None and stop - start >= min_length:
            segments.append(_slice(chain, start, stop))

    for i in range(len(chain)):
        if not bool(ok[i]):
            close(i)
            start = None
        elif start is None:
            start = i
        elif not bool(bonded[i - 1]):
            close(i)
            start = i
    close(len(chain))
    return segments


def _slice(chain: Backbone, start: int, stop: int) -> Backbone:
    return Backbone(coords=chain.coords[start:stop], sequence=chain.sequence[start:stop],
                    res_ids=chain.res_ids[start:stop], chain_id=chain.chain_id,
                    source=f"{chain.source}:{chain.chain_id}:{int(chain.res_ids[start])}")


def write_pdb(path: str | os.PathLike, coords: torch.Tensor, sequence: str | None = None,
              chain_id: str = "A") -> None:
    """Write one backbone ``[L, 4, 3]`` (N, CA, C, O) as a PDB file (residues GLY unless given),
    atomically: a temporary file in the same folder, then ``os.replace`` (no half file)."""
    import biotite.structure as struc

    from crystalflow.crystals.crystal import write_text_atomic
    from biotite.structure.io import pdb

    xyz = coords.detach().cpu().double().numpy()
    length = xyz.shape[0]
    if xyz.shape[1:] != (4, 3) or not np.isfinite(xyz).all():
        raise DataError(f"cannot write backbone of shape {tuple(xyz.shape)} with non-finite atoms")
    names = _three_letter(sequence or "G" * length)
    arr = struc.AtomArray(4 * length)
    arr.coord = xyz.reshape(-1, 3)
    arr.atom_name = np.tile(np.array(BACKBONE_ATOMS), length)
    arr.element = np.tile(np.array(["N", "C", "C", "O"]), length)
    arr.res_id = np.repeat(np.arange(1, length + 1), 4)
    arr.res_name = np.repeat(np.array(names), 4)
    arr.chain_id = np.full(4 * length, chain_id)
    arr.hetero = np.zeros(4 * length, dtype=bool)
    f = pdb.PDBFile()
    f.set_structure(arr)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    f.write(text)
    write_text_atomic(path, text.getvalue())


_THREE = {"A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU",
          "G": "GLY", "H": "HIS", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE",
          "P": "PRO", "S": "SER", "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL"}


def _three_letter(sequence: str) -> list[str]:
    return [_THREE.get(a, "UNK") for a in sequence]


def find_structure_files(directory: str | os.PathLike) -> list[Path]:
    """Structure files (by suffix, gzip too) directly inside ``directory``, sorted by name."""
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"not a directory: {d}")
    return sorted(p for p in d.iterdir() if p.is_file() and _split_suffix(p)[0] in SUFFIXES)
