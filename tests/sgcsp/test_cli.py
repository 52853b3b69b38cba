"""``crystalflow predict`` space-group modes and ``train --task sgcsp`` on a tiny model."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from pymatgen.core import Composition, Structure

from crystalflow.checkpoint import load_checkpoint, save_checkpoint
from crystalflow.cli import main
from crystalflow.errors import InputError
from crystalflow.pretrained import load_pretrained, make_sgcsp_checkpoint
from crystalflow.symmetry import analyze_structure

from tests.sgcsp.conftest import TEMPLATES, make_dataset, make_flow


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny (untrained, float32) space-group flow saved as an ``sgcsp`` checkpoint."""
    flow = make_flow(seed=1)
    flow.model.float()
    ds = make_dataset()
    stats = {"lattice_chart": flow.chart.state_dict(), "max_atoms": 40, "dataset": "tiny"}
    path = tmp_path_factory.mktemp("ckpt") / "sgcsp_tiny.pt"
    save_checkpoint(make_sgcsp_checkpoint(flow, "sgnet", stats, flow.model.state_dict(), None), path)
    return path


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory):
    """A CSV of symmetric crystals (CIF as P1 cells, like the benchmark files)."""
    ds = make_dataset(TEMPLATES[1:7], seed=5)
    rows = [{"material_id": f"m{i}", "cif": ds.structure(i).get_primitive_structure().to(fmt="cif")}
            for i in range(len(ds))]
    rows.append({"material_id": "bad", "cif": "not a cif"})
    path = tmp_path_factory.mktemp("csv") / "rows.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path, ds


def test_checkpoint_round_trip(tiny_checkpoint):
    flow, ckpt = load_pretrained(tiny_checkpoint, task="sgcsp")
    assert ckpt.task == "sgcsp" and ckpt.model_name == "sgnet"
    from crystalflow.errors import CheckpointError

    with pytest.raises(CheckpointError):
        load_pretrained(tiny_checkpoint, task="csp")


