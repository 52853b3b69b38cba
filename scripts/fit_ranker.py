"""Fit and cross-validate the candidate ranker on benchmark JSONs of scored candidates.

Input: ``--json`` files written by ``scripts/bench_composition_csp.py`` (every candidate of every
row scored against its reference). A candidate is *correct* when it matches its reference under
the field's metric (validity-filtered StructureMatcher). The rows are split into ``--folds``
contiguous folds; for each fold the ranker is fitted on the others and the fold's top-1 rate is
measured, beside the hand-set score ``10 E - log(vote + 1e-3)`` and a gradient-boosted pointwise
classifier (sklearn, for comparison only). With ``--out`` the ranker fitted on all rows is
written.

    python scripts/fit_ranker.py --json runs/val1000_t20.json --folds 2 \
        --out crystalflow/data/ranker/mp_20.json
"""

from __future__ import annotations

import argparse
import json
import math
from types import SimpleNamespace

import numpy as np


def _candidates(row: dict) -> list[SimpleNamespace]:
    out = []
    for c in row["candidates"]:
        e = c["energy"] if c["energy"] is not None and math.isfinite(c["energy"]) else math.inf
        out.append(SimpleNamespace(
            source=c["source"], distance=c["distance"], proposal_rank=c["proposal_rank"],
            vote=c.get("vote", 0.0), support=c.get("support", 0),
            same_size=c.get("same_size", False), best_energy=e,
            valid_distance=c["min_distance"] >= 0.5,
            correct=c["valid"] and c["rms"] is not None,
            correct_unfiltered=c["rms"] is not None))
    return out


def _top1(rows: list[list[SimpleNamespace]], scores: list[np.ndarray]) -> tuple[float, float]:
    """Top-1 rates (filtered, unfiltered) when each row's candidates are ordered by score
    (higher first), candidates with atoms closer than 0.5 A last."""
    hit = hit_u = 0
    for cands, s in zip(rows, scores):
        if not cands:
            continue
        key = [(not c.valid_distance, -float(v), i) for i, (c, v) in enumerate(zip(cands, s))]
        best = cands[min(key)[2]]
        hit += best.correct
        hit_u += best.correct_unfiltered
    return 100 * hit / len(rows), 100 * hit_u / len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", nargs="+", required=True)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--l2", type=float, default=1e-2)
    ap.add_argument("--out", help="write the ranker fitted on all rows here")
    ap.add_argument("--note", default="")
    args = ap.parse_args()

    from crystalflow.ranking import FEATURES, candidate_features, fit_ranker

    rows = [_candidates(r) for f in args.json for r in json.load(open(f))["rows"]]
    feats = [candidate_features(c) for c in rows]
    labels = [np.array([x.correct for x in c], bool) for c in rows]
    hand = [np.array([-(10 * x.best_energy if math.isfinite(x.best_energy) else math.inf)
                      + math.log(x.vote + 1e-3) for x in c]) for c in rows]
    folds = np.array_split(np.arange(len(rows)), args.folds)
    report: dict = {"rows": len(rows), "folds": []}
    for k, idx in enumerate(folds):
        train = np.setdiff1d(np.arange(len(rows)), idx)
        ranker = fit_ranker([(feats[i], labels[i]) for i in train], l2=args.l2)
        learned = [ranker.scores(rows[i]) for i in idx]
        fold = {"rows": [int(idx[0]), int(idx[-1]) + 1],
                "learned": _top1([rows[i] for i in idx], learned),
                "hand_set": _top1([rows[i] for i in idx], [hand[i] for i in idx]),
                "oracle_any": 100 * float(np.mean([labels[i].any() for i in idx]))}
        try:
            from sklearn.ensemble import HistGradientBoostingClassifier

            x = np.concatenate([feats[i] for i in train])
            y = np.concatenate([labels[i] for i in train])
            gbm = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05,
                                                 random_state=0).fit(x, y)
            fold["gbm_pointwise"] = _top1([rows[i] for i in idx],
                                          [gbm.predict_proba(feats[i])[:, 1] if len(feats[i])
                                           else np.zeros(0) for i in idx])
        except ImportError:
            pass
        report["folds"].append(fold)
    for name in ("learned", "hand_set", "gbm_pointwise"):
        vals = [f[name][0] for f in report["folds"] if name in f]
        if vals:
            report[f"mean_{name}"] = round(float(np.mean(vals)), 2)
    if args.out:
        ranker = fit_ranker(list(zip(feats, labels)), l2=args.l2, note=args.note)
        ranker.save(args.out)
        report["weights"] = ranker.weights
        report["all_rows_fit"] = _top1(rows, [ranker.scores(c) for c in rows])
    report["features"] = list(FEATURES)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
