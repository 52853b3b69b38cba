"""``crystalflow train --data PATH``: a folder of CIF files or a CSV with a ``cif`` column."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
import torch

from crystalflow.checkpoint import load_checkpoint
from crystalflow.cli import main
from crystalflow.crystals import Crystal, collate
from crystalflow.crystals.dataset import (
    CrystalDataset,
    load_user_data,
    split_dataset,
)
from crystalflow.errors import DataError

N_CIFS = 12


@pytest.fixture(scope="module")
def perov_rows(data_dir) -> pd.DataFrame:
    """The first rows of the Perov-5 test CSV (material_id, cif)."""
    return pd.read_csv(data_dir / "perov_5" / "test.csv.gz", nrows=N_CIFS)[["material_id", "cif"]]


@pytest.fixture()
def cif_folder(tmp_path, perov_rows):
    folder = tmp_path / "cifs"
    folder.mkdir()
    for mid, cif in zip(perov_rows["material_id"], perov_rows["cif"]):
        (folder / f"{mid}.cif").write_text(cif)
    (folder / "notes.txt").write_text("not a structure")  # ignored: not .cif
    return folder


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALFLOW_CACHE", str(tmp_path / "cache"))


def test_folder_and_csv_give_the_same_crystals(cif_folder, perov_rows, tmp_path):
    from_folder = load_user_data(cif_folder, progress=False)
    csv = tmp_path / "mine.csv"
    perov_rows.to_csv(csv, index=False)
    from_csv = load_user_data(csv, progress=False)
    assert len(from_folder) == len(from_csv) == N_CIFS
    by_id = {m: i for i, m in enumerate(from_folder.material_ids)}
    for j, mid in enumerate(from_csv.material_ids):
        a, b = from_folder[by_id[mid]], from_csv[j]
        assert torch.equal(a.atom_types, b.atom_types)
        assert torch.allclose(a.frac, b.frac) and torch.allclose(a.lattice, b.lattice)
    # the parsed crystal is the file's structure (Niggli cell of the same lattice volume)
    ref = Crystal.from_cif_string(perov_rows["cif"][0], material_id=str(perov_rows["material_id"][0]))
    got = from_folder[by_id[str(perov_rows["material_id"][0])]]
    assert torch.allclose(got.lattice, ref.lattice) and torch.equal(got.atom_types, ref.atom_types)
    # the cache returns the same tensors on a second load
    again = load_user_data(cif_folder, progress=False)
    assert torch.equal(again.frac, from_folder.frac) and again.material_ids == from_folder.material_ids


def test_vectorised_batch_equals_collate(cif_folder):
    ds = load_user_data(cif_folder, progress=False)
    idx = [5, 0, 11, 3, 3]
    fast, ref = ds.batch(idx), collate([ds[i] for i in idx])
    for name in ("frac", "lattice", "atom_types", "batch", "num_atoms"):
        assert torch.equal(getattr(fast, name), getattr(ref, name)), name
    assert fast.material_ids == ref.material_ids


def test_split_is_seeded_disjoint_and_complete(cif_folder):
    ds = load_user_data(cif_folder, progress=False)
    a = split_dataset(ds, val_fraction=0.25, seed=3)
    b = split_dataset(ds, val_fraction=0.25, seed=3)
    c = split_dataset(ds, val_fraction=0.25, seed=4)
    assert a["train"].material_ids == b["train"].material_ids
    assert a["val"].material_ids == b["val"].material_ids
    assert len(a["val"]) == 3 and len(a["train"]) == N_CIFS - 3
    assert set(a["val"].material_ids).isdisjoint(a["train"].material_ids)
    assert set(a["val"].material_ids) | set(a["train"].material_ids) == set(ds.material_ids)
    assert a["val"].material_ids != c["val"].material_ids  # the seed matters
    with pytest.raises(DataError, match="too few"):
        split_dataset(ds.subset([0]), val_fraction=0.5)


def test_bad_user_data_gives_clear_errors(tmp_path, cif_folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no .cif files"):
        load_user_data(empty)
    with pytest.raises(DataError, match="no such file or folder"):
        load_user_data(tmp_path / "missing")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="neither a folder"):
        load_user_data(tmp_path / "x.json")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.cif").write_text("data_broken\n_cell_length_a 3.0\nthis is not a CIF loop\n")
    with pytest.raises(DataError, match="broken.cif"), pytest.warns(UserWarning, match="broken.cif"):
        load_user_data(bad, progress=False)
    # one malformed file among good ones: skipped with a warning that names it
    (cif_folder / "zz_broken.cif").write_text("garbage")
    with pytest.warns(UserWarning, match="zz_broken.cif"):
        ds = CrystalDataset.from_cif_folder(cif_folder, progress=False)
    assert len(ds) == N_CIFS and ds.skipped == 1
    csv = tmp_path / "nocif.csv"
    pd.DataFrame({"material_id": ["a"], "structure": ["x"]}).to_csv(csv, index=False)
    with pytest.raises(DataError, match="no 'cif' column"):
        load_user_data(csv)


def test_train_cli_on_a_cif_folder(cif_folder, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", str(cif_folder), "--out", str(out), "--max-steps", "2",
            "--val-every", "2", "--val-size", "2", "--val-steps", "2", "--hidden", "16",
            "--layers", "1", "--batch-size", "4", "--val-fraction", "0.25", "--no-progress"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 0
    ck = load_checkpoint(out / "last.pt")
    assert ck.train_state["step"] == 2 and ck.stats["dataset"] == f"user:{cif_folder}"
    assert ck.stats["train_size"] == N_CIFS - 3 and len(ck.stats["val_ids"]) == 3
    expected = split_dataset(load_user_data(cif_folder, progress=False), 0.25, seed=0)
    assert ck.stats["val_ids"] == list(expected["val"].material_ids)
    # --data and --dataset are exclusive; --data must exist
    assert main(["train", "--data", str(cif_folder), "--dataset", "perov_5", "--out", str(out)]) == 2
    capsys.readouterr()
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "new")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
