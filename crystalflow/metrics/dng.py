"""De-novo generation (DNG) metrics: the CDVAE table plus symmetry, uniqueness and novelty.

Conventions (CDVAE ``GenEval``, followed by DiffCSP, FlowMM and SymmCD):

* validity is over *all* samples; an unreadable sample file counts as an invalid sample; when
  coverage is computed, a sample whose CrystalNN fingerprint fails is not valid (as in CDVAE);
* Wasserstein distances, ``d_sg``, templates, uniqueness and novelty use the *valid* samples;
* coverage uses every sample with a fingerprint, and all samples (unreadable files included) in
  the COV-P denominator.

CDVAE subsamples 1,000 valid samples for the property metrics; this module uses every valid sample
(pass a subset to reproduce the subsampling).

The distribution metrics (``d_rho``, ``d_elem``, ``d_sg``) of a *finite* sample set are not zero
even for a perfect generator: :func:`sampling_floor` measures what ``n`` crystals drawn from the
reference distribution itself score, and :func:`dng_metrics` reports it beside each distance
(``floor_*``), so a distance can be read against the noise of its own sample size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from pymatgen.core import Structure

from crystalflow.metrics._parallel import parallel_map
from crystalflow.metrics.coverage import coverage, coverage_cutoffs
from crystalflow.metrics.distribution import wasserstein_1d
from crystalflow.metrics.reference import ReferenceProfile, profile_structures
from crystalflow.metrics.symmetry import d_sg, fraction_above_p1
from crystalflow.metrics.validity import smact_validity, structure_validity

__all__ = ["DNGMetrics", "SamplingFloor", "dng_metrics", "sampling_floor", "validity_flags"]


def _validity_task(structure: Structure) -> tuple[bool, bool]:
    try:
        comp = smact_validity(structure.composition)
    except Exception:
        comp = False
    return structure_validity(structure), comp


def validity_flags(
    structures: Sequence[Structure], *, workers: int = 1, progress: bool = True
) -> list[tuple[bool, bool]]:
    """``(structurally valid, SMACT-valid)`` of every structure."""
    return parallel_map(_validity_task, list(structures), workers=workers, progress=progress, desc="validity")


@dataclass(frozen=True)
class DNGMetrics:
    """DNG metrics of a sample set (fractions in [0, 1]; ``None`` when not computed).

    Attributes:
        struct_valid, comp_valid, valid: CDVAE validity rates over all samples.
        cov_recall, cov_precision: CDVAE coverage (``None`` when skipped).
        wdist_density, wdist_num_elems: CDVAE Wasserstein distances (valid samples vs reference).
        d_sg: SymmCD Jensen-Shannon distance of space-group distributions (valid samples).
        floor_wdist_density, floor_wdist_num_elems, floor_d_sg: the same three distances for as
            many crystals as there are valid samples, bootstrapped from the reference (mean over
            :data:`FLOOR_REPEATS` draws, :func:`sampling_floor`): what a perfect generator scores
            with this many samples against a reference of this size (``nan`` without valid samples).
        frac_above_p1: valid samples with a space group above P1.
        num_templates, num_novel_templates: distinct / training-novel Wyckoff templates.
        unique_rate, novel_rate, unique_novel_rate: among valid samples (StructureMatcher).
        num_samples: sample files (readable or not); num_unreadable: unreadable ones;
        num_valid: valid samples; num_references: reference structures; dataset: cutoff set.
    """

    struct_valid: float
    comp_valid: float
    valid: float
    cov_recall: float | None
    cov_precision: float | None
    wdist_density: float
    wdist_num_elems: float
    d_sg: float
    floor_wdist_density: float
    floor_wdist_num_elems: float
    floor_d_sg: float
    frac_above_p1: float
    num_templates: int
    num_novel_templates: int | None
    unique_rate: float | None
    novel_rate: float | None
    unique_novel_rate: float | None
    num_samples: int
    num_unreadable: int
    num_valid: int
    num_references: int
    dataset: str

    def to_dict(self) -> dict:
        return asdict(self)


#: draws averaged by the floor :func:`dng_metrics` reports
FLOOR_REPEATS = 20


@dataclass(frozen=True)
class SamplingFloor:
    """Distribution distances of ``num`` crystals drawn from a reference distribution.

    Each distance is ``(mean, standard deviation)`` over ``repeats`` independent draws.
    """

    num: int
    repeats: int
    wdist_density: tuple[float, float]
    wdist_num_elems: tuple[float, float]
    d_sg: tuple[float, float]


def sampling_floor(
    reference: ReferenceProfile,
    num: int,
    *,
    pool: ReferenceProfile | None = None,
    repeats: int = FLOOR_REPEATS,
    seed: int = 0,
) -> SamplingFloor:
    """What a generator that samples the data distribution exactly scores with ``num`` crystals.

    A measured distance compares two finite samples of one distribution: ``num`` generated
    crystals and the ``n_ref`` reference crystals, so even a perfect generator scores above zero,
    by more the smaller either side is. Without ``pool`` both sides are bootstrapped from the
    reference (``num`` and ``n_ref`` crystals drawn with replacement, ``repeats`` times), which
    estimates the distance between two independent samples of those sizes. With ``pool`` (an
    independent sample of the same data, e.g. another split), ``num`` crystals are drawn from it
    with replacement and compared with the reference itself.

    Args:
        reference: profile the distances are measured against (``n_ref`` crystals).
        num: crystals per draw (typically the number of valid samples).
        pool: independent profile to draw from (default: bootstrap the reference on both sides).
        repeats: independent draws.
        seed: seed of the draws (the result is a pure function of the inputs).
    """
    if num < 1 or repeats < 1:
        raise ValueError("num and repeats must be positive")
    bootstrap = pool is None
    pool = reference if pool is None else pool
    if len(pool) == 0 or len(reference) == 0:
        raise ValueError("empty reference or pool")
    rng = np.random.default_rng(seed)
    rho, elem, sg = [], [], []
    for _ in range(repeats):
        idx = rng.integers(0, len(pool), size=num)
        ref = rng.integers(0, len(reference), size=len(reference)) if bootstrap else np.arange(len(reference))
        rho.append(wasserstein_1d(pool.densities[idx], reference.densities[ref]))
        elem.append(wasserstein_1d(pool.num_elements[idx].astype(float), reference.num_elements[ref].astype(float)))
        sg.append(d_sg(pool.spacegroups[idx].tolist(), reference.spacegroups[ref].tolist()))

    def stats(values: list[float]) -> tuple[float, float]:
        return float(np.mean(values)), float(np.std(values))

    return SamplingFloor(num=num, repeats=repeats, wdist_density=stats(rho), wdist_num_elems=stats(elem),
                         d_sg=stats(sg))


def dng_metrics(
    samples: Sequence[Structure],
    reference: ReferenceProfile,
    *,
    train: Sequence[Structure] | None = None,
    train_templates: Sequence[str] | None = None,
    dataset: str = "mp_20",
    num_unreadable: int = 0,
    with_coverage: bool = True,
    with_novelty: bool = True,
    workers: int = 1,
    progress: bool = True,
) -> DNGMetrics:
    """All DNG metrics of ``samples`` against a reference profile.

    Args:
        samples: the readable generated structures.
        reference: profile of the reference split (:func:`crystalflow.metrics.reference.reference_profile`);
            it needs fingerprints when ``with_coverage``.
        train: training structures for novelty (only same-formula ones are needed).
        train_templates: Wyckoff templates of the training split, for novel templates.
        dataset: selects CDVAE's coverage cutoffs (mp_20, carbon_24, perov_5).
        num_unreadable: sample files that could not be read (invalid samples).
        with_coverage: compute CrystalNN coverage (slow).
        with_novelty: compute uniqueness (and novelty, given ``train``).
        workers: processes.
        progress: show progress bars.
    """
    from crystalflow.metrics.novelty import novelty_metrics

    total = len(samples) + num_unreadable
    if total == 0:
        raise ValueError("no samples to evaluate")
    flags = validity_flags(samples, workers=workers, progress=progress)
    valid_mask = [a and b for a, b in flags]

    cov_r = cov_p = None
    if with_coverage:
        if reference.fingerprints is None:
            raise ValueError("reference profile has no fingerprints; build it with with_fingerprints=True")
        from crystalflow.metrics.coverage import Fingerprints, fingerprints

        fps = fingerprints(samples, workers=workers, progress=progress)
        # CDVAE: a crystal whose fingerprint cannot be computed is not valid
        valid_mask = [v and bool(ok) for v, ok in zip(valid_mask, fps.ok)]
        if num_unreadable:
            pad = Fingerprints(
                np.full((num_unreadable, fps.struct.shape[1]), np.nan),
                np.full((num_unreadable, fps.comp.shape[1]), np.nan),
                np.zeros(num_unreadable, dtype=bool),
            )
            fps = Fingerprints(np.vstack([fps.struct, pad.struct]), np.vstack([fps.comp, pad.comp]),
                               np.concatenate([fps.ok, pad.ok]))
        s_cut, c_cut = coverage_cutoffs(dataset)
        cov = coverage(fps, reference.fingerprints, struct_cutoff=s_cut, comp_cutoff=c_cut)
        cov_r, cov_p = cov.cov_recall, cov.cov_precision

    valid_samples = [s for s, v in zip(samples, valid_mask) if v]
    profile = profile_structures(valid_samples, with_fingerprints=False, workers=workers, progress=progress)

    novel_templates = None
    templates = set(profile.templates.tolist())
    if train_templates is not None:
        novel_templates = len(templates - set(train_templates))

    unique = novel = both = None
    if with_novelty and valid_samples:
        nm = novelty_metrics(valid_samples, train, workers=workers, progress=progress)
        unique, novel, both = nm.unique_rate, nm.novel_rate, nm.unique_novel_rate

    floor = sampling_floor(reference, len(valid_samples)) if valid_samples and len(reference) else None
    return DNGMetrics(
        struct_valid=sum(a for a, _ in flags) / total,
        comp_valid=sum(b for _, b in flags) / total,
        valid=len(valid_samples) / total,
        cov_recall=cov_r,
        cov_precision=cov_p,
        wdist_density=wasserstein_1d(profile.densities, reference.densities),
        wdist_num_elems=wasserstein_1d(profile.num_elements.astype(float), reference.num_elements.astype(float)),
        d_sg=d_sg(profile.spacegroups.tolist(), reference.spacegroups.tolist()) if valid_samples else math.nan,
        floor_wdist_density=floor.wdist_density[0] if floor else math.nan,
        floor_wdist_num_elems=floor.wdist_num_elems[0] if floor else math.nan,
        floor_d_sg=floor.d_sg[0] if floor else math.nan,
        frac_above_p1=fraction_above_p1(profile.spacegroups.tolist()),
        num_templates=len(templates),
        num_novel_templates=novel_templates,
        unique_rate=unique,
        novel_rate=novel,
        unique_novel_rate=both,
        num_samples=total,
        num_unreadable=num_unreadable,
        num_valid=len(valid_samples),
        num_references=len(reference),
        dataset=dataset,
    )


def dataset_from_path(path: str | Path) -> str | None:
    """Guess the dataset (for coverage cutoffs) from a reference path such as ``.../mp_20/test.csv.gz``."""
    text = str(path).lower()
    for name in ("mp_20", "carbon_24", "perov_5"):
        if name in text:
            return name
    return None
