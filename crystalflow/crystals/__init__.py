"""Crystals as tensors: the Crystal type, batches, lattices and datasets."""

from crystalflow.crystals.batch import CrystalBatch, batch_index, collate
from crystalflow.crystals.crystal import MAX_ATOMIC_NUM, Crystal
from crystalflow.crystals.dataset import CrystalDataset, load_split, resolve_data_dir
from crystalflow.crystals.lattice import (
    lattice_matrix_to_params,
    lattice_params_to_matrix,
    lattice_volume,
)

__all__ = [
    "Crystal", "CrystalBatch", "CrystalDataset", "MAX_ATOMIC_NUM", "batch_index", "collate",
    "lattice_matrix_to_params", "lattice_params_to_matrix", "lattice_volume", "load_split",
    "resolve_data_dir",
]
