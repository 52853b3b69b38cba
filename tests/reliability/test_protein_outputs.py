"""``protein generate``: a repeated length never overwrites its own files; PDB files are written
atomically (an interruption leaves neither a half file nor a temporary one)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from crystalflow.cli import main
from crystalflow.outputs import MANIFEST
from crystalflow.proteins.io import read_backbones, write_pdb


def test_repeated_length_gets_unique_files_and_different_samples(tmp_path, capsys):
    out = tmp_path / "bb"
    rc = main(["protein", "generate", "--length", "40", "30", "40", "--num", "2", "--steps", "2",
               "--out", str(out)])
    assert rc == 0
    written = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["written"]
    names = sorted(p.name for p in out.glob("*.pdb"))
    assert len(written) == len(set(written)) == len(names) == 6
    assert names == [f"sample_30_{i}.pdb" for i in range(2)] + [f"sample_40_{i}.pdb" for i in range(4)]
    assert set((out / MANIFEST).read_text().split()) == set(names)
    chains = [read_backbones(out / f"sample_40_{i}.pdb")[0].coords for i in range(4)]
    assert all(len(c) == 40 for c in chains)
    assert all(not torch.allclose(chains[i], chains[j]) for i in range(4) for j in range(i))


def test_write_pdb_is_atomic(tmp_path, monkeypatch):
    coords = torch.randn(5, 4, 3) * 3
    path = tmp_path / "a.pdb"
    write_pdb(path, coords)
    before = path.read_text()

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_pdb(path, coords + 1.0)
    assert path.read_text() == before  # the old file intact, never half written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdb"]  # no temporary file left
    with pytest.raises(KeyboardInterrupt):
        write_pdb(tmp_path / "b.pdb", coords)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdb"]
