"""``train`` / ``protein train``: the run folder is checked before any data is read; one holding a run
needs --resume (continue) or --overwrite (start again), so a finished run is never replaced
silently; an unusable one is a one-line error."""

from __future__ import annotations

import pandas as pd
import pytest

from crystalflow.checkpoint import load_checkpoint
from crystalflow.cli import main
from crystalflow.outputs import check_run_dir
from crystalflow.errors import InputError

TINY = ["--max-steps", "1", "--val-size", "0", "--hidden", "8", "--layers", "1", "--batch-size", "4",
        "--no-progress"]


@pytest.fixture
def small_csv(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("CRYSTALFLOW_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "small.csv"
    pd.read_csv(data_dir / "perov_5" / "test.csv.gz", nrows=12)[["material_id", "cif"]].to_csv(
        path, index=False)
    return path


def _refused(capsys, argv, needle):
    capsys.readouterr()  # what earlier commands printed
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and needle in err, err


def test_used_run_folder_needs_resume_or_overwrite(small_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(small_csv), "--out", str(out), *TINY]) == 0
    first = (out / "last.pt").read_bytes()
    (out / "notes.txt").write_text("mine")
    _refused(capsys, ["train", "--data", str(small_csv), "--out", str(out), *TINY], "--resume")
    assert (out / "last.pt").read_bytes() == first
    assert main(["train", "--data", str(small_csv), "--out", str(out), *TINY[:1], "2",
                 *TINY[2:], "--resume"]) == 0
    assert load_checkpoint(out / "last.pt").train_state["step"] == 2
    assert main(["train", "--data", str(small_csv), "--out", str(out), *TINY, "--overwrite"]) == 0
    assert load_checkpoint(out / "last.pt").train_state["step"] == 1
    assert (out / "log.csv").read_text().count("\n") == 2 and (out / "notes.txt").exists()


@pytest.mark.parametrize("command", [["train", "--dataset", "perov_5"], ["protein", "train"]])
def test_unusable_or_used_folder_is_refused_before_the_data_is_read(tmp_path, capsys, command):
    missing = ["--data-dir", str(tmp_path / "no-data")]  # read first, it would fail differently
    (tmp_path / "file").write_text("x")
    _refused(capsys, [*command, *missing, "--out", str(tmp_path / "file" / "run")], "under the file")
    _refused(capsys, [*command, *missing, "--out", str(tmp_path / "file")], "is a file")
    used = tmp_path / "used"
    used.mkdir()
    (used / "last.pt").write_text("a finished run")
    _refused(capsys, [*command, *missing, "--out", str(used)], "--overwrite")
    assert (used / "last.pt").read_text() == "a finished run"
    _refused(capsys, [*command, *missing, "--out", str(tmp_path / "new")], "no-data")
    assert not (tmp_path / "new").exists()  # a refused run leaves nothing behind


def test_check_run_dir_overwrite_removes_only_the_run_files(tmp_path):
    for name in ("last.pt", "best.pt", "log.csv", "keep.txt"):
        (tmp_path / name).write_text("x")
    with pytest.raises(InputError, match="--resume"):
        check_run_dir(tmp_path)
    assert check_run_dir(tmp_path, resume=True) == tmp_path and (tmp_path / "last.pt").exists()
    check_run_dir(tmp_path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    assert not (tmp_path / "a" / "b").exists() and check_run_dir(tmp_path / "a" / "b")


def test_other_files_do_not_make_a_run_folder_used(tmp_path):
    (tmp_path / "train.out").write_text("stdout of the run, captured by a script")
    assert check_run_dir(tmp_path) == tmp_path and (tmp_path / "train.out").exists()
