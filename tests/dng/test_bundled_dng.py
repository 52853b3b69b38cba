"""The bundled DNG checkpoint loads strictly and generates in the requested space group."""

from __future__ import annotations

import pytest

from crystalflow.checkpoint import load_checkpoint
from crystalflow.metrics.symmetry import symmetry_info
from crystalflow.pretrained import BUNDLED_DIR, load_pretrained

PATH = BUNDLED_DIR / "dng_mp_20.pt"


@pytest.mark.skipif(not PATH.is_file(), reason="dng_mp_20.pt not bundled")
def test_bundled_dng_checkpoint_generates_fm3m():
    import crystalflow

    ck = load_checkpoint(PATH)
    assert ck.task == "dng" and ck.stats["dataset"] == "mp_20" and ck.train_state is None
    flow, _ = load_pretrained(task="dng")
    dist = flow.skeletons
    assert 225 in {s.space_group for s in dist.skeletons}
    crystals = crystalflow.generate(225, 8, steps=20, seed=0)
    groups = [symmetry_info(c.to_structure()).spacegroup for c in crystals]
    assert sum(g == 225 for g in groups) >= 6, groups
