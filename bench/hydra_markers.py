"""Where known markers rank in Hydra's Integrated-Gradients lists, IG completeness, and time per phase.

Each run goes through the engine (split, recipe, calibration), i.e. what
``scapp train --model hydra`` gives. Ranks are 1-based positions in the class's
signed IG consensus over all features (genes, and proteins when given).

    python bench/hydra_markers.py                              # pancreas, pbmc3k, bone marrow RNA + protein
    python bench/hydra_markers.py --preset fast --tasks pancreas
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import DATA, machine  # noqa: E402

TASKS = {
    "pancreas": dict(data="mouse_pancreas_endocrinogenesis.h5ad", label="cell_type", markers={
        "Beta": ["Ins1", "Ins2"], "Alpha": ["Gcg"], "Delta": ["Sst"], "Epsilon": ["Ghrl"],
        "Ductal": ["Krt19", "Spp1"]}),
    "pbmc3k": dict(data="pbmc3k_seurat_hvg2000.h5ad", label="cell_type", markers={
        "B": ["CD79A", "MS4A1"], "NK": ["NKG7", "GNLY"], "CD14 Monocyte": ["LYZ", "CD14"]}),
    "bonemarrow+protein": dict(data="bonemarrow_triana2021_abseq_multimodal.h5ad", label="cell_type",
                               protein_key="protein_counts", markers={
        "Mature and memory B cells": ["CD19 (protein)"], "CD8+ T cells": ["CD3 (protein)"],
        "CD4+ cells": ["CD3 (protein)"], "HSCs & MPPs": ["CD34 (protein)"]}),
}


def run_task(task: str, options: dict, seed: int, workdir: Path) -> dict:
    from scapp.annotate import load_run
    from scapp.train.engine import TrainRequest, run_training

    spec = TASKS[task]
    req = TrainRequest(data=str(DATA / spec["data"]), label=spec["label"], model="hydra", seed=seed, device="auto",
                       model_config=options, protein_key=spec.get("protein_key"))
    run = workdir / task.replace("+", "_")
    run.mkdir(parents=True)
    t0 = time.monotonic()
    res = run_training(req, run)
    wall = time.monotonic() - t0
    loaded = load_run(run)
    feats = list(loaded.recipe.features) + (loaded.protein.features if loaded.protein is not None else [])
    scores = loaded.model.ig_scores
    rows = []
    for cls, genes in spec["markers"].items():
        c = loaded.classes.index(cls)
        order = np.argsort(-scores[c], kind="stable")
        rank_of = {feats[j]: r + 1 for r, j in enumerate(order)}
        for g in genes:
            rows.append({"class": cls, "marker": g, "rank": rank_of.get(g), "of": len(feats)})
    info = res["fit_info"]
    return {"task": task, "rows": rows, "timings": info["timings"], "wall_s": wall,
            "completeness": info.get("ig_completeness_rel_error"), "ig_cells": info.get("ig_cells"),
            "macro_f1": res["test"]["macro_f1"], "n_features": len(feats)}


def main() -> None:
    from scapp.models.presets import PRESETS

    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="*", default=list(TASKS))
    ap.add_argument("--preset", default="default", choices=list(PRESETS["hydra"]))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--option", action="append", default=[], metavar="KEY=JSON")
    ap.add_argument("--json")
    a = ap.parse_args()
    options = {**PRESETS["hydra"][a.preset], **{k: json.loads(v) for k, v in (o.split("=", 1) for o in a.option)}}
    print(f"# Hydra marker recovery — {machine()}; preset {a.preset} {options}")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in a.tasks:
            r = run_task(task, options, a.seed, Path(tmp))
            out.append(r)
            t = r["timings"]
            print(f"\n## {task}: test macro-F1 {r['macro_f1']:.3f}, IG completeness rel. error {r['completeness']:.2e} "
                  f"({r['ig_cells']} cells attributed)")
            print("| class | marker | rank (of %d) |" % r["n_features"])
            print("|---|---|---|")
            for row in r["rows"]:
                print(f"| {row['class']} | {row['marker']} | {row['rank']} |")
            print("\n| phase | VAE | balancing | refinement | IG | annotation MLPs | total fit | run (engine) |")
            print("|---|---|---|---|---|---|---|---|")
            print(f"| seconds | {t['vae_s']:.1f} | {t['balance_s']:.1f} | {t['refine_s']:.1f} | {t['ig_s']:.1f} | "
                  f"{t['mlp_s']:.1f} | {sum(t.values()):.1f} | {r['wall_s']:.1f} |", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
