"""Composition -> structure pipeline on a benchmark split: every candidate scored, ablations offline.

Runs :func:`crystalflow.crystal_tasks.pipeline.predict_compositions` with ``keep_all`` on rows of a CDVAE-layout
CSV (compositions and cell sizes from the rows' CIFs), scores *every* candidate against its
reference with the field's matcher (StructureMatcher stol 0.5 / ltol 0.3 / angle 10; validity
filter: CDVAE structural + SMACT validity), and reports, from the same candidates:

* top-1 / top-2 / top-5 / top-20 match rates (validity-filtered and unfiltered) and RMSE of the ranking;
* ablations: only some sources, ranking by CHGNet energy vs by template similarity;
* proposer accuracy: true space group / true (space group, Wyckoff) label among the top 1/5/20
  proposals (reference analysed with spglib at symprec 0.1);
* seconds per composition per stage.

Writes ``--json`` with per-row candidates so other rankings can be tried without re-running.

    python scripts/bench_composition_csp.py --csv ../shared/data/mp_20/val.csv.gz --limit 500 \
        --templates 20 --flow-templates 2 --flow-samples 1 --started-samples 1 --p1-samples 1 \
        --json runs/val500.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from collections import Counter

import numpy as np


def _score(task):
    from crystalflow.metrics.csp import rms_match
    from crystalflow.metrics.validity import is_valid
    from pymatgen.core import Structure

    ref, cands = task
    ref = Structure.from_dict(ref)
    out = []
    for c in cands:
        s = Structure.from_dict(c)
        out.append((bool(is_valid(s)), rms_match(s, ref)))
    return out


def _rates(rows, order_key, sources=None, ks=(1, 2, 5, 20)):
    """Top-k rates of the candidates ordered by ``order_key`` (only ``sources`` if given)."""
    res = {}
    for k in ks:
        hit = hit_u = 0
        rms, rms_u = [], []
        for r in rows:
            cands = [c for c in r["candidates"] if sources is None or c["source"] in sources]
            cands = sorted(cands, key=order_key)[:k]
            best = [c["rms"] for c in cands if c["rms"] is not None and c["valid"]]
            best_u = [c["rms"] for c in cands if c["rms"] is not None]
            if best:
                hit += 1
                rms.append(min(best))
            if best_u:
                hit_u += 1
                rms_u.append(min(best_u))
        n = len(rows)
        res[f"top{k}"] = round(100 * hit / n, 2)
        res[f"top{k}_unfiltered"] = round(100 * hit_u / n, 2)
        res[f"top{k}_rmse"] = round(float(np.mean(rms)), 4) if rms else None
    return res


def energy_key(c):
    """The pipeline's ranking (CHGNet energy and prototype vote)."""
    return (not c["min_distance"] >= 0.5, c["score"], c["proposal_rank"])


def energy_only_key(c):
    e = c["energy"] if c["energy"] is not None else math.inf
    return (not c["min_distance"] >= 0.5, e, c["proposal_rank"])


