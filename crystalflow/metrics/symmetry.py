"""Symmetry metrics of generated crystals: space groups, d_sg and Wyckoff templates.

Definitions follow SymmCD (Levy et al., "SymmCD: Symmetry-Preserving Crystal Generation with
Diffusion Models", ICLR 2025):

* space group of each structure from spglib (via pymatgen's ``SpacegroupAnalyzer``) with
  ``symprec=0.1`` A and ``angle_tolerance=5`` degrees, the tolerance generative-model papers use for
  generated structures (DiffCSP++, MatterGen, SymmCD);
* ``d_sg``: the Jensen-Shannon *distance* (square root of the divergence, base 2, so in [0, 1])
  between the space-group histograms (230 bins) of the samples and of the reference set;
* fraction of structures above P1 (space group number > 1);
* a *template* is the space group together with the multiset of occupied Wyckoff positions (one
  letter per symmetry orbit, in spglib's standard setting), elements ignored; the number of
  distinct templates among the samples and of those absent from the training set ("novel").
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np
from pymatgen.core import Structure

from crystalflow.metrics._parallel import parallel_map

__all__ = [
    "SYMPREC",
    "keeps_space_group",
    "space_group_agreement",
    "SymmetryInfo",
    "SymmetryMetrics",
    "d_sg",
    "fraction_above_p1",
    "spacegroup_histogram",
    "symmetry_info",
    "symmetry_infos",
    "symmetry_metrics",
]

# spglib prints C-level warnings (e.g. "ssm_get_exact_positions failed") on near-degenerate cells
os.environ.setdefault("SPGLIB_WARNING", "OFF")

#: spglib distance tolerance (A) for generated structures
SYMPREC = 0.1
#: spglib angle tolerance (degrees)
ANGLE_TOLERANCE = 5.0

Template = tuple[int, tuple[str, ...]]


@dataclass(frozen=True)
class SymmetryInfo:
    """Space group and Wyckoff template of one structure.

    Attributes:
        spacegroup: international number, 1..230 (1 when spglib fails).
        wyckoffs: sorted Wyckoff letters, one per symmetry orbit.
    """

    spacegroup: int
    wyckoffs: tuple[str, ...]

    @property
    def template(self) -> Template:
        """``(space group, Wyckoff multiset)``: the element-agnostic template."""
        return (self.spacegroup, self.wyckoffs)


def symmetry_info(
    structure: Structure, symprec: float = SYMPREC, angle_tolerance: float = ANGLE_TOLERANCE
) -> SymmetryInfo:
    """spglib space group and Wyckoff template of a structure (P1 with all-``a`` sites on failure)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        dataset = SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=angle_tolerance).get_symmetry_dataset()
    except Exception:
        dataset = None
    if dataset is None:
        return SymmetryInfo(1, tuple("a" * len(structure)))
    number = int(dataset.number if hasattr(dataset, "number") else dataset["number"])
    wyckoffs = list(dataset.wyckoffs if hasattr(dataset, "wyckoffs") else dataset["wyckoffs"])
    equivalent = list(dataset.equivalent_atoms if hasattr(dataset, "equivalent_atoms") else dataset["equivalent_atoms"])
    orbit_letters = {int(e): wyckoffs[i] for i, e in enumerate(equivalent)}
    return SymmetryInfo(number, tuple(sorted(orbit_letters.values())))


def _info_task(task: tuple[Structure, float, float]) -> SymmetryInfo:
    return symmetry_info(*task)


def symmetry_infos(
    structures: Sequence[Structure],
    *,
    symprec: float = SYMPREC,
    angle_tolerance: float = ANGLE_TOLERANCE,
    workers: int = 1,
    progress: bool = True,
) -> list[SymmetryInfo]:
    """:func:`symmetry_info` of every structure (optionally in parallel)."""
    tasks = [(s, symprec, angle_tolerance) for s in structures]
    return parallel_map(_info_task, tasks, workers=workers, progress=progress, desc="symmetry")


def keeps_space_group(prediction: Structure | None, reference: Structure,
                      symprec: float = SYMPREC) -> bool:
    """Whether a prediction has its reference's spglib space group (same ``symprec``): the check
    of space-group conditioned CSP. A missing prediction (``None``) does not."""
    if prediction is None:
        return False
    return symmetry_info(prediction, symprec).spacegroup == symmetry_info(reference, symprec).spacegroup


def _keeps_task(task: tuple[Structure | None, Structure, float]) -> bool:
    return keeps_space_group(*task)


