"""Issue 10, "queries that share few genes": what retraining on the shared genes gives on a dev case.

A model trained on PBMC 4k with all its genes (2,170 cells × 33,694 genes, label ``cell_type``) meets a query of
PBMC 3k (another donor and lab) cut to 400 of its 2,000 genes chosen at random (seed 0). ``scapp predict`` refuses
it (a few hundred of 33,694 genes); ``scapp retrain RUN --genes-from QUERY`` trains the same method and settings
on the genes the query shares with PBMC 4k, and that run annotates the query. Its predictions are scored against
the query's own labels mapped to PBMC 4k's vocabulary (Platelets left out; a cell called "Unknown" is wrong), and
set beside what the all-genes model gives when the query is forced through with its missing genes set to zero.

Everything goes through the CLI (``python -m scapp train | predict | retrain``), as a user would run it.

    python bench/retrain_shared_genes.py                       # logreg_hvg (default preset)
    python bench/retrain_shared_genes.py --models logreg_hvg sims auto
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._common import DATA, machine  # noqa: E402

TRAIN = "pbmc4k_10x_soupx.h5ad"
QUERY = "pbmc3k_seurat_hvg2000.h5ad"
LABEL = "cell_type"
N_GENES = 400
TO_4K = {"CD4 T naive": "CD4 T", "CD4 T memory": "CD4 T", "CD8 T": "CD8 T", "B": "B", "NK": "NK",
         "CD14 Monocyte": "Mononuclear phagocyte", "CD16 Monocyte": "Mononuclear phagocyte",
         "DC": "Mononuclear phagocyte"}  # pbmc3k cell_type -> pbmc4k cell_type; Platelet is not scored


def scapp(*args: str) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "scapp", *args], cwd=REPO, capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr, time.monotonic() - t0


def cut_query(work: Path, seed: int) -> tuple[Path, pd.Series]:
    import anndata as ad

    q = ad.read_h5ad(DATA / QUERY)
    rng = np.random.default_rng(seed)
    cols = np.sort(rng.choice(q.n_vars, N_GENES, replace=False))
    cut = ad.AnnData(X=q.X[:, cols], obs=q.obs[[LABEL]].copy(), var=q.var.iloc[cols].copy())
    path = work / f"pbmc3k_cut{N_GENES}.h5ad"
    cut.write_h5ad(path)
    return path, q.obs[LABEL].astype(str)


def score(pred: pd.Series, truth: pd.Series, classes: list[str]) -> dict:
    """Macro-F1, balanced accuracy and per-class recall over the (mapped) truth classes; Platelets left out."""
    from scapp.evaluate.metrics import classification_metrics, per_class_table

    mapped = truth.map(TO_4K)
    keep = mapped.notna().to_numpy()
    code = {c: i for i, c in enumerate(classes)}
    y = np.array([code[c] for c in mapped[keep]])
    p = np.array([code[c] for c in pred.to_numpy()[keep]])
    m = classification_metrics(y, p, classes)
    tab = per_class_table(y, p, classes)
    recall = {r["class"]: round(float(r["recall"]), 3) for _, r in tab[tab["support"] > 0].iterrows()}
    return {"n_scored": int(keep.sum()), "macro_f1": round(m["macro_f1"], 4),
            "balanced_accuracy": round(m["balanced_accuracy"], 4), "accuracy": round(m["accuracy"], 4),
            "recall": recall, "predicted_unknown": int((pred.to_numpy()[keep] == "Unknown").sum())}


def forced(run: Path, query: Path) -> pd.Series:
    """The all-genes model on the cut query, its missing genes zero-filled (no overlap check)."""
    from scapp.annotate import annotate, load_run
    from scapp.data import load_dataset

    adata, _ = load_dataset(query)
    res = annotate(load_run(run), adata, min_frac=0, min_shared=0, explain=False)
    return res.predicted.reset_index(drop=True)


def one_model(model: str, options: dict, work: Path, query: Path, truth: pd.Series) -> dict:
    from scapp import runs

    out: dict = {"model": model, "options": options}
    run, retrained = work / f"{model}-all-genes", work / f"{model}-retrained"
    args = ["train", str(DATA / TRAIN), "--label", LABEL, "--model", model, "--out", str(run), "--quiet"]
    if options:
        cfg = work / f"{model}.json"
        cfg.write_text(json.dumps(options))
        args += ["--config", str(cfg)]
    rc, _, err, out["train_s"] = scapp(*args)
    assert rc == 0, err
    out["model_genes"] = len(runs.RunStore(run).genes())
    out["test_macro_f1_on_pbmc4k"] = runs.RunStore(run).metrics()["test"]["macro_f1"]

    rc, _, err, _ = scapp("predict", str(run), str(query), "--quiet")
    out["predict_rc"] = rc
    out["refusal"] = err.strip()

    rc, _, err, out["retrain_s"] = scapp("retrain", str(run), "--genes-from", str(query), "--out", str(retrained),
                                         "--quiet")
    assert rc == 0, err
    store = runs.RunStore(retrained)
    out["retrained_genes"] = len(store.genes())
    out["retrained_notes"] = store.data_info()["notes"]
    out["retrained_test_macro_f1_on_pbmc4k"] = store.metrics()["test"]["macro_f1"]

    csv = work / f"{model}-retrained.csv"
    rc, _, err, out["predict_s"] = scapp("predict", str(retrained), str(query), "--csv", str(csv))
    assert rc == 0, err
    out["overlap"] = next(line for line in err.splitlines() if "genes found in the query" in line)
    df = pd.read_csv(csv)
    classes = runs.RunStore(retrained).classes()
    probs = df[[f"p_{c}" for c in classes]].to_numpy()
    pred = pd.Series(np.asarray(classes, dtype=object)[probs.argmax(1)])  # top class, before the threshold
    out["unassigned_frac_at_run_threshold"] = round(float(df["unassigned"].mean()), 4)
    out["retrained"] = score(pred, truth.reset_index(drop=True), classes)
    out["all_genes_zero_filled"] = score(forced(run, query), truth.reset_index(drop=True), classes)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["logreg_hvg"])
    ap.add_argument("--sims-epochs", type=int, default=None,
                    help="cap SIMS's max_epochs (default: its own, 500, with early stopping)")
    ap.add_argument("--seed", type=int, default=0, help="which 400 genes the query keeps")
    ap.add_argument("--workdir", help="keep the runs here (default: a temporary folder)")
    a = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        query, truth = cut_query(work, a.seed)
        import anndata as ad

        train_genes = ad.read_h5ad(DATA / TRAIN, backed="r").var_names
        qgenes = ad.read_h5ad(query, backed="r").var_names
        print(f"training file {TRAIN}: {len(train_genes):,} genes; query {QUERY} cut to {len(qgenes)} genes "
              f"(seed {a.seed}), {int(qgenes.isin(train_genes).sum())} of them (exact names) in the training file")
        for model in a.models:
            options = {"max_epochs": a.sims_epochs} if model == "sims" and a.sims_epochs else {}
            res = one_model(model, options, work, query, truth)
            print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
