"""Learned ranking of a composition's candidate structures (a conditional-logit model).

Each candidate of one composition gets a feature vector (:func:`candidate_features`): its CHGNet
energy relative to the composition's best, the log of its prototype's library vote, the
substitution distance, the prototype's library support, whether its template has the target's
cell size, its proposal rank and its source. A linear score ``w . f`` ranks the candidates; the
weights are fitted (:func:`fit_ranker`) by maximising, over compositions with at least one
correct candidate, the softmax probability of the correct ones (McFadden's conditional logit,
the listwise loss of ListNet with a one-hot target), with an L2 penalty. The fit is convex, the
model is a dozen numbers stored as JSON (:class:`Ranker`), and its weights can be read.

Deliberately absent: "the template crystal has exactly the target's composition". On a random
benchmark split such a library crystal is usually a *different* Materials Project polymorph of
the held-out one (on 1,000 MP-20 validation rows only a third of the same-composition templates
matched), so the feature would learn to avoid known structures: a split artefact that would hand
real users a worse polymorph of a known compound.

The bundled weights (``data/ranker/mp_20.json``) were fitted on MP-20 validation rows held out of
the bundled template library and chosen against the hand-set score ``10 E - log(vote)`` by
two-fold cross-validation on those rows (BENCHMARKS.md, "Composition -> structure").
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from crystalflow.errors import InputError

__all__ = ["FEATURES", "Ranker", "candidate_features", "fit_ranker", "load_ranker",
           "BUNDLED_RANKER"]

#: names of the columns of :func:`candidate_features`
FEATURES = (
    "energy_above_best",      # E - min E of the composition's candidates, eV/atom, clipped at 1
    "energy_rank",            # log(1 + rank of E among the composition's candidates)
    "log_vote",               # log(vote + 1e-3)
    "vote_share",             # vote / sum of the composition's votes
    "distance",               # Mendeleev substitution distance (0 without a template)
    "log_support",            # log(1 + library crystals of the prototype)
    "same_size",              # template at the target's number of formula units
    "log_proposal_rank",      # log(1 + proposal rank), 0 without a template
    "flow",                   # source is a space-group flow sample (from the prior or started)
    "no_template",            # source is ``p1`` or ``enumerated``
)
#: energy differences above this (eV/atom) are treated alike
ENERGY_CLIP = 1.0
#: the bundled weights for MP-20-like compositions
BUNDLED_RANKER = Path(__file__).parent / "data" / "ranker" / "mp_20.json"
VERSION = 1


class RankedCandidate(Protocol):
    """What the features read from a candidate (:class:`crystalflow.pipeline.Candidate`)."""

    source: str
    distance: float | None
    proposal_rank: int
    vote: float
    support: int
    same_size: bool

    @property
    def best_energy(self) -> float: ...


def candidate_features(cands: Sequence[RankedCandidate]) -> np.ndarray:
    """``[n, len(FEATURES)]`` features of one composition's candidates (float64).

    Candidates without a finite energy get the clipped energy difference and the last rank.
    """
    n = len(cands)
    out = np.zeros((n, len(FEATURES)))
    if n == 0:
        return out
    e = np.array([c.best_energy for c in cands], dtype=float)
    finite = np.isfinite(e)
    e_best = e[finite].min() if finite.any() else 0.0
    de = np.where(finite, np.minimum(e - e_best, ENERGY_CLIP), ENERGY_CLIP)
    order = np.argsort(np.where(finite, e, np.inf), kind="stable")
    rank = np.empty(n)
    rank[order] = np.arange(n)
    votes = np.array([c.vote for c in cands], dtype=float)
    total = votes.sum()
    templated = np.array([c.source not in ("p1", "enumerated") for c in cands])
    dist = np.array([c.distance if c.distance is not None and t else 0.0
                     for c, t in zip(cands, templated)])
    out[:, 0] = de
    out[:, 1] = np.log1p(rank)
    out[:, 2] = np.log(votes + 1e-3)
    out[:, 3] = votes / total if total > 0 else 0.0
    out[:, 4] = dist
    out[:, 5] = np.log1p([c.support for c in cands])
    out[:, 6] = [bool(c.same_size) for c in cands]
    out[:, 7] = np.where(templated, np.log1p([min(c.proposal_rank, 10**6) for c in cands]), 0.0)
    out[:, 8] = [c.source in ("flow", "template-flow") for c in cands]
    out[:, 9] = ~templated
    return out


@dataclass(frozen=True)
class Ranker:
    """A linear candidate score (higher is better): ``weights . features``.

    Attributes:
        weights: ``{feature name: weight}`` for names in :data:`FEATURES` (missing ones are 0).
        note: how the weights were obtained.
    """

    weights: dict[str, float]
    note: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(FEATURES)
        if unknown:
            raise InputError(f"ranker weights name unknown features {sorted(unknown)}; "
                             f"known: {', '.join(FEATURES)}")

    @property
    def vector(self) -> np.ndarray:
        """``[len(FEATURES)]`` the weights in feature order."""
        return np.array([self.weights.get(f, 0.0) for f in FEATURES])

    def scores(self, cands: Sequence[RankedCandidate]) -> np.ndarray:
        """``[n]`` scores of one composition's candidates (higher is better)."""
        return candidate_features(cands) @ self.vector

    def save(self, path: str | os.PathLike) -> None:
        """Write the weights as JSON (atomically)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"version": VERSION, "features": list(FEATURES),
                                   "weights": self.weights, "note": self.note}, indent=1) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Ranker":
        """Read weights written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
            return cls({k: float(v) for k, v in data["weights"].items()}, data.get("note", ""))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise InputError(f"cannot read ranker weights {path}: {err}") from None


