"""``crystalflow protein generate / evaluate / train``: files written, clear one-line errors, and the
bundled checkpoint meeting the CA-CA target."""

from __future__ import annotations

import json

import pytest
import torch

from crystalflow.checkpoint import load_checkpoint, save_checkpoint
from crystalflow.cli import main
from crystalflow.proteins.io import read_backbones
from crystalflow.proteins.metrics import ca_ca_in_range
from crystalflow.proteins.pretrained import (
    BUNDLED_DIR, DEFAULT_CHECKPOINT, load_protein_flow, make_protein_checkpoint,
)


@pytest.fixture()
def tiny_checkpoint(tiny_flow, tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(make_protein_checkpoint(tiny_flow, {"dataset": "none"},
                                            tiny_flow.model.state_dict(), None), path)
    return path


def test_generate_writes_pdb_files(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "gen"
    rc = main(["protein", "generate", "--checkpoint", str(tiny_checkpoint), "--length", "20", "24",
               "--num", "2", "--out", str(out), "--steps", "3"])
    assert rc == 0
    files = sorted(p.name for p in out.glob("*.pdb"))
    assert files == ["sample_20_0.pdb", "sample_20_1.pdb", "sample_24_0.pdb", "sample_24_1.pdb"]
    chain = read_backbones(out / "sample_24_1.pdb")[0]
    assert len(chain) == 24 and chain.complete().all()
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(report["written"]) == 4


@pytest.mark.parametrize("length", ["5", "100000", "0", "-3"])
def test_unsupported_length_is_a_one_line_error(tiny_checkpoint, tmp_path, capsys, length):
    rc = main(["protein", "generate", "--checkpoint", str(tiny_checkpoint), "--length", length,
               "--out", str(tmp_path)])
    err = capsys.readouterr().err
    expected = "error: argument --length" if int(length) < 1 else "error: chain length"
    assert rc == 2 and err.startswith(expected) and err.count("\n") == 1
    assert not list(tmp_path.glob("*.pdb"))


def test_zero_samples_is_a_one_line_error(tiny_checkpoint, tmp_path, capsys):
    rc = main(["protein", "generate", "--checkpoint", str(tiny_checkpoint), "--length", "32",
               "--num", "0", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: argument --num") and err.count("\n") == 1


def test_evaluate_keeps_generated_chains_whole(real_files, tmp_path, capsys):
    """A chain with a long C-N gap counts once, with the bad CA-CA step, unless asked to split it."""
    from crystalflow.proteins.io import split_segments, write_pdb

    seg = next(s for ch in read_backbones(real_files[0]) for s in split_segments(ch, 60))
    atoms = seg.coords[:60].clone()
    atoms[30:] += torch.tensor([6.0, 0.0, 0.0], dtype=atoms.dtype)  # a 6 A break after residue 30
    d = tmp_path / "gen"
    write_pdb(d / "broken.pdb", atoms)
    ca = atoms[:, 1]
    ok = ((ca[1:] - ca[:-1]).norm(dim=-1) - 3.8).abs() <= 0.2  # [59]; pair 29-30 is the break
    assert not ok[29]
    whole, split = ok.double().mean().item(), torch.cat([ok[:29], ok[30:]]).double().mean().item()
    for flag, chains, in_range in (([], 1, whole), (["--split-sample-breaks"], 2, split)):
        rc = main(["protein", "evaluate", str(d), "--json", str(tmp_path / "m.json"), *flag])
        assert rc == 0
        m = json.loads((tmp_path / "m.json").read_text())["samples"]
        assert m["chains"] == chains
        assert m["ca_ca_in_range"] == pytest.approx(in_range)
    capsys.readouterr()


def test_wrong_task_checkpoint_is_a_clear_error(tiny_checkpoint, tmp_path, capsys):
    ck = load_checkpoint(tiny_checkpoint)
    bad = tmp_path / "csp.pt"
    save_checkpoint(type(ck)(**{**ck.__dict__, "task": "csp"}), bad)
    rc = main(["protein", "generate", "--checkpoint", str(bad), "--length", "30", "--out", str(tmp_path)])
    assert rc == 2 and "not 'protein'" in capsys.readouterr().err


def test_evaluate_reports_metrics_and_rejects_non_protein_files(real_files, tmp_path, capsys):
    d = tmp_path / "ref"
    d.mkdir()
    (d / real_files[3].name).symlink_to(real_files[3])
    rc = main(["protein", "evaluate", str(d), "--reference", str(d), "--json", str(tmp_path / "m.json")])
    assert rc == 0 and "| CA-CA in 3.6-4.0 A |" in capsys.readouterr().out
    assert set(json.loads((tmp_path / "m.json").read_text())) == {"samples", "reference"}
    w = tmp_path / "water"
    w.mkdir()
    (w / "w.pdb").write_text("HETATM    1  O   HOH A   1       0.000   0.000   0.000  1.00  0.00           O\nEND\n")
    rc = main(["protein", "evaluate", str(w)])
    assert rc == 2 and "no protein chains" in capsys.readouterr().err


def _data_root(real_files, tmp_path, monkeypatch) -> None:
    """A data root under ``tmp_path`` with one training and one held-out chain file, and a
    private cache."""
    root = tmp_path / "data" / "proteins"
    for split, f in (("db55_unbound", real_files[0]), ("dips_test", real_files[3])):
        (root / split).mkdir(parents=True)
        (root / split / f.name).symlink_to(f)
    monkeypatch.setenv("CRYSTALFLOW_CACHE", str(tmp_path / "cache"))


def test_train_writes_checkpoints_that_load_strictly(real_files, tmp_path, monkeypatch, capsys):
    _data_root(real_files, tmp_path, monkeypatch)
    out = tmp_path / "run"
    rc = main(["protein", "train", "--data-dir", str(tmp_path / "data"), "--out", str(out),
               "--hidden", "16", "--pair", "8", "--layers", "1", "--crop", "48", "--stride", "48",
               "--max-steps", "2", "--batch-size", "2", "--val-every", "2", "--val-size", "2",
               "--no-progress"])
    assert rc == 0
    flow, ck = load_protein_flow(out / "last.pt")
    assert ck.task == "protein" and ck.train_state is not None
    assert ck.stats["dataset"] == "db55_unbound"


def test_bundled_checkpoint_meets_the_ca_ca_target(tmp_path, capsys):
    """The issue's acceptance check: ``generate --length 64 --num 2`` with the bundled checkpoint
    writes PDBs with >= 90% of consecutive CA-CA distances in 3.6-4.0 A."""
    assert (BUNDLED_DIR / DEFAULT_CHECKPOINT).is_file()
    ck = load_checkpoint(BUNDLED_DIR / DEFAULT_CHECKPOINT)
    assert ck.train_state is None
    assert (BUNDLED_DIR / DEFAULT_CHECKPOINT).stat().st_size < 5e6
    rc = main(["protein", "generate", "--length", "64", "--num", "2", "--out", str(tmp_path)])
    assert rc == 0
    ca = torch.cat([read_backbones(p)[0].ca[:, None] for p in sorted(tmp_path.glob("*.pdb"))], 1)
    fractions = [ca_ca_in_range(ca[:, i]) for i in range(ca.shape[1])]
    assert sum(fractions) / len(fractions) >= 0.9


def test_train_init_from_starts_at_the_checkpoint_weights(real_files, tiny_checkpoint, tmp_path,
                                                           monkeypatch):
    """With --init-from and lr 0 the run's weights are the start checkpoint's (its network size
    wins over --hidden), and stats record where it started."""
    _data_root(real_files, tmp_path, monkeypatch)
    out = tmp_path / "run"
    rc = main(["protein", "train", "--data-dir", str(tmp_path / "data"), "--out", str(out),
               "--init-from", str(tiny_checkpoint), "--hidden", "16", "--crop", "48", "--stride", "48",
               "--max-steps", "1", "--batch-size", "2", "--lr", "0", "--val-every", "1",
               "--val-size", "2", "--aux-pred-pairs", "--no-progress"])
    assert rc == 0
    start, run = load_checkpoint(tiny_checkpoint), load_checkpoint(out / "last.pt")
    assert run.model_config == start.model_config and run.stats["init_from"] == str(tiny_checkpoint)
    assert run.task_config["aux_pred_pairs"] is True
    assert all(torch.equal(run.weights[k], v) for k, v in start.weights.items())


def test_train_init_from_can_add_self_conditioning(real_files, tiny_checkpoint, tmp_path, monkeypatch):
    """--self-condition on an --init-from network without it adds the input at zero: with lr 0 the
    old weights are kept and the new projection is zero."""
    _data_root(real_files, tmp_path, monkeypatch)
    out = tmp_path / "run"
    rc = main(["protein", "train", "--data-dir", str(tmp_path / "data"), "--out", str(out),
               "--init-from", str(tiny_checkpoint), "--self-condition", "--crop", "48", "--stride", "48",
               "--max-steps", "1", "--batch-size", "2", "--lr", "0", "--val-every", "1",
               "--val-size", "2", "--no-progress"])
    assert rc == 0
    start, run = load_checkpoint(tiny_checkpoint), load_checkpoint(out / "last.pt")
    assert run.model_config == {**start.model_config, "self_condition": True}
    assert set(run.weights) == set(start.weights) | {"sc_pair.weight"}
    assert all(torch.equal(run.weights[k], v) for k, v in start.weights.items())
    assert run.weights["sc_pair.weight"].abs().max() == 0
    flow, _ = load_protein_flow(out / "last.pt")
    assert flow.self_conditioned


def test_evaluate_novelty_of_a_training_chain_is_one(real_files, tmp_path, monkeypatch, capsys):
    """A chain copied from the training data has novelty TM 1 against the training segments, and
    native chains fall in the Ramachandran allowed region."""
    from crystalflow.proteins.io import split_segments, write_pdb

    _data_root(real_files, tmp_path, monkeypatch)
    seg = next(s for ch in read_backbones(real_files[0]) for s in split_segments(ch, 60))
    write_pdb(tmp_path / "gen" / "copy.pdb", seg.coords[:60])
    rc = main(["protein", "evaluate", str(tmp_path / "gen"), "--novelty-refs", "5", "--data-dir",
               str(tmp_path / "data"), "--json", str(tmp_path / "m.json")])
    assert rc == 0 and "novelty" in capsys.readouterr().out
    m = json.loads((tmp_path / "m.json").read_text())["samples"]
    assert m["novelty_tm"] == pytest.approx(1.0, abs=1e-3)
    assert m["rama_allowed"] >= 0.95


def test_generate_with_clash_guidance(tiny_checkpoint, tmp_path, capsys):
    rc = main(["protein", "generate", "--checkpoint", str(tiny_checkpoint), "--length", "20",
               "--num", "1", "--out", str(tmp_path / "g"), "--steps", "3", "--clash-guidance", "2"])
    assert rc == 0 and len(list((tmp_path / "g").glob("*.pdb"))) == 1
    capsys.readouterr()


def test_generate_clash_radius_changes_the_samples_and_rejects_zero(tiny_checkpoint, tmp_path, capsys):
    def run(name, radius):
        rc = main(["protein", "generate", "--checkpoint", str(tiny_checkpoint), "--length", "20",
                   "--num", "1", "--out", str(tmp_path / name), "--steps", "4", "--clash-guidance", "5",
                   "--clash-radius", radius])
        return rc, (tmp_path / name / "sample_20_0.pdb")

    (rc_wide, wide), (rc_narrow, narrow) = run("wide", "8"), run("narrow", "1")
    assert rc_wide == 0 and rc_narrow == 0
    assert not torch.allclose(read_backbones(wide)[0].ca, read_backbones(narrow)[0].ca)
    capsys.readouterr()
    rc, path = run("zero", "0")
    assert rc == 2 and capsys.readouterr().err.startswith("error: argument --clash-radius")
    assert not path.exists()
