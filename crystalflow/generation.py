"""De-novo generation from a space group: the ``crystalflow.generate`` API and its CIF output.

Requests and the templates they allow (:func:`select_skeletons`):

* ``space_group``: skeletons (space group + Wyckoff letters) of that group seen in the training
  data, drawn with their training frequencies; ``None`` samples the space group too (the
  unconditional DNG benchmark mode).
* ``num_atoms``: atoms in the *conventional* cell (the cell written to the CIF); only skeletons with
  exactly that many atoms.
* ``elements`` (a chemical system, e.g. ``Li,Fe,P,O``): atom types are restricted to these
  elements and every element must occur, so only skeletons with at least as many Wyckoff orbits as
  elements are compatible (one element per orbit). A crystal whose sampled types miss an element
  of the system is re-sampled (up to ``retries`` times); one still missing an element after that
  gets the missing element on an orbit whose element occurs on another orbit too (documented
  fallback, counted in the returned summary as ``repaired``).

Every element must occur in the training data (the model never generates other types), the space
group must be 1-230 and some training skeleton must fit, else :class:`~crystalflow.errors.InputError`.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from crystalflow.crystals.crystal import Crystal, write_text_atomic
from crystalflow.errors import InputError

__all__ = ["generate", "generate_crystals", "GeneratedSet", "parse_elements", "select_skeletons",
           "summary_rows", "write_generated"]


def parse_elements(elements: str | Sequence[str | int] | None) -> tuple[int, ...] | None:
    """``"Li,Fe,P,O"`` / ``["Li", "Fe"]`` / ``[3, 26]`` -> sorted distinct atomic numbers.

    Raises:
        InputError: an unknown element or an empty system.
    """
    if elements is None:
        return None
    from pymatgen.core import Element

    items = [x.strip() for x in elements.replace("-", ",").split(",")] if isinstance(elements, str) else list(elements)
    items = [x for x in items if x != ""]
    if not items:
        raise InputError("--elements is empty; give a chemical system such as Li,Fe,P,O")
    out = set()
    for x in items:
        try:
            z = int(x) if isinstance(x, int) else Element(str(x)).Z
        except (ValueError, KeyError):
            raise InputError(f"unknown element {x!r}") from None
        if not 1 <= z <= 118:
            raise InputError(f"atomic number {z} is not an element")
        out.add(z)
    return tuple(sorted(out))


def select_skeletons(dist, allowed: torch.Tensor, space_group: int | None = None,
                     elements: tuple[int, ...] | None = None, num_atoms: int | None = None):
    """Training skeletons compatible with a request (see the module docstring).

    Args:
        dist: the checkpoint's :class:`~crystalflow.dng.SkeletonDistribution`.
        allowed: ``[V]`` bool, types the model can generate.

    Raises:
        InputError: element never seen in training, or no compatible skeleton.
    """
    from pymatgen.core import Element

    if num_atoms is not None and (int(num_atoms) != num_atoms or num_atoms < 1):
        raise InputError(f"--num-atoms must be a positive integer, got {num_atoms!r}")
    if elements is not None:
        missing = [z for z in elements if z >= allowed.shape[0] or not bool(allowed[z])]
        if missing:
            names = ", ".join(Element.from_Z(z).symbol for z in missing)
            raise InputError(f"element(s) {names} never occur in the model's training data")
    return dist.select(space_group, num_atoms, min_orbits=len(elements) if elements else 1)


@functools.lru_cache(maxsize=4)
def _load(checkpoint: str | None, device: str):
    from crystalflow.checkpoint import load_checkpoint
    from crystalflow.pretrained import dng_flow_from_checkpoint, resolve_checkpoint

    ckpt = load_checkpoint(resolve_checkpoint(checkpoint, "dng"))
    flow, dist = dng_flow_from_checkpoint(ckpt, device)
    return flow, dist


@dataclass(frozen=True)
class GeneratedSet:
    """Generated crystals and how they were made.

    Attributes:
        crystals: conventional cells (one per sample).
        space_groups: the skeleton's space group of each crystal.
        repaired: indices of crystals that needed the element-coverage fallback.
    """

    crystals: list[Crystal]
    space_groups: list[int]
    repaired: list[int]


def _covers(types: torch.Tensor, elements: tuple[int, ...]) -> bool:
    return set(elements) <= set(types.tolist())


def _repair(crystal: Crystal, orbit: torch.Tensor, elements: tuple[int, ...]) -> Crystal:
    """Put missing elements on orbits whose element also occurs on another orbit."""
    types = crystal.atom_types.clone()
    n_orb = int(orbit.max()) + 1
    orbit_type = torch.zeros(n_orb, dtype=torch.long).index_put_((orbit,), types)
    for z in elements:
        if z in orbit_type.tolist():
            continue
        counts = {int(e): int((orbit_type == e).sum()) for e in orbit_type.tolist()}
        for o in reversed(range(n_orb)):
            if counts[int(orbit_type[o])] > 1:
                orbit_type[o] = z
                break
    return Crystal(frac=crystal.frac, lattice=crystal.lattice, atom_types=orbit_type[orbit],
                   material_id=crystal.material_id)


def generate_crystals(
    flow, dist, num: int, *, space_group: int | None = None, elements: tuple[int, ...] | None = None,
    num_atoms: int | None = None, steps: int | None = None, seed: int = 0, batch_size: int = 128,
    retries: int = 3, device: str | torch.device = "cpu", progress: bool = False,
) -> GeneratedSet:
    """Sample ``num`` crystals with a loaded DNG flow and its skeleton distribution."""
    from tqdm.auto import tqdm

    if num < 1:
        raise InputError(f"--num must be at least 1, got {num}")
    pool = select_skeletons(dist, flow.allowed, space_group, elements, num_atoms)
    cpu_gen = torch.Generator().manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    skeletons = pool.sample(num, cpu_gen)
    restrict = None
    if elements is not None:
        restrict = torch.zeros(flow.allowed.shape[0], dtype=torch.bool)
        restrict[list(elements)] = True
    out: list[Crystal | None] = [None] * num
    orbits: list[torch.Tensor | None] = [None] * num
    todo = list(range(num))
    for attempt in range(1 + (retries if elements else 0)):
        if not todo:
            break
        for lo in tqdm(range(0, len(todo), batch_size), disable=not progress, desc="generating", unit="batch"):
            idx = todo[lo:lo + batch_size]
            allowed = None if restrict is None else restrict[None].expand(len(idx), -1)
            res = flow.sample([skeletons[i] for i in idx], allowed=allowed, steps=steps, generator=gen,
                              device=device)
            orbit = res.symmetry.orbit.cpu()
            starts = torch.cat([torch.zeros(1, dtype=torch.long), res.symmetry.num_orbits.cumsum(0)])
            atom_starts = torch.cat([torch.zeros(1, dtype=torch.long), res.num_atoms.cpu().cumsum(0)])
            for j, (i, c) in enumerate(zip(idx, res.to_crystals())):
                out[i] = c
                orbits[i] = orbit[atom_starts[j]:atom_starts[j + 1]] - starts[j]
        todo = [i for i in todo if elements and not _covers(out[i].atom_types, elements)]
    repaired = list(todo)
    for i in repaired:
        out[i] = _repair(out[i], orbits[i], elements)
    return GeneratedSet(crystals=list(out), space_groups=[s.space_group for s in skeletons], repaired=repaired)


def summary_rows(crystals: Sequence[Crystal], names: Sequence[str] | None = None,
                 symprec: float = 0.1) -> list[dict]:
    """One row per crystal: file, formula, atoms, spglib space group (``symprec``), volume per atom."""
    from crystalflow.metrics.symmetry import symmetry_info
    from crystalflow.metrics.validity import min_interatomic_distance

    rows = []
    for k, c in enumerate(crystals):
        s = c.to_structure()
        info = symmetry_info(s, symprec=symprec)
        rows.append({
            "file": names[k] if names else "", "formula": s.composition.reduced_formula,
            "num_atoms": len(s), "space_group": info.spacegroup,
            "volume_per_atom": round(float(s.volume) / len(s), 3),
            "min_distance": round(min_interatomic_distance(s), 3),
        })
    return rows


def write_generated(crystals: Sequence[Crystal], out: str | os.PathLike, symprec: float = 0.1) -> list[dict]:
    """Write one CIF per crystal and ``summary.csv`` to ``out``; returns the summary rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for k, c in enumerate(crystals):
        s = c.to_structure()
        name = f"{k:04d}_{s.composition.reduced_formula}.cif"
        write_text_atomic(out / name, s.to(fmt="cif"))
        names.append(name)
    rows = summary_rows(crystals, names, symprec)
    tmp = out / ".summary.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / "summary.csv")
    return rows


