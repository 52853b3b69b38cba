"""The command line end to end on a tiny model: train, resume, predict, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from pymatgen.core import Composition, Structure

from crystalflow.checkpoint import load_checkpoint
from crystalflow.cli import main
from crystalflow.errors import CheckpointError


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("run")
    args = ["train", "--dataset", "perov_5", "--data-dir", str(data_dir), "--out", str(out),
            "--max-steps", "3", "--val-every", "2", "--val-size", "4", "--val-steps", "2",
            "--hidden", "16", "--layers", "1", "--batch-size", "16", "--no-progress"]
    assert main(args) == 0
    return out, args


def test_train_writes_checkpoints_and_resumes(tiny_run, capsys):
    out, args = tiny_run
    ck = load_checkpoint(out / "last.pt")
    assert ck.task == "csp" and ck.train_state["step"] == 3
    assert ck.stats["max_atoms"] == 5 and ck.stats["dataset"] == "perov_5"
    assert (out / "best.pt").exists() and (out / "log.csv").read_text().count("\n") == 4
    resumed = list(args)
    resumed[resumed.index("--max-steps") + 1] = "5"
    assert main(resumed + ["--resume"]) == 0
    assert load_checkpoint(out / "last.pt").train_state["step"] == 5
    assert (out / "log.csv").read_text().count("\n") == 6


def test_predict_composition_writes_cifs(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    dest = tmp_path / "pred"
    assert main(["predict", "--composition", "SrTiO3", "--num-samples", "2", "--steps", "3",
                 "--checkpoint", str(out / "last.pt"), "--out", str(dest)]) == 0
    files = sorted(dest.glob("*.cif"))
    assert len(files) == 2
    for f in files:
        assert Structure.from_file(f).composition == Composition("SrTiO3")


def test_predict_from_csv_names_files_by_material_id(tiny_run, tmp_path, data_dir, capsys):
    out, _ = tiny_run
    dest = tmp_path / "csv"
    csv = data_dir / "perov_5" / "test.csv.gz"
    assert main(["predict", "--from-csv", str(csv), "--limit", "3", "--num-samples", "2", "--p1",
                 "--steps", "2", "--checkpoint", str(out / "last.pt"), "--out", str(dest)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"rows": 3, "skipped": 0, "written": 6, "out": str(dest)}
    import pandas as pd
    ids = pd.read_csv(csv).material_id.astype(str).tolist()[:3]
    names = {f.name for f in dest.glob("*.cif")}
    assert names == {f"{i}{suffix}.cif" for i in ids for suffix in ("_0", "_1")}  # never <id>.cif too


@pytest.mark.parametrize("argv,message", [
    (["--composition", "XyO3"], "unknown element"),
    (["--composition", "Sr(("], "malformed formula"),
    (["--composition", "SrTiO3", "--num-atoms", "7"], "not a whole number"),
    (["--composition", "SrTiO3", "--num-atoms", "10"], "more than this checkpoint supports"),
    (["--composition", "SrTiO3", "--num-samples", "0"], "num-samples"),
])
def test_bad_predict_inputs_fail_cleanly(tiny_run, tmp_path, capsys, argv, message):
    out, _ = tiny_run
    dest = tmp_path / "never"
    code = main(["predict", *argv, "--p1", "--checkpoint", str(out / "last.pt"), "--out", str(dest)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not dest.exists() or not any(dest.iterdir())


def test_missing_data_dir_and_checkpoint_fail_cleanly(tmp_path, capsys):
    assert main(["train", "--dataset", "perov_5", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "data directory does not exist" in capsys.readouterr().err
    assert main(["predict", "--composition", "NaCl", "--checkpoint", str(tmp_path / "x.pt"), "--out", str(tmp_path)]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)
    torch.save({"format": "other"}, bad)
    with pytest.raises(CheckpointError, match="is not a"):
        load_checkpoint(bad)


def test_console_script_entry_point():
    res = subprocess.run([sys.executable, "-m", "crystalflow", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "predict" in res.stdout and "train" in res.stdout


def test_train_init_from_continues_from_checkpoint_weights(tiny_run, tmp_path, data_dir):
    """--init-from starts from a checkpoint's weights and lattice chart: with lr 0 one step
    leaves them unchanged; a checkpoint of another task is refused."""
    src, _ = tiny_run
    out = tmp_path / "cont"
    args = ["train", "--dataset", "perov_5", "--data-dir", str(data_dir), "--out", str(out),
            "--init-from", str(src / "last.pt"), "--lr", "0", "--max-steps", "1", "--val-size", "0",
            "--batch-size", "8", "--no-progress"]
    assert main(args) == 0
    before, after = load_checkpoint(src / "last.pt"), load_checkpoint(out / "last.pt")
    assert after.model_config == before.model_config  # size taken from the checkpoint, not --hidden
    assert after.stats["lattice_chart"].keys() == before.stats["lattice_chart"].keys()
    for key, val in before.stats["lattice_chart"].items():
        assert torch.equal(torch.as_tensor(val), torch.as_tensor(after.stats["lattice_chart"][key]))
    for key, val in before.weights.items():
        assert torch.allclose(val.float(), after.weights[key].float()), key
    assert main(args[:-1] + ["--task", "sgcsp", "--overwrite", "--no-progress"]) == 2  # a csp checkpoint for sgcsp


def test_train_init_from_refuses_a_different_size(tiny_run, tmp_path, data_dir, capsys):
    """--hidden/--layers with --init-from must match the checkpoint (its size is kept), not be ignored."""
    src, _ = tiny_run
    args = ["train", "--dataset", "perov_5", "--data-dir", str(data_dir), "--out", str(tmp_path / "x"),
            "--init-from", str(src / "last.pt"), "--max-steps", "1", "--val-size", "0", "--no-progress"]
    assert main(args + ["--hidden", "32"]) == 2
    assert "--hidden 32 differs" in capsys.readouterr().err
    assert main(args + ["--hidden", "16", "--layers", "1", "--lr", "0"]) == 0  # the same size is fine
