"""The pruned search for charge-neutral oxidation states equals CDVAE's filtered product."""

from __future__ import annotations

import itertools
import random

from crystalflow.metrics.validity import _neutral_combinations


def test_neutral_combinations_equal_the_filtered_product():
    rng = random.Random(0)
    for _ in range(300):
        k = rng.randint(1, 5)
        ox = [sorted(rng.sample(range(-4, 8), rng.randint(1, 5))) for _ in range(k)]
        stoich = [rng.randint(1, 6) for _ in range(k)]
        want = [c for c in itertools.product(*ox) if sum(o * n for o, n in zip(c, stoich)) == 0]
        assert list(_neutral_combinations(ox, stoich)) == want


def test_many_elements_stay_fast():
    """Ten elements with eight states each: 10^9 products, answered by the pruned search."""
    ox = [[-3, -2, -1, 1, 2, 3, 4, 5]] * 10
    stoich = [1] * 10
    first = next(_neutral_combinations(ox, stoich))
    assert sum(first) == 0
    assert list(_neutral_combinations([[1, 2]] * 10, [1] * 10)) == []
