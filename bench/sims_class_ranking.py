"""SIMS class rankings side by side (issue 11, defect 3): which genes top each class under each aggregation.

Loads a finished SIMS run, runs its training cells through the network once and aggregates the per-cell
masks (each row normalized to sum 1, as ``SIMSModel.infer``) by the cells' true class in three ways:

* ``mean``      the class mean mask (issue 10's ranking): genes the class looked at, present or not;
* ``expressed`` the class mean of mask × [gene expressed in that cell] (issue 11's ranking): attention spent on
                genes the cell actually expresses;
* ``weighted``  the class mean of mask × the cell's model input for that gene (mask weighted by expression);
* ``contrast``  ``expressed`` minus its mean over the other classes.

Prints each class's top genes per variant with each gene's log2 fold change (class vs the other cells; + means
higher in the class), where known markers rank, and the share of top genes that are higher in their class.

    python bench/sims_class_ranking.py RUN_DIR DATA [--label cell_type] [--top 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Textbook markers (PBMC: Seurat's pbmc3k tutorial; pancreas: Bastidas-Ponce et al. 2019), matched ignoring case.
KNOWN = {
    "CD4 T naive": ["IL7R", "CCR7", "LDHB", "CD3E", "LEF1", "TCF7"],
    "CD4 T memory": ["IL7R", "S100A4", "CD3E", "LTB"],
    "CD4 T": ["IL7R", "CD3E", "LDHB", "CCR7"],
    "Mononuclear phagocyte": ["LYZ", "S100A8", "CD14", "CST3"],
    "CD8 T": ["CD8A", "CD8B", "CD3E", "GZMK"],
    "B": ["MS4A1", "CD79A", "CD79B", "CD74"],
    "NK": ["NKG7", "GNLY", "GZMB", "PRF1"],
    "CD14 Monocyte": ["LYZ", "S100A8", "S100A9", "CD14"],
    "CD16 Monocyte": ["FCGR3A", "MS4A7", "LST1"],
    "DC": ["FCER1A", "CST3", "CLEC10A"],
    "Platelet": ["PPBP", "PF4"],
    "Beta": ["Ins1", "Ins2", "Iapp"],
    "Alpha": ["Gcg", "Irx2"],
    "Delta": ["Sst", "Hhex"],
    "Epsilon": ["Ghrl"],
    "Ductal": ["Krt19", "Spp1", "Sox9"],
    "Ngn3 high EP": ["Neurog3"],
    "Ngn3 low EP": ["Neurog3"],
    "Pre-endocrine": ["Fev", "Chgb"],
}


def class_rankings(run_dir: str, data: str, label: str) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """(classes, genes, {variant: classes × genes}) for the run's cells of ``data`` grouped by ``label``."""
    from scapp.annotate import load_run
    from scapp.data.align import align_genes
    from scapp.data.io import read_data
    from scapp.tensors import dense_batches

    run = load_run(run_dir)
    adata, _ = read_data(data)
    counts, _ = align_genes(adata.X, adata.var, run.recipe.genes, raise_on_low=False)
    Xp = run.features(counts, adata)
    lab = adata.obs[label].astype(str).to_numpy()
    idx = {c: i for i, c in enumerate(run.classes)}
    y = np.array([idx.get(v, -1) for v in lab])
    model = run.model
    model.net.eval()
    C, D = len(run.classes), Xp.shape[1]
    sums = {k: np.zeros((C, D)) for k in ("mean", "expressed", "weighted")}
    expr_sum, n = np.zeros((C, D)), np.zeros(C)
    with torch.no_grad():
        for start, xb in dense_batches(Xp, 1024, torch.device("cpu")):
            _, _, _, m = model._forward(xb, explain=True)
            norm = (m / m.sum(1, keepdim=True).clamp_min(1e-12)).double().numpy()
            x = xb.double().numpy()
            g = y[start : start + len(xb)]
            ok = g >= 0
            for k, v in (("mean", norm), ("expressed", norm * (x > 0)), ("weighted", norm * x)):
                np.add.at(sums[k], g[ok], v[ok])
            np.add.at(expr_sum, g[ok], x[ok])
            n += np.bincount(g[ok], minlength=C)
    out = {k: v / np.maximum(n, 1)[:, None] for k, v in sums.items()}
    e = out["expressed"]
    others = (e.sum(0, keepdims=True) - e) / max(C - 1, 1)
    out["contrast"] = e - others  # expressed attention in the class minus its mean in the other classes
    # log fold change of each gene, class vs the other cells (model input: log1p of counts per 10k)
    mean_in = expr_sum / np.maximum(n, 1)[:, None]
    mean_out = (expr_sum.sum(0, keepdims=True) - expr_sum) / np.maximum(n.sum() - n, 1)[:, None]
    return run.classes, run.recipe.features, out, (mean_in - mean_out) / np.log(2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("data")
    ap.add_argument("--label", default="cell_type")
    ap.add_argument("--top", type=int, default=5)
    a = ap.parse_args()
    classes, genes, scores, lfc = class_rankings(a.run, a.data, a.label)
    g = np.asarray(genes, dtype=object)
    up = {k: [] for k in scores}
    for i, c in enumerate(classes):
        print(f"## {c}")
        for k, s in scores.items():
            top = np.argsort(-s[i], kind="stable")[: a.top]
            up[k].append((lfc[i, top] > 0).mean())
            print(f"  {k:<10} " + ", ".join(f"{g[j]} ({lfc[i, j]:+.1f})" for j in top))
        known = [m for m in KNOWN.get(c, []) if m.lower() in {x.lower() for x in genes}]
        if known:
            ranks = {}
            for k, s in scores.items():
                order = [x.lower() for x in g[np.argsort(-s[i], kind="stable")]]
                ranks[k] = [order.index(m.lower()) + 1 for m in known]
            print("  known markers' ranks (" + ", ".join(known) + "): "
                  + "; ".join(f"{k} {r}" for k, r in ranks.items()))
    print(f"\nshare of each class's top {a.top} genes that are higher in the class than in the other cells "
          "(log2 fold change of log1p CP10k > 0), mean over classes:")
    for k, v in up.items():
        print(f"  {k:<10} {np.mean(v):.2f}   per class: " + " ".join(f"{x:.1f}" for x in v))


if __name__ == "__main__":
    main()