def load_ranker(path: str | os.PathLike | None = None) -> Ranker:
    """The ranker at ``path`` (``None``: the bundled MP-20 weights)."""
    return Ranker.load(BUNDLED_RANKER if path is None else path)


def fit_ranker(groups: Sequence[tuple[np.ndarray, np.ndarray]], *, l2: float = 1e-2,
               note: str = "") -> Ranker:
    """Conditional-logit weights from labelled candidate groups.

    Args:
        groups: per composition ``(features [n, F], correct [n] bool)``; groups without a
            correct candidate carry no information and are skipped.
        l2: penalty ``l2 * |w|^2`` per group (the loss is averaged over groups).
        note: stored with the weights.

    Returns:
        The fitted :class:`Ranker`; the loss is convex, so the optimum does not depend on the
        start.
    """
    from scipy.optimize import minimize

    used = [(np.asarray(f, float), np.asarray(y, bool)) for f, y in groups
            if len(y) and np.any(y) and not np.all(y)]
    if not used:
        raise InputError("no group has both a correct and a wrong candidate: nothing to fit")
    feats = np.concatenate([f for f, _ in used])
    labels = np.concatenate([y for _, y in used])
    gid = np.repeat(np.arange(len(used)), [len(y) for _, y in used])
    n_groups = len(used)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = feats @ w
        smax = np.full(n_groups, -np.inf)
        np.maximum.at(smax, gid, s)
        z = np.exp(s - smax[gid])
        all_sum = np.bincount(gid, z, n_groups)
        pos_sum = np.bincount(gid, z * labels, n_groups)
        value = np.mean(np.log(all_sum) - np.log(pos_sum)) + l2 * w @ w
        p_all = z / all_sum[gid]
        p_pos = np.where(labels, z / np.maximum(pos_sum[gid], 1e-300), 0.0)
        grad = ((p_all - p_pos) @ feats) / n_groups + 2 * l2 * w
        return float(value), grad

    res = minimize(loss, np.zeros(feats.shape[1]), jac=True, method="L-BFGS-B")
    weights = {f: round(float(v), 6) for f, v in zip(FEATURES, res.x)}
    if not all(math.isfinite(v) for v in weights.values()):
        raise InputError("ranker fit diverged")
    return Ranker(weights, note)
