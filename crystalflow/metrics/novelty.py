"""Uniqueness and novelty of generated crystals, by pymatgen's StructureMatcher.

Definitions (MatterGen, Zeni et al., Nature 2025; FlowMM, Miller et al., ICML 2024; the S.U.N.
convention): a sample is *unique* when no earlier sample in the set matches it (so the number of
unique samples equals the number of StructureMatcher groups), and *novel* when it matches no
structure of the training split. Matching uses ``StructureMatcher()`` with pymatgen's default
tolerances (``ltol=0.2, stol=0.3, angle_tol=5``), as those works do. Only structures with the same
reduced formula can match, so comparisons are restricted to formula groups.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Sequence

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from crystalflow.metrics._parallel import parallel_map

__all__ = ["NoveltyMetrics", "novelty_flags", "novelty_matcher", "novelty_metrics", "structures_match",
           "uniqueness_flags"]


@functools.lru_cache(maxsize=1)
def novelty_matcher() -> StructureMatcher:
    """``StructureMatcher()`` with pymatgen's default tolerances."""
    return StructureMatcher()


def structures_match(a: Structure, b: Structure) -> bool:
    """Do ``a`` and ``b`` match under :func:`novelty_matcher` (the uniqueness / novelty test)?
    ``False`` when the matcher fails."""
    try:
        return bool(novelty_matcher().fit(a, b))
    except Exception:
        return False


def _first_match(task: tuple[Structure, Sequence[Structure]]) -> bool:
    """Worker: does ``structure`` match any of ``candidates``?"""
    structure, candidates = task
    return any(structures_match(structure, c) for c in candidates)


def _unique_in_group(group: Sequence[Structure]) -> list[bool]:
    """Worker: first-occurrence uniqueness flags within a same-formula group."""
    kept: list[Structure] = []
    flags = []
    for s in group:
        dup = any(structures_match(s, k) for k in kept)
        flags.append(not dup)
        if not dup:
            kept.append(s)
    return flags


def _formula(s: Structure) -> str:
    return s.composition.reduced_formula


def uniqueness_flags(structures: Sequence[Structure], *, workers: int = 1, progress: bool = True) -> list[bool]:
    """``True`` for each structure that matches no earlier structure in the list."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(structures):
        groups[_formula(s)].append(i)
    keys = list(groups)
    results = parallel_map(
        _unique_in_group, [[structures[i] for i in groups[k]] for k in keys],
        workers=workers, progress=progress, desc="uniqueness",
    )
    flags = [True] * len(structures)
    for key, group_flags in zip(keys, results):
        for i, flag in zip(groups[key], group_flags):
            flags[i] = flag
    return flags


def novelty_flags(
    structures: Sequence[Structure], train: Sequence[Structure], *, workers: int = 1, progress: bool = True
) -> list[bool]:
    """``True`` for each structure that matches no training structure."""
    by_formula: dict[str, list[Structure]] = defaultdict(list)
    for t in train:
        by_formula[_formula(t)].append(t)
    tasks = [(s, by_formula.get(_formula(s), [])) for s in structures]
    matched = parallel_map(_first_match, tasks, workers=workers, progress=progress, desc="novelty")
    return [not m for m in matched]


@dataclass(frozen=True)
class NoveltyMetrics:
    """Uniqueness and novelty rates.

    Attributes:
        unique_rate: fraction of samples matching no earlier sample.
        novel_rate: fraction of samples matching no training structure (``None`` without one).
        unique_novel_rate: fraction both unique and novel (``None`` without a training set).
        num_samples: structures evaluated.
    """

    unique_rate: float
    novel_rate: float | None
    unique_novel_rate: float | None
    num_samples: int

    def to_dict(self) -> dict:
        return asdict(self)


def novelty_metrics(
    structures: Sequence[Structure],
    train: Sequence[Structure] | None = None,
    *,
    workers: int = 1,
    progress: bool = True,
) -> NoveltyMetrics:
    """Uniqueness (and, given a training set, novelty) of a set of structures."""
    n = len(structures)
    if n == 0:
        return NoveltyMetrics(float("nan"), None, None, 0)
    unique = uniqueness_flags(structures, workers=workers, progress=progress)
    if train is None:
        return NoveltyMetrics(sum(unique) / n, None, None, n)
    novel = novelty_flags(structures, train, workers=workers, progress=progress)
    both = sum(u and v for u, v in zip(unique, novel))
    return NoveltyMetrics(sum(unique) / n, sum(novel) / n, both / n, n)
