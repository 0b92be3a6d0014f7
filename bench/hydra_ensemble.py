"""What training the 25 Hydra copies as one batched module buys, against one copy at a time.

Same pancreas training split, same balanced-set size per copy, same epochs; the
only difference is ``n_models`` (1 vs 25) in one batched module. The sequential
cost of 25 copies is 25 × the one-copy time (what 25 Python loops would take).
Refinement and the IG phase are reported separately (fit_info timings).

    python bench/hydra_ensemble.py [--refine-epochs 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import DATA, machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--refine-epochs", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ig-cells", type=int, default=50)
    a = ap.parse_args()
    import anndata as ad

    from scapp.data.preprocess import PreprocessConfig, Recipe
    from scapp.data.split import stratified_split
    from scapp.data.validate import get_labels
    from scapp.models.base import FitData
    from scapp.models.hydra import HydraConfig, HydraModel
    from scapp.train.trainer import Trainer

    adata = ad.read_h5ad(DATA / "mouse_pancreas_endocrinogenesis.h5ad")
    codes, classes, _ = get_labels(adata, "cell_type")
    split = stratified_split(codes, seed=0)
    rec = Recipe.fit(adata.X, adata.var_names.tolist(), PreprocessConfig(**HydraModel.preprocess_defaults),
                     train_idx=split.train)
    X = rec.transform(adata[:, rec.genes].X)
    print(f"# Hydra batched ensemble — {machine()}, device {a.device}; pancreas {len(split.train):,} training cells, "
          f"{X.shape[1]:,} genes, {a.refine_epochs} refinement epochs, IG on ≤{a.ig_cells} cells/class")
    print("| copies | refinement s | IG s | annotation MLPs s | refinement s per copy |")
    print("|---|---|---|---|---|")
    t = {}
    for m in (1, 25):
        cfg = HydraConfig(n_models=m, max_epochs=3, refine_epochs=a.refine_epochs, ig_cells_per_class=a.ig_cells,
                          seed=0)
        model = HydraModel(cfg, n_features=X.shape[1], classes=classes, device=a.device)
        model.fit(FitData(X[split.train], codes[split.train]), FitData(X[split.valid], codes[split.valid]),
                  Trainer())
        t[m] = model.fit_info["timings"]
        print(f"| {m} | {t[m]['refine_s']:.1f} | {t[m]['ig_s']:.1f} | {t[m]['mlp_s']:.1f} | "
              f"{t[m]['refine_s'] / m:.2f} |", flush=True)
    for k, name in (("refine_s", "refinement"), ("ig_s", "IG"), ("mlp_s", "annotation MLPs")):
        seq = 25 * t[1][k]
        print(f"{name}: 25 copies one at a time ≈ {seq:.1f} s; batched {t[25][k]:.1f} s → "
              f"{seq / max(t[25][k], 1e-9):.1f}× faster")


if __name__ == "__main__":
    main()
