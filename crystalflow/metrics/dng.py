"""De-novo generation (DNG) metrics: the CDVAE table plus symmetry, uniqueness and novelty.

Conventions (CDVAE ``GenEval``, followed by DiffCSP, FlowMM and SymmCD):

* validity is over *all* samples; an unreadable sample file counts as an invalid sample; when
  coverage is computed, a sample whose CrystalNN fingerprint fails is not valid (as in CDVAE);
* Wasserstein distances, ``d_sg``, templates, uniqueness and novelty use the *valid* samples;
* coverage uses every sample with a fingerprint, and all samples (unreadable files included) in
  the COV-P denominator.

CDVAE subsamples 1,000 valid samples for the property metrics; this module uses every valid sample
(pass a subset to reproduce the subsampling).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from pymatgen.core import Structure
from scipy.stats import wasserstein_distance

from crystalflow.metrics._parallel import parallel_map
from crystalflow.metrics.coverage import coverage, coverage_cutoffs
from crystalflow.metrics.reference import ReferenceProfile, profile_structures
from crystalflow.metrics.symmetry import d_sg, fraction_above_p1
from crystalflow.metrics.validity import smact_validity, structure_validity

__all__ = ["DNGMetrics", "dng_metrics", "validity_flags"]


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


def _wdist(a: np.ndarray, b: np.ndarray) -> float:
    return float(wasserstein_distance(a, b)) if len(a) and len(b) else float("nan")


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

    return DNGMetrics(
        struct_valid=sum(a for a, _ in flags) / total,
        comp_valid=sum(b for _, b in flags) / total,
        valid=len(valid_samples) / total,
        cov_recall=cov_r,
        cov_precision=cov_p,
        wdist_density=_wdist(profile.densities, reference.densities),
        wdist_num_elems=_wdist(profile.num_elements.astype(float), reference.num_elements.astype(float)),
        d_sg=d_sg(profile.spacegroups.tolist(), reference.spacegroups.tolist()) if valid_samples else math.nan,
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
