"""``train --train-on-val``: val.csv minus its first selection rows joins the training set; the
selection rows stay held out and are the only validation rows; test is never read."""

from __future__ import annotations

import pandas as pd
import pytest

import crystalflow.crystals.dataset as dataset_module
from crystalflow.crystal_tasks.training import CSP_TRAINING, CrystalTrainOptions, load_symmetric_data
from crystalflow.errors import InputError


@pytest.fixture
def small_benchmark(tmp_path, data_dir, cache):
    root = tmp_path / "data" / "mp_20"
    root.mkdir(parents=True)
    pd.read_csv(data_dir / "mp_20" / "train.csv.gz", nrows=10).to_csv(root / "train.csv.gz", index=False)
    pd.read_csv(data_dir / "mp_20" / "val.csv.gz", nrows=14).to_csv(root / "val.csv.gz", index=False)
    # no test.csv: reading it would fail
    return tmp_path / "data"


def test_val_rows_after_the_selection_slice_join_training(small_benchmark, monkeypatch):
    monkeypatch.setattr(dataset_module, "SELECTION_ROWS", 5)
    val_ids = [str(x) for x in pd.read_csv(small_benchmark / "mp_20" / "val.csv.gz")["material_id"]]
    train_ids = [str(x) for x in pd.read_csv(small_benchmark / "mp_20" / "train.csv.gz")["material_id"]]
    plain = load_symmetric_data(CrystalTrainOptions(dataset="mp_20", data_dir=str(small_benchmark), val_size=3),
                                progress=False)
    both = load_symmetric_data(CrystalTrainOptions(dataset="mp_20", data_dir=str(small_benchmark), val_size=3,
                                                   train_on_val=True), progress=False)
    assert set(plain.train.material_ids) <= set(train_ids)
    assert set(both.val.material_ids) <= set(val_ids[:5])
    assert set(both.train.material_ids) == set(plain.train.material_ids) | (
        set(val_ids[5:]) - {r.row for r in both.train.skipped_rows})
    assert not set(both.train.material_ids) & set(val_ids[:5])  # the selection rows stay out
    assert len(both.train) == len(plain.train) + len(set(val_ids[5:]) & set(both.train.material_ids))


def test_train_on_val_is_refused_where_it_does_not_apply(small_benchmark):
    with pytest.raises(InputError, match="train_on_val"):
        CSP_TRAINING.check_options(CrystalTrainOptions(dataset="mp_20", data_dir=str(small_benchmark),
                                                       train_on_val=True))
    with pytest.raises(InputError, match="own train split"):
        load_symmetric_data(CrystalTrainOptions(dataset="perov_5", data_dir=str(small_benchmark),
                                                train_on_val=True), progress=False)


def test_benchmarks_without_a_train_split_hold_out_the_last_val_rows(tmp_path, data_dir, cache, monkeypatch):
    import crystalflow.crystals.symmetric as symmetric_module
    from crystalflow.crystals.symmetric import load_symmetric_split

    root = tmp_path / "data" / "perov_5"
    root.mkdir(parents=True)
    pd.read_csv(data_dir / "perov_5" / "val.csv.gz", nrows=12).to_csv(root / "val.csv.gz", index=False)
    monkeypatch.setattr(symmetric_module, "HELD_OUT", 4)
    ids = [str(x) for x in pd.read_csv(root / "val.csv.gz")["material_id"]]
    train = load_symmetric_split("perov_5", "train", tmp_path / "data", progress=False)
    val = load_symmetric_split("perov_5", "val", tmp_path / "data", progress=False)
    assert set(val.material_ids) == set(ids[-4:]) and set(train.material_ids) == set(ids[:-4])
