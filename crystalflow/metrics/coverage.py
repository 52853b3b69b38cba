"""Coverage recall and precision (COV-R / COV-P) of generated crystals, as CDVAE defines them.

Definition (CDVAE ``compute_cov`` in ``scripts/eval_utils.py`` and ``Crystal.get_fingerprints``):

* structure fingerprint: matminer's ``CrystalNNFingerprint.from_preset("ops")`` of every site,
  averaged over sites (61 numbers); a structure whose fingerprint fails has none;
* composition fingerprint: matminer's Magpie ``ElementProperty`` (132 numbers, no NaN imputation),
  standardised with CDVAE's fixed means and standard deviations, NaN set to 0 after scaling;
* with Euclidean distances between sample and reference fingerprints, a reference is *recalled*
  when some sample lies within both cutoffs, and a sample is *precise* when it lies within both
  cutoffs of some reference. COV-R = recalled references / references; COV-P = precise samples /
  all samples (samples without a fingerprint count in the denominator).
* cutoffs per dataset (structure, composition): MP-20 (0.4, 10), Carbon-24 (0.2, 4),
  Perov-5 (0.2, 4).

CrystalNN fingerprints are slow (about a second per 10-atom structure); they are computed over a
process pool and cached per reference file.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from pymatgen.core import Composition, Structure

from crystalflow.errors import InputError
from crystalflow.metrics._parallel import parallel_map
from crystalflow.metrics.cdvae_constants import COVERAGE_CUTOFFS, MAGPIE_MEANS, MAGPIE_STDS

__all__ = [
    "CoverageMetrics",
    "Fingerprints",
    "composition_fingerprint",
    "coverage",
    "coverage_cutoffs",
    "fingerprints",
    "scale_composition_fingerprints",
    "structure_fingerprint",
]

STRUCT_FP_SIZE = 61
COMP_FP_SIZE = 132

#: dataset names accepted for the cutoffs (aliases -> CDVAE's keys)
_DATASET_ALIASES = {
    "mp20": "mp20", "mp_20": "mp20", "mp-20": "mp20",
    "carbon": "carbon", "carbon_24": "carbon", "carbon-24": "carbon",
    "perovskite": "perovskite", "perov": "perovskite", "perov_5": "perovskite", "perov-5": "perovskite",
}


def coverage_cutoffs(dataset: str) -> tuple[float, float]:
    """CDVAE's ``(structure, composition)`` coverage cutoffs of a dataset (mp_20, carbon_24, perov_5).

    Raises:
        InputError: unknown dataset name.
    """
    key = _DATASET_ALIASES.get(dataset.lower())
    if key is None:
        raise InputError(f"no CDVAE coverage cutoffs for dataset {dataset!r} (use mp_20, carbon_24 or perov_5)")
    c = COVERAGE_CUTOFFS[key]
    return float(c["struc"]), float(c["comp"])


@functools.lru_cache(maxsize=1)
def _crystalnn_featurizer():
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    return CrystalNNFingerprint.from_preset("ops")


@functools.lru_cache(maxsize=1)
def _magpie_featurizer():
    from matminer.featurizers.composition.composite import ElementProperty

    try:
        return ElementProperty.from_preset("magpie", impute_nan=False)
    except TypeError:  # matminer < 0.9 has no imputation (and no argument)
        return ElementProperty.from_preset("magpie")


def structure_fingerprint(structure: Structure) -> np.ndarray | None:
    """Site-averaged CrystalNN "ops" fingerprint (61 values), ``None`` when CrystalNN fails."""
    featurizer = _crystalnn_featurizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sites = [featurizer.featurize(structure, i) for i in range(len(structure))]
        except Exception:
            return None
    if not sites:
        return None
    return np.asarray(sites, dtype=float).mean(axis=0)


def composition_fingerprint(composition: Composition) -> np.ndarray:
    """Raw Magpie ``ElementProperty`` features (132 values, NaN where an element lacks data)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(_magpie_featurizer().featurize(Composition(composition)), dtype=float)


def scale_composition_fingerprints(raw: np.ndarray) -> np.ndarray:
    """CDVAE's ``CompScaler``: ``(x - mean) / std`` with the fixed constants, NaN -> 0."""
    scaled = (np.asarray(raw, dtype=float) - np.asarray(MAGPIE_MEANS)) / np.asarray(MAGPIE_STDS)
    return np.where(np.isnan(scaled), 0.0, scaled)


