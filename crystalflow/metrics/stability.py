"""Thermodynamic stability of generated crystals: CHGNet relaxation, E_hull and S.U.N.

Protocol (FlowMM, Miller et al., ICML 2024; MatterGen, Zeni et al., Nature 2025), with CHGNet in
place of DFT: relax every sample with CHGNet, take its energy per atom, and compute the energy above
the convex hull of a reference set evaluated with the *same* model
(:mod:`crystalflow.metrics.hull`). Reported rates use all samples as the denominator (a failed
relaxation is not stable):

* ``frac_stable``: E_hull <= 1e-6 eV/atom (FlowMM's "stable", E_hull <= 0, with a tolerance of
  :data:`HULL_TOLERANCE` for the hull's floating-point noise: a structure *on* the hull, such as
  rock-salt NaCl at E_hull = 4e-6, counts as stable);
* ``frac_metastable``: E_hull < 0.1 eV/atom (MatterGen's "stable" threshold);
* ``sun_rate``: stable (E_hull <= 1e-6), unique within the set and novel w.r.t. the training split
  (uniqueness and novelty as in :mod:`crystalflow.metrics.novelty`, on relaxed structures);
  ``msun_rate`` is the same with E_hull < 0.1.

The two cut-offs are options (``stable_cutoff``, ``metastable_cutoff`` of :func:`stability_metrics`
and :func:`evaluate_stability`; ``crystalflow evaluate stability --stable-cutoff / --metastable-cutoff``):
"stable" is E_hull <= ``stable_cutoff`` + :data:`HULL_TOLERANCE`, "metastable" E_hull <
``metastable_cutoff``. ``unique_rate`` and ``novel_rate`` are reported beside them, so that a
method cannot buy stability with duplicates or training copies unnoticed.

A hull built from one dataset has gaps: a sample in a chemical system where the reference lacks
phases (MP-20 has no Nd-F compound, so a generated Rb2NdHgF6 lands 1.3 eV/atom "below" it) counts
as stable however poor it is. Samples more than ``hull_floor`` (default :data:`HULL_FLOOR`,
0.1 eV/atom; ``--hull-floor``) below the hull are therefore also counted apart:
``frac_below_floor``, and ``sun_floor_rate`` is S.U.N. over samples with ``-hull_floor <= E_hull <=
stable_cutoff`` only, the rate a hull gap cannot inflate (a lower bound: a truly new ground state
far below the hull is not counted either).

All E_hull values are relative to a CHGNet hull, not a DFT one.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from pymatgen.core import Structure

from crystalflow.metrics.energy import relax_many
from crystalflow.metrics.hull import ReferenceHull

__all__ = [
    "METASTABLE_THRESHOLD",
    "HULL_FLOOR",
    "HULL_TOLERANCE",
    "STABLE_THRESHOLD",
    "StabilityMetrics",
    "StabilityRecord",
    "StabilityResult",
    "evaluate_stability",
    "read_stability_csv",
    "stability_metrics",
    "write_stability_csv",
]

#: eV/atom: "stable" means an E_hull of at most this plus :data:`HULL_TOLERANCE` (on or below the hull)
STABLE_THRESHOLD = 0.0
#: eV/atom: numerical tolerance of "on the hull" (hull energies are differences of float sums)
HULL_TOLERANCE = 1e-6
#: eV/atom: "metastable" means strictly below this E_hull
METASTABLE_THRESHOLD = 0.1
#: eV/atom: E_hull below minus this is counted apart as a likely gap of the reference hull
HULL_FLOOR = 0.1


@dataclass(frozen=True)
class StabilityRecord:
    """Stability of one sample.

    Attributes:
        name: sample name (file stem).
        formula: reduced formula.
        num_sites: atoms in the cell.
        energy_per_atom: CHGNet energy after relaxation (eV/atom).
        initial_energy_per_atom: CHGNet energy before relaxation (eV/atom).
        e_above_hull: eV/atom above the CHGNet hull (``nan`` if unavailable).
        decomposition: hull phases it decomposes into, ``+``-joined.
        relax_steps: optimiser steps taken.
        converged: forces fell below ``fmax``.
        unique: matches no earlier sample (``None`` if not computed).
        novel: matches no training structure (``None`` if not computed).
        error: why relaxation or E_hull failed.
        structure: the relaxed structure (not written to CSV).
    """

    name: str
    formula: str
    num_sites: int
    energy_per_atom: float
    initial_energy_per_atom: float
    e_above_hull: float
    decomposition: str
    relax_steps: int
    converged: bool
    unique: bool | None = None
    novel: bool | None = None
    error: str | None = None
    structure: Structure | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class StabilityMetrics:
    """Stability rates of a set of samples (all against a CHGNet hull).

    Attributes:
        num_structures: samples given.
        num_evaluated: samples with a finite E_hull.
        frac_stable: fraction with E_hull <= 1e-6 eV/atom (on or below the hull).
        frac_metastable: fraction with E_hull < 0.1 eV/atom.
        mean_e_above_hull: mean finite E_hull (eV/atom).
        median_e_above_hull: median finite E_hull (eV/atom).
        mean_energy_per_atom: mean relaxed CHGNet energy (eV/atom).
        sun_rate: stable, unique and novel (``None`` without uniqueness/novelty).
        msun_rate: metastable, unique and novel (``None`` without uniqueness/novelty).
        seconds_per_structure: wall time per sample of relaxation + E_hull.
        hull: description of the reference hull.
        unique_rate: fraction matching no earlier sample (``None`` if not computed).
        novel_rate: fraction matching no training structure (``None`` if not computed).
        stable_cutoff / metastable_cutoff: the E_hull cut-offs used (eV/atom).
        frac_below_floor: fraction with E_hull < -``hull_floor`` (likely gaps of the reference hull).
        sun_floor_rate: S.U.N. over samples with -``hull_floor`` <= E_hull <= the stable cut-off
            only (``None`` without uniqueness/novelty).
        hull_floor: that floor (eV/atom).
    """

    num_structures: int
    num_evaluated: int
    frac_stable: float
    frac_metastable: float
    mean_e_above_hull: float
    median_e_above_hull: float
    mean_energy_per_atom: float
    sun_rate: float | None
    msun_rate: float | None
    seconds_per_structure: float
    hull: str
    unique_rate: float | None = None
    novel_rate: float | None = None
    stable_cutoff: float = STABLE_THRESHOLD
    metastable_cutoff: float = METASTABLE_THRESHOLD
    frac_below_floor: float = float("nan")
    sun_floor_rate: float | None = None
    hull_floor: float = HULL_FLOOR

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StabilityResult:
    """Per-sample records and the aggregated metrics."""

    records: tuple[StabilityRecord, ...]
    metrics: StabilityMetrics


def _nanfloat(values: Sequence[float], fn) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(fn(finite)) if finite else float("nan")


def stability_metrics(
    records: Sequence[StabilityRecord], *, hull_description: str = "CHGNet hull", seconds_per_structure: float = float("nan"),
    stable_cutoff: float = STABLE_THRESHOLD, metastable_cutoff: float = METASTABLE_THRESHOLD,
    hull_floor: float = HULL_FLOOR,
) -> StabilityMetrics:
    """Aggregate per-sample records into :class:`StabilityMetrics` (denominator: all samples;
    stable: E_hull <= ``stable_cutoff`` + :data:`HULL_TOLERANCE`, metastable: < ``metastable_cutoff``,
    below the floor: < -``hull_floor``)."""
    n = len(records)
    ehull = [r.e_above_hull for r in records]
    stable = [math.isfinite(e) and e <= stable_cutoff + HULL_TOLERANCE for e in ehull]
    meta = [math.isfinite(e) and e < metastable_cutoff for e in ehull]
    deep = [math.isfinite(e) and e < -hull_floor for e in ehull]
    have_un = n > 0 and all(r.unique is not None and r.novel is not None for r in records)
    sun = msun = sun_floor = unique_rate = novel_rate = None
    if have_un:
        sun = sum(s and r.unique and r.novel for s, r in zip(stable, records)) / n
        msun = sum(m and r.unique and r.novel for m, r in zip(meta, records)) / n
        sun_floor = sum(s and not d and r.unique and r.novel for s, d, r in zip(stable, deep, records)) / n
        unique_rate = sum(bool(r.unique) for r in records) / n
        novel_rate = sum(bool(r.novel) for r in records) / n
    return StabilityMetrics(
        num_structures=n,
        num_evaluated=sum(math.isfinite(e) for e in ehull),
        frac_stable=sum(stable) / n if n else float("nan"),
        frac_metastable=sum(meta) / n if n else float("nan"),
        mean_e_above_hull=_nanfloat(ehull, np.mean),
        median_e_above_hull=_nanfloat(ehull, np.median),
        mean_energy_per_atom=_nanfloat([r.energy_per_atom for r in records], np.mean),
        sun_rate=sun,
        msun_rate=msun,
        seconds_per_structure=seconds_per_structure,
        hull=hull_description,
        unique_rate=unique_rate,
        novel_rate=novel_rate,
        stable_cutoff=stable_cutoff,
        metastable_cutoff=metastable_cutoff,
        frac_below_floor=sum(deep) / n if n else float("nan"),
        sun_floor_rate=sun_floor,
        hull_floor=hull_floor,
    )


def evaluate_stability(
    structures: Sequence[Structure],
    hull: ReferenceHull,
    *,
    names: Sequence[str] | None = None,
    train: Sequence[Structure] | None = None,
    relax_steps: int = 500,
    fmax: float = 0.1,
    workers: int = 1,
    progress: bool = True,
    stable_cutoff: float = STABLE_THRESHOLD,
    metastable_cutoff: float = METASTABLE_THRESHOLD,
    hull_floor: float = HULL_FLOOR,
) -> StabilityResult:
    """Relax with CHGNet, compute E_hull against ``hull`` and, given ``train``, S.U.N.

    Args:
        structures: the samples.
        hull: the CHGNet reference hull (:func:`crystalflow.metrics.hull.load_reference_hull`).
        names: a name per sample (default ``0, 1, ...``).
        train: training structures for novelty (S.U.N. is computed only with them).
        relax_steps: CHGNet FIRE steps (0: static energies of the structures as given).
        fmax: force threshold (eV/A).
        workers: processes for the relaxations.
        progress: show progress bars.
        stable_cutoff / metastable_cutoff / hull_floor: E_hull cut-offs (eV/atom, see
            :func:`stability_metrics`).
    """
    from crystalflow.metrics.novelty import novelty_flags, uniqueness_flags

    names = list(names) if names is not None else [str(i) for i in range(len(structures))]
    if len(names) != len(structures):
        raise ValueError(f"{len(names)} names for {len(structures)} structures")
    t0 = time.perf_counter()
    relaxed = relax_many(structures, steps=relax_steps, fmax=fmax, workers=workers, progress=progress)
    records: list[StabilityRecord] = []
    for name, start, r in zip(names, structures, relaxed):
        error = r.error
        ehull, decomp = float("nan"), ""
        if error is None:
            try:
                result = hull.e_above_hull(r.structure.composition, r.energy_per_atom)
                ehull, decomp = result.e_above_hull, "+".join(result.decomposition)
                if not math.isfinite(ehull):
                    error = "no hull for this chemical system"
            except Exception as exc:  # degenerate hull
                error = f"E_hull failed: {exc}"
        records.append(StabilityRecord(
            name=name, formula=start.composition.reduced_formula, num_sites=len(start),
            energy_per_atom=r.energy_per_atom, initial_energy_per_atom=r.initial_energy_per_atom,
            e_above_hull=ehull, decomposition=decomp, relax_steps=r.steps, converged=r.converged,
            error=error, structure=r.structure,
        ))
    if train is not None and records:
        final = [r.structure for r in records]
        unique = uniqueness_flags(final, workers=workers, progress=progress)
        novel = novelty_flags(final, train, workers=workers, progress=progress)
        records = [
            StabilityRecord(**{**_fields(r), "unique": u, "novel": v}) for r, u, v in zip(records, unique, novel)
        ]
    elapsed = time.perf_counter() - t0
    metrics = stability_metrics(
        records, hull_description=hull.description,
        seconds_per_structure=elapsed / len(records) if records else float("nan"),
        stable_cutoff=stable_cutoff, metastable_cutoff=metastable_cutoff, hull_floor=hull_floor,
    )
    return StabilityResult(tuple(records), metrics)


def _fields(record: StabilityRecord) -> dict:
    return {k: getattr(record, k) for k in record.__dataclass_fields__}


CSV_COLUMNS = (
    "name", "formula", "num_sites", "energy_per_atom", "initial_energy_per_atom", "e_above_hull",
    "decomposition", "relax_steps", "converged", "unique", "novel", "error",
)
#: CSV header names where they differ from the record fields (energies are CHGNet's, not DFT's)
CSV_HEADER = {
    "energy_per_atom": "chgnet_energy_per_atom",
    "initial_energy_per_atom": "chgnet_initial_energy_per_atom",
    "e_above_hull": "e_above_chgnet_hull",
}


def write_stability_csv(records: Sequence[StabilityRecord], path: str | Path) -> Path:
    """Per-sample energies (eV/atom) and E_hull as CSV (written atomically); the header names
    say they are CHGNet values."""
    import io

    from crystalflow.crystals.crystal import write_text_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with io.StringIO(newline="") as f:
        writer = csv.writer(f)
        writer.writerow([CSV_HEADER.get(c, c) for c in CSV_COLUMNS])
        for r in records:
            row = []
            for col in CSV_COLUMNS:
                v = getattr(r, col)
                if isinstance(v, float):
                    v = "" if not math.isfinite(v) else f"{v:.6f}"
                elif v is None:
                    v = ""
                row.append(v)
            writer.writerow(row)
        write_text_atomic(path, f.getvalue())  # no half file after an interruption
    return path


def read_stability_csv(path: str | Path) -> list[StabilityRecord]:
    """The records of a CSV :func:`write_stability_csv` wrote (floats to its 6 decimals, empty
    cells as NaN / ``None``; structures are not stored, so ``structure`` is ``None``)."""
    def flag(text: str) -> bool | None:
        return None if text == "" else text == "True"

    def number(text: str) -> float:
        return float(text) if text != "" else float("nan")

    parse = {"num_sites": int, "relax_steps": int, "converged": lambda v: v == "True",
             "unique": flag, "novel": flag, "error": lambda v: v or None,
             **{c: number for c in ("energy_per_atom", "initial_energy_per_atom", "e_above_hull")}}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [StabilityRecord(**{c: parse.get(c, str)(row[CSV_HEADER.get(c, c)]) for c in CSV_COLUMNS})
            for row in rows]
