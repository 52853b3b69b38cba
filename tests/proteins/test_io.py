"""Reading PDB / mmCIF (gzip too), segmenting at breaks, writing PDB, and bad input."""

from __future__ import annotations

import gzip
import shutil

import pytest
import torch

from crystalflow.errors import InputError
from crystalflow.proteins.io import Backbone, read_backbones, split_segments, write_pdb


def test_reads_multi_chain_gzipped_pdb(real_files):
    chains = read_backbones(real_files[1])  # 1AHW receptor: antibody L and H chains
    assert [c.chain_id for c in chains] == ["L", "H"]
    for c in chains:
        assert c.coords.shape == (len(c), 4, 3) and len(c.sequence) == len(c) == len(c.res_ids)
        assert c.complete().all()


def test_mmcif_and_plain_pdb_agree_with_gzipped_pdb(real_files, tmp_path):
    import biotite.structure.io.pdbx as pdbx

    from crystalflow.proteins.io import read_atoms

    src = real_files[0]
    plain = tmp_path / "x.pdb"
    plain.write_bytes(gzip.open(src).read())
    cif = pdbx.CIFFile()
    pdbx.set_structure(cif, read_atoms(src))
    cif.write(str(tmp_path / "x.cif"))
    with open(tmp_path / "x.cif", "rb") as f, gzip.open(tmp_path / "x.cif.gz", "wb") as g:
        shutil.copyfileobj(f, g)
    ref = read_backbones(src)
    for other in (plain, tmp_path / "x.cif", tmp_path / "x.cif.gz"):
        got = read_backbones(other)
        assert [c.chain_id for c in got] == [c.chain_id for c in ref]
        for a, b in zip(got, ref):
            assert a.sequence == b.sequence
            assert torch.allclose(a.coords, b.coords, atol=1e-3, equal_nan=True)


def test_breaks_split_chains_into_continuous_segments(real_files):
    chain = read_backbones(real_files[2])[0]  # 1ZHI: residue numbering gaps with real breaks
    segs = split_segments(chain)
    assert len(segs) >= 3
    assert sum(len(s) for s in segs) <= len(chain)
    for s in segs:
        bonds = (s.coords[1:, 0] - s.coords[:-1, 2]).norm(dim=-1)
        assert (bonds < 2.0).all()
    long = split_segments(chain, min_length=40)
    assert all(len(s) >= 40 for s in long) and len(long) < len(segs)


def test_missing_backbone_atoms_cut_the_chain():
    g = torch.Generator().manual_seed(0)
    from crystalflow.manifolds.so3 import random_rotations
    from crystalflow.proteins.frames import atoms_from_frames

    # ideal residues, each shifted so that N_{i+1} sits 1.33 A from C_i (bonded peptides)
    rots = random_rotations((20,), g, torch.float64)
    coords = atoms_from_frames(rots, torch.zeros(20, 3, dtype=torch.float64))
    for i in range(1, 20):
        coords[i] += coords[i - 1, 2] + torch.tensor([1.33, 0, 0], dtype=torch.float64) - coords[i, 0]
    chain = Backbone(coords.clone(), "G" * 20, torch.arange(20), "A", "synthetic")
    assert [len(s) for s in split_segments(chain)] == [20]
    coords[7, 0] = float("nan")  # residue 7 lacks N
    chain = Backbone(coords, "G" * 20, torch.arange(20), "A", "synthetic")
    assert [len(s) for s in split_segments(chain)] == [7, 12]
    assert [len(s) for s in split_segments(chain, min_length=10)] == [12]


def test_write_then_read_back(tmp_path):
    g = torch.Generator().manual_seed(1)
    from crystalflow.manifolds.so3 import random_rotations
    from crystalflow.proteins.frames import atoms_from_frames

    atoms = atoms_from_frames(random_rotations((12,), g, torch.float64), 3.8 * torch.randn(12, 3, generator=g, dtype=torch.float64))
    write_pdb(tmp_path / "out.pdb", atoms)
    back = read_backbones(tmp_path / "out.pdb")
    assert len(back) == 1 and back[0].sequence == "G" * 12
    assert torch.allclose(back[0].coords, atoms, atol=1e-3)


def test_file_without_protein_chains_is_a_clear_error(tmp_path):
    p = tmp_path / "water.pdb"
    p.write_text("HETATM    1  O   HOH A   1       0.000   0.000   0.000  1.00  0.00           O\nEND\n")
    with pytest.raises(InputError, match="no protein chains"):
        read_backbones(p)


def test_unknown_format_and_missing_file_are_clear_errors(tmp_path):
    (tmp_path / "x.xyz").write_text("1\n\nC 0 0 0\n")
    with pytest.raises(InputError, match="unknown structure format"):
        read_backbones(tmp_path / "x.xyz")
    with pytest.raises(InputError, match="no such structure file"):
        read_backbones(tmp_path / "missing.pdb")
    (tmp_path / "bad.cif").write_text("this is not a cif file\n")
    with pytest.raises(InputError):
        read_backbones(tmp_path / "bad.cif")
