"""Dataset: segments, crops, centred padded batches, and the on-disk cache."""

from __future__ import annotations

import pytest
import torch

from crystalflow.errors import DataError, InputError
from crystalflow.proteins.dataset import (
    collate_backbones, crop_windows, load_protein_split, read_segments, resolve_protein_dir,
)


def test_crop_windows_cover_the_segment():
    assert crop_windows(50, 128, 64) == [(0, 50)]
    w = crop_windows(300, 128, 64)
    assert w[0] == (0, 128) and w[-1] == (172, 300)
    assert all(b - a == 128 for a, b in w)
    covered = set().union(*(range(a, b) for a, b in w))
    assert covered == set(range(300))


@pytest.fixture()
def small_dir(real_files, tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALFLOW_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "db"
    d.mkdir()
    for f in real_files:
        (d / f.name).symlink_to(f)
    return d


def test_segments_crops_and_cache(small_dir, tmp_path):
    ds = read_segments(small_dir, min_length=40)
    # 1A2K: 2 chains, 1AHW: 2 chains, 1ZHI: 2 segments >= 40, DIPS chain: 1
    assert ds.files == 4 and ds.num_segments == 7
    assert ds.seg_lengths.min() >= 40 and ds.coords.shape == (int(ds.seg_lengths.sum()), 4, 3)
    assert len(list((tmp_path / "cache").glob("proteins_db_*.pt"))) == 1
    again = read_segments(small_dir, min_length=40)  # from the cache
    assert torch.allclose(again.coords, ds.coords, equal_nan=True)
    assert again.sources == ds.sources
    cropped = ds.with_crops(64, 32, min_length=40)
    assert len(cropped) > ds.num_segments
    assert all(cropped.crop(i).shape[0] <= 64 for i in range(len(cropped)))


def test_batches_are_centred_padded_and_masked(small_dir):
    ds = read_segments(small_dir, min_length=40).with_crops(64, 64)
    b = ds.batch([0, len(ds) - 1])
    lengths = [ds.crop(0).shape[0], ds.crop(len(ds) - 1).shape[0]]
    assert b.mask.sum(1).tolist() == lengths
    w = b.mask[..., None].float()
    assert torch.allclose((b.trans * w).sum(1) / w.sum(1), torch.zeros(2, 3), atol=1e-4)
    assert torch.allclose(b.trans, b.atoms[:, :, 1])
    pad = ~b.mask
    if pad.any():
        assert torch.allclose(b.rots[pad], torch.eye(3).expand(int(pad.sum()), 3, 3))


def test_collate_keeps_missing_oxygens_masked():
    x = torch.randn(10, 4, 3, dtype=torch.float64)
    x[9, 3] = float("nan")
    b = collate_backbones([x])
    assert b.atom_mask[0, 9].tolist() == [True, True, True, False]
    assert torch.isfinite(b.atoms).all()
    with pytest.raises(InputError):
        collate_backbones([])


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CRYSTALFLOW_DATA", raising=False)
    with pytest.raises(DataError):
        resolve_protein_dir(None)
    with pytest.raises(DataError):
        resolve_protein_dir(tmp_path)
    with pytest.raises(DataError):
        read_segments(tmp_path)
    with pytest.raises(InputError):
        load_protein_split("val", tmp_path)


def test_resolves_root_or_proteins_folder(protein_dir):
    assert resolve_protein_dir(protein_dir.parent) == protein_dir
    assert resolve_protein_dir(protein_dir) == protein_dir


def test_batches_move_between_devices(small_dir):
    b = read_segments(small_dir, min_length=40).with_crops(64, 64).batch([0, 1])
    m = b.to("meta")
    assert m.device == torch.device("meta") and b.device == torch.device("cpu")
    assert all(getattr(m, f).device.type == "meta" and getattr(m, f).shape == getattr(b, f).shape
               for f in ("atoms", "rots", "trans", "mask", "atom_mask"))
