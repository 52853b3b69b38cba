"""Every command in the README runs as written, in one fresh working folder, with small sizes.

The README's shell blocks are extracted; each ``crystalflow`` command (and the ``torchrun`` one,
the ``make demo`` recipe and the Python snippets) has a mirror here that runs it in-process
(``crystalflow.cli.main``) or as a subprocess, from a folder laid out like a fresh clone beside
the data (``clone/`` next to ``shared/data/``, so ``../shared/data`` resolves as in the README).
The benchmark root there is a small copy (a few rows per split; never inside the repository) and
``CRYSTALFLOW_DATA`` is unset, so a command that only works inside ``make`` fails. A mirror only
shrinks sizes (``--limit``, ``--num``, ``--steps``, ``--max-steps``...), then checks the outputs
the README promises. A README command without a mirror fails :func:`test_every_readme_command_is_mirrored`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from crystalflow.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def readme_commands() -> list[str]:
    """The ``crystalflow`` / ``torchrun`` lines of the README's bash blocks, comments removed."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    out = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("crystalflow ") or " -m crystalflow " in line:
                out.append(line)
    return out


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


# -- checks of what each command promises -----------------------------------------------------

def _summary(folder: Path) -> list[dict]:
    with open(folder / "summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _cifs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.cif"))


def files(folder: str, names: list[str], space_group: int | None = None,
          all_in: int | None = None) -> Callable:
    """The folder holds exactly ``names`` (CIFs), each a summary row; the first one is in
    ``space_group``; every one passed its check and is in ``all_in`` (a space-group request)."""

    def check(work: Path, out: str) -> None:
        d = work / folder
        assert _cifs(d) == sorted(names)
        rows = _summary(d)
        assert sorted(r["file"] for r in rows) == sorted(names)
        assert all(r["ok"] in ("True", "False") and r["min_distance"] for r in rows)
        if space_group is not None:
            assert rows[0]["space_group"] == str(space_group)
        if all_in is not None:
            assert all(r["ok"] == "True" and r["space_group"] == str(all_in) for r in rows), rows

    return check


def generated(folder: str, num: int, space_group: int | None = None,
              elements: set[str] | None = None) -> Callable:
    def check(work: Path, out: str) -> None:
        from pymatgen.core import Structure

        d = work / folder
        rows = _summary(d)
        assert len(rows) == num and _cifs(d) == sorted(r["file"] for r in rows)
        for r in rows:
            s = Structure.from_file(d / r["file"])
            assert elements is None or {e.symbol for e in s.composition} == elements
            assert space_group is None or r["ok"] == "False" or r["space_group"] == str(space_group)

    return check


def checkpoint_at(folder: str, step: int) -> Callable:
    def check(work: Path, out: str) -> None:
        from crystalflow.checkpoint import load_checkpoint

        assert load_checkpoint(work / folder / "last.pt").train_state["step"] == step
        assert (work / folder / "log.csv").read_text().count("\n") == step + 1

    return check


def json_keys(*keys: str) -> Callable:
    def check(work: Path, out: str) -> None:
        payload = json.loads(out.strip().splitlines()[-1])
        assert set(keys) <= set(payload), payload

    return check


def stdout_has(*needles: str) -> Callable:
    def check(work: Path, out: str) -> None:
        assert all(n in out for n in needles), out

    return check


def both(*checks: Callable) -> Callable:
    def check(work: Path, out: str) -> None:
        for c in checks:
            c(work, out)

    return check


def backbones(folder: str, names: list[str], length: int) -> Callable:
    def check(work: Path, out: str) -> None:
        from crystalflow.proteins.io import read_backbones

        assert sorted(p.name for p in (work / folder).glob("*.pdb")) == names
        assert all(len(read_backbones(work / folder / n)[0]) == length for n in names)

    return check


@dataclass(frozen=True)
class Mirror:
    """How a README command runs here: options set to small values (replaced where the README
    gives them, else appended; ``None`` appends a flag), the check of its outputs, and README
    commands whose outputs it reads."""

    small: dict[str, str | None] = field(default_factory=dict)
    check: Callable = lambda work, out: None
    after: tuple[str, ...] = ()


