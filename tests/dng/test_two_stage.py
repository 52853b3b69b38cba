"""Two-stage DNG sampling: DNG types, SG-CSP geometry (crystal_tasks.geometry)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystalflow.cli import main
from crystalflow.crystal_tasks.generation import _load, generate
from crystalflow.crystal_tasks.geometry import load_geometry, regenerate_geometry
from crystalflow.crystal_tasks.steering import SteeringConfig
from crystalflow.errors import InputError
from crystalflow.symmetry.groups import get_space_group

from .conftest import SKELETONS, tiny_flow


@pytest.fixture(scope="module")
def sgcsp():
    return load_geometry(tiny_flow(), "sgcsp_mp_20.pt")


def test_regenerated_geometry_keeps_templates_and_types(sgcsp):
    flow = tiny_flow()
    skeletons = list(SKELETONS.skeletons)
    first = flow.sample(skeletons, steps=6, generator=torch.Generator().manual_seed(0))
    second = regenerate_geometry(sgcsp, first, skeletons, generator=torch.Generator().manual_seed(0))
    assert torch.equal(second.atom_types, first.atom_types)
    assert torch.equal(second.num_atoms, first.num_atoms)
    assert torch.equal(second.symmetry.orbit, first.symmetry.orbit)
    assert torch.equal(second.symmetry.space_group, first.symmetry.space_group)
    assert not torch.allclose(second.lattice, first.lattice)  # a new geometry, not a copy
    # every crystal is invariant under its space group: each operation maps the atoms of one type
    # onto atoms of that type (fractional coordinates, modulo lattice translations)
    for c, sk in zip(second.to_crystals(), skeletons):
        g = get_space_group(sk.space_group)
        x = c.frac.double().numpy()
        z = c.atom_types.numpy()
        for rot, tr in zip(g.rotations, g.translations):
            y = (x @ rot.T + tr) % 1.0
            d = (y[:, None, :] - x[None, :, :] + 0.5) % 1.0 - 0.5
            close = (np.abs(d).max(-1) < 1e-3) & (z[:, None] == z[None, :])
            assert close.any(1).all(), (sk, rot, tr)


def test_choices_resolve(tiny_checkpoint):
    flow, _ = _load(str(tiny_checkpoint), "cpu")
    assert flow.config.geometry is None
    assert load_geometry(flow, "auto") is None and load_geometry(flow, "dng") is None
    assert load_geometry(flow, "sgcsp_mp_20.pt").task == "sgcsp"
    assert load_geometry(flow, "sgcsp_mp_20.pt", steering=False) is not None
    assert load_geometry(flow, "auto", steering=True) is None
    with pytest.raises(InputError, match="steering"):
        load_geometry(flow, "sgcsp_mp_20.pt", steering=True)
    bundled, _ = _load(None, "cpu")
    assert bundled.config.geometry == "sgcsp_mp_20.pt"


def test_generate_two_stage_is_seeded_and_keeps_the_request(tiny_checkpoint):
    a = generate(225, 4, elements="Na,Cl", steps=4, seed=3, checkpoint=tiny_checkpoint, geometry="sgcsp_mp_20.pt")
    b = generate(225, 4, elements="Na,Cl", steps=4, seed=3, checkpoint=tiny_checkpoint, geometry="sgcsp_mp_20.pt")
    plain = generate(225, 4, elements="Na,Cl", steps=4, seed=3, checkpoint=tiny_checkpoint, geometry="dng")
    for x, y in zip(a, b):
        assert torch.equal(x.atom_types, y.atom_types) and torch.allclose(x.frac, y.frac)
    assert all(set(c.atom_types.tolist()) == {11, 17} for c in a)
    assert any(not torch.allclose(x.lattice, y.lattice) for x, y in zip(a, plain))
    with pytest.raises(InputError, match="steering"):
        generate(225, 2, steps=2, checkpoint=tiny_checkpoint, geometry="sgcsp_mp_20.pt",
                 steer=SteeringConfig(method="best-of-n", particles=2), reward=lambda ss: [0.0] * len(ss))


def test_cli_refuses_geometry_with_steering(tiny_checkpoint, tmp_path, capsys):
    rc = main(["generate", "--out", str(tmp_path / "x"), "--checkpoint", str(tiny_checkpoint),
               "--steer", "best-of-n", "--particles", "2", "--geometry", "sgcsp_mp_20.pt"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and "--geometry" in err and not (tmp_path / "x").exists()