def generate(
    space_group: int | None = None, num: int = 16, *, elements: str | Sequence[str] | None = None,
    num_atoms: int | None = None, steps: int | None = None, seed: int = 0,
    checkpoint: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
    batch_size: int = 128, device: str | torch.device = "cpu", progress: bool = False,
) -> list[Crystal]:
    """Generate new crystals, optionally in a space group, chemical system and cell size.

    Args:
        space_group: 1-230, or ``None`` to sample the space group from the training distribution.
        num: number of crystals.
        elements: chemical system, e.g. ``"Li,Fe,P,O"`` (every element occurs, no other does).
        num_atoms: atoms in the conventional cell.
        steps: joint Euler steps (default: the checkpoint's).
        seed: random seed (same seed, same crystals).
        checkpoint: path or bundled name (default: ``dng_mp_20.pt``).
        out: if given, write ``NNNN_<formula>.cif`` files and ``summary.csv`` there.

    Returns:
        The crystals (conventional cells; ``Crystal.to_structure()`` for pymatgen).

    Raises:
        InputError: bad space group or element, or no compatible training template.
    """
    from crystalflow.symmetry.groups import check_space_group_number

    if space_group is not None:
        space_group = check_space_group_number(space_group)
    zs = parse_elements(elements)
    flow, dist = _load(None if checkpoint is None else str(checkpoint), str(device))
    res = generate_crystals(flow, dist, num, space_group=space_group, elements=zs, num_atoms=num_atoms,
                            steps=steps, seed=seed, batch_size=batch_size, device=device, progress=progress)
    if out is not None:
        write_generated(res.crystals, out)
    return res.crystals
