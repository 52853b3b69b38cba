"""CHGNet relaxation, the reference hull and E_hull on a tiny Na-Cl hull."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from crystalflow.cli import main
from crystalflow.errors import DataError
from crystalflow.metrics.energy import relax, static_energies
from crystalflow.metrics.hull import (
    HullEntry,
    HullSpec,
    ReferenceHull,
    load_reference_hull,
    read_hull_entries,
    write_hull_entries,
)
from crystalflow.metrics.hull_build import build_reference_hull
from crystalflow.metrics.stability import evaluate_stability, stability_metrics, write_stability_csv

from .conftest import rocksalt_nacl


def nacl_prim(a: float = 5.69) -> Structure:
    return rocksalt_nacl(a).get_primitive_structure()


def bcc_na() -> Structure:
    return Structure(Lattice.cubic(4.23), ["Na", "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cl2_box() -> Structure:
    """A Cl2 molecule in a 8 A box: a crude elemental reference for chlorine."""
    return Structure(Lattice.cubic(8.0), ["Cl", "Cl"], [[0, 0, 0], [1.99 / 8.0, 0, 0]])


@pytest.fixture(scope="module")
def tiny_hull() -> ReferenceHull:
    """Na (bcc), Cl2 and NaCl (experimental geometry), all with CHGNet static energies."""
    e_na, e_cl, e_nacl = static_energies([bcc_na(), cl2_box(), nacl_prim()], progress=False)
    return ReferenceHull.from_entries(
        [HullEntry("na", "Na2", e_na), HullEntry("cl", "Cl2", e_cl), HullEntry("nacl", "NaCl", e_nacl)],
        "tiny CHGNet hull (test)",
    )


@pytest.fixture(scope="module")
def relaxed_nacl():
    return relax(nacl_prim(5.5), steps=100, fmax=0.05)


def test_relaxation_lowers_energy(relaxed_nacl):
    r = relaxed_nacl
    assert r.error is None and r.converged
    assert r.energy_per_atom <= r.initial_energy_per_atom + 1e-6
    assert 5.4 < r.structure.lattice.a * math.sqrt(2) < 5.9  # conventional a of rock salt


def test_relaxed_rocksalt_is_on_the_hull(tiny_hull, relaxed_nacl):
    result = tiny_hull.e_above_hull(relaxed_nacl.structure.composition, relaxed_nacl.energy_per_atom)
    assert result.e_above_hull < 0.05
    assert result.decomposition == ("NaCl",)


def test_compressed_rocksalt_is_far_above(tiny_hull):
    squeezed = nacl_prim()
    squeezed.scale_lattice(squeezed.volume * 0.55)
    (energy,) = static_energies([squeezed], progress=False)
    assert tiny_hull.e_above_hull("NaCl", energy).e_above_hull > 0.5


def test_missing_element_gives_nan(tiny_hull):
    assert math.isnan(tiny_hull.e_above_hull("KCl", -3.0).e_above_hull)


def test_evaluate_stability_and_csv(tiny_hull, tmp_path):
    squeezed = nacl_prim()
    squeezed.scale_lattice(squeezed.volume * 0.55)
    result = evaluate_stability([nacl_prim(), squeezed], tiny_hull, names=["good", "squeezed"],
                                relax_steps=0, progress=False)
    good, bad = result.records
    assert good.e_above_hull < 0.05 and bad.e_above_hull > 0.5
    m = result.metrics
    assert m.num_structures == 2 and m.frac_metastable == 0.5
    assert "CHGNet" in m.hull
    path = write_stability_csv(result.records, tmp_path / "s.csv")
    table = pd.read_csv(path)
    assert list(table["name"]) == ["good", "squeezed"]
    assert table["e_above_chgnet_hull"].notna().all()
    assert "chgnet_energy_per_atom" in table.columns


def test_sun_rate_needs_uniqueness_and_novelty(tiny_hull):
    result = evaluate_stability([nacl_prim(), nacl_prim()], tiny_hull, train=[bcc_na()], relax_steps=0,
                                progress=False)
    assert [r.unique for r in result.records] == [True, False]
    assert all(r.novel for r in result.records)
    assert result.metrics.msun_rate == pytest.approx(0.5)
    assert stability_metrics(result.records[:0]).num_structures == 0


def _write_split(path, structures, first_id):
    rows = [{"material_id": f"id-{first_id + i}", "cif": s.to(fmt="cif")} for i, s in enumerate(structures)]
    pd.DataFrame(rows).to_csv(path, index=False, compression="gzip")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mp_20")
    _write_split(d / "train.csv.gz", [nacl_prim()], 0)
    _write_split(d / "val.csv.gz", [cl2_box()], 1)
    _write_split(d / "test.csv.gz", [bcc_na()], 2)
    return d


def test_build_hull_is_keyed_resumable_and_loadable(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "hull"
    spec = HullSpec.from_data_dir(data_dir)
    assert len(spec.key()) == 12
    # a partial result from an interrupted run is kept, not recomputed
    partial = out / spec.filename().replace(".csv.gz", ".partial.csv.gz")

    write_hull_entries(partial, [HullEntry("id-0", "Na1Cl1", -3.25, "mp_20")])
    path = build_reference_hull(data_dir, out_dir=out, progress=False)
    assert path.name == spec.filename() and not partial.exists()
    entries = {e.id: e for e in read_hull_entries(path)}
    assert entries["id-0"].energy_per_atom == pytest.approx(-3.25)
    assert {"id-1", "id-2", "ase-Na"} <= set(entries)  # Cl has no ASE crystal: MP-20's Cl2 serves
    meta = json.loads(path.with_name(path.name.replace(".csv.gz", ".json")).read_text())
    assert meta["key"] == spec.key() and "not DFT" in meta["note"]
    monkeypatch.setenv("CRYSTALFLOW_HULL_DIR", str(out))
    hull = load_reference_hull(data_dir=data_dir)
    assert "NOT a DFT hull" in hull.description
    assert hull.elements == {"Na", "Cl"}
    assert build_reference_hull(data_dir, out_dir=out, progress=False) == path  # cached


def test_missing_hull_is_a_clear_error(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALFLOW_HULL_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="build-hull"):
        load_reference_hull(data_dir=data_dir)


def test_cli_stability(tiny_hull, tmp_path, capsys):

    hull_file = tmp_path / "tiny.csv.gz"
    write_hull_entries(hull_file, tiny_hull.entries)
    samples = tmp_path / "samples"
    samples.mkdir()
    nacl_prim().to(filename=str(samples / "good.cif"))
    (samples / "broken.cif").write_text("data_broken\n_cell_length_a 1\n")
    out_csv = tmp_path / "stab.csv"
    rc = main(["evaluate", "stability", "--samples", str(samples), "--hull", str(hull_file),
               "--relax-steps", "20", "--out", str(out_csv), "--plots", str(tmp_path / "plots"),
               "--json", "--no-progress"])
    assert rc == 0
    out, err = capsys.readouterr()
    payload = json.loads(out.strip())
    assert payload["num_structures"] == 2 and payload["num_unreadable"] == 1
    assert payload["frac_metastable"] == pytest.approx(0.5)
    assert payload["hull_floor"] == pytest.approx(0.1) and payload["frac_below_floor"] == 0.0
    assert "broken.cif" in err
    assert (tmp_path / "plots" / "ehull.png").is_file()
    assert len(pd.read_csv(out_csv)) == 2


def test_relaxed_rocksalt_against_the_shipped_mp20_hull(relaxed_nacl):
    """Against the bundled CHGNet hull of MP-20 (not the tiny one): rock salt sits on it."""
    import os
    from pathlib import Path

    shared = Path(os.environ.get("CRYSTALFLOW_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    if not (shared / "mp_20").is_dir():
        pytest.skip("MP-20 benchmark data not found")
    hull = load_reference_hull(data_dir=shared / "mp_20")
    on = hull.e_above_hull(relaxed_nacl.structure.composition, relaxed_nacl.energy_per_atom)
    assert on.e_above_hull < 0.05


def test_cutoffs_and_unique_novel_rates_are_reported(tiny_hull):
    from dataclasses import replace

    result = evaluate_stability([nacl_prim(), nacl_prim()], tiny_hull, train=[bcc_na()], relax_steps=0,
                                progress=False)
    m = result.metrics
    assert m.unique_rate == pytest.approx(0.5) and m.novel_rate == pytest.approx(1.0)
    assert (m.stable_cutoff, m.metastable_cutoff) == (0.0, 0.1)
    shifted = [replace(r, e_above_hull=0.05) for r in result.records]
    strict = stability_metrics(shifted)
    assert strict.frac_stable == 0.0 and strict.frac_metastable == 1.0 and strict.sun_rate == 0.0
    loose = stability_metrics(shifted, stable_cutoff=0.06, metastable_cutoff=0.04)
    assert loose.frac_stable == 1.0 and loose.frac_metastable == 0.0
    assert loose.sun_rate == pytest.approx(0.5) and loose.stable_cutoff == 0.06
    unflagged = [replace(r, unique=None, novel=None) for r in shifted]
    assert stability_metrics(unflagged).unique_rate is None and stability_metrics(unflagged).sun_rate is None


def test_cli_stability_cutoffs(tiny_hull, tmp_path, capsys):

    hull_file = tmp_path / "tiny.csv.gz"
    write_hull_entries(hull_file, tiny_hull.entries)
    samples = tmp_path / "samples"
    samples.mkdir()
    nacl_prim().to(filename=str(samples / "good.cif"))
    argv = ["evaluate", "stability", "--samples", str(samples), "--hull", str(hull_file), "--relax-steps", "0",
            "--json", "--no-progress"]
    assert main([*argv, "--stable-cutoff", "0.5", "--metastable-cutoff", "0.7"]) == 0
    payload = json.loads(capsys.readouterr().out.strip())
    assert (payload["stable_cutoff"], payload["metastable_cutoff"]) == (0.5, 0.7)
    assert main([*argv, "--metastable-cutoff", "-1", "--overwrite"]) == 2
    assert "--metastable-cutoff" in capsys.readouterr().err


def test_energy_rewards_against_a_hull(tiny_hull):
    from crystalflow.crystal_tasks.rewards import CLASH_PENALTY, FAILURE_REWARD, FormationEnergyReward, HullEnergyReward

    reward = HullEnergyReward(hull=tiny_hull)
    on_hull, squeezed = reward([nacl_prim(), nacl_prim(4.6)])
    assert on_hull == pytest.approx(0.0, abs=1e-5) and squeezed > 0.3
    assert reward.calls == 2
    clash = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    assert reward([clash])[0] >= CLASH_PENALTY
    assert reward([Structure(Lattice.cubic(4.0), ["Au"], [[0, 0, 0]])]) == [FAILURE_REWARD]  # not in hull
    e_nacl = static_energies([nacl_prim()], progress=False)[0]
    e_form = e_nacl - 0.5 * (tiny_hull.entries[0].energy_per_atom + tiny_hull.entries[1].energy_per_atom)
    assert FormationEnergyReward(hull=tiny_hull, target=e_form)([nacl_prim()])[0] == pytest.approx(0.0, abs=1e-5)
    assert FormationEnergyReward(hull=tiny_hull, target=e_form + 1.0)([nacl_prim()])[0] == pytest.approx(1.0, abs=1e-5)


def test_relaxed_reward_is_below_the_static_one_and_counts_its_passes(tiny_hull):
    """``HullEnergyReward(relax_steps=N)`` reads the energy after N CHGNet FIRE steps: a squeezed
    rock salt relaxes toward its hull point, so its reward falls; the passes spent are counted."""
    from crystalflow.crystal_tasks.rewards import HullEnergyReward

    static = HullEnergyReward(hull=tiny_hull)([nacl_prim(4.6)])[0]
    reward = HullEnergyReward(hull=tiny_hull, relax_steps=20)
    relaxed = reward([nacl_prim(4.6)])[0]
    assert -1e-3 < relaxed < static - 0.1
    assert reward.calls == 1 and 2 <= reward.chgnet_passes <= 21
    with pytest.raises(ValueError, match="relax_steps must be >= 0"):
        HullEnergyReward(relax_steps=-1)


def test_samples_below_the_hull_floor_are_counted_apart(tiny_hull):
    """A sample far below a reference hull (a gap of the hull) is stable but does not count in
    ``sun_floor_rate``; the floor is an option and is reported."""
    from dataclasses import replace

    base = evaluate_stability([nacl_prim()], tiny_hull, train=[bcc_na()], relax_steps=0, progress=False).records[0]
    ehulls = [-1.3, -0.1, -0.05, 0.0, 0.2, float("nan")]
    records = [replace(base, name=str(i), e_above_hull=e, unique=True, novel=True) for i, e in enumerate(ehulls)]
    m = stability_metrics(records)
    assert m.hull_floor == 0.1 and m.frac_stable == pytest.approx(4 / 6)
    assert m.frac_below_floor == pytest.approx(1 / 6)  # -1.3 only: -0.1 is on the floor
    assert m.sun_rate == pytest.approx(4 / 6) and m.sun_floor_rate == pytest.approx(3 / 6)
    wide = stability_metrics(records, hull_floor=2.0)
    assert wide.frac_below_floor == 0.0 and wide.sun_floor_rate == pytest.approx(wide.sun_rate)
    narrow = stability_metrics(records, hull_floor=0.0)
    assert narrow.frac_below_floor == pytest.approx(3 / 6) and narrow.sun_floor_rate == pytest.approx(1 / 6)
    assert stability_metrics([replace(r, unique=None) for r in records]).sun_floor_rate is None


def test_stability_csv_round_trip(tiny_hull, tmp_path):
    """``read_stability_csv`` gives back what ``write_stability_csv`` wrote (to 6 decimals), with
    empty cells as NaN / None."""
    from dataclasses import replace

    from crystalflow.metrics.stability import read_stability_csv

    result = evaluate_stability([nacl_prim(), nacl_prim()], tiny_hull, names=["a", "b"], train=[bcc_na()],
                                relax_steps=0, progress=False)
    broken = replace(result.records[0], name="c", e_above_hull=float("nan"), unique=None, novel=None,
                     error="no hull for this chemical system")
    records = [*result.records, broken]
    back = read_stability_csv(write_stability_csv(records, tmp_path / "s.csv"))
    assert len(back) == 3 and all(r.structure is None for r in back)
    for got, want in zip(back, records):
        for name in ("name", "formula", "num_sites", "decomposition", "relax_steps", "converged",
                     "unique", "novel", "error"):
            assert getattr(got, name) == getattr(want, name), name
        for name in ("energy_per_atom", "initial_energy_per_atom", "e_above_hull"):
            assert getattr(got, name) == pytest.approx(getattr(want, name), abs=1e-6, nan_ok=True), name
    assert stability_metrics(back).sun_rate == stability_metrics(records).sun_rate