TRAIN_SMALL = {"--max-steps": "1", "--batch-size": "4", "--val-size": "2", "--val-steps": "2",
               "--no-progress": None}
TINY_NET = {"--hidden": "16", "--layers": "1"}
D5 = "crystalflow predict --from-csv ../shared/data/mp_20/test.csv.gz --limit 20 --out d5"
D8 = "crystalflow predict --from-csv ../shared/data/mp_20/test.csv.gz --use-space-group --limit 20 --out d8"
BACKBONES = "crystalflow protein generate --length 64 --num 4 --out backbones"
MP20_IDS = None  # filled by the fixture: the first ids of the small MP-20 test split

MIRRORS: dict[str, Mirror] = {
    "crystalflow predict --composition SrTiO3 --out d1": Mirror(check=files("d1", ["SrTiO3.cif"])),
    "crystalflow predict --composition LiFePO4 --formula-units 2 --num-samples 5 --out d2":
        Mirror(check=files("d2", [f"LiFePO4-Z2_{k}.cif" for k in range(5)])),
    "crystalflow predict --composition KMgF3 --fast --out d3": Mirror(check=files("d3", ["KMgF3.cif"])),
    "crystalflow predict --composition NaCl --relax --out d4":
        Mirror({"--relax-top": "1", "--relax-steps": "5"}, files("d4", ["NaCl.cif"])),
    "crystalflow templates propose CaTiO3": Mirror(check=stdout_has("  0  221 Ca:1a Ti:1b O:3c", "from mp-")),
    D5: Mirror({"--limit": "2"}, lambda w, o: files("d5", [f"{i}.cif" for i in MP20_IDS])(w, o)),
    "crystalflow evaluate csp --predictions d5 --reference ../shared/data/mp_20/test.csv.gz "
    "--limit 20 --json": Mirror({"--limit": "2"}, json_keys("match_rate", "rmse"), (D5,)),
    "crystalflow predict --composition NaCl --space-group 225 --num-samples 4 --out d6":
        Mirror({"--steps": "5"}, files("d6", [f"NaCl_{k}.cif" for k in range(4)], all_in=225)),
    "crystalflow predict --composition NaCl --space-group 225 --wyckoff \"Na:4a,Cl:4b\" --out d7":
        Mirror({"--steps": "5"}, files("d7", ["NaCl.cif"], all_in=225)),
    D8: Mirror({"--limit": "2", "--steps": "5"},
               lambda w, o: files("d8", [f"{i}.cif" for i in MP20_IDS])(w, o)),
    "crystalflow evaluate csp --predictions d8 --reference ../shared/data/mp_20/test.csv.gz "
    "--limit 20 --json --space-group": Mirror({"--limit": "2"}, json_keys("space_group_kept"), (D8,)),
    "crystalflow predict --from-csv ../shared/data/mp_20/test.csv.gz --use-space-group --candidates 4 "
    "--limit 20 --out d8r": Mirror({"--limit": "2", "--steps": "5", "--candidates": "2"},
                                   lambda w, o: files("d8r", [f"{i}.cif" for i in MP20_IDS])(w, o)),
    "crystalflow predict --composition SrTiO3 --p1 --num-samples 2 --out d9":
        Mirror({"--steps": "3"}, files("d9", ["SrTiO3_0.cif", "SrTiO3_1.cif"])),
    "crystalflow train --dataset perov_5 --data-dir ../shared/data --out runs/perov_5 --max-steps 9000":
        Mirror(TRAIN_SMALL | TINY_NET, checkpoint_at("runs/perov_5", 1)),
    "crystalflow train --dataset mp_20 --data-dir ../shared/data --init-from csp_mp_20.pt "
    "--out runs/mp_20_more --max-steps 20000": Mirror(TRAIN_SMALL, checkpoint_at("runs/mp_20_more", 1)),
    "crystalflow train --data my_cifs/ --out runs/mine": Mirror(TRAIN_SMALL | TINY_NET,
                                                                checkpoint_at("runs/mine", 1)),
    "torchrun --standalone --nproc_per_node=2 -m crystalflow train --dataset mp_20 --data-dir "
    "../shared/data --out runs/ddp": Mirror(TRAIN_SMALL | TINY_NET,
                                            both(checkpoint_at("runs/ddp", 1), json_keys("processes"))),
    "torchrun --standalone --nproc_per_node=2 -m crystalflow train --task sgcsp --dataset mp_20 "
    "--data-dir ../shared/data --out runs/ddp_sg": Mirror(TRAIN_SMALL | TINY_NET,
                                                          both(checkpoint_at("runs/ddp_sg", 1),
                                                               json_keys("processes", "best_val_match_rate"))),
    "crystalflow evaluate stability --help": Mirror(check=stdout_has("--samples", "--overwrite")),
    "crystalflow generate --space-group 225 --num 16 --out generated/fm-3m":
        Mirror({"--num": "2", "--steps": "5"}, generated("generated/fm-3m", 2, 225)),
    "crystalflow generate --space-group 62 --num 8 --elements Li,Fe,P,O --out generated/lfpo":
        Mirror({"--num": "2", "--steps": "5"}, generated("generated/lfpo", 2, 62, {"Li", "Fe", "P", "O"})),
    "crystalflow generate --space-group 225 --num 4 --elements Na,Cl --num-atoms 8 --out generated/nacl":
        Mirror({"--num": "2", "--steps": "5"}, generated("generated/nacl", 2, 225, {"Na", "Cl"})),
    "crystalflow generate --num 100 --out generated/any --seed 1":
        Mirror({"--num": "3", "--steps": "5"}, generated("generated/any", 3)),
    "crystalflow generate --num 8 --steer best-of-n --particles 8 --reward-relax-steps 10 --reward-relax-top 2 "
    "--out generated/stable":
        Mirror({"--num": "2", "--steps": "5", "--particles": "2", "--reward-relax-steps": "2",
                "--reward-relax-top": "1"}, generated("generated/stable", 2)),
    "crystalflow evaluate dng --samples generated/any --reference ../shared/data/mp_20/test.csv.gz "
    "--no-coverage --json": Mirror(check=json_keys("d_sg", "floor_d_sg", "floor_wdist_density"),
                                   after=("crystalflow generate --num 100 --out generated/any --seed 1",)),
    BACKBONES: Mirror({"--num": "1", "--steps": "3"}, backbones("backbones", ["sample_64_0.pdb"], 64)),
    "crystalflow protein evaluate backbones": Mirror(check=stdout_has("CA-CA"), after=(BACKBONES,)),
    "crystalflow protein train --data-dir ../shared/data --out runs/protein --crop 64 --max-steps 9000":
        Mirror({"--max-steps": "1", "--batch-size": "2", "--val-size": "1", "--hidden": "16",
                "--pair": "8", "--layers": "1", "--no-progress": None},
               checkpoint_at("runs/protein", 1)),
}


