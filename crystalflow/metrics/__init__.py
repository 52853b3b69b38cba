"""Evaluation and stability metrics of predicted and generated crystals.

Every metric is a small function on pymatgen Structures, defined as the field defines it
(CDVAE / DiffCSP / FlowMM / SymmCD; each docstring cites its source). Sub-modules:

* :mod:`~crystalflow.metrics.validity` -- CDVAE structural and SMACT compositional validity;
* :mod:`~crystalflow.metrics.csp` -- CSP match rate and RMSE (StructureMatcher);
* :mod:`~crystalflow.metrics.distribution` -- Wasserstein distances of density and #elements;
* :mod:`~crystalflow.metrics.coverage` -- CDVAE coverage recall / precision;
* :mod:`~crystalflow.metrics.symmetry` -- space groups, d_sg, Wyckoff templates (SymmCD);
* :mod:`~crystalflow.metrics.novelty` -- uniqueness and novelty (StructureMatcher);
* :mod:`~crystalflow.metrics.dng` -- the de-novo generation table;
* :mod:`~crystalflow.metrics.reference` -- cached properties of a reference split;
* :mod:`~crystalflow.metrics.energy` -- CHGNet energies and relaxations;
* :mod:`~crystalflow.metrics.hull` -- the cached CHGNet reference hull (not a DFT hull): reading, querying;
* :mod:`~crystalflow.metrics.hull_build` -- computing that hull (resumable);
* :mod:`~crystalflow.metrics.stability` -- E_hull, stability rates and S.U.N.;
* :mod:`~crystalflow.metrics.plots` -- matplotlib figures;
* :mod:`~crystalflow.metrics.io` -- sample directories and reference CSV splits.

Names are imported lazily, so ``import crystalflow.metrics`` stays cheap (no matminer, no CHGNet
until a metric that needs them is used).
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> sub-module that defines it
_EXPORTS: dict[str, str] = {
    # validity (CDVAE)
    "structure_validity": "validity",
    "smact_validity": "validity",
    "is_valid": "validity",
    "min_interatomic_distance": "validity",
    # crystal structure prediction
    "CSPMetrics": "csp",
    "csp_matcher": "csp",
    "csp_metrics": "csp",
    "rms_match": "csp",
    # property distributions
    "wasserstein_density": "distribution",
    "wasserstein_num_elements": "distribution",
    # coverage (CDVAE)
    "CoverageMetrics": "coverage",
    "Fingerprints": "coverage",
    "coverage": "coverage",
    "coverage_cutoffs": "coverage",
    "fingerprints": "coverage",
    # symmetry (SymmCD)
    "SymmetryInfo": "symmetry",
    "SymmetryMetrics": "symmetry",
    "d_sg": "symmetry",
    "fraction_above_p1": "symmetry",
    "spacegroup_histogram": "symmetry",
    "symmetry_info": "symmetry",
    "symmetry_metrics": "symmetry",
    "space_group_agreement": "symmetry",
    "keeps_space_group": "symmetry",
    # uniqueness / novelty
    "NoveltyMetrics": "novelty",
    "novelty_flags": "novelty",
    "novelty_metrics": "novelty",
    "uniqueness_flags": "novelty",
    # de-novo generation summary
    "DNGMetrics": "dng",
    "dng_metrics": "dng",
    "ReferenceProfile": "reference",
    "profile_structures": "reference",
    "reference_profile": "reference",
    # energies, hull, stability (CHGNet)
    "Relaxation": "energy",
    "load_chgnet": "energy",
    "relax": "energy",
    "relax_many": "energy",
    "static_energies": "energy",
    "HullEntry": "hull",
    "ReferenceHull": "hull",
    "build_reference_hull": "hull_build",
    "load_reference_hull": "hull",
    "StabilityMetrics": "stability",
    "StabilityRecord": "stability",
    "StabilityResult": "stability",
    "evaluate_stability": "stability",
    "stability_metrics": "stability",
    "write_stability_csv": "stability",
    # plots
    "plot_density_distribution": "plots",
    "plot_ehull_histogram": "plots",
    "plot_lattice_distributions": "plots",
    "plot_spacegroup_distribution": "plots",
    # inputs
    "ReferenceSet": "io",
    "SampleSet": "io",
    "load_reference_csv": "io",
    "load_sample_dir": "io",
    "parse_cif": "io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
