"""``predict --candidates K``: K space-group samples per composition, the lowest in CHGNet energy kept."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from crystalflow.cli import main
from crystalflow.crystal_tasks.prediction import lowest_energy_samples, predict_from_csv_with_space_group
from crystalflow.metrics.energy import static_energies

from tests.sgcsp.test_cli import tiny_checkpoint, tiny_csv  # noqa: F401 (fixtures)


def _rocksalt(a: float) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_lowest_energy_first_and_invalid_last():
    """Each composition's kept samples come in increasing CHGNet energy, the minimum first; a
    sample with overlapping atoms is never preferred to a valid one, whatever its energy."""
    overlapping = _rocksalt(5.6)
    overlapping.append("Na", [0.01, 0.0, 0.0])
    groups = [[_rocksalt(4.7), overlapping, _rocksalt(5.6), _rocksalt(6.6)], [overlapping, _rocksalt(5.0)]]
    best = lowest_energy_samples(groups, keep=2)
    energies = static_energies([s for g in groups for s in g if s is not overlapping], progress=False)
    assert [len(b) for b in best] == [2, 2]
    first = [c.energy for c in best[0]]
    assert first == sorted(first) and first[0] == pytest.approx(min(energies[:3]))
    assert all(any(c.structure is s for s in g) for b, g in zip(best, groups) for c in b)
    assert best[1][0].min_distance >= 0.5 and best[1][1].structure is overlapping
    assert best[1][1].energy is None  # an invalid sample is not given to CHGNet


def _cscl_nacl(a: float) -> Structure:
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_samples_in_the_requested_group_come_first():
    """Rock-salt NaCl (Fm-3m, 225) is lower in CHGNet energy than CsCl-type NaCl (Pm-3m, 221):
    unconstrained, energy decides; with 221 requested, the CsCl-type sample is kept first and the
    energy order holds within each side."""
    rocksalt, cscl, cscl_far = _rocksalt(5.6), _cscl_nacl(3.4), _cscl_nacl(4.5)
    e_rock, e_cscl, e_far = static_energies([rocksalt, cscl, cscl_far], progress=False)
    assert e_rock < min(e_cscl, e_far)  # the premise: the ranking would otherwise pick rock salt
    free = lowest_energy_samples([[cscl_far, cscl, rocksalt]], keep=3)[0]
    assert free[0].structure is rocksalt
    asked = lowest_energy_samples([[cscl_far, rocksalt, cscl]], keep=3, requested=[221])[0]
    assert [c.check.space_group for c in asked] == [221, 221, 225]
    assert asked[0].energy <= asked[1].energy
    assert asked[2].structure is rocksalt


def test_candidates_keep_a_sample_no_worse_than_the_unranked_one(tiny_csv, tiny_checkpoint, tmp_path):  # noqa: F811
    """With one chunk, sample 0 of the ranked run is the unranked run's sample, so where that one
    is valid and in its row's group, the written crystal is too and its CHGNet energy is at most
    the unranked one's; with
    chunks of one row the files are the same set and summary.csv carries each kept energy."""
    path, ds = tiny_csv
    plain = predict_from_csv_with_space_group(path, tmp_path / "plain", steps=2, checkpoint=tiny_checkpoint,
                                              progress=False)
    ranked = predict_from_csv_with_space_group(path, tmp_path / "ranked", steps=2, checkpoint=tiny_checkpoint,
                                               progress=False, candidates=3)
    chunked = predict_from_csv_with_space_group(path, tmp_path / "chunked", steps=2,
                                                checkpoint=tiny_checkpoint, progress=False,
                                                candidates=2, chunk=1)
    assert ranked.written == plain.written == chunked.written == len(ds)
    table = pd.read_csv(tmp_path / "ranked" / "summary.csv")
    plain_ok = dict(zip(*pd.read_csv(tmp_path / "plain" / "summary.csv")[["file", "ok"]].values.T))
    assert "energy_per_atom" in table.columns and len(table) == len(ds)
    assert sorted(p.name for p in (tmp_path / "chunked").glob("*.cif")) == \
        sorted(p.name for p in (tmp_path / "ranked").glob("*.cif"))
    compared = 0
    for row in table.itertuples():
        before = Structure.from_file(tmp_path / "plain" / row.file)
        after = Structure.from_file(tmp_path / "ranked" / row.file)
        e_before = static_energies([before], progress=False)[0]
        if e_before is None or not plain_ok[row.file]:
            continue
        assert row.ok
        e_after = static_energies([after], progress=False)[0]
        assert e_after == pytest.approx(row.energy_per_atom, abs=2e-3)
        assert e_after <= e_before + 2e-3
        compared += 1
    assert compared >= len(ds) // 2


@pytest.mark.parametrize("argv, message", [
    (["--composition", "NaCl", "--candidates", "4"], "--candidates goes with --space-group"),
    (["--composition", "NaCl", "--space-group", "225", "--candidates", "1", "--num-samples", "2"],
     "must be at least --num-samples"),
    (["--composition", "NaCl", "--space-group", "225", "--rank-relax-steps", "5"],
     "--rank-relax-steps re-ranks --candidates: give --candidates K too"),
])
def test_bad_candidate_requests_exit_2_and_write_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["predict", *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_the_command_line_writes_the_lowest_energy_cell(tiny_checkpoint, tmp_path, capsys):  # noqa: F811
    """``predict --composition --space-group --candidates``: the kept cells are written, best first,
    with their energies in summary.csv."""
    out = tmp_path / "o"
    assert main(["predict", "--composition", "NaCl", "--space-group", "225", "--candidates", "3",
                 "--num-samples", "2", "--steps", "2", "--checkpoint", str(tiny_checkpoint),
                 "--out", str(out)]) == 0
    assert len(list(out.glob("*.cif"))) == 2
    table = pd.read_csv(out / "summary.csv")
    assert list(table["rank"]) == [0, 1]
    ok = table["ok"].tolist()
    assert ok == sorted(ok, reverse=True)  # samples that pass the checks first
    energies = table.loc[table["ok"], "energy_per_atom"].to_numpy(dtype=float)
    assert len(energies) >= 1 and np.isfinite(energies).all() and (np.diff(energies) >= 0).all()  # then by energy
    printed = capsys.readouterr().out
    assert "eV/atom" in printed


def test_a_short_relaxation_re_ranks_the_best_two():
    """The two-stage ranking (``relax_steps``): CsCl-type NaCl at a = 3.5 A is lower than a slightly
    expanded rock salt as sampled, but after 10 CHGNet FIRE steps the rock salt is lower; the
    second stage picks it and keeps the unrelaxed sample. With ``relax_top=1`` only the static
    pick is relaxed, so it stays first."""
    rocksalt, cscl, squeezed = _rocksalt(5.2), _cscl_nacl(3.5), _rocksalt(4.9)
    group = [rocksalt, cscl, squeezed]
    assert lowest_energy_samples([group], keep=1)[0][0].structure is cscl
    two = lowest_energy_samples([group], keep=3, relax_steps=10, relax_top=2)[0]
    assert two[0].structure is rocksalt and two[1].structure is cscl and two[2].structure is squeezed
    assert two[0].relaxed_energy < two[1].relaxed_energy and two[2].relaxed_energy is None
    assert two[0].structure.lattice.a == pytest.approx(5.2)  # the sample, not the relaxed cell
    assert lowest_energy_samples([group], keep=1, relax_steps=10, relax_top=1)[0][0].structure is cscl
    with pytest.raises(Exception, match="relax_top >= 1"):
        lowest_energy_samples([group], keep=1, relax_steps=10, relax_top=0)


def test_the_command_line_ranks_by_a_short_relaxation(tiny_checkpoint, tmp_path):  # noqa: F811
    """``--rank-relax-steps``: the written samples are the flow's (unrelaxed) and summary.csv holds
    the relaxed energy the first ones were ranked by, lowest first among the relaxed."""
    out = tmp_path / "o"
    assert main(["predict", "--composition", "NaCl", "--space-group", "225", "--candidates", "3",
                 "--num-samples", "2", "--steps", "2", "--rank-relax-steps", "3",
                 "--checkpoint", str(tiny_checkpoint), "--out", str(out)]) == 0
    table = pd.read_csv(out / "summary.csv")
    assert "relaxed_energy_per_atom" in table and len(list(out.glob("*.cif"))) == 2
    relaxed = table.loc[table["ok"], "relaxed_energy_per_atom"].dropna().to_numpy(dtype=float)
    assert len(relaxed) >= 1 and (np.diff(relaxed) >= 0).all()