def small_argv(command: str, small: dict[str, str | None]) -> list[str]:
    argv = shlex.split(command)
    for option, value in small.items():
        if option in argv and value is not None:
            argv[argv.index(option) + 1] = value
        elif option not in argv:
            argv += [option] if value is None else [option, value]
    return argv


# -- the fresh clone ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clone(tmp_path_factory, data_dir):
    """``clone/`` (the working folder) beside ``shared/data/`` (a few rows of each split)."""
    global MP20_IDS
    root = tmp_path_factory.mktemp("fresh")
    small = root / "shared" / "data"
    for name, split, rows in [("mp_20", "train", 8), ("mp_20", "val", 8), ("mp_20", "test", 8),
                              ("perov_5", "val", 410), ("perov_5", "test", 8)]:
        (small / name).mkdir(parents=True, exist_ok=True)
        table = pd.read_csv(data_dir / name / f"{split}.csv.gz", nrows=rows)
        table.to_csv(small / name / f"{split}.csv.gz", index=False)
        if (name, split) == ("mp_20", "test"):
            MP20_IDS = table["material_id"].astype(str).tolist()[:2]
        if (name, split) == ("perov_5", "test"):  # "your own data": a folder of CIFs
            (root / "clone" / "my_cifs").mkdir(parents=True)
            for mid, cif in zip(table["material_id"], table["cif"]):
                (root / "clone" / "my_cifs" / f"{mid}.cif").write_text(cif)
    for split, pattern in (("db55_unbound", "1A2K_r_u.pdb.gz"), ("dips_test", "kq_1kq1*.pdb.gz")):
        (small / "proteins" / split).mkdir(parents=True)
        for f in sorted((data_dir / "proteins" / split).glob(pattern))[:1]:
            (small / "proteins" / split / f.name).symlink_to(f)
    saved = {k: os.environ.get(k) for k in ("CRYSTALFLOW_DATA", "CRYSTALFLOW_CACHE")}
    os.environ.pop("CRYSTALFLOW_DATA", None)
    os.environ["CRYSTALFLOW_CACHE"] = str(root / "cache")
    yield root / "clone"
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


