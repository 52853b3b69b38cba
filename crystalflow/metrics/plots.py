"""Plots of evaluation results (matplotlib): E_hull histogram, space groups, lattice and density.

Each function returns the matplotlib ``Figure`` (shown inline in notebooks) and, given ``path``,
saves it as PNG. The CLI selects the non-interactive Agg backend before importing pyplot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "plot_density_distribution",
    "plot_ehull_histogram",
    "plot_lattice_distributions",
    "plot_spacegroup_distribution",
]

_CRYSTAL_SYSTEMS = (
    ("triclinic", 1, 2), ("monoclinic", 3, 15), ("orthorhombic", 16, 74), ("tetragonal", 75, 142),
    ("trigonal", 143, 167), ("hexagonal", 168, 194), ("cubic", 195, 230),
)


def _finish(fig, path: str | Path | None):
    fig.tight_layout()
    if path is not None:
        import io

        from crystalflow.crystals.crystal import write_text_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        fig.savefig(buf, dpi=120, format=path.suffix.lstrip(".").lower() or "png")
        write_text_atomic(path, buf.getvalue())
    return fig


def plot_ehull_histogram(
    e_above_hull: Sequence[float],
    path: str | Path | None = None,
    *,
    bins: int = 40,
    max_ehull: float = 1.0,
    title: str = "Energy above the CHGNet hull",
):
    """Histogram of E_hull (eV/atom) with the 0.0 and 0.1 eV/atom thresholds marked.

    Values above ``max_ehull`` are gathered in the last bin; non-finite values are dropped.
    """
    import matplotlib.pyplot as plt

    values = np.asarray([v for v in e_above_hull if np.isfinite(v)], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    lo = min(-0.2, float(values.min()) if len(values) else 0.0)
    ax.hist(np.clip(values, lo, max_ehull), bins=bins, range=(lo, max_ehull), color="tab:blue", alpha=0.8)
    for x, label, color in ((0.0, "0.0 (stable)", "tab:green"), (0.1, "0.1 (metastable)", "tab:orange")):
        ax.axvline(x, color=color, linestyle="--", label=label)
    ax.set_xlabel("E_hull (eV/atom, CHGNet hull; last bin: >= %.1f)" % max_ehull)
    ax.set_ylabel("structures")
    ax.set_title(f"{title} (n={len(values)})")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_spacegroup_distribution(
    sample_spacegroups: Sequence[int],
    reference_spacegroups: Sequence[int],
    path: str | Path | None = None,
    *,
    top: int = 25,
):
    """Space-group frequencies of samples and reference: the ``top`` most common groups and crystal systems."""
    import matplotlib.pyplot as plt

    s = np.bincount(np.asarray(sample_spacegroups, dtype=int), minlength=231)[1:].astype(float)
    r = np.bincount(np.asarray(reference_spacegroups, dtype=int), minlength=231)[1:].astype(float)
    s_frac = s / max(s.sum(), 1)
    r_frac = r / max(r.sum(), 1)
    order = np.argsort(-(s_frac + r_frac))[:top]
    order = order[(s_frac + r_frac)[order] > 0]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 1.3]})
    x = np.arange(len(order))
    ax1.bar(x - 0.2, r_frac[order], 0.4, label="reference", color="tab:gray")
    ax1.bar(x + 0.2, s_frac[order], 0.4, label="samples", color="tab:blue")
    ax1.set_xticks(x, [str(i + 1) for i in order], rotation=90, fontsize=7)
    ax1.set_xlabel("space group number")
    ax1.set_ylabel("fraction")
    ax1.legend(fontsize=8)
    names = [c[0] for c in _CRYSTAL_SYSTEMS]
    s_sys = [s_frac[a - 1 : b].sum() for _, a, b in _CRYSTAL_SYSTEMS]
    r_sys = [r_frac[a - 1 : b].sum() for _, a, b in _CRYSTAL_SYSTEMS]
    y = np.arange(len(names))
    ax2.barh(y + 0.2, r_sys, 0.4, color="tab:gray")
    ax2.barh(y - 0.2, s_sys, 0.4, color="tab:blue")
    ax2.set_yticks(y, names, fontsize=8)
    ax2.set_xlabel("fraction")
    ax2.invert_yaxis()
    fig.suptitle("Space-group distribution (spglib, symprec 0.1)")
    return _finish(fig, path)


def plot_lattice_distributions(
    sample_lattice: np.ndarray,
    reference_lattice: np.ndarray | None = None,
    path: str | Path | None = None,
    *,
    bins: int = 30,
):
    """Histograms of a, b, c (A) and alpha, beta, gamma (degrees); inputs are ``(n, 6)`` arrays."""
    import matplotlib.pyplot as plt

    labels = ("a (A)", "b (A)", "c (A)", "alpha (deg)", "beta (deg)", "gamma (deg)")
    sample_lattice = np.asarray(sample_lattice, dtype=float).reshape(-1, 6)
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.2))
    for k, ax in enumerate(axes.ravel()):
        data = [sample_lattice[:, k]]
        if reference_lattice is not None and len(reference_lattice):
            data.append(np.asarray(reference_lattice, dtype=float).reshape(-1, 6)[:, k])
        lo = min(float(np.min(d)) for d in data if len(d))
        hi = max(float(np.max(d)) for d in data if len(d))
        rng = (lo, hi if hi > lo else lo + 1)
        if len(data) > 1:
            ax.hist(data[1], bins=bins, range=rng, density=True, alpha=0.5, color="tab:gray", label="reference")
        ax.hist(data[0], bins=bins, range=rng, density=True, alpha=0.6, color="tab:blue", label="samples")
        ax.set_xlabel(labels[k])
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Lattice parameters")
    return _finish(fig, path)


def plot_density_distribution(
    sample_densities: Sequence[float],
    reference_densities: Sequence[float] | None = None,
    path: str | Path | None = None,
    *,
    bins: int = 40,
):
    """Histogram of densities (g/cm^3) of samples against the reference."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    s = np.asarray(sample_densities, dtype=float)
    data = [s] + ([np.asarray(reference_densities, dtype=float)] if reference_densities is not None else [])
    hi = max(float(np.percentile(d, 99.5)) for d in data if len(d)) if any(len(d) for d in data) else 1.0
    if reference_densities is not None:
        ax.hist(data[1], bins=bins, range=(0, hi), density=True, alpha=0.5, color="tab:gray", label="reference")
    ax.hist(s, bins=bins, range=(0, hi), density=True, alpha=0.6, color="tab:blue", label="samples")
    ax.set_xlabel("density (g/cm^3)")
    ax.set_ylabel("probability density")
    ax.legend(fontsize=8)
    ax.set_title("Density")
    return _finish(fig, path)
