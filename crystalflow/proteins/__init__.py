"""Protein backbones: reading structures, residue frames, datasets and SE(3) flow matching.

Curated API (everything else is importable from its module):

* I/O: :func:`read_backbones`, :func:`split_segments`, :func:`write_pdb`, :class:`Backbone`
* frames: :func:`frames_from_atoms`, :func:`atoms_from_frames`
* data: :func:`load_protein_split`, :class:`BackboneDataset`, :class:`BackboneBatch`
* flow: :class:`BackboneFlow`, :class:`BackboneFlowConfig`, :func:`load_protein_flow`,
  :func:`generate_backbones`
* metrics: :func:`backbone_metrics`
"""

from crystalflow.proteins.dataset import BackboneBatch, BackboneDataset, collate_backbones, load_protein_split
from crystalflow.proteins.flow import BackboneFlow, BackboneFlowConfig, Frames
from crystalflow.proteins.frames import atoms_from_frames, frames_from_atoms
from crystalflow.proteins.generate import generate_backbones
from crystalflow.proteins.io import Backbone, read_backbones, split_segments, write_pdb
from crystalflow.proteins.metrics import BackboneMetrics, backbone_metrics
from crystalflow.proteins.pretrained import load_protein_flow

__all__ = [
    "Backbone", "BackboneBatch", "BackboneDataset", "BackboneFlow", "BackboneFlowConfig",
    "BackboneMetrics", "Frames", "atoms_from_frames", "backbone_metrics", "collate_backbones",
    "frames_from_atoms", "generate_backbones", "load_protein_flow", "load_protein_split",
    "read_backbones", "split_segments", "write_pdb",
]
