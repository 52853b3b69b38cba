"""Template-started sampling: the start state is the conditional path's point, endpoints hold."""

from __future__ import annotations

import pytest
import torch

from crystalflow.symmetry import collate_symmetry, crystal_symmetry, orbit_first_atom, symmetry_error, wrap_frac

from .conftest import TEMPLATES


def _start(dataset):
    sym = collate_symmetry([crystal_symmetry(t) for t in TEMPLATES])
    reps = dataset.frac.index_select(0, orbit_first_atom(sym))
    return sym, {"representatives": reps, "lattice": dataset.lattice}


def _frac_dist(a, b):
    return float(wrap_frac(a - b + 0.5).sub(0.5).abs().max())


def test_path_point_endpoints(flow, dataset):
    """t = 0 is the prior sample, t = 1 the start crystal (up to wrapping), every t symmetric."""
    sym, start = _start(dataset)
    x0 = flow.prior(sym, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    at0 = flow.path_point(x0, start, sym, 0.0, torch.float64)
    assert _frac_dist(at0["frac"], x0["frac"]) < 1e-9
    assert torch.allclose(at0["lattice"], flow.project_lattice_z(x0["lattice"], sym), atol=1e-9)
    at1 = flow.path_point(x0, start, sym, 1.0, torch.float64)
    assert _frac_dist(at1["frac"], dataset.frac) < 1e-9
    z1 = flow.project_lattice_z(flow.chart.to_z(dataset.lattice), sym)
    assert torch.allclose(at1["lattice"], z1, atol=1e-9)
    for t in (0.3, 0.8):
        mid = flow.path_point(x0, start, sym, t, torch.float64)
        assert float(symmetry_error(mid["frac"], sym).max()) < 1e-9


@pytest.mark.parametrize("t0,expected", [(0.0, 8), (0.5, 4), (0.75, 2), (0.99, 1)])
def test_started_sampling_takes_the_remaining_steps(flow, dataset, t0, expected):
    """From t0 the solver takes ceil(steps (1 - t0)) steps of a full run's size, ending at 1."""
    _, start = _start(dataset)
    times = []
    flow.sample(TEMPLATES, steps=8, dtype=torch.float64, start=start, start_time=t0,
                generator=torch.Generator().manual_seed(0), callback=lambda s, t: times.append(t))
    assert len(times) == expected
    assert times[-1] == pytest.approx(1.0)


def test_started_sampling_stays_near_the_template_late(flow, dataset):
    """Started at t0 close to 1, the sample stays within the flow's last short stretch of the
    template: closer than a sample from the prior is."""
    _, start = _start(dataset)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    late = flow.sample(TEMPLATES, steps=50, dtype=torch.float64, start=start, start_time=0.98,
                       generator=gen())
    free = flow.sample(TEMPLATES, steps=50, dtype=torch.float64, generator=gen())
    assert _frac_dist(late.frac.double(), dataset.frac) < _frac_dist(free.frac.double(), dataset.frac)
    assert _frac_dist(late.frac.double(), dataset.frac) < 0.1


def test_bad_start_time_is_refused(flow, dataset):
    _, start = _start(dataset)
    with pytest.raises(ValueError, match="start_time"):
        flow.sample(TEMPLATES, steps=2, start=start, start_time=1.0)