def test_predict_from_csv_use_space_group(tiny_checkpoint, tiny_csv, tmp_path, capsys):
    path, ds = tiny_csv
    out = tmp_path / "pred"
    rc = main(["predict", "--from-csv", str(path), "--use-space-group", "--num-samples", "2",
               "--steps", "3", "--checkpoint", str(tiny_checkpoint), "--out", str(out)])
    assert rc == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    summary = json.loads(lines[-1])
    n = len(ds)
    assert summary == {"rows": n + 1, "skipped": 1, "written": 2 * n, "out": str(out)}
    assert not list(out.glob("m0.cif"))  # K > 1 samples: <id>_<k>.cif only, never <id>.cif too
    assert any("skipping row bad" in line for line in captured.err.splitlines())  # warnings: stderr
    # the analysis is cached now: a second run still reports the skipped row
    rc = main(["predict", "--from-csv", str(path), "--use-space-group", "--steps", "2",
               "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "again")])
    captured = capsys.readouterr()
    again = captured.out.strip().splitlines()
    assert rc == 0 and any("skipping row bad" in line for line in captured.err.splitlines())
    assert json.loads(again[-1])["skipped"] == 1
    for i in range(n):
        for name in (f"m{i}_0.cif", f"m{i}_1.cif"):
            s = Structure.from_file(out / name)
            assert s.composition.reduced_composition == ds.structure(i).composition.reduced_composition
        # the prediction keeps the requested space group (or a supergroup: untrained model)
        want = ds.templates[i].space_group
        from crystalflow.symmetry import get_space_group

        got = analyze_structure(Structure.from_file(out / f"m{i}_0.cif"), symprec=1e-3).space_group
        assert get_space_group(got).num_ops >= get_space_group(want).num_ops


def test_predict_composition_space_group_enumerates_templates(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "nacl"
    rc = main(["predict", "--composition", "NaCl", "--space-group", "225", "--num-samples", "3",
               "--steps", "3", "--checkpoint", str(tiny_checkpoint), "--out", str(out)])
    assert rc == 0
    files = sorted(out.glob("*.cif"))
    assert [f.name for f in files] == ["NaCl_0.cif", "NaCl_1.cif", "NaCl_2.cif"]
    for f in files:
        assert Structure.from_file(f).composition.reduced_formula == "NaCl"
    # samples cycle through the templates, smallest cells first: Na4Cl4 as 4a/4b then 4b/4a
    # (the third, Na8Cl8, may have extra translations: any fixed-site template can)
    for f in files[:2]:
        s = Structure.from_file(f)
        assert len(s) == 8 and analyze_structure(s, symprec=1e-3).space_group == 225


def test_predict_composition_with_wyckoff(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "sto"
    rc = main(["predict", "--composition", "SrTiO3", "--space-group", "221", "--wyckoff",
               "Sr:1a,1b,3c", "--steps", "3", "--checkpoint", str(tiny_checkpoint), "--out", str(out)])
    assert rc == 0
    s = Structure.from_file(out / "SrTiO3.cif")  # one sample: <stem>.cif
    assert s.composition == Composition("SrTiO3")
    sym = analyze_structure(s, symprec=1e-3)
    assert sym.space_group == 221
    assert dict(zip(sym.template.atom_types, sym.template.letters))[38] == "a"


def test_templates_for_maps_formula_to_conventional_cell():
    from crystalflow.crystal_tasks.prediction import templates_for

    ts = templates_for("NaCl", 225, max_atoms=12)
    assert ts and all(t.composition == {11: 4, 17: 4} for t in ts)
    sizes = [t.num_atoms for t in templates_for("NaCl", 225, max_atoms=40)]
    assert sizes == sorted(sizes) and set(sizes) <= {8, 16, 24, 32, 40}
    ts = templates_for("NaCl", 225, max_atoms=20, wyckoff="4a,4b")
    assert {(t.letters, t.atom_types) for t in ts} == {(("a", "b"), (11, 17)), (("a", "b"), (17, 11))}
    with pytest.raises(InputError):
        templates_for("NaCl", 225, num_atoms=2)


@pytest.mark.parametrize("extra, message", [
    (["--space-group", "231"], "space group must be an integer from 1 to 230"),
    (["--space-group", "0"], "space group must be an integer from 1 to 230"),
    (["--space-group", "225", "--wyckoff", "4z"], "Wyckoff letter 'z' does not exist"),
    (["--space-group", "225", "--wyckoff", "8a"], "multiplicity 4, not 8"),
    (["--space-group", "225", "--num-atoms", "2"], "fits no combination of Wyckoff positions"),
    (["--space-group", "225", "--wyckoff", "4a,4a"], "cannot hold"),
    (["--wyckoff", "4a"], "--wyckoff needs --space-group"),
])
def test_bad_inputs_exit_2_with_one_line(tiny_checkpoint, tmp_path, capsys, extra, message):
    rc = main(["predict", "--composition", "NaCl", "--checkpoint", str(tiny_checkpoint),
               "--out", str(tmp_path / "x"), "--steps", "2"] + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_bad_csv_flag_combinations(tiny_checkpoint, tiny_csv, tmp_path, capsys):
    path, _ = tiny_csv
    rc = main(["predict", "--from-csv", str(path), "--space-group", "225",
               "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "y")])
    assert rc == 2 and "--use-space-group" in capsys.readouterr().err
    rc = main(["predict", "--composition", "NaCl", "--use-space-group",
               "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "y")])
    assert rc == 2 and "--space-group N" in capsys.readouterr().err


def test_train_loop_writes_sgcsp_checkpoint(tmp_path):
    """The generic training loop drives the space-group flow (tiny data, 3 steps) and resumes."""
    from crystalflow.training import TrainConfig, train
    from crystalflow.crystal_tasks.validation import sgcsp_validator

    ds = make_dataset()
    flow = make_flow(dataset=ds)
    flow.model.float().train()
    stats = {"lattice_chart": flow.chart.state_dict(), "max_atoms": int(ds.num_atoms.max())}
    mk = lambda w, s: make_sgcsp_checkpoint(flow, "sgnet", stats, w, s)  # noqa: E731
    cfg = TrainConfig(max_steps=3, batch_size=4, val_every=2, warmup_steps=1)
    res = train(flow, ds, cfg, tmp_path, make_checkpoint=mk,
                validate=sgcsp_validator(flow, ds, size=3, steps=2), progress=False)
    assert res.steps == 3
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck.task == "sgcsp" and ck.train_state["step"] == 3
    res = train(flow, ds, TrainConfig(max_steps=4, batch_size=4, val_every=2, warmup_steps=1),
                tmp_path, make_checkpoint=mk, resume=True, progress=False)
    assert load_checkpoint(tmp_path / "last.pt").train_state["step"] == 4


def test_skipped_rows_come_back_as_data_not_warnings(tiny_csv, tiny_checkpoint, tmp_path):
    """The library reports the unreadable row in ``skipped_rows`` (with its reason) and warns
    nothing; the command line prints it (test above)."""
    import warnings

    from crystalflow.crystal_tasks.prediction import predict_from_csv_with_space_group

    path, ds = tiny_csv
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = predict_from_csv_with_space_group(path, tmp_path / "out", steps=2, checkpoint=tiny_checkpoint,
                                                progress=False)
    assert [r.row for r in res.skipped_rows] == ["bad"] and res.skipped == 1
    assert res.skipped_rows[0].reason and res.written == len(ds)
