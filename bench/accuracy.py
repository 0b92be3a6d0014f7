"""Accuracy of every model on the real labelled tasks of ../shared/data.

Prints one table (macro-F1, median per-class F1, balanced accuracy, mean ± sd
over seeds) plus per-seed rows and the smallest classes' recall. Each run goes
through the same engine as ``scapp train`` (split, recipe, early stopping,
calibration), so the numbers are what a user gets.

    python bench/accuracy.py                       # all tasks, logreg + sims, 3 seeds
    python bench/accuracy.py --models sims --seeds 0 --tasks pancreas
    python bench/accuracy.py --models hydra --seeds 0 --tasks bonemarrow bonemarrow+protein
    python bench/accuracy.py --models hydra --option balance=false     # ablation: no synthetic balancing
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import DATA, machine  # noqa: E402

TASKS = {
    "pancreas": dict(data="mouse_pancreas_endocrinogenesis.h5ad", label="cell_type"),
    "bonemarrow": dict(data="bonemarrow_triana2021_abseq_multimodal.h5ad", label="cell_type"),
    "bonemarrow+protein": dict(data="bonemarrow_triana2021_abseq_multimodal.h5ad", label="cell_type",
                               protein_key="protein_counts"),
    "pbmc3k->pbmc4k": dict(data="pbmc3k_seurat_hvg2000.h5ad", label="cell_type_coarse",
                           query="pbmc4k_10x_soupx.h5ad", query_drop="Unknown"),
}


def run_one(task: str, model: str, seed: int, epochs: int | None, workdir: Path, options: dict | None = None) -> dict:
    import anndata as ad

    from scapp.annotate import annotate, load_run
    from scapp.evaluate.metrics import classification_metrics
    from scapp.train.engine import TrainRequest, run_training

    spec = TASKS[task]
    cross = "query" in spec
    req = TrainRequest(data=str(DATA / spec["data"]), label=spec["label"], model=model, seed=seed, epochs=epochs,
                       model_config=dict(options or {}), protein_key=spec.get("protein_key"),
                       device="auto", valid_frac=0.15 if cross else 0.10, test_frac=0.15 if cross else 0.20)
    run = workdir / f"{task.replace('>', '').replace('+', '_')}-{model}-{seed}"
    run.mkdir(parents=True)
    t0 = time.monotonic()
    res = run_training(req, run)
    secs = time.monotonic() - t0
    m = res["test"]
    row = {"task": task, "model": model, "seed": seed, "epochs": res["epochs_run"], "best_epoch": res["best_epoch"],
           "train_s": round(secs, 1)}
    if cross:
        q = ad.read_h5ad(DATA / spec["query"])
        ann = annotate(load_run(run), q, explain=False)
        truth = q.obs[spec["label"]].astype(str).to_numpy()
        keep = truth != spec["query_drop"]
        classes = ann.proba.columns.tolist()
        known = np.isin(truth, classes) & keep
        y = np.array([classes.index(t) for t in truth[known]])
        pred = ann.proba.to_numpy()[known].argmax(1)
        m = classification_metrics(y, pred, classes)
        row["n_test"] = int(known.sum())
    else:
        row["n_test"] = m["n_cells"]
    row.update({"macro_f1": m["macro_f1"], "median_f1": m["median_f1"], "balanced_acc": m["balanced_accuracy"],
                "accuracy": m["accuracy"],
                "smallest3_recall": float(np.mean([s["recall"] for s in m["smallest_classes"]])),
                "smallest": "; ".join(f"{s['class']}({s['support']}): R={s['recall']:.2f}" for s in m["smallest_classes"])})
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="*", default=list(TASKS))
    ap.add_argument("--models", nargs="*", default=["logreg", "sims"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="cap epochs (default: method's own early stopping)")
    ap.add_argument("--json", help="also write rows to this JSON file")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                    help="model option for every run, e.g. monitor='\"valid_balanced_accuracy\"' (ablations)")
    a = ap.parse_args()
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in a.option)}
    print(f"# scapp accuracy benchmark — {machine()}" + (f"; options {options}" if options else ""))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in a.tasks:
            for model in a.models:
                for seed in a.seeds:
                    row = run_one(task, model, seed, a.epochs, Path(tmp), options if model != "logreg" else None)
                    rows.append(row)
                    print(f"  {task:16s} {model:7s} seed {seed}: macro-F1 {row['macro_f1']:.3f}  median-F1 "
                          f"{row['median_f1']:.3f}  bal-acc {row['balanced_acc']:.3f}  ({row['epochs']} epochs, best "
                          f"{row['best_epoch']}, {row['train_s']} s)  smallest: {row['smallest']}", flush=True)
    df = pd.DataFrame(rows)
    agg = df.groupby(["task", "model"], sort=False).agg(
        n=("seed", "size"), macro_f1=("macro_f1", "mean"), macro_f1_sd=("macro_f1", "std"),
        median_f1=("median_f1", "mean"), median_f1_sd=("median_f1", "std"),
        balanced_acc=("balanced_acc", "mean"), balanced_acc_sd=("balanced_acc", "std"), train_s=("train_s", "mean"),
        smallest3=("smallest3_recall", "mean"))
    print()
    print("| task | model | seeds | macro-F1 | median F1 | balanced acc | 3 smallest recall | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for (task, model), r in agg.iterrows():
        sd = lambda v: "" if np.isnan(v) else f" ± {v:.3f}"  # noqa: E731
        print(f"| {task} | {model} | {r.n} | {r.macro_f1:.3f}{sd(r.macro_f1_sd)} | {r.median_f1:.3f}{sd(r.median_f1_sd)}"
              f" | {r.balanced_acc:.3f}{sd(r.balanced_acc_sd)} | {r.smallest3:.3f} | {r.train_s:.0f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
