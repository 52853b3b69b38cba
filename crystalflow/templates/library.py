"""Template library: known crystals described by their space group and Wyckoff orbits.

Each entry is one crystal of the source data, analysed with spglib (symprec 0.1, the same analysis
as the space-group flow's training data, :class:`~crystalflow.crystals.symmetric.SymmetricDataset`):
space group, Wyckoff letter and element of every orbit, the idealised conventional lattice and one
representative per orbit. That is all it takes to rebuild the conventional cell
(:func:`crystalflow.symmetry.build_symmetrized`), the primitive cell, or the same arrangement with
other elements (element substitution, :mod:`crystalflow.templates.proposer`).

Stored compactly (one orbit representative instead of every atom, float32) in one versioned
``torch.save`` file; a library of ~24,000 MP-20 crystals is ~1.5 MB. Loaded lazily: nothing is
read until a proposal needs it (:func:`load_library` caches one copy per path).

Per-element volumes (``element_volumes``, A^3 per atom) are fitted on the library by non-negative
least squares (cell volume = sum of its atoms' volumes) and rescale a substituted template to the
new elements' size.
"""

from __future__ import annotations

import functools
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from crystalflow.errors import DataError, InputError
from crystalflow.symmetry import WyckoffTemplate, get_space_group, wyckoff_position

if TYPE_CHECKING:
    from crystalflow.crystals.dataset import SkippedRow

__all__ = ["TemplateLibrary", "LibraryEntry", "load_library", "anonymous_key", "centering",
           "LIBRARY_VERSION"]

#: bump when the stored fields or their meaning change
LIBRARY_VERSION = 2  # 2: per-row reduced anonymous formula stored
_MAX_Z = 119


@functools.lru_cache(maxsize=None)
def centering(space_group: int) -> int:
    """Lattice points per conventional cell (P 1, A/B/C/I 2, R (hexagonal axes) 3, F 4)."""
    rot = get_space_group(space_group).rotations
    return int((rot == np.eye(3, dtype=rot.dtype)).all(axis=(1, 2)).sum())


