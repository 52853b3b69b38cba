"""CHGNet energies and relaxations: the energy model behind the stability metrics.

CHGNet (Deng et al., "CHGNet as a pretrained universal neural network potential for charge-informed
atomistic modelling", Nat. Mach. Intell. 2023) ships its weights inside its wheel, so nothing is
downloaded. Energies are CHGNet's raw total energies per atom (trained on MPtrj GGA/GGA+U
energies); no MP2020 correction is applied, neither here nor in the reference hull, so every
E_hull this package reports is measured on a *CHGNet* hull, not a DFT one.

Relaxation uses CHGNet's ``StructOptimizer`` (FIRE on positions and cell through ASE's
``FrechetCellFilter``), as FlowMM and MatterGen do before their DFT step; :func:`relax_many`
runs the same steps batched (:mod:`crystalflow.metrics.relax_batch`).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

from pymatgen.core import Structure

from crystalflow.errors import DataError
from crystalflow.metrics._parallel import parallel_map

__all__ = [
    "CHGNET_MODEL",
    "MIN_VOLUME_PER_ATOM",
    "Relaxation",
    "chgnet_version",
    "collapsed_cell",
    "load_chgnet",
    "relax",
    "relax_many",
    "static_energies",
]

#: the CHGNet weights used throughout (the default of chgnet 0.3 / 0.4)
CHGNET_MODEL = "0.3.0"

#: A^3 per atom: a cell below this is neither relaxed nor evaluated (:func:`collapsed_cell`). No
#: crystal comes near it (diamond: 5.7 A^3/atom); CHGNet's graph of a near-flat cell grows with
#: the density of periodic images: a 3-atom cell of 1e-3 A^3 ran out of 24 GB building it.
MIN_VOLUME_PER_ATOM = 1.0


def collapsed_cell(structure: Structure | None = None, *, volume: float | None = None,
                   num_atoms: int | None = None) -> str | None:
    """Why CHGNet is not asked about this cell (volume per atom below :data:`MIN_VOLUME_PER_ATOM`,
    or not finite), else ``None``. Give a ``structure`` or its ``volume`` (A^3) and ``num_atoms``."""
    if structure is not None:
        volume, num_atoms = abs(float(structure.lattice.volume)), len(structure)
    if not num_atoms:
        return None
    per_atom = float(volume) / num_atoms
    if per_atom >= MIN_VOLUME_PER_ATOM:
        return None
    return (f"skipped: collapsed cell, {per_atom:.3g} A^3/atom < {MIN_VOLUME_PER_ATOM:g} A^3/atom "
            "(CHGNet's neighbour graph would not fit in memory)")


def chgnet_version() -> str:
    """Installed CHGNet package version."""
    import chgnet

    return str(chgnet.__version__)


@functools.lru_cache(maxsize=2)
def load_chgnet(model_name: str = CHGNET_MODEL):
    """The pretrained CHGNet model on CPU, loaded once per process from the wheel's weights.

    Raises:
        DataError: CHGNet is not installed or its weights are missing.
    """
    try:
        from chgnet.model import CHGNet
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise DataError("CHGNet is not installed: pip install chgnet") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                model = CHGNet.load(model_name=model_name, use_device="cpu", verbose=False)
        except Exception as exc:
            raise DataError(f"cannot load CHGNet {model_name} weights: {exc}") from exc
    model.eval()
    return model


def _energies_one_by_one(model, structures: Sequence[Structure]) -> list[float | None]:
    out: list[float | None] = []
    for s in structures:
        try:
            pred = model.predict_structure(s, task="e", batch_size=1)
            out.append(float(pred["e"]))
        except Exception:
            out.append(None)
    return out


def static_energies(
    structures: Sequence[Structure],
    *,
    batch_size: int = 16,
    model_name: str = CHGNET_MODEL,
    progress: bool = True,
) -> list[float | None]:
    """CHGNet energy per atom (eV/atom) of each structure as given (no relaxation).

    A batch that fails is retried structure by structure; a structure CHGNet cannot handle
    (e.g. an isolated atom, or a :func:`collapsed_cell`, never given to CHGNet) gets ``None``.
    """
    import torch
    from tqdm.auto import tqdm

    model = load_chgnet(model_name)
    keep = [i for i, s in enumerate(structures) if collapsed_cell(s) is None]
    todo = [structures[i] for i in keep]
    out: list[float | None] = []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start in tqdm(range(0, len(todo), batch_size), disable=not progress, desc="chgnet", leave=False):
            chunk = list(todo[start : start + batch_size])
            try:
                preds = model.predict_structure(chunk, task="e", batch_size=batch_size)
                if isinstance(preds, dict):
                    preds = [preds]
                out.extend(float(p["e"]) for p in preds)
            except Exception:
                out.extend(_energies_one_by_one(model, chunk))
    energies: list[float | None] = [None] * len(structures)
    for i, e in zip(keep, out):
        energies[i] = e if e is not None and math.isfinite(e) else None
    return energies


@dataclass(frozen=True)
class Relaxation:
    """Result of a CHGNet relaxation.

    Attributes:
        structure: the relaxed structure (the input when the relaxation failed).
        energy_per_atom: CHGNet energy of the relaxed structure (eV/atom); ``nan`` on failure.
        initial_energy_per_atom: CHGNet energy before relaxation (eV/atom).
        steps: optimiser steps taken.
        converged: the largest force fell below ``fmax`` within the step budget.
        error: why the relaxation failed, else ``None``.
    """

    structure: Structure = field(repr=False)
    energy_per_atom: float
    initial_energy_per_atom: float
    steps: int
    converged: bool
    error: str | None = None


def relax(
    structure: Structure,
    *,
    steps: int = 500,
    fmax: float = 0.1,
    relax_cell: bool = True,
    model_name: str = CHGNET_MODEL,
) -> Relaxation:
    """Relax a structure with CHGNet's ``StructOptimizer`` (FIRE, FrechetCellFilter).

    Args:
        structure: the starting structure.
        steps: maximum optimiser steps (0 gives a static evaluation).
        fmax: force convergence threshold (eV/A).
        relax_cell: also relax the lattice.
        model_name: CHGNet weights.

    Returns:
        The relaxation result; failures are reported in ``error``, never raised (a
        :func:`collapsed_cell` is refused before CHGNet sees it).
    """
    import numpy as np
    from chgnet.model import StructOptimizer

    nan = float("nan")
    problem = collapsed_cell(structure)
    if problem is not None:
        return Relaxation(structure, nan, nan, 0, False, problem)
    model = load_chgnet(model_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if steps <= 0:
                e = static_energies([structure], model_name=model_name, progress=False)[0]
                e = nan if e is None else e
                return Relaxation(structure, e, e, 0, False, None if e == e else "CHGNet failed")
            with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its device
                optimizer = StructOptimizer(model=model, on_isolated_atoms="ignore")
                result = optimizer.relax(
                    structure, fmax=fmax, steps=steps, relax_cell=relax_cell, verbose=False, loginterval=1
                )
        except Exception as exc:
            return Relaxation(structure, nan, nan, 0, False, f"{type(exc).__name__}: {exc}")
    traj = result["trajectory"]
    n = len(structure)
    energies = [float(e) / n for e in traj.energies] if len(traj.energies) else [nan]
    taken = max(len(energies) - 2, 0)  # the observer logs the start, every step and the end again
    final = result["final_structure"]
    forces = traj.forces[-1] if len(traj.forces) else None
    converged = bool(forces is not None and np.max(np.linalg.norm(forces, axis=1)) <= fmax)
    energy = energies[-1]
    if not math.isfinite(energy):
        return Relaxation(structure, nan, energies[0], taken, False, "non-finite energy")
    return Relaxation(final, energy, energies[0], taken, converged, None)


def _relax_task(task: tuple[dict, int, float, bool, str]) -> Relaxation:
    """Worker: relax one structure given as a pymatgen dict."""
    data, steps, fmax, relax_cell, model_name = task
    return relax(Structure.from_dict(data), steps=steps, fmax=fmax, relax_cell=relax_cell, model_name=model_name)


def relax_many(
    structures: Sequence[Structure],
    *,
    steps: int = 500,
    fmax: float = 0.1,
    relax_cell: bool = True,
    model_name: str = CHGNET_MODEL,
    workers: int = 1,
    progress: bool = True,
    batched: bool = True,
    batch_size: int | None = None,
) -> list[Relaxation]:
    """Relax every structure with CHGNet.

    Args:
        structures, steps, fmax, relax_cell, model_name: as :func:`relax`.
        workers: single-threaded processes (``<= 1``: this process).
        progress: show a progress bar.
        batched: relax with :func:`crystalflow.metrics.relax_batch.relax_batch` (same FIRE and
            FrechetCellFilter steps, one CHGNet pass per step over up to ``batch_size``
            structures; ~1.7x faster per structure on one CPU thread, the same energies to
            float32 round-off); ``False``: :func:`relax` one structure at a time.
        batch_size: structures relaxed together (default ``RELAX_BATCH_SIZE``); with
            ``workers > 1`` each process relaxes its own contiguous share of the structures.
    """
    if not batched:
        tasks = [(s.as_dict(), steps, fmax, relax_cell, model_name) for s in structures]
        return parallel_map(_relax_task, tasks, workers=workers, progress=progress, desc="relax", chunksize=1)
    from crystalflow.metrics.relax_batch import RELAX_BATCH_SIZE, relax_batch, relax_batch_chunk

    size = batch_size or RELAX_BATCH_SIZE
    kwargs = dict(steps=steps, fmax=fmax, relax_cell=relax_cell, batch_size=size, model_name=model_name)
    if workers <= 1 or len(structures) <= size:
        return relax_batch(structures, progress=progress, **kwargs)
    share = max(size, math.ceil(len(structures) / (4 * workers)))  # a few shares per process: balance
    tasks = [([s.as_dict() for s in structures[i : i + share]], kwargs | {"progress": False})
             for i in range(0, len(structures), share)]
    chunks = parallel_map(relax_batch_chunk, tasks, workers=workers, progress=progress, desc="relax", chunksize=1)
    return [r for chunk in chunks for r in chunk]
