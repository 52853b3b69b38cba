"""Space-group symmetry for crystal flow matching.

Tables (:mod:`.groups`, :mod:`.wyckoff`): operations and Wyckoff positions of the 230 groups in
spglib's default settings. Templates (:mod:`.template`, :mod:`.enumeration`): a space group plus a
Wyckoff letter and element per orbit. Layouts (:mod:`.batch`): per-crystal permutations and their
PyG-style collation. Hot path (:mod:`.average`): batched group averaging of per-atom fields.
Orbit mathematics on batches (:mod:`.orbits`, torch twins of :mod:`.wyckoff`). Constraints and
prior (:mod:`.lattice`, :mod:`.prior`). Analysis (:mod:`.analysis`): spglib
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
    family_lattice_chart,
    lattice_constraint,
    lattice_violation,
    project_lattice,
    project_lattice_tangent,
)
from crystalflow.symmetry.orbits import (
    aligned_orbit_parameters,
    crystal_mean,
    expand_orbits,
    locate_on_orbits,
    orbit_first_atom,
    orbit_parameters,
    remove_drift,
    symmetric_field,
    wyckoff_points,
    wyckoff_solve,
)
from crystalflow.symmetry.prior import SymmetricPrior, sample_orbit_parameters, sample_symmetric_prior
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
    "family_lattice_chart",
    "project_lattice",
    "project_lattice_tangent",
    "lattice_violation",
    # orbit mathematics (batched twins of .wyckoff)
    "wyckoff_points",
    "expand_orbits",
    "orbit_first_atom",
    "wyckoff_solve",
    "locate_on_orbits",
    "orbit_parameters",
    "aligned_orbit_parameters",
    "crystal_mean",
    "remove_drift",
    "symmetric_field",
    # prior
    "SymmetricPrior",
    "sample_orbit_parameters",
    "sample_symmetric_prior",
    # analysis
    "DEFAULT_SYMPREC",
    "SymmetrizedCrystal",
    "analyze_structure",
    "build_symmetrized",
    "reconstruct_structure",
]
