"""Build ``assets/demo_pbmc4k_query.h5ad``: the small real query shipped with scapp for the Annotate page.

1,500 cells drawn (seed 0) from PBMC 4k (10x Genomics v2, CC BY 4.0; SoupX example channel with the SoupX authors'
annotation), raw integer UMI counts in a sparse ``.X``. A different donor, chemistry and annotator than the PBMC 3k
demo the app trains on, so annotating it is a real transfer. To stay under 1.5 MB it keeps 3,000 of the 33,694
genes: every gene it shares with the PBMC 3k demo (1,957 of the model's 2,000, so the gene-overlap check has
something to report) and 1,043 other detected genes picked at random (seed 0). The authors' labels stay in
``obs['cell_type']`` and the shared PBMC vocabulary in ``obs['cell_type_coarse']`` for checking the result.

Usage: ``python scripts/make_demo_query.py [SOURCE.h5ad] [OUT.h5ad]`` (defaults: ``../shared/data/pbmc4k_10x_soupx.h5ad``
and ``assets/demo_pbmc4k_query.h5ad``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "pbmc4k_10x_soupx.h5ad"
OUT = REPO / "assets" / "demo_pbmc4k_query.h5ad"
DEMO = REPO / "assets" / "demo_pbmc3k.h5ad"
N_CELLS, N_GENES, SEED = 1500, 3000, 0


def build(source: Path = SOURCE, demo: Path = DEMO) -> ad.AnnData:
    src = ad.read_h5ad(source)
    rng = np.random.default_rng(SEED)
    cells = np.sort(rng.choice(src.n_obs, N_CELLS, replace=False))
    X = sp.csr_matrix(src.X[cells], dtype=np.float32)
    shared = np.asarray(src.var_names.isin(ad.read_h5ad(demo, backed="r").var_names))
    detected = np.bincount(X.indices[X.data > 0], minlength=src.n_vars) > 0
    others = np.flatnonzero(detected & ~shared)
    extra = rng.choice(others, N_GENES - int(shared.sum()), replace=False)
    keep = np.sort(np.concatenate([np.flatnonzero(shared), extra]))
    obs = src.obs.iloc[cells][["cell_type", "cell_type_coarse"]].copy()
    out = ad.AnnData(sp.csr_matrix(X[:, keep]), obs=obs, var=src.var.iloc[keep].copy())
    out.uns["source"] = {**{k: str(v) for k, v in src.uns["source"].items()},
                         "note_demo_query": f"scapp demo query: {N_CELLS} cells (seed {SEED}); {N_GENES} genes = all "
                                            "genes shared with the PBMC 3k demo + random detected others; "
                                            "built by scripts/make_demo_query.py"}
    return out


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else SOURCE
    out = Path(argv[1]) if len(argv) > 1 else OUT
    q = build(source)
    q.write_h5ad(out, compression="gzip", compression_opts=9)
    print(f"{out}: {q.n_obs} cells × {q.n_vars} genes, {out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
