"""The dot-plot artifact: top genes per class, mean log expression and fraction expressing, checked by hand."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from scapp.data.preprocess import PreprocessConfig, Recipe
from scapp.data.demo import synthetic
from scapp.train.engine import dotplot_table


def _setup(scale: bool):
    a = synthetic(n_cells=120, n_genes=40, n_classes=3, seed=1)
    classes = sorted(a.obs["cell_type"].unique())
    y = a.obs["cell_type"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    genes = list(a.var_names)
    recipe = Recipe.fit(a.X, genes, PreprocessConfig(scale=scale), train_idx=np.arange(a.n_obs))
    Xp = recipe.transform(a.X)
    scores = np.zeros((3, 40))
    scores[0, [5, 6, 7]] = [3, 2, 1]
    scores[1, [7, 8, 9]] = [3, 2, 1]
    scores[2, [1, 2, 3]] = [3, 2, 1]
    return a, classes, y, recipe, Xp, scores


def _naive(a, y, gene: int, cls: int):
    X = sp.csr_matrix(a.X, dtype=np.float64).toarray()
    lognorm = np.log1p(X / X.sum(1, keepdims=True) * 1e4)
    v = lognorm[y == cls, gene]
    return v.mean(), (v > 0).mean()


def test_top_genes_per_class_union_in_class_order_with_true_values():
    for scale in (False, True):
        a, classes, y, recipe, Xp, scores = _setup(scale)
        df = dotplot_table(Xp, y, classes, scores, recipe, max_genes=9)  # 9 // 3 = 3 genes per class
        genes = list(dict.fromkeys(df["gene"]))
        assert genes == ["GENE5", "GENE6", "GENE7", "GENE8", "GENE9", "GENE1", "GENE2", "GENE3"]  # union, in order
        assert list(dict.fromkeys(df["class"])) == classes and len(df) == 8 * 3
        capped = dotplot_table(Xp, y, classes, scores, recipe, max_genes=7)  # still 3 per class, then capped
        assert list(dict.fromkeys(capped["gene"])) == genes[:7]
        assert df.set_index("gene")["top_for"].to_dict()["GENE7"] == classes[0]
        for g, c in [("GENE5", 0), ("GENE8", 1), ("GENE1", 2), ("GENE1", 0)]:
            row = df[(df["gene"] == g) & (df["class"] == classes[c])].iloc[0]
            m, f = _naive(a, y, int(g[4:]), c)
            assert np.isclose(row["mean_expression"], m, rtol=1e-4, atol=1e-4), (scale, g, c)
            assert np.isclose(row["frac_expressing"], f), (scale, g, c)
