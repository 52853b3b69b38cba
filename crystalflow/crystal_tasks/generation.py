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
* coupled orbit types: when the checkpoint's skeleton distribution records how many distinct
  elements each skeleton's training crystals hold, every sample draws such a number with its
  skeleton (a chemical system asks for exactly its size) and its orbit types are coupled to end
  with that many elements (:func:`~crystalflow.crystal_tasks.skeletons.element_budget_mask`);
  ``couple_elements=False`` draws every orbit's type on its own.
* two-stage geometry: with ``geometry`` (default ``"auto"``: the checkpoint's
  ``DNGConfig.geometry``, ``sgcsp_mp_20.pt`` for the bundled ``dng_mp_20.pt``) the DNG flow gives
  the skeleton's types and a space-group-conditioned CSP flow re-generates positions and lattice
  for that Wyckoff template (:func:`regenerate_geometry`); the SG-CSP flow sees every type from
  its first step, where the DNG flow decides types while the lattice is already forming.

Every element must occur in the training data (the model never generates other types), the space
group must be 1-230 and some training skeleton must fit, else :class:`~crystalflow.errors.InputError`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from crystalflow.crystals.crystal import Crystal, write_text_atomic
from crystalflow.crystal_tasks.geometry import load_geometry, regenerate_geometry
from crystalflow.crystal_tasks.skeletons import select_skeletons
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
        raise InputError("elements is empty; give a chemical system such as Li,Fe,P,O", parameters=("elements",))
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
        checks: the check of each crystal (:func:`crystalflow.checks.check_structure` against the
            requested space group; ``ok`` False marks a crystal that still failed after the
            re-sampling rounds).
        resampled: how many crystals were re-sampled at least once because they failed a check.
    """

    crystals: list[Crystal]
    space_groups: list[int]
    repaired: list[int]
    checks: list = field(default_factory=list)
    resampled: int = 0

    @property
    def failed(self) -> list[int]:
        """Indices of crystals whose check failed (flagged in ``summary.csv``)."""
        return [i for i, c in enumerate(self.checks) if not c.ok]


def _covers(types: torch.Tensor, elements: tuple[int, ...]) -> bool:
    return set(elements) <= set(types.tolist())


def _repair(crystal: Crystal, orbit: torch.Tensor, elements: tuple[int, ...],
            space_group: int | None = None) -> Crystal:
    """Put missing elements on orbits whose element also occurs on another orbit.

    Each candidate orbit is tried (last orbit first); the first choice whose structure passes
    :func:`crystalflow.checks.check_structure` against ``space_group`` is kept (moving an element
    can merge two orbits of one element into a higher group, e.g. Pm-3m from Fm-3m's 4a + 4b),
    else the first choice.
    """
    from crystalflow.checks import check_structure

    n_orb = int(orbit.max()) + 1
    orbit_type = torch.zeros(n_orb, dtype=torch.long).index_put_((orbit,), crystal.atom_types.clone())
    for z in elements:
        if z in orbit_type.tolist():
            continue
        counts = {int(e): int((orbit_type == e).sum()) for e in orbit_type.tolist()}
        candidates = [o for o in reversed(range(n_orb)) if counts[int(orbit_type[o])] > 1]
        best = None
        for o in candidates:
            trial = orbit_type.clone()
            trial[o] = z
            made = Crystal(frac=crystal.frac, lattice=crystal.lattice, atom_types=trial[orbit],
                           material_id=crystal.material_id)
            if best is None:
                best = trial
            if check_structure(made.to_structure(), space_group).ok:
                best = trial
                break
        if best is not None:
            orbit_type = best
    return Crystal(frac=crystal.frac, lattice=crystal.lattice, atom_types=orbit_type[orbit],
                   material_id=crystal.material_id)


#: candidates drawn per failing crystal in each re-sampling round of :func:`generate_crystals`
RETRY_CANDIDATES = 2


def generate_crystals(
    flow, dist, num: int, *, space_group: int | None = None, elements: tuple[int, ...] | None = None,
    num_atoms: int | None = None, steps: int | None = None, seed: int = 0, batch_size: int = 128,
    retries: int = 3, device: str | torch.device = "cpu", progress: bool = False, sampler=None,
    couple_elements: bool = True, geometry=None,
) -> GeneratedSet:
    """Sample ``num`` crystals with a loaded DNG flow and its skeleton distribution.

    ``sampler`` replaces ``flow.sample`` (same signature, one crystal per skeleton, e.g. a
    reward-steered :class:`crystalflow.crystal_tasks.steering.SteeredSampler`); a sampler whose
    ``draws_skeletons`` is true also gets ``draw(n)``: ``n`` more skeletons of the pool (and their
    element budgets), drawn with the seed's generator.

    ``geometry``: an :class:`~crystalflow.crystal_tasks.sgcsp.SGCSPFlow` that re-generates
    positions and lattice of every sample given its template (:func:`regenerate_geometry`), or
    ``None`` (the DNG flow's own).

    ``couple_elements``: draw a number of distinct elements with every skeleton (from the
    training data; ``len(elements)`` for a chemical system) and couple the orbit types to it (see
    the module docstring); ignored when the distribution records no element counts.

    Every crystal is checked (:func:`crystalflow.checks.check_structure`). Up to ``retries``
    rounds then re-sample, in batches, with :data:`RETRY_CANDIDATES` freshly drawn skeletons each
    (the first candidate that passes is kept), the crystals that miss an element of ``elements``
    and those that fail the check: atoms closer than 0.5 A (a collapsed orbit: free Wyckoff
    parameters that put atoms of one orbit, or of two, on top of each other) and, when
    ``space_group`` is requested, another spglib group (e.g. a skeleton whose realisation has a
    smaller cell or whose orbits of one element merge into a higher group). ``retries=0``
    measures the raw model. What still fails is flagged in ``checks``.
    """
    from tqdm.auto import tqdm

    from crystalflow.checks import check_structure

    if num < 1:
        raise InputError(f"num must be at least 1, got {num}", parameters=("num",))
    if retries < 0:
        raise InputError(f"retries must be >= 0, got {retries}", parameters=("retries",))
    pool = select_skeletons(dist, flow.allowed, space_group, elements, num_atoms)
    cpu_gen = torch.Generator().manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    skeletons = pool.sample(num, cpu_gen)
    coupled = couple_elements and pool.element_counts is not None

    def element_counts(drawn: list) -> torch.Tensor | None:
        if not coupled:
            return None
        if elements:
            return torch.full((len(drawn),), len(elements), dtype=torch.long)
        return pool.sample_element_counts(drawn, cpu_gen)

    budgets = element_counts(skeletons)

    def draw(n: int) -> tuple[list, torch.Tensor | None]:
        """More skeletons of the pool for a sampler whose particles draw their own."""
        extra = pool.sample(n, cpu_gen)
        return extra, element_counts(extra)

    restrict = None
    if elements is not None:
        restrict = torch.zeros(flow.allowed.shape[0], dtype=torch.bool)
        restrict[list(elements)] = True
    out: list[Crystal | None] = [None] * num
    orbits: list[torch.Tensor | None] = [None] * num
    checks: list = [None] * num
    space_groups = [s.space_group for s in skeletons]
    resampled: set[int] = set()

    def badness(crystal: Crystal, check) -> int:
        """0: keep; 1: passes the check but misses an element (the fallback can fix it); 2: fails."""
        if not check.ok:
            return 2
        return int(bool(elements) and not _covers(crystal.atom_types, elements))

    def redo(i: int) -> bool:
        return badness(out[i], checks[i]) > 0

    todo = list(range(num))
    for attempt in range(1 + retries):
        if not todo:
            break
        # a retry draws RETRY_CANDIDATES fresh skeletons per failing crystal (a failing skeleton
        # often fails again) and keeps the first candidate that passes
        slots = todo if not attempt else [i for i in todo for _ in range(RETRY_CANDIDATES)]
        if attempt:
            resampled.update(i for i in todo if checks[i] is not None and not checks[i].ok)
        drawn = skeletons if not attempt else pool.sample(len(slots), cpu_gen)
        drawn_budgets = budgets if not attempt else element_counts(drawn)
        settled: set[int] = set()
        for lo in tqdm(range(0, len(slots), batch_size), disable=not progress, desc="generating", unit="batch"):
            idx = slots[lo:lo + batch_size]
            batch_skeletons = drawn[lo:lo + len(idx)]  # slot k draws drawn[k] (slots = 0..num-1 at first)
            allowed = None if restrict is None else restrict[None].expand(len(idx), -1)
            extra = {} if drawn_budgets is None else {"num_elements": drawn_budgets[lo:lo + len(idx)]}
            if getattr(sampler, "draws_skeletons", False):
                extra["draw"] = draw
            res = (sampler or flow.sample)(batch_skeletons, allowed=allowed, steps=steps, generator=gen,
                                           device=device, **extra)
            if geometry is not None:
                res = regenerate_geometry(geometry, res, batch_skeletons, generator=gen, device=device)
            orbit = res.symmetry.orbit.cpu()
            starts = torch.cat([torch.zeros(1, dtype=torch.long), res.symmetry.num_orbits.cumsum(0)])
            atom_starts = torch.cat([torch.zeros(1, dtype=torch.long), res.num_atoms.cpu().cumsum(0)])
            for j, (i, c) in enumerate(zip(idx, res.to_crystals())):
                if i in settled:
                    continue
                check = check_structure(c.to_structure(), space_group)
                if out[i] is not None and badness(c, check) >= badness(out[i], checks[i]):
                    continue  # keep the better earlier candidate
                out[i], checks[i] = c, check
                space_groups[i] = int(res.symmetry.space_group[j])  # the kept particle's (a sampler may pick another skeleton)
                orbits[i] = orbit[atom_starts[j]:atom_starts[j + 1]] - starts[j]
                if not redo(i):
                    settled.add(i)
        todo = [i for i in todo if redo(i)]
    repaired = [i for i in todo if elements and not _covers(out[i].atom_types, elements)]
    for i in repaired:
        out[i] = _repair(out[i], orbits[i], elements, space_group)
        checks[i] = check_structure(out[i].to_structure(), space_group)
    return GeneratedSet(crystals=list(out), space_groups=space_groups,
                        repaired=repaired, checks=checks, resampled=len(resampled))


def summary_rows(crystals: Sequence[Crystal], names: Sequence[str] | None = None,
                 checks: Sequence | None = None, symprec: float = 0.1) -> list[dict]:
    """One row per crystal: file, formula, atoms, volume per atom and the check's columns
    (``ok``, ``problem``, spglib ``space_group`` at ``symprec``, ``min_distance``, validity)."""
    from crystalflow.checks import check_structure

    rows = []
    for k, c in enumerate(crystals):
        s = c.to_structure()
        check = checks[k] if checks is not None else check_structure(s, None, symprec)
        cols = check.to_row()
        cols["min_distance"] = round(cols["min_distance"], 3)
        rows.append({
            "file": names[k] if names else "", "formula": s.composition.reduced_formula,
            "num_atoms": len(s), "volume_per_atom": round(float(s.volume) / len(s), 3), **cols,
        })
    return rows


def write_generated(crystals: Sequence[Crystal], out: str | os.PathLike, checks: Sequence | None = None,
                    symprec: float = 0.1) -> list[dict]:
    """Write one CIF per crystal and ``summary.csv`` to ``out`` (created when missing; check it
    first with :func:`crystalflow.outputs.prepare_output_dir`) and list them in its manifest;
    returns the summary rows (``checks``: the crystals' checks, computed when not given)."""
    from crystalflow.outputs import record_outputs, safe_stems, write_summary_csv

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    structures = [c.to_structure() for c in crystals]
    stems = safe_stems([f"{k:04d}_{s.composition.reduced_formula}" for k, s in enumerate(structures)])
    names = [f"{stem}.cif" for stem in stems]
    for name, s in zip(names, structures):
        write_text_atomic(out / name, s.to(fmt="cif"))
    record_outputs(out, names)
    rows = summary_rows(crystals, names, checks, symprec)
    write_summary_csv(out, rows)
    return rows


def generate(
    space_group: int | None = None, num: int = 16, *, elements: str | Sequence[str] | None = None,
    num_atoms: int | None = None, steps: int | None = None, seed: int = 0,
    checkpoint: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
    overwrite: bool = False, retries: int = 3, batch_size: int = 128,
    device: str | torch.device = "cpu", progress: bool = False, steer=None, reward=None,
    couple_elements: bool = True, geometry: str | os.PathLike | None = "auto", refine=None,
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
        out: if given, write ``NNNN_<formula>.cif`` files and ``summary.csv`` there (checked
            before sampling: it must be empty unless ``overwrite``, see
            :func:`crystalflow.outputs.prepare_output_dir`).
        overwrite: replace the files a previous run wrote to ``out``.
        retries: re-sampling rounds for crystals that miss an element or fail the space-group /
            distance check (see :func:`generate_crystals`).
        steer: a :class:`crystalflow.crystal_tasks.steering.SteeringConfig` (best-of-N or SMC particles) to
            spend more sampling compute on a lower ``reward``.
        reward: ``structures -> costs`` (lower is better; default: unrelaxed CHGNet energy above
            the bundled hull, :class:`crystalflow.crystal_tasks.rewards.HullEnergyReward`); needs ``steer``.
        refine: the second-stage reward of ``steer.refine_top`` (the M best particles of each
            crystal re-scored by it, e.g. ``HullEnergyReward(relax_steps=10)``); needs ``steer``
            with ``refine_top > 0``.
        couple_elements: couple the orbit types to a number of distinct elements drawn from the
            training data (default); ``False`` draws every orbit's type on its own.
        geometry: two-stage sampling (see the module docstring): ``"auto"`` (the checkpoint's
            choice; with ``steer``, the DNG geometry the reward was computed on), ``"dng"`` /
            ``None``, or an sgcsp checkpoint name / path (not with ``steer``).

    Returns:
        The crystals (conventional cells; ``Crystal.to_structure()`` for pymatgen). Those that
        still fail their check are returned too and flagged in ``summary.csv`` (``ok``,
        ``problem``).

    Raises:
        InputError: bad space group or element, no compatible training template, or an output
            folder that is not usable.
    """
    from crystalflow.symmetry.groups import check_space_group_number

    if space_group is not None:
        space_group = check_space_group_number(space_group)
    zs = parse_elements(elements)
    if (reward is not None or refine is not None) and steer is None:
        raise InputError("a reward needs steer=SteeringConfig(...)")
    flow, dist = _load(None if checkpoint is None else str(checkpoint), str(device))
    geometry_flow = load_geometry(flow, geometry, device, steering=steer is not None)
    sampler = None
    if steer is not None:
        from crystalflow.crystal_tasks.steering import SteeredSampler

        sampler = SteeredSampler(flow, steer, reward=reward, refine=refine, progress=progress)
        batch_size = max(1, batch_size // steer.particles)
    if out is not None:
        from crystalflow.outputs import prepare_output_dir

        select_skeletons(dist, flow.allowed, space_group, zs, num_atoms)  # refuse before creating out
        out = prepare_output_dir(out, overwrite=overwrite)
    res = generate_crystals(flow, dist, num, space_group=space_group, elements=zs, num_atoms=num_atoms,
                            steps=steps, seed=seed, batch_size=batch_size, retries=retries,
                            device=device, progress=progress, sampler=sampler,
                            couple_elements=couple_elements, geometry=geometry_flow)
    if out is not None:
        write_generated(res.crystals, out, res.checks)
    return res.crystals
