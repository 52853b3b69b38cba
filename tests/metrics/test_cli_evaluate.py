"""``crystalflow evaluate`` on tiny inputs written to a temporary directory."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from crystalflow.cli import main

from .conftest import bcc_fe, cscl_nacl, rocksalt_nacl, zincblende_gaas


def _write_reference(path, structures: dict) -> None:
    rows = [{"material_id": k, "cif": s.to(fmt="cif")} for k, s in structures.items()]
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.fixture
def csp_case(tmp_path):
    refs = {"mp-1": rocksalt_nacl(), "mp-2": bcc_fe(), "mp-3": zincblende_gaas(), "mp-4": cscl_nacl()}
    ref_csv = tmp_path / "ref.csv.gz"
    _write_reference(ref_csv, refs)
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "mp-1_0.cif").write_text(cscl_nacl().to(fmt="cif"))  # wrong polymorph
    (pred / "mp-1_1.cif").write_text(rocksalt_nacl().to(fmt="cif"))  # match
    (pred / "mp-2.cif").write_text(bcc_fe().to(fmt="cif"))  # match
    (pred / "mp-3_0.cif").write_text("this is not a CIF")  # unreadable: a miss
    (pred / "unrelated.cif").write_text(bcc_fe().to(fmt="cif"))  # ignored
    # mp-4 has no prediction: a miss
    return pred, ref_csv


def test_csp_json(csp_case, capsys):
    pred, ref_csv = csp_case
    rc = main(["evaluate", "csp", "--predictions", str(pred), "--reference", str(ref_csv), "--json", "--no-progress"])
    assert rc == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 1
    payload = json.loads(lines[0])
    assert payload["match_rate"] == pytest.approx(0.5)
    assert payload["num_references"] == 4
    assert payload["num_samples"] == 3
    assert payload["num_missing"] == 2
    assert payload["max_samples_per_reference"] == 2
    assert "mp-3_0.cif" in err and "warning" in err


def test_csp_space_group_kept(csp_case, capsys):
    """mp-1's first sample is CsCl (Pm-3m) for rock salt (Fm-3m): not kept; mp-2 bcc Fe: kept;
    mp-3 unreadable and mp-4 missing: not kept."""
    pred, ref_csv = csp_case
    rc = main(["evaluate", "csp", "--predictions", str(pred), "--reference", str(ref_csv), "--json",
               "--no-progress", "--space-group"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["space_group_kept"] == pytest.approx(0.25)
    assert payload["match_rate"] == pytest.approx(0.5)


def test_space_group_agreement_function():
    from crystalflow.metrics.symmetry import keeps_space_group, space_group_agreement

    assert keeps_space_group(bcc_fe(), bcc_fe())
    assert not keeps_space_group(cscl_nacl(), rocksalt_nacl())
    assert not keeps_space_group(None, rocksalt_nacl())
    refs = [rocksalt_nacl(), bcc_fe()]
    assert space_group_agreement(refs, refs, progress=False) == 1.0
    assert space_group_agreement([cscl_nacl(), None], refs, progress=False) == 0.0
    with pytest.raises(ValueError):
        space_group_agreement([None], refs, progress=False)


def test_csp_limit_and_table(csp_case, capsys):
    pred, ref_csv = csp_case
    rc = main(["evaluate", "csp", "--predictions", str(pred), "--reference", str(ref_csv), "--limit", "2", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "match_rate" in out and "1.0000" in out


def test_csp_errors(tmp_path, csp_case, capsys):
    pred, ref_csv = csp_case
    assert main(["evaluate", "csp", "--predictions", str(tmp_path / "nope"), "--reference", str(ref_csv)]) == 2
    assert main(["evaluate", "csp", "--predictions", str(pred), "--reference", str(tmp_path / "missing.csv")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "csp", "--predictions", str(empty), "--reference", str(ref_csv)]) == 2
    assert "error:" in capsys.readouterr().err
