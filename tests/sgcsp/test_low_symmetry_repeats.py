"""``train --low-symmetry-repeats K`` (:func:`crystalflow.crystal_tasks.training.repeat_low_symmetry`):
each orthorhombic / monoclinic / triclinic training crystal appears K times, the others once."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from crystalflow.crystal_tasks.training import (
    CSP_TRAINING, LOW_SYMMETRY_MAX_GROUP, CrystalTrainOptions, repeat_low_symmetry,
)
from crystalflow.errors import InputError


@pytest.mark.parametrize("repeats", [1, 2, 3])
def test_low_symmetry_crystals_repeat_and_the_rest_stay_once(dataset, repeats):
    out = repeat_low_symmetry(dataset, repeats)
    counts = Counter(out.material_ids)
    for mid, t in zip(dataset.material_ids, dataset.templates):
        assert counts[mid] == (repeats if t.space_group <= LOW_SYMMETRY_MAX_GROUP else 1)
    # every copy is the same crystal: its rows (positions, types) and lattice come along
    for i, mid in enumerate(out.material_ids):
        j = dataset.material_ids.index(mid)
        assert out.templates[i] == dataset.templates[j]
        assert torch.equal(out.lattice[i], dataset.lattice[j])
        assert torch.equal(out.frac[out.rows(i)], dataset.frac[dataset.rows(j)])
        assert torch.equal(out.atom_types[out.rows(i)], dataset.atom_types[dataset.rows(j)])
    # a batch of the repeated set is well formed
    b = out.batch(range(len(out)), dtype=torch.float64)
    assert int(b.num_atoms.sum()) == out.frac.shape[0]


def test_bad_repeats_and_the_p1_task_are_refused():
    with pytest.raises(InputError, match="low_symmetry_repeats must be >= 1"):
        CrystalTrainOptions(dataset="mp_20", low_symmetry_repeats=0)
    with pytest.raises(InputError, match="applies to tasks sgcsp and dng"):
        CSP_TRAINING.check_options(CrystalTrainOptions(dataset="mp_20", low_symmetry_repeats=2))


def test_cli_refuses_options_of_other_tasks_before_reading_data(tmp_path, capsys):
    from crystalflow.cli import main

    out = tmp_path / "run"
    rc = main(["train", "--dataset", "mp_20", "--low-symmetry-repeats", "2", "--out", str(out)])
    assert rc == 2 and "error: --low-symmetry-repeats applies to tasks sgcsp and dng, not --task csp" in capsys.readouterr().err
    assert not out.exists()
    # a previous run in --out is not removed by --overwrite when the options are refused
    out.mkdir()
    (out / "last.pt").write_bytes(b"previous")
    rc = main(["train", "--task", "sgcsp", "--data", str(tmp_path / "x.csv"), "--out", str(out), "--overwrite"])
    assert rc == 2 and "error: --data applies to --task csp only, not --task sgcsp" in capsys.readouterr().err
    assert (out / "last.pt").read_bytes() == b"previous"
