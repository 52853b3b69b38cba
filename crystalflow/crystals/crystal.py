"""The ``Crystal`` type: one periodic structure as tensors, with pymatgen at the boundary."""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Element, Lattice, Structure

from crystalflow.crystals.lattice import lattice_matrix_to_params, lattice_params_to_matrix
from crystalflow.errors import InputError

#: largest atomic number a model embeds (CDVAE/DiffCSP use 100)
MAX_ATOMIC_NUM = 100


def structure_from_cif(cif: str) -> Structure:
    """The pymatgen Structure of a CIF string (parser warnings silenced).

    Raises:
        InputError: the text is not a readable CIF.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Structure.from_str(cif, fmt="cif")
    except Exception as exc:  # pymatgen raises many types on bad CIF
        raise InputError(f"malformed CIF: {exc}") from exc


@dataclass(frozen=True)
class Crystal:
    """A periodic crystal in a canonical (Niggli-reduced, parameter-built) cell.

    Attributes:
        frac: ``[n, 3]`` float64 fractional coordinates in [0, 1).
        lattice: ``[6]`` float64 lattice parameters (a, b, c in Angstrom; alpha, beta, gamma in deg).
        atom_types: ``[n]`` int64 atomic numbers.
        material_id: optional identifier carried through I/O (e.g. the CSV's ``material_id``).
    """

    frac: torch.Tensor
    lattice: torch.Tensor
    atom_types: torch.Tensor
    material_id: str | None = None

    def __post_init__(self) -> None:
        if self.frac.ndim != 2 or self.frac.shape[-1] != 3:
            raise InputError(f"frac must be [n, 3], got {tuple(self.frac.shape)}")
        if self.lattice.shape != (6,):
            raise InputError(f"lattice must be [6], got {tuple(self.lattice.shape)}")
        if self.atom_types.shape != (self.frac.shape[0],):
            raise InputError("atom_types and frac disagree on the number of atoms")
        if self.num_atoms == 0:
            raise InputError("a crystal needs at least one atom")

    @property
    def num_atoms(self) -> int:
        """Number of atoms in the cell."""
        return int(self.frac.shape[0])

    @classmethod
    def from_structure(
        cls, structure: Structure, niggli: bool = True, material_id: str | None = None
    ) -> "Crystal":
        """Build from a pymatgen Structure (CDVAE's canonicalisation).

        The cell is Niggli-reduced (optional) and rebuilt from its lattice parameters, which fixes
        the Cartesian orientation; disordered or fractional occupancies are rejected.
        """
        if not structure.is_ordered:
            raise InputError("disordered structures (partial occupancies) are not supported")
        if len(structure) == 0:
            raise InputError("structure has no sites")
        if not (np.all(np.isfinite(structure.lattice.matrix)) and np.all(np.isfinite(structure.frac_coords))):
            raise InputError("lattice or coordinates are not finite numbers (NaN or inf)")
        if structure.lattice.volume <= 0 or not np.isfinite(structure.lattice.volume):
            raise InputError("the cell has no volume (degenerate lattice)")
        s = structure.get_reduced_structure() if niggli else structure
        lat = Lattice.from_parameters(*s.lattice.parameters)
        frac = np.mod(s.frac_coords, 1.0)
        types = [site.specie.Z for site in s]
        if max(types) > MAX_ATOMIC_NUM:
            raise InputError(f"atomic numbers above {MAX_ATOMIC_NUM} are not supported")
        return cls(
            frac=torch.as_tensor(frac, dtype=torch.float64),
            lattice=torch.as_tensor(lat.parameters, dtype=torch.float64),
            atom_types=torch.as_tensor(types, dtype=torch.long),
            material_id=material_id,
        )

    def to_structure(self) -> Structure:
        """The crystal as a pymatgen Structure (lattice built from parameters)."""
        params = self.lattice.detach().double().cpu()
        matrix = lattice_params_to_matrix(params).numpy()
        species = [Element.from_Z(int(z)) for z in self.atom_types.cpu()]
        return Structure(
            Lattice(matrix), species, np.mod(self.frac.detach().double().cpu().numpy(), 1.0)
        )

    @classmethod
    def from_cif_string(cls, cif: str, niggli: bool = True, material_id: str | None = None) -> "Crystal":
        """Parse a CIF string; malformed CIF raises :class:`InputError`."""
        return cls.from_structure(structure_from_cif(cif), niggli=niggli, material_id=material_id)

    @classmethod
    def from_file(cls, filename: str | os.PathLike, niggli: bool = True) -> "Crystal":
        """Read any file pymatgen reads (CIF, POSCAR, ...)."""
        if not os.path.exists(filename):
            raise InputError(f"no such file: {filename}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = Structure.from_file(filename)
        except Exception as exc:
            raise InputError(f"cannot read structure from {filename}: {exc}") from exc
        mid = os.path.splitext(os.path.basename(filename))[0]
        return cls.from_structure(structure, niggli=niggli, material_id=mid)

    def to(self, filename: str | os.PathLike | None = None, fmt: str = "cif") -> str:
        """Write (atomically) to ``filename`` if given; return the text (pymatgen's ``to``)."""
        text = self.to_structure().to(fmt=fmt)
        if filename is not None:
            write_text_atomic(filename, text)
        return text

    @classmethod
    def from_matrix(
        cls, frac: torch.Tensor, matrix: torch.Tensor, atom_types: torch.Tensor, **kw
    ) -> "Crystal":
        """Build from fractional coordinates and a row-vector lattice matrix ``[3, 3]``."""
        return cls(
            frac=torch.remainder(frac.double(), 1.0),
            lattice=lattice_matrix_to_params(matrix.double()),
            atom_types=atom_types.long(),
            **kw,
        )


def write_text_atomic(filename: str | os.PathLike, text: str | bytes) -> None:
    """Write text (or bytes) to ``filename`` through a temporary file in the same folder and
    ``os.replace`` (no half files)."""
    filename = os.fspath(filename)
    tmp = f"{filename}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb" if isinstance(text, bytes) else "w") as fh:
            fh.write(text)
        os.replace(tmp, filename)
    except BaseException:  # a full disk or an interruption leaves no temporary file behind
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