_done: dict[str, str] = {}


def run_readme_command(command: str, work: Path) -> str:
    """Run a README command (small sizes) once in ``work``, after the ones it reads; its stdout."""
    if command in _done:
        return _done[command]
    mirror = MIRRORS[command]
    for before in mirror.after:
        run_readme_command(before, work)
    argv = small_argv(command, mirror.small)
    if argv[0] == "torchrun":
        torchrun = Path(sys.executable).with_name("torchrun")
        res = subprocess.run([str(torchrun), *argv[1:]], cwd=work, capture_output=True, text=True,
                             timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"})
        assert res.returncode == 0, res.stderr[-2000:]
        out = res.stdout
    else:
        buf = io.StringIO()
        cwd = Path.cwd()
        os.chdir(work)
        try:
            with contextlib.redirect_stdout(buf):
                code = main(argv[1:])
        finally:
            os.chdir(cwd)
        out = buf.getvalue()
        assert code == 0, f"{' '.join(argv)} exited {code}"
    mirror.check(work, out)
    _done[command] = out
    return out


# -- tests ----------------------------------------------------------------------------------------

def test_every_readme_command_is_mirrored():
    cmds = readme_commands()
    assert len(cmds) >= 20
    assert sorted(set(cmds)) == sorted(MIRRORS), set(cmds) ^ set(MIRRORS)


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command):
    argv = shlex.split(command)
    argv = argv[argv.index("crystalflow") + 1:] if "crystalflow" in argv else argv[argv.index("-m") + 2:]
    if "--help" in argv:
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 0
        return
    assert callable(getattr(build_parser().parse_args(argv), "func", None))


@pytest.mark.parametrize("command", list(MIRRORS))
def test_readme_command_runs(command, clone, one_thread):
    run_readme_command(command, clone)


def test_readme_python_snippets_run(clone, one_thread):
    """The Python blocks, run in the same folder after the shell commands (so a snippet writing
    where a command already wrote fails, as it would for a reader), with smaller counts."""
    for command in MIRRORS:  # the shell commands first, as a reader would
        if command.startswith("crystalflow generate"):
            run_readme_command(command, clone)
    blocks = readme_python_blocks()
    assert len(blocks) >= 2
    cwd = Path.cwd()
    os.chdir(clone)
    scope: dict = {}
    try:
        for code in blocks:
            exec(compile(code.replace("num=16", "num=2, steps=5"), "README.md", "exec"), scope)
    finally:
        os.chdir(cwd)
    assert len(scope["structures"]) == 2 and len(scope["crystals"]) == 2


def test_make_demo_recipe_writes_what_the_readme_says(clone, one_thread):
    """``make demo`` runs the Makefile's predict line: SrTiO3_{0..3}.cif, best first the cubic
    perovskite (Pm-3m), and summary.csv."""
    makefile = (REPO / "Makefile").read_text()
    (line,) = [x.strip() for x in makefile.splitlines() if "crystalflow predict" in x]
    argv = shlex.split(line.replace("$(BIN)/", "").replace("$(DEMO_OUT)", "out/demo"))
    cwd = Path.cwd()
    os.chdir(clone)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(argv[1:]) == 0
    finally:
        os.chdir(cwd)
    files("out/demo", [f"SrTiO3_{k}.cif" for k in range(4)], space_group=221)(clone, "")
    assert "out/demo/SrTiO3_{0..3}.cif" in README and "Pm-3m" in README
