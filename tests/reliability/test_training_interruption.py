"""SIGTERM / SIGINT during training: a final checkpoint at the current step, a clean log, resumable."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from crystalflow.checkpoint import load_checkpoint
from crystalflow.training import LOG_COLUMNS, open_log


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory, data_dir):
    """40 Perov-5 rows as the user's own data (parsed in a second, no benchmark cache needed)."""
    frame = pd.read_csv(data_dir / "perov_5" / "test.csv.gz").head(40)
    path = tmp_path_factory.mktemp("data") / "small.csv"
    frame[["material_id", "cif"]].to_csv(path, index=False)
    return path


def _train_argv(data, out, max_steps):
    return [sys.executable, "-m", "crystalflow", "train", "--data", str(data), "--out", str(out),
            "--max-steps", str(max_steps), "--val-every", "100000", "--val-size", "0",
            "--hidden", "8", "--layers", "1", "--batch-size", "4", "--threads", "1", "--no-progress"]


def _rows(out):
    with open(out / "log.csv", newline="") as fh:
        return list(csv.reader(fh))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_a_resumable_checkpoint_at_the_current_step(small_csv, tmp_path, sig):
    out = tmp_path / "run"
    env = dict(os.environ, CRYSTALFLOW_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen(_train_argv(small_csv, out, 100000), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # the log is line-buffered: rows appear as steps finish
            if (out / "log.csv").exists() and len(_rows(out)) >= 4:
                break
            time.sleep(0.1)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    step = load_checkpoint(out / "last.pt").train_state["step"]
    rows = _rows(out)
    assert rows[0] == LOG_COLUMNS and step >= 3
    assert [int(r[0]) for r in rows[1:]] == list(range(1, step + 1))  # the checkpoint is current
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "log.csv"]  # no temporary files
    res = subprocess.run(_train_argv(small_csv, out, step + 2) + ["--resume"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert load_checkpoint(out / "last.pt").train_state["step"] == step + 2
    rows = _rows(out)
    assert rows.count(LOG_COLUMNS) == 1 and [int(r[0]) for r in rows[1:]] == list(range(1, step + 3))


def test_resume_drops_log_rows_past_the_checkpoint(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(",".join(LOG_COLUMNS) + "\n" + "".join(f"{i},0,0,0,,\n" for i in range(1, 8)))
    with open_log(path, resume_step=5) as fh:
        fh.write("6,1,1,1,,\n")
        assert path.read_text().count("\n") == 7  # line-buffered: already on disk
    assert [r[0] for r in _rows(tmp_path)] == ["step", "1", "2", "3", "4", "5", "6"]
    with open_log(path, resume_step=None):
        pass
    assert _rows(tmp_path) == [LOG_COLUMNS]
    path.write_text("")  # killed before the header reached the disk
    with open_log(path, resume_step=3):
        pass
    assert _rows(tmp_path) == [LOG_COLUMNS]