@dataclass(frozen=True)
class Fingerprints:
    """Fingerprints of a set of structures (row ``i`` belongs to structure ``i``).

    Attributes:
        struct: ``(n, 61)`` CrystalNN fingerprints (NaN rows where CrystalNN failed).
        comp: ``(n, 132)`` raw Magpie features.
        ok: ``(n,)`` whether both fingerprints exist.
    """

    struct: np.ndarray
    comp: np.ndarray
    ok: np.ndarray

    def __len__(self) -> int:
        return len(self.ok)


def _fingerprint_task(structure: Structure) -> tuple[np.ndarray | None, np.ndarray | None]:
    try:
        comp = composition_fingerprint(structure.composition)
    except Exception:
        return None, None
    return structure_fingerprint(structure), comp


def fingerprints(structures: Sequence[Structure], *, workers: int = 1, progress: bool = True) -> Fingerprints:
    """Structure and composition fingerprints of every structure, over a process pool."""
    results = parallel_map(_fingerprint_task, list(structures), workers=workers, progress=progress,
                           desc="fingerprints", chunksize=1)
    n = len(results)
    struct = np.full((n, STRUCT_FP_SIZE), np.nan)
    comp = np.full((n, COMP_FP_SIZE), np.nan)
    ok = np.zeros(n, dtype=bool)
    for i, (s, c) in enumerate(results):
        if s is not None and c is not None:
            struct[i], comp[i], ok[i] = s, c, True
    return Fingerprints(struct, comp, ok)


@dataclass(frozen=True)
class CoverageMetrics:
    """CDVAE coverage metrics.

    Attributes:
        cov_recall: fraction of references within both cutoffs of some sample.
        cov_precision: fraction of samples within both cutoffs of some reference.
        amsd_recall, amsd_precision: mean nearest structure-fingerprint distances.
        amcd_recall, amcd_precision: mean nearest composition-fingerprint distances.
        struct_cutoff, comp_cutoff: the cutoffs used.
        num_samples, num_references: set sizes (samples include those without a fingerprint).
    """

    cov_recall: float
    cov_precision: float
    amsd_recall: float
    amsd_precision: float
    amcd_recall: float
    amcd_precision: float
    struct_cutoff: float
    comp_cutoff: float
    num_samples: int
    num_references: int

    def to_dict(self) -> dict:
        return asdict(self)


def coverage(
    samples: Fingerprints,
    reference: Fingerprints,
    *,
    struct_cutoff: float,
    comp_cutoff: float,
) -> CoverageMetrics:
    """CDVAE COV-R / COV-P from fingerprints (see the module docstring for the definition)."""
    from scipy.spatial.distance import cdist

    num_samples = len(samples)
    s_struct, s_comp = samples.struct[samples.ok], scale_composition_fingerprints(samples.comp[samples.ok])
    r_struct, r_comp = reference.struct[reference.ok], scale_composition_fingerprints(reference.comp[reference.ok])
    nan = float("nan")
    if num_samples == 0 or len(r_struct) == 0:
        return CoverageMetrics(nan, nan, nan, nan, nan, nan, struct_cutoff, comp_cutoff, num_samples, len(r_struct))
    if len(s_struct) == 0:
        return CoverageMetrics(0.0, 0.0, nan, nan, nan, nan, struct_cutoff, comp_cutoff, num_samples, len(r_struct))
    struct_d = cdist(s_struct, r_struct)
    comp_d = cdist(s_comp, r_comp)
    struct_recall, struct_precision = struct_d.min(axis=0), struct_d.min(axis=1)
    comp_recall, comp_precision = comp_d.min(axis=0), comp_d.min(axis=1)
    recall = np.mean((struct_recall <= struct_cutoff) & (comp_recall <= comp_cutoff))
    precision = np.sum((struct_precision <= struct_cutoff) & (comp_precision <= comp_cutoff)) / num_samples
    return CoverageMetrics(
        cov_recall=float(recall),
        cov_precision=float(precision),
        amsd_recall=float(struct_recall.mean()),
        amsd_precision=float(struct_precision.mean()),
        amcd_recall=float(comp_recall.mean()),
        amcd_precision=float(comp_precision.mean()),
        struct_cutoff=struct_cutoff,
        comp_cutoff=comp_cutoff,
        num_samples=num_samples,
        num_references=len(r_struct),
    )