def similarity_key(c):
    order = ("template", "template-flow", "flow", "enumerated", "p1")
    return (not c["min_distance"] >= 0.5, c["proposal_rank"], order.index(c["source"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", required=True)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--library", help="template library (default: bundled)")
    ap.add_argument("--templates", type=int, default=20)
    ap.add_argument("--flow-templates", type=int, default=0)
    ap.add_argument("--flow-samples", type=int, default=0)
    ap.add_argument("--started-samples", type=int, default=0)
    ap.add_argument("--start-time", type=float, default=0.8)
    ap.add_argument("--p1-samples", type=int, default=0)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--exact-size", action="store_true")
    ap.add_argument("--energy-weight", type=float, default=10.0)
    ap.add_argument("--volume-scan", default="", help="comma-separated volume factors, e.g. 0.9,1,1.1")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from crystalflow.crystals.crystal import structure_from_cif
    from crystalflow.crystals.dataset import read_cif_table
    from crystalflow.metrics._parallel import parallel_map
    from crystalflow.crystal_tasks.pipeline import PipelineConfig, predict_compositions
    from crystalflow.symmetry import analyze_structure
    from crystalflow.templates import load_library, propose

    table = read_cif_table(args.csv).iloc[args.offset:]
    if args.limit:
        table = table.iloc[:args.limit]
    refs = [structure_from_cif(c) for c in table["cif"]]
    comps = [{int(el.Z): int(n) for el, n in s.composition.items()} for s in refs]
    lib = load_library(args.library)
    config = PipelineConfig(templates=args.templates, flow_templates=args.flow_templates,
                            flow_samples=args.flow_samples, started_samples=args.started_samples,
                            start_time=args.start_time, p1_samples=args.p1_samples,
                            steps=args.steps, exact_size=args.exact_size,
                            energy_weight=args.energy_weight,
                            volume_scan=tuple(float(x) for x in args.volume_scan.split(",") if x))
    t0 = time.time()
    stages: dict[str, float] = {}
    ranked = predict_compositions(comps, config=config, library=lib, seed=args.seed, keep_all=True,
                                  progress=True, timings=stages)
    t_pipeline = time.time() - t0
    t0 = time.time()
    scores = parallel_map(_score, [(r.as_dict(), [c.structure.as_dict() for c in cands])
                                   for r, cands in zip(refs, ranked)],
                          workers=args.workers, progress=True, desc="scoring", chunksize=4)
    t_score = time.time() - t0
    # proposer accuracy against the reference's own spglib template
    hits = Counter()
    n_prop = 0
    for ref, comp in zip(refs, comps):
        try:
            true = analyze_structure(ref).template
        except Exception:
            continue
        n_prop += 1
        props = propose(lib, comp, top=20, exact_size=args.exact_size)
        label = (true.space_group, tuple(sorted(zip(true.letters, true.atom_types))))
        for k in (1, 5, 20):
            top = props[:k]
            hits[f"sg_top{k}"] += any(p.template.space_group == true.space_group for p in top)
            hits[f"label_top{k}"] += any(
                (p.template.space_group, tuple(sorted(zip(p.template.letters, p.template.atom_types)))) == label
                for p in top)
    rows = []
    for mid, cands, sc in zip(table["material_id"], ranked, scores):
        rows.append({"material_id": str(mid), "candidates": [
            {"source": c.source, "template": c.template, "template_id": c.template_id,
             "distance": c.distance, "proposal_rank": c.proposal_rank, "energy": c.energy,
             "vote": c.vote, "support": c.support, "same_size": c.same_size,
             "num_sites": len(c.structure), "volume_per_atom": c.structure.volume / len(c.structure),
             "score": c.score(config.energy_weight),
             "min_distance": c.min_distance, "valid": v, "rms": rms}
            for c, (v, rms) in zip(cands, sc)]})
    all_sources = ("template", "template-flow", "flow", "enumerated", "p1")
    report = {
        "rows": len(rows), "config": config.__dict__,
        "seconds_per_composition": {"pipeline": round(t_pipeline / len(rows), 3),
                                    "scoring": round(t_score / len(rows), 3)}
        | {f"stage_{k}": round(v / len(rows), 4) for k, v in stages.items()},
        "pipeline_energy": _rates(rows, energy_key),
        "pipeline_energy_only": _rates(rows, energy_only_key),
        "pipeline_similarity": _rates(rows, similarity_key),
        "templates_only_energy": _rates(rows, energy_key, {"template", "enumerated", "p1"}),
        "templates_only_energy_only": _rates(rows, energy_only_key, {"template", "enumerated", "p1"}),
        "templates_only_similarity": _rates(rows, similarity_key, {"template", "enumerated", "p1"}),
        "templates_plus_flow_energy": _rates(rows, energy_key, {"template", "flow", "enumerated", "p1"}),
        "templates_plus_started_energy": _rates(rows, energy_key,
                                                {"template", "template-flow", "enumerated", "p1"}),
        "winner_sources": dict(Counter(
            sorted(r["candidates"], key=energy_key)[0]["source"] for r in rows if r["candidates"])),
        "proposer": {k: round(100 * v / max(n_prop, 1), 2) for k, v in sorted(hits.items())},
        "no_template": sum(all(c["source"] in ("p1", "enumerated") for c in r["candidates"]) for r in rows),
        "sources": list(all_sources),
    }
    with open(args.json, "w") as fh:
        json.dump({"report": report, "rows": rows}, fh)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