def anonymous_key(counts: dict[int, int]) -> tuple[tuple[int, ...], int]:
    """``(sorted reduced counts, formula units)`` of ``{Z: count}``: SrTiO3 -> ``((1, 1, 3), 1)``."""
    g = math.gcd(*counts.values())
    return tuple(sorted(c // g for c in counts.values())), g


@functools.lru_cache(maxsize=None)
def _multiplicity(space_group: int, letter: str) -> int:
    return wyckoff_position(space_group, letter).multiplicity


@dataclass(frozen=True)
class LibraryEntry:
    """One crystal of the library.

    Attributes:
        index: row in the library.
        material_id: the source's identifier.
        template: space group, Wyckoff letters and element of every orbit.
        lattice: ``[6]`` conventional lattice parameters (A, degrees).
        representatives: ``[M, 3]`` one fractional point per orbit, on its Wyckoff subspace.
        primitive_counts: ``{Z: atoms}`` in the primitive cell.
    """

    index: int
    material_id: str
    template: WyckoffTemplate
    lattice: np.ndarray
    representatives: np.ndarray
    primitive_counts: dict[int, int]

    @property
    def label(self) -> tuple:
        """Prototype label: space group and the sorted (letter, element) pairs."""
        return (self.template.space_group,
                tuple(sorted(zip(self.template.letters, self.template.atom_types))))


@dataclass(frozen=True, eq=False)
class TemplateLibrary:
    """Concatenated template records (see the module docstring).

    Attributes:
        material_ids: B identifiers.
        space_group: ``[B]`` int64.
        letters: B strings, one Wyckoff letter per orbit.
        num_orbits: ``[B]`` int64.
        orbit_types: ``[M]`` int64 atomic number of every orbit (concatenated).
        lattice: ``[B, 6]`` float32.
        representatives: ``[M, 3]`` float32.
        element_volumes: ``[119]`` float32, A^3 per atom by atomic number (0 where unseen).
        sources: what the library was built from (file names, row counts, exclusions).
        formula_keys: B reduced anonymous formulas as text (``"1,1,3"``), stored so that
            proposing needs no pass over every row.
        skipped_rows: source rows the analysis could not use when the library was built
            (:meth:`from_symmetric`), with their reasons; not stored in the file (a loaded
            library has none).
    """

    material_ids: tuple[str, ...]
    space_group: torch.Tensor
    letters: tuple[str, ...]
    num_orbits: torch.Tensor
    orbit_types: torch.Tensor
    lattice: torch.Tensor
    representatives: torch.Tensor
    element_volumes: torch.Tensor
    sources: tuple[str, ...] = ()
    formula_keys: tuple[str, ...] = ()
    skipped_rows: tuple[SkippedRow, ...] = field(default=(), repr=False)
    _offsets: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_offsets", torch.cat(
            [torch.zeros(1, dtype=torch.long), self.num_orbits.cumsum(0)]))
        if not self.formula_keys:
            keys = tuple(",".join(map(str, anonymous_key(self.counts(i))[0])) for i in range(len(self)))
            object.__setattr__(self, "formula_keys", keys)

    def __len__(self) -> int:
        return len(self.material_ids)

    @functools.cached_property
    def _template_cache(self) -> dict[int, WyckoffTemplate]:
        return {}

    def template(self, i: int) -> WyckoffTemplate:
        """Row ``i``'s Wyckoff template (built on first use)."""
        t = self._template_cache.get(i)
        if t is None:
            lo, hi = int(self._offsets[i]), int(self._offsets[i + 1])
            t = WyckoffTemplate(int(self.space_group[i]), tuple(self.letters[i]),
                                tuple(self.orbit_types[lo:hi].tolist()))
            self._template_cache[i] = t
        return t

    @property
    def templates(self) -> tuple[WyckoffTemplate, ...]:
        """The Wyckoff template of every row."""
        return tuple(self.template(i) for i in range(len(self)))

    def counts(self, i: int) -> dict[int, int]:
        """``{Z: atoms}`` of row ``i``'s conventional cell, without building its template."""
        lo, hi = int(self._offsets[i]), int(self._offsets[i + 1])
        sg = int(self.space_group[i])
        out: dict[int, int] = defaultdict(int)
        for letter, z in zip(self.letters[i], self.orbit_types[lo:hi].tolist()):
            out[z] += _multiplicity(sg, letter)
        return dict(out)

    def entry(self, i: int) -> LibraryEntry:
        """Row ``i`` as a :class:`LibraryEntry`."""
        lo, hi = int(self._offsets[i]), int(self._offsets[i + 1])
        t = self.template(i)
        conv = t.composition
        c = centering(t.space_group)
        return LibraryEntry(
            index=i, material_id=self.material_ids[i], template=t,
            lattice=self.lattice[i].double().numpy(),
            representatives=self.representatives[lo:hi].double().numpy(),
            primitive_counts={z: n // c for z, n in conv.items()},
        )

    @functools.cached_property
    def by_formula(self) -> dict[tuple[int, ...], list[int]]:
        """Rows per reduced anonymous formula (sorted reduced counts)."""
        out: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, key in enumerate(self.formula_keys):
            out[tuple(int(x) for x in key.split(","))].append(i)
        return dict(out)

    @functools.cached_property
    def space_group_counts(self) -> dict[int, dict[int, int]]:
        """``{number of elements: {space group: entries}}``, for the no-template fallback."""
        out: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for i in range(len(self)):
            out[len(self.counts(i))][int(self.space_group[i])] += 1
        return {k: dict(v) for k, v in out.items()}

    def volume_per_atom(self, counts: dict[int, int]) -> float:
        """Predicted volume per atom (A^3) of a composition from the fitted element volumes;
        elements the library never saw get the mean fitted volume."""
        vols = self.element_volumes.double()
        seen = vols[vols > 0]
        fallback = float(seen.mean()) if seen.numel() else 15.0
        total = sum(n * (float(vols[z]) if 0 < z < len(vols) and vols[z] > 0 else fallback)
                    for z, n in counts.items())
        return total / sum(counts.values())

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def from_symmetric(cls, datasets: Sequence, exclude: set[str] = frozenset(),
                       sources: Sequence[str] = ()) -> "TemplateLibrary":
        """Library from :class:`~crystalflow.crystals.symmetric.SymmetricDataset` objects, leaving
        out rows whose material id is in ``exclude``; duplicate ids keep the first row. The
        datasets' ``skipped_rows`` become the library's."""
        ids, sgs, letters, norb, types, lats, reps = [], [], [], [], [], [], []
        seen: set[str] = set()
        for ds in datasets:
            for i, (mid, t) in enumerate(zip(ds.material_ids, ds.templates)):
                if mid in exclude or mid in seen:
                    continue
                seen.add(mid)
                mults = torch.tensor([wp.multiplicity for wp in t.positions])
                first = ds.rows(i).start + torch.cumsum(mults, 0) - mults  # orbit representatives
                ids.append(mid)
                sgs.append(t.space_group)
                letters.append("".join(t.letters))
                norb.append(len(t.letters))
                types.extend(t.atom_types)
                lats.append(ds.lattice[i])
                reps.append(ds.frac[first])
        if not ids:
            raise DataError("no crystal left to build a template library from")
        lattice = torch.stack(lats).float()
        space_group = torch.tensor(sgs, dtype=torch.long)
        num_orbits = torch.tensor(norb, dtype=torch.long)
        orbit_types = torch.tensor(types, dtype=torch.long)
        lib = cls(material_ids=tuple(ids), space_group=space_group, letters=tuple(letters),
                  num_orbits=num_orbits, orbit_types=orbit_types, lattice=lattice,
                  representatives=torch.cat(reps).float(),
                  element_volumes=torch.zeros(_MAX_Z), sources=tuple(sources),
                  skipped_rows=tuple(r for ds in datasets for r in getattr(ds, "skipped_rows", ())))
        object.__setattr__(lib, "element_volumes", _fit_element_volumes(lib))
        return lib

    # -- I/O --------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the library atomically (one ``torch.save`` file)."""
        path = Path(path)
        blob = {
            "version": LIBRARY_VERSION, "material_ids": list(self.material_ids),
            "space_group": self.space_group.short(), "letters": list(self.letters),
            "num_orbits": self.num_orbits.short(), "orbit_types": self.orbit_types.to(torch.uint8),
            "lattice": self.lattice.float(), "representatives": self.representatives.float(),
            "element_volumes": self.element_volumes.float(), "sources": list(self.sources),
            "formula_keys": list(self.formula_keys),
        }
        from crystalflow.checkpoint import torch_save_atomic

        torch_save_atomic(blob, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TemplateLibrary":
        """Read a library written by :meth:`save`.

        Raises:
            InputError: missing file, not a library, or a library of another version.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no template library at {path}")
        try:
            blob = torch.load(path, weights_only=True)
        except Exception as exc:
            raise InputError(f"{path} is not a template library ({type(exc).__name__})") from None
        if not isinstance(blob, dict) or "material_ids" not in blob:
            raise InputError(f"{path} is not a template library")
        if blob.get("version") != LIBRARY_VERSION:
            raise InputError(f"template library {path} has version {blob.get('version')}, this "
                             f"crystalflow reads version {LIBRARY_VERSION}: rebuild it with "
                             f"'crystalflow templates build'")
        return cls(material_ids=tuple(blob["material_ids"]), space_group=blob["space_group"].long(),
                   letters=tuple(blob["letters"]), num_orbits=blob["num_orbits"].long(),
                   orbit_types=blob["orbit_types"].long(), lattice=blob["lattice"],
                   representatives=blob["representatives"], element_volumes=blob["element_volumes"],
                   sources=tuple(blob.get("sources", ())), formula_keys=tuple(blob["formula_keys"]))


def _fit_element_volumes(lib: TemplateLibrary) -> torch.Tensor:
    """Non-negative least squares of conventional-cell volumes on atom counts per element."""
    from scipy.optimize import nnls
    from pymatgen.core import Lattice

    rows, vols = [], []
    for i in range(len(lib)):
        counts = lib.counts(i)
        rows.append(counts)
        vols.append(Lattice.from_parameters(*lib.lattice[i].double().tolist()).volume)
    elements = sorted({z for r in rows for z in r})
    col = {z: j for j, z in enumerate(elements)}
    a = np.zeros((len(rows), len(elements)))
    for k, r in enumerate(rows):
        n = sum(r.values())
        for z, c in r.items():
            a[k, col[z]] = c / n  # per-atom equation: volume per atom = mean of element volumes
    b = np.asarray(vols) / np.asarray([sum(r.values()) for r in rows])
    x, _ = nnls(a, b)
    out = torch.zeros(_MAX_Z)
    for z, j in col.items():
        out[z] = float(x[j])
    return out


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> TemplateLibrary:
    return TemplateLibrary.load(path)


def load_library(path: str | os.PathLike | None = None) -> TemplateLibrary:
    """The template library at ``path`` (default: the bundled MP-20 library), read once per
    process and file version."""
    if path is None:
        from crystalflow.templates import BUNDLED_LIBRARY

        path = BUNDLED_LIBRARY
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no template library at {path}")
    return _load_cached(str(path.resolve()), path.stat().st_mtime)
