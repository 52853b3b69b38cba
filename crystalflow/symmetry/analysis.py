"""Symmetry analysis of a pymatgen Structure and reconstruction from a Wyckoff description.

``analyze_structure`` runs spglib (symprec 0.1 by default, as the field's CSP benchmark) and
returns the standardised conventional cell in the tables' setting, idealised (symmetrised)
coordinates, the Wyckoff template (letter and element of every orbit), one representative per
orbit lying on its Wyckoff subspace ``W u + b``, and the symmetry layout (permutations) of the
atoms. ``reconstruct_structure`` goes back from (space group, lattice, letters, representatives,
types) to a Structure. Not on the hot path: plain numpy with spglib.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import spglib
import torch
from pymatgen.core import Lattice, Structure

from crystalflow.errors import InputError
from crystalflow.symmetry.batch import CrystalSymmetry, collate_symmetry, crystal_symmetry
from crystalflow.symmetry.groups import SpaceGroup, default_hall_number, get_space_group
from crystalflow.symmetry.lattice import project_lattice
from crystalflow.symmetry.orbits import expand_orbits
from crystalflow.symmetry.template import WyckoffTemplate
from crystalflow.symmetry.wyckoff import locate_on_wyckoff, wyckoff_position, wyckoff_positions

__all__ = ["SymmetrizedCrystal", "analyze_structure", "build_symmetrized", "reconstruct_structure", "DEFAULT_SYMPREC"]

#: spglib tolerance (Angstrom) used by the field's CSP benchmark.
DEFAULT_SYMPREC = 0.1


@dataclass(frozen=True, eq=False)
class SymmetrizedCrystal:
    """A crystal described by its space group and Wyckoff orbits (conventional cell).

    Attributes:
        template: space group, Wyckoff letter and atomic number of every orbit.
        lattice: ``[6]`` float64 ``(a, b, c, alpha, beta, gamma)`` satisfying the family constraints.
        representatives: ``[M, 3]`` float64 orbit representatives, each on ``W u + b`` of its orbit.
        frac: ``[n, 3]`` float64 idealised coordinates of all atoms, in ``symmetry``'s atom order.
        symmetry: permutations and Wyckoff fields of the atoms.
    """

    template: WyckoffTemplate
    lattice: np.ndarray
    representatives: np.ndarray
    frac: np.ndarray
    symmetry: CrystalSymmetry

    @property
    def space_group(self) -> int:
        return self.template.space_group

    @property
    def atom_types(self) -> np.ndarray:
        """``[n]`` int64 atomic numbers."""
        return self.symmetry.atom_types.numpy()

    def to_structure(self) -> Structure:
        """The conventional cell as a pymatgen Structure."""
        return Structure(
            Lattice.from_parameters(*self.lattice), self.atom_types.tolist(), self.frac
        )


def _dataset(cell: tuple, symprec: float, angle_tolerance: float, hall_number: int = 0):
    """spglib dataset, raising InputError with spglib's message on failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            # ``_throw=True`` is how spglib 2.x reports *why* it failed without switching its
            # global error-handling mode; older versions lack it and return None instead.
            data = spglib.get_symmetry_dataset(
                cell,
                symprec=symprec,
                angle_tolerance=angle_tolerance,
                hall_number=hall_number,
                _throw=True,
            )
            message = ""
        except TypeError:
            data = spglib.get_symmetry_dataset(
                cell, symprec=symprec, angle_tolerance=angle_tolerance, hall_number=hall_number
            )
            message = spglib.get_error_message()
        except Exception as err:  # spglib's own error types differ between versions
            data, message = None, str(err)
    if data is None:
        raise InputError(
            f"spglib could not find the symmetry (symprec={symprec}): {message or 'no reason given'}"
        )
    return data


def _wrap(d: np.ndarray) -> np.ndarray:
    return d - np.round(d)


def _permutations(
    group: SpaceGroup, frac: np.ndarray, types: np.ndarray, lattice: np.ndarray, tol: float
) -> np.ndarray:
    """``[G, n]`` permutation ``perm[g, i]`` = atom nearest to ``g(x_i)`` (same type, within tol A)."""
    images = np.einsum("gij,nj->gni", group.rotations, frac) + group.translations[:, None, :]
    diff = _wrap(images[:, :, None, :] - frac[None, None, :, :]) @ lattice  # [G, n, n, 3]
    dist = np.linalg.norm(diff, axis=-1)
    dist[:, types[:, None] != types[None, :]] = np.inf
    perm = np.argmin(dist, axis=-1)
    worst = float(np.take_along_axis(dist, perm[..., None], -1).max())
    ok = worst <= tol and all(len(np.unique(row)) == len(row) for row in perm)
    if not ok:
        raise InputError(
            f"the standardised cell is not symmetric under space group {group.number} within "
            f"{tol} A (worst {worst:.3g} A); try a smaller symprec"
        )
    return perm


