"""Space-group symmetry for crystal flow matching.

Tables (:mod:`.groups`, :mod:`.wyckoff`): operations and Wyckoff positions of the 230 groups in
spglib's default settings. Templates (:mod:`.template`, :mod:`.enumeration`): a space group plus a
Wyckoff letter and element per orbit. Layouts (:mod:`.batch`): per-crystal permutations and their
PyG-style collation. Hot path (:mod:`.average`): batched group averaging of per-atom fields.
Constraints and prior (:mod:`.lattice`, :mod:`.prior`). Analysis (:mod:`.analysis`): spglib
analysis of a pymatgen Structure and reconstruction.
"""

from crystalflow.symmetry.analysis import (
    DEFAULT_SYMPREC,
    SymmetrizedCrystal,
    analyze_structure,
    build_symmetrized,
    reconstruct_structure,
)
from crystalflow.symmetry.average import (
    group_average_scalars,
    group_average_vectors,
    group_average_vectors_loop,
    symmetrize_frac,
    symmetry_error,
    wrap_frac,
)
from crystalflow.symmetry.batch import (
    NUM_WYCKOFF_IDS,
    CrystalSymmetry,
    SymmetryBatch,
    collate_symmetry,
    crystal_symmetry,
    global_wyckoff_id,
)
from crystalflow.symmetry.enumeration import enumerate_templates
from crystalflow.symmetry.groups import (
    CrystalFamily,
    SpaceGroup,
    crystal_family,
    get_space_group,
    operation_tensors,
)
from crystalflow.symmetry.lattice import (
    LatticeConstraint,
    lattice_constraint,
    lattice_violation,
    project_lattice,
    project_lattice_tangent,
)
from crystalflow.symmetry.prior import (
    SymmetricPrior,
    expand_orbits,
    sample_symmetric_prior,
    wyckoff_points,
)
from crystalflow.symmetry.template import WyckoffTemplate, parse_composition
from crystalflow.symmetry.wyckoff import WyckoffPosition, wyckoff_position, wyckoff_positions

__all__ = [
    # tables
    "CrystalFamily",
    "SpaceGroup",
    "get_space_group",
    "crystal_family",
    "operation_tensors",
    "WyckoffPosition",
    "wyckoff_positions",
    "wyckoff_position",
    # templates
    "WyckoffTemplate",
    "parse_composition",
    "enumerate_templates",
    # per-crystal layouts and batches
    "CrystalSymmetry",
    "SymmetryBatch",
    "crystal_symmetry",
    "collate_symmetry",
    "global_wyckoff_id",
    "NUM_WYCKOFF_IDS",
    # hot path
    "group_average_vectors",
    "group_average_scalars",
    "symmetrize_frac",
    "symmetry_error",
    "group_average_vectors_loop",
    "wrap_frac",
    # lattice constraints
    "LatticeConstraint",
    "lattice_constraint",
    "project_lattice",
    "project_lattice_tangent",
    "lattice_violation",
    # prior
    "SymmetricPrior",
    "sample_symmetric_prior",
    "wyckoff_points",
    "expand_orbits",
    # analysis
    "DEFAULT_SYMPREC",
    "SymmetrizedCrystal",
    "analyze_structure",
    "build_symmetrized",
    "reconstruct_structure",
]
