"""``crystalflow.generate`` and ``crystalflow generate``: constraints, outputs and errors."""

from __future__ import annotations

import csv

import pytest
import torch

from crystalflow.cli import main
from crystalflow.errors import InputError
from crystalflow.crystal_tasks.generation import generate, parse_elements


def test_generate_respects_constraints_and_seed(tiny_checkpoint, tmp_path):
    out = generate(225, 6, elements="Na,Cl", steps=6, seed=1, checkpoint=tiny_checkpoint, out=tmp_path / "a")
    again = generate(225, 6, elements="Na,Cl", steps=6, seed=1, checkpoint=tiny_checkpoint)
    for c, d in zip(out, again):
        assert torch.equal(c.atom_types, d.atom_types) and torch.allclose(c.frac, d.frac)
    for c in out:
        assert set(c.atom_types.tolist()) == {11, 17}
    rows = list(csv.DictReader(open(tmp_path / "a" / "summary.csv")))
    assert len(rows) == 6 and len(list((tmp_path / "a").glob("*.cif"))) == 6
    assert {"formula", "space_group", "volume_per_atom"} <= set(rows[0])
    sized = generate(225, 3, num_atoms=8, steps=4, checkpoint=tiny_checkpoint)
    assert all(c.num_atoms == 8 for c in sized)
    anyg = generate(None, 8, steps=4, checkpoint=tiny_checkpoint)
    assert len(anyg) == 8


def test_parse_elements():
    assert parse_elements("O,Li, Fe,P") == (3, 8, 15, 26)
    assert parse_elements("Li-Fe") == (3, 26)
    with pytest.raises(InputError):
        parse_elements("Li,Qq")


@pytest.mark.parametrize("argv,needle", [
    (["--space-group", "231"], "space group"),
    (["--space-group", "0"], "space group"),
    (["--space-group", "225", "--elements", "Li,Xx"], "unknown element"),
    (["--space-group", "225", "--elements", "Au"], "never occur"),
    (["--space-group", "225", "--elements", "Li,O,Fe,P"], "orbits"),
    (["--space-group", "225", "--num-atoms", "7"], "7 atoms"),
    (["--space-group", "1"], "no Wyckoff template"),
])
def test_cli_errors(tiny_checkpoint, tmp_path, capsys, argv, needle):
    rc = main(["generate", "--out", str(tmp_path / "x"), "--checkpoint", str(tiny_checkpoint), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and needle in err, err


def test_cli_writes_cifs_and_table(tiny_checkpoint, tmp_path, capsys):
    rc = main(["generate", "--space-group", "225", "--num", "4", "--steps", "4", "--seed", "2",
               "--out", str(tmp_path / "g"), "--checkpoint", str(tiny_checkpoint)])
    text = capsys.readouterr().out
    assert rc == 0 and "volume_per_atom" in text and "summary.csv" in text
    assert len(list((tmp_path / "g").glob("*.cif"))) == 4