def _symmetrize(group: SpaceGroup, frac: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Group average of positions (see :func:`crystalflow.symmetry.average.symmetrize_frac`)."""
    src = frac[perm]  # [G, n, 3]
    back = np.einsum("gij,gnj->gni", group.rotations_inv, src - group.translations[:, None, :])
    return np.mod(frac + _wrap(back - frac[None]).mean(axis=0), 1.0)


def analyze_structure(
    structure: Structure, symprec: float = DEFAULT_SYMPREC, angle_tolerance: float = -1.0
) -> SymmetrizedCrystal:
    """Space group, Wyckoff orbits and idealised conventional cell of a structure.

    Args:
        structure: an ordered pymatgen Structure (any cell).
        symprec: spglib distance tolerance in Angstrom.
        angle_tolerance: spglib angle tolerance in degrees (-1: spglib's default).

    Returns:
        :class:`SymmetrizedCrystal` in the tables' setting (spglib's default Hall number).

    Raises:
        InputError: disordered structure, a lattice or coordinates that are not finite (spglib
            would crash on them), or spglib failed (with spglib's message).
    """
    if not structure.is_ordered:
        raise InputError("symmetry analysis needs an ordered structure (no partial occupancies)")
    if not (np.all(np.isfinite(structure.lattice.matrix)) and np.all(np.isfinite(structure.frac_coords))):
        raise InputError("lattice or coordinates are not finite numbers (NaN or inf)")
    cell = (
        structure.lattice.matrix,
        structure.frac_coords,
        [site.specie.Z for site in structure],
    )
    data = _dataset(cell, symprec, angle_tolerance)
    hall = default_hall_number(int(data.number))
    if int(data.hall_number) != hall:
        data = _dataset(cell, symprec, angle_tolerance, hall_number=hall)
    group = get_space_group(int(data.number))
    lat = np.asarray(data.std_lattice, dtype=np.float64)
    frac = np.mod(np.asarray(data.std_positions, dtype=np.float64), 1.0)
    types = np.asarray(data.std_types, dtype=np.int64)
    perm = _permutations(group, frac, types, lat, tol=max(symprec, 1e-3))
    frac = _symmetrize(group, frac, perm)
    metric = lat @ lat.T
    orbit_key = perm.min(axis=0)
    letters, reps, orbit_types = [], [], []
    for key in dict.fromkeys(orbit_key.tolist()):
        members = np.flatnonzero(orbit_key == key)
        best = (np.inf, None, None)
        for wp in wyckoff_positions(group.number):
            if wp.multiplicity != len(members):
                continue
            params, dist = locate_on_wyckoff(frac[members], wp, metric)
            j = int(np.argmin(dist))
            if dist[j] < best[0]:
                best = (float(dist[j]), wp, params[j])
        dist, wp, params = best
        if wp is None or dist > 1e-3:
            raise InputError(
                f"an orbit of {len(members)} atoms fits no Wyckoff position of space group "
                f"{group.number} (distance {dist:.3g} A); try a smaller symprec"
            )
        letters.append(wp.letter)
        reps.append(wp.point(params))
        orbit_types.append(int(types[members[0]]))
    template = WyckoffTemplate(group.number, tuple(letters), tuple(orbit_types))
    params = torch.tensor(Lattice(lat).parameters, dtype=torch.float64)[None]
    lattice = project_lattice(params, torch.tensor([group.number]))[0].numpy()
    return build_symmetrized(template, lattice, np.asarray(reps))


def build_symmetrized(template: WyckoffTemplate, lattice: np.ndarray, reps: np.ndarray) -> SymmetrizedCrystal:
    """Expand orbit representatives into a :class:`SymmetrizedCrystal`.

    Args:
        template: space group, letters and element of every orbit.
        lattice: ``[6]`` lattice parameters on the family constraints.
        reps: ``[M, 3]`` one point per orbit, already on its Wyckoff subspace.
    """
    layout = crystal_symmetry(template)
    frac = expand_orbits(torch.as_tensor(reps, dtype=torch.float64), collate_symmetry([layout]))
    return SymmetrizedCrystal(
        template=template,
        lattice=np.asarray(lattice, dtype=np.float64),
        representatives=np.asarray(reps, dtype=np.float64),
        frac=frac.numpy(),
        symmetry=layout,
    )


def reconstruct_structure(
    space_group: int,
    lattice: np.ndarray,
    letters: tuple[str, ...] | list[str],
    representatives: np.ndarray,
    atom_types: tuple[int, ...] | list[int],
) -> Structure:
    """Build the conventional-cell Structure of a Wyckoff description.

    Lattice parameters are projected onto the crystal-family constraints and every representative
    onto the nearest point (in the lattice metric) of its Wyckoff subspace, so slightly
    inconsistent inputs (e.g. a model's output) are repaired rather than rejected.

    Args:
        space_group: 1-230.
        lattice: ``[6]`` ``(a, b, c, alpha, beta, gamma)`` in Angstrom and degrees.
        letters: Wyckoff letter of each orbit.
        representatives: ``[M, 3]`` fractional coordinates, one per orbit.
        atom_types: atomic number of each orbit.

    Returns:
        The pymatgen Structure of the conventional cell.

    Raises:
        InputError: bad space group or letter, inconsistent lengths, impossible lattice.
    """
    template = WyckoffTemplate(space_group, tuple(letters), tuple(atom_types))
    reps = np.asarray(representatives, dtype=np.float64).reshape(-1, 3)
    if len(reps) != len(template.letters):
        raise InputError(f"{len(template.letters)} Wyckoff letters but {len(reps)} representatives")
    params = torch.as_tensor(np.asarray(lattice, dtype=np.float64)).reshape(1, 6)
    proj = project_lattice(params, torch.tensor([template.space_group]))[0].numpy()
    try:
        lat = Lattice.from_parameters(*proj)
    except ValueError as err:
        raise InputError(f"impossible lattice parameters {proj.tolist()}: {err}") from None
    if not np.all(np.isfinite(lat.matrix)) or not lat.volume > 0:
        raise InputError(f"impossible lattice parameters {proj.tolist()}")
    snapped = []
    for rep, letter in zip(reps, template.letters):
        wp = wyckoff_position(template.space_group, letter)
        params_u, _ = locate_on_wyckoff(rep[None], wp, lat.matrix @ lat.matrix.T)
        snapped.append(wp.point(params_u[0]))
    return build_symmetrized(template, proj, np.asarray(snapped)).to_structure()
