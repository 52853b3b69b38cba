"""Experiment (session 7): rank by 10 E - log(merged vote), votes summed over candidates the field's matcher finds equal.

Usage: python scripts/exp_merged_votes.py FIRST LAST TOP  (reads runs/s7/val1000_t20.json; MP-20 val rows FIRST..LAST)
"""
import json, math, sys, warnings, time
warnings.simplefilter("ignore")
import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from crystalflow.crystals.crystal import structure_from_cif
from crystalflow.crystals.dataset import read_cif_table
from crystalflow.pipeline import PipelineConfig, predict_compositions

lo, hi, top = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
d = json.load(open("runs/s7/val1000_t20.json"))
rows = d["rows"][lo:hi]
table = read_cif_table("../shared/data/mp_20/val.csv.gz").iloc[lo:hi]
refs = [structure_from_cif(c) for c in table["cif"]]
comps = [{int(el.Z): int(n) for el, n in s.composition.items()} for s in refs]
ranked = predict_compositions(comps, config=PipelineConfig(templates=20, rank="similarity"),
                              keep_all=True, progress=False)
m = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)
res = {"hand": 0, "merged": 0, "merged_u": 0, "hand_u": 0, "n": 0}
t0 = time.time()
out = []
for r, cands in zip(rows, ranked):
    js = r["candidates"]
    key = {(c["template_id"], c["template"]): c for c in js}
    items = []
    for c in cands:
        j = key.get((c.template_id, c.template))
        if j is None: continue
        items.append((j, c.structure))
    if not items: continue
    res["n"] += 1
    sc = lambda j: (not j["min_distance"] >= 0.5, j["score"], j["proposal_rank"])
    items.sort(key=lambda x: sc(x[0]))
    best = items[0][0]
    res["hand"] += best["valid"] and best["rms"] is not None
    sub = items[:top]
    votes = [j["vote"] for j, _ in sub]
    merged = list(votes)
    for a in range(len(sub)):
        for b in range(a + 1, len(sub)):
            try: same = m.fit(sub[a][1], sub[b][1])
            except Exception: same = False
            if same:
                merged[a] += votes[b]; merged[b] += votes[a]
    def s2(k):
        j = sub[k][0]; e = j["energy"] if j["energy"] is not None else math.inf
        return (not j["min_distance"] >= 0.5, 10 * e - math.log(merged[k] + 1e-3))
    k = min(range(len(sub)), key=s2)
    res["merged"] += sub[k][0]["valid"] and sub[k][0]["rms"] is not None
print(res, "s/comp", (time.time() - t0) / max(res["n"], 1))
