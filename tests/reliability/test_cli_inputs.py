"""Bad command lines: exit status 2, one line on stderr, no traceback, nothing written, fast."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from crystalflow.cli import main

#: one bad numeric value of every command (the rest of the command line is valid)
BAD_NUMBERS = [
    ["train", "--dataset", "perov_5", "--out", "{out}", "--max-steps", "0"],
    ["train", "--dataset", "perov_5", "--out", "{out}", "--max-steps", "-5"],
    ["train", "--dataset", "perov_5", "--out", "{out}", "--threads", "-2"],
    ["train", "--dataset", "perov_5", "--out", "{out}", "--batch-size", "0"],
    ["train", "--dataset", "perov_5", "--out", "{out}", "--lr", "nan"],
    ["train", "--dataset", "perov_5", "--out", "{out}", "--lr=-1e-3"],
    ["train", "--dataset", "perov_5", "--out", "{out}", "--val-every", "0"],
    ["train", "--dataset", "perov_5", "--out", "{out}", "--val-size", "-1"],
    ["train", "--data", "x.csv", "--out", "{out}", "--val-fraction", "1.5"],
    ["train", "--dataset", "perov_5", "--out", "{out}", "--hidden", "0"],
    ["generate", "--out", "{out}", "--num", "0"],
    ["generate", "--out", "{out}", "--steps", "-1"],
    ["generate", "--out", "{out}", "--batch-size", "0"],
    ["generate", "--out", "{out}", "--num-atoms", "0"],
    ["generate", "--out", "{out}", "--threads", "0"],
    ["generate", "--out", "{out}", "--retries", "-1"],
    ["evaluate", "csp", "--predictions", "{out}", "--reference", "r.csv", "--limit", "-3780"],
    ["evaluate", "csp", "--predictions", "{out}", "--reference", "r.csv", "--workers", "0"],
    ["evaluate", "dng", "--samples", "{out}", "--reference", "r.csv", "--reference-limit", "0"],
    ["evaluate", "stability", "--samples", "{out}", "--relax-steps", "-1"],
    ["evaluate", "stability", "--samples", "{out}", "--fmax", "0"],
    ["protein", "train", "--out", "{out}", "--max-steps", "0"],
    ["protein", "train", "--out", "{out}", "--ema-decay", "2"],
    ["protein", "generate", "--out", "{out}", "--length", "0"],
    ["protein", "generate", "--out", "{out}", "--length", "64", "--num", "0"],
    ["protein", "generate", "--out", "{out}", "--length", "64", "--threads", "-2"],
    ["protein", "evaluate", "{out}", "--max-tm-pairs", "-1"],
]


@pytest.mark.parametrize("argv", BAD_NUMBERS, ids=[" ".join(a[:1] + a[-2:]) for a in BAD_NUMBERS])
def test_bad_numbers_fail_in_one_line_before_any_work(argv, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([a.replace("{out}", str(out)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: argument ") and err.count("\n") == 1, err
    assert argv[-1].split("=")[-1] in err  # names the value
    assert not out.exists()


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crystalflow", *argv], capture_output=True, text=True,
                          timeout=60)


def test_help_and_argument_errors_answer_in_under_a_second_without_heavy_imports():
    probe = ("import sys, time; t = time.time(); from crystalflow.cli import build_parser; "
             "build_parser(); heavy = [m for m in ('torch', 'torch_geometric', 'pymatgen') "
             "if m in sys.modules]; print(heavy, time.time() - t)")
    heavy, _ = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              check=True).stdout.rsplit(" ", 1)
    assert heavy == "[]"
    for argv in (["--help"], ["generate", "--out", "x", "--num", "-1"], ["train", "--help"]):
        t0 = time.time()
        res = _run(*argv)
        assert time.time() - t0 < 1.5, argv  # the interpreter's own start-up included
        assert "Traceback" not in res.stderr


def test_network_names_listed_for_the_parser_match_the_registry():
    from crystalflow.cli.train import NETWORKS
    from crystalflow.models import MODELS

    assert set(NETWORKS) == set(MODELS)


def test_argument_error_is_one_line_in_a_real_process(tmp_path):
    res = _run("train", "--dataset", "perov_5", "--out", str(tmp_path / "o"), "--steps", "0")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and res.stdout == ""
