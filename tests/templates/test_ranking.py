"""The learned candidate ranker: features, fit (conditional logit) and the bundled weights."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from crystalflow.errors import InputError
from crystalflow.ranking import (BUNDLED_RANKER, FEATURES, Ranker, candidate_features, fit_ranker,
                                 load_ranker)


def _cand(energy=0.0, vote=1.0, distance=1.0, source="template", rank=0, support=3, same=True):
    return SimpleNamespace(source=source, distance=distance, proposal_rank=rank, vote=vote,
                           support=support, same_size=same, best_energy=energy)


def test_features_are_relative_to_the_composition():
    cands = [_cand(energy=-5.0), _cand(energy=-5.3), _cand(energy=math.inf),
             _cand(energy=-2.0, source="p1", distance=None, vote=0.0, support=0, same=False)]
    f = candidate_features(cands)
    assert f.shape == (4, len(FEATURES))
    col = {name: f[:, i] for i, name in enumerate(FEATURES)}
    np.testing.assert_allclose(col["energy_above_best"], [0.3, 0.0, 1.0, 1.0])  # clipped at 1
    np.testing.assert_allclose(col["energy_rank"], np.log1p([1, 0, 3, 2]))
    np.testing.assert_allclose(col["vote_share"], [1 / 3, 1 / 3, 1 / 3, 0.0])
    np.testing.assert_array_equal(col["no_template"], [0, 0, 0, 1])
    np.testing.assert_array_equal(col["distance"], [1, 1, 1, 0])
    # shifting every energy by a constant changes nothing
    shifted = [_cand(energy=c.best_energy + 7.0, source=c.source, distance=c.distance, vote=c.vote,
                     support=c.support, same=c.same_size) for c in cands]
    np.testing.assert_allclose(candidate_features(shifted), f)


def test_scores_follow_a_permutation_of_the_candidates():
    rng = np.random.default_rng(0)
    cands = [_cand(energy=float(e), vote=float(v), distance=float(d), rank=i)
             for i, (e, v, d) in enumerate(zip(rng.normal(-5, 0.2, 7), rng.random(7) * 5,
                                               rng.random(7) * 10))]
    ranker = Ranker({name: float(w) for name, w in zip(FEATURES, rng.normal(size=len(FEATURES)))})
    perm = rng.permutation(7)
    np.testing.assert_allclose(ranker.scores([cands[i] for i in perm]), ranker.scores(cands)[perm])


def test_fit_recovers_a_hidden_preference():
    """Groups whose correct candidate is the argmax of a hidden linear score (plus noise): the
    fitted weights rank the correct candidate first far more often than chance."""
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=len(FEATURES))

    def groups(n):
        out = []
        for _ in range(n):
            f = rng.normal(size=(6, len(FEATURES)))
            y = np.zeros(6, bool)
            y[np.argmax(f @ hidden + 0.3 * rng.normal(size=6))] = True
            out.append((f, y))
        return out

    ranker = fit_ranker(groups(400), l2=1e-4)
    test = groups(300)
    top1 = np.mean([y[np.argmax(f @ ranker.vector)] for f, y in test])
    assert top1 > 0.8  # chance is 1/6
    cos = ranker.vector @ hidden / np.linalg.norm(ranker.vector) / np.linalg.norm(hidden)
    assert cos > 0.95


def test_fit_refuses_uninformative_groups():
    f = np.zeros((3, len(FEATURES)))
    with pytest.raises(InputError):
        fit_ranker([(f, np.zeros(3, bool)), (f, np.ones(3, bool))])


def test_save_load_round_trip(tmp_path):
    ranker = Ranker({"log_vote": 1.5, "energy_above_best": -12.0}, note="test")
    ranker.save(tmp_path / "r.json")
    again = Ranker.load(tmp_path / "r.json")
    assert again == ranker
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        Ranker.load(tmp_path / "bad.json")
    with pytest.raises(InputError, match="unknown features"):
        Ranker({"colour": 1.0})


@pytest.mark.skipif(not BUNDLED_RANKER.exists(), reason="no bundled ranker")
def test_bundled_ranker_prefers_low_energy_and_high_vote():
    ranker = load_ranker()
    low = _cand(energy=-6.0, vote=3.0)
    high = _cand(energy=-5.5, vote=3.0)
    assert ranker.scores([low, high])[0] > ranker.scores([low, high])[1]
    popular = _cand(energy=-6.0, vote=5.0)
    rare = _cand(energy=-6.0, vote=0.05)
    s = ranker.scores([popular, rare])
    assert s[0] > s[1]
