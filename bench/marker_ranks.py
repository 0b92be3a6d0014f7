"""Where known marker genes rank in a model's per-class gene list (``scapp markers``), any model.

Trains through the CLI (what a user gets), then reads the run's marker table with
``python -m scapp markers --top N`` and prints, per known marker, its 1-based rank in
its class's list and how many genes tie with the top score of that class (a ranking
that puts hundreds of genes level at the top is no ranking).

    python bench/marker_ranks.py                       # SIMS on pbmc3k, seed 0
    python bench/marker_ranks.py --model hydra --option n_models=5
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._common import DATA, machine  # noqa: E402

MARKERS = {"B": ["CD79A", "MS4A1"], "NK": ["NKG7", "GNLY"], "CD14 Monocyte": ["LYZ", "CD14"]}


def _full_ranks(run: Path) -> dict | None:
    """Rank of every gene in every class's score (the marker table keeps the top 100); None for an old checkout."""
    try:
        from scapp.runs import RunStore
    except ImportError:
        return None
    import numpy as np

    store = RunStore(run)
    scores, genes, classes = store.explain()["class_scores"], store.genes(), store.classes()
    out: dict = {"_n": len(genes)}
    for i, c in enumerate(classes):
        order = np.argsort(-scores[i], kind="stable")
        out[c] = {genes[j]: r + 1 for r, j in enumerate(order)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="sims")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--option", action="append", default=[], metavar="KEY=JSON")
    a = ap.parse_args()
    opts = {k: json.loads(v) for k, v in (o.split("=", 1) for o in a.option)}
    print(f"# marker ranks, {a.model} on pbmc3k (seed {a.seed}) — {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "scapp", "train", str(DATA / "pbmc3k_seurat_hvg2000.h5ad"), "--label",
               "cell_type", "--model", a.model, "--seed", str(a.seed), "--out", f"{tmp}/run", "--quiet"]
        if opts:
            Path(tmp, "cfg.json").write_text(json.dumps(opts))
            cmd += ["--config", f"{tmp}/cfg.json"]
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        out = subprocess.run([sys.executable, "-m", "scapp", "markers", f"{tmp}/run", "--top", "100000"],
                             check=True, cwd=ROOT, capture_output=True, text=True).stdout
        full = _full_ranks(Path(tmp) / "run")
    df = pd.read_csv(io.StringIO(out), dtype={"class": str, "gene": str})
    n_genes = int(df.groupby("class").size().max())
    print(f"| class | marker | rank (the stored marker table keeps the top {n_genes}) | genes tied at the class's top score |")
    print("|---|---|---|---|")
    for cls, genes in MARKERS.items():
        sub = df[df["class"] == cls]
        ties = int((sub["score"] >= sub["score"].max() - 1e-7).sum())
        for g in genes:
            r = sub.loc[sub["gene"] == g, "rank"]
            shown = int(r.iloc[0]) if len(r) else f"> {n_genes}"
            if full is not None:
                shown = f"{full[cls][g]} of {full['_n']}" if g in full[cls] else "not a model gene"
            print(f"| {cls} | {g} | {shown} | {ties} |")
        print(f"| {cls} | (top 5) | {', '.join(sub.sort_values('rank')['gene'].head(5))} | |")


if __name__ == "__main__":
    main()