def space_group_agreement(
    predictions: Sequence[Structure | None],
    references: Sequence[Structure],
    *,
    symprec: float = SYMPREC,
    workers: int = 1,
    progress: bool = True,
) -> float:
    """Fraction of predictions that :func:`keeps_space_group` of their reference (a missing
    prediction, ``None``, counts as a disagreement)."""
    if len(predictions) != len(references):
        raise ValueError("need one prediction (or None) per reference")
    if not references:
        raise ValueError("no references")
    tasks = [(p, r, symprec) for p, r in zip(predictions, references)]
    kept = parallel_map(_keeps_task, tasks, workers=workers, progress=progress, desc="symmetry")
    return sum(kept) / len(references)


def spacegroup_histogram(spacegroups: Iterable[int]) -> np.ndarray:
    """Counts of space groups 1..230 (index 0 is space group 1)."""
    counts = np.zeros(230, dtype=float)
    for sg in spacegroups:
        if not 1 <= int(sg) <= 230:
            raise ValueError(f"space group number {sg} outside 1..230")
        counts[int(sg) - 1] += 1
    return counts


def d_sg(sample_spacegroups: Iterable[int], reference_spacegroups: Iterable[int]) -> float:
    """SymmCD's ``d_sg``: Jensen-Shannon distance (base 2, in [0, 1]) of space-group histograms.

    ``nan`` when either set is empty.
    """
    from scipy.spatial.distance import jensenshannon

    p = spacegroup_histogram(sample_spacegroups)
    q = spacegroup_histogram(reference_spacegroups)
    if p.sum() == 0 or q.sum() == 0:
        return float("nan")
    p, q = p / p.sum(), q / q.sum()
    value = float(jensenshannon(p, q, base=2))
    if not np.isfinite(value):  # rounding can make a zero divergence slightly negative
        value = 0.0 if np.allclose(p, q) else float("nan")
    return min(max(value, 0.0), 1.0)


def fraction_above_p1(spacegroups: Sequence[int]) -> float:
    """Fraction of structures whose space group is not P1 (number > 1); ``nan`` if empty."""
    if len(spacegroups) == 0:
        return float("nan")
    return float(np.mean([int(sg) > 1 for sg in spacegroups]))


@dataclass(frozen=True)
class SymmetryMetrics:
    """Symmetry metrics of a set of samples.

    Attributes:
        d_sg: Jensen-Shannon distance of space-group distributions to the reference.
        frac_above_p1: fraction of samples with a space group above P1.
        num_templates: distinct (space group, Wyckoff multiset) templates among the samples.
        num_novel_templates: of those, how many no training structure has (``None`` without a
            training set).
        num_samples: structures analysed.
        spacegroup_counts: space group -> number of samples.
    """

    d_sg: float
    frac_above_p1: float
    num_templates: int
    num_novel_templates: int | None
    num_samples: int
    spacegroup_counts: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["spacegroup_counts"] = {str(k): v for k, v in sorted(self.spacegroup_counts.items())}
        return out


def symmetry_metrics_from_infos(
    samples: Sequence[SymmetryInfo],
    reference: Sequence[SymmetryInfo],
    train: Sequence[SymmetryInfo] | None = None,
) -> SymmetryMetrics:
    """:class:`SymmetryMetrics` from precomputed :class:`SymmetryInfo` lists."""
    sgs = [s.spacegroup for s in samples]
    templates = {s.template for s in samples}
    novel = None
    if train is not None:
        known = {t.template for t in train}
        novel = len(templates - known)
    return SymmetryMetrics(
        d_sg=d_sg(sgs, [r.spacegroup for r in reference]),
        frac_above_p1=fraction_above_p1(sgs),
        num_templates=len(templates),
        num_novel_templates=novel,
        num_samples=len(samples),
        spacegroup_counts=dict(Counter(sgs)),
    )


def symmetry_metrics(
    samples: Sequence[Structure],
    reference: Sequence[Structure],
    train: Sequence[Structure] | None = None,
    *,
    symprec: float = SYMPREC,
    workers: int = 1,
    progress: bool = True,
) -> SymmetryMetrics:
    """SymmCD symmetry metrics of ``samples`` against ``reference`` (and ``train`` for novelty)."""
    kw = dict(symprec=symprec, workers=workers, progress=progress)
    return symmetry_metrics_from_infos(
        symmetry_infos(samples, **kw),
        symmetry_infos(reference, **kw),
        symmetry_infos(train, **kw) if train is not None else None,
    )
