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

# pbmc3k's nine Seurat-tutorial types, as pbmc4k's annotators named them (pbmc4k has no platelets).
PBMC3K_TO_PBMC4K = {"CD4 T naive": "CD4 T", "CD4 T memory": "CD4 T", "CD8 T": "CD8 T", "B": "B", "NK": "NK",
                    "CD14 Monocyte": "Mononuclear phagocyte", "CD16 Monocyte": "Mononuclear phagocyte",
                    "DC": "Mononuclear phagocyte", "Platelet": "Platelet"}
# The rare-class dev file: pbmc3k's fine types with four classes cut to a few dozen cells (seeded), like the
# held-out PBMC file's T-cell subsets of 43-252 cells.
RARE_SIZES = {"CD8 T": 45, "CD4 T memory": 60, "NK": 40, "CD16 Monocyte": 50}


def _drop_unknown(a):
    return a[a.obs["cell_type"].astype(str) != "Unknown"].copy()


def _rare(a):
    rng = np.random.default_rng(0)
    lab = a.obs["cell_type"].astype(str).to_numpy()
    keep = np.ones(a.n_obs, bool)
    for cls, n in RARE_SIZES.items():
        idx = np.flatnonzero(lab == cls)
        keep[rng.choice(idx, size=idx.size - n, replace=False)] = False
    return a[keep].copy()


TASKS = {
    "pancreas": dict(data="mouse_pancreas_endocrinogenesis.h5ad", label="cell_type"),
    "bonemarrow": dict(data="bonemarrow_triana2021_abseq_multimodal.h5ad", label="cell_type"),
    "bonemarrow+protein": dict(data="bonemarrow_triana2021_abseq_multimodal.h5ad", label="cell_type",
                               protein_key="protein_counts"),
    "pbmc3k->pbmc4k": dict(data="pbmc3k_seurat_hvg2000.h5ad", label="cell_type_coarse",
                           query="pbmc4k_10x_soupx.h5ad", query_drop="Unknown"),
    # issue 10's dev cases for what the first three do not exercise: many genes, fine types, few cells, a lab shift
    "pbmc4k": dict(data="pbmc4k_10x_soupx.h5ad", label="cell_type", derive=_drop_unknown),  # all 33,694 genes
    "pbmc3k->pbmc4k-fine": dict(data="pbmc3k_seurat_hvg2000.h5ad", label="cell_type", query="pbmc4k_10x_soupx.h5ad",
                                query_drop="Unknown", query_map=PBMC3K_TO_PBMC4K),
    "pbmc3k-rare": dict(data="pbmc3k_seurat_hvg2000.h5ad", label="cell_type", derive=_rare),
}


def task_data(task: str, workdir: Path) -> Path:
    """The training file of ``task``: the shared file, or a derived copy (written once into ``workdir``)."""
    spec = TASKS[task]
    src = DATA / spec["data"]
    if "derive" not in spec:
        return src
    out = workdir / f"{task}.h5ad"
    if not out.exists():  # written to a temporary name first: two benchmark processes may share workdir
        import anndata as ad

        from scapp.runs import write_atomic

        write_atomic(out, spec["derive"](ad.read_h5ad(src)).write_h5ad)
    return out


def run_name(task: str, model: str, seed: int) -> str:
    return f"{task.replace('>', '').replace('+', '_')}-{model}-{seed}"


def run_one(task: str, model: str, seed: int, epochs: int | None, workdir: Path, options: dict | None = None) -> dict:
    """Train ``model`` on ``task`` through the engine (as ``scapp train`` does) and score it."""
    from scapp.train.engine import TrainRequest, run_training

    spec = TASKS[task]
    cross = "query" in spec
    req = TrainRequest(data=str(task_data(task, workdir)), label=spec["label"], model=model, seed=seed, epochs=epochs,
                       model_config=dict(options or {}), protein_key=spec.get("protein_key"),
                       device="auto", valid_frac=0.15 if cross else 0.10, test_frac=0.15 if cross else 0.20)
    run = workdir / run_name(task, model, seed)
    if run.exists():  # --keep into a folder used before: a fresh run
        import shutil

        shutil.rmtree(run)
    run.mkdir(parents=True)
    t0 = time.monotonic()
    res = run_training(req, run)
    return score(task, model, seed, run, res, time.monotonic() - t0)


def ensemble_one(task: str, seed: int, members: list[Path], workdir: Path) -> dict:
    """Combine finished runs of ``task`` (same seed, so same split) as ``scapp ensemble`` does, and score it."""
    from scapp.train.ensemble import ensemble_runs

    run = workdir / run_name(task, "ensemble", seed)
    if run.exists():
        import shutil

        shutil.rmtree(run)
    run.mkdir(parents=True)
    t0 = time.monotonic()
    res = ensemble_runs([str(m) for m in members], run)
    res.setdefault("epochs_run", 0)
    res.setdefault("best_epoch", None)
    row = score(task, "ensemble", seed, run, res, time.monotonic() - t0)
    row["weights"] = " ".join(f"{m['model']}={m['weight']:.1f}" for m in res["members"])
    row["train_s"] = round(sum(r.get("fit_seconds") or 0 for r in res["members"]) + row["train_s"], 1)
    return row


def score(task: str, model: str, seed: int, run: Path, res: dict, secs: float) -> dict:
    """Test metrics of a finished run: its own test cells, or the task's query for a cross-dataset task."""
    import anndata as ad

    from scapp.annotate import annotate, load_run
    from scapp.evaluate.metrics import classification_metrics

    spec = TASKS[task]
    m = res["test"]
    row = {"task": task, "model": model, "seed": seed, "epochs": res["epochs_run"], "best_epoch": res["best_epoch"],
           "train_s": round(secs, 1), "run": str(run)}
    if "query" in spec:
        q = ad.read_h5ad(DATA / spec["query"])
        ann = annotate(load_run(run), q, explain=False)
        truth = q.obs[spec["label"]].astype(str).to_numpy()
        keep = truth != spec["query_drop"]
        classes = ann.proba.columns.tolist()
        pred = ann.proba.to_numpy().argmax(1)
        if "query_map" in spec:  # fine model classes scored in the query's vocabulary
            mapped = [spec["query_map"][c] for c in classes]
            classes = list(dict.fromkeys(mapped))
            pred = np.array([classes.index(mapped[p]) for p in range(len(mapped))])[pred]
        known = np.isin(truth, classes) & keep
        y = np.array([classes.index(t) for t in truth[known]])
        pred = pred[known]
        m = classification_metrics(y, pred, classes)
        row["n_test"] = int(known.sum())
    else:
        row["n_test"] = m["n_cells"]
    row.update({"macro_f1": m["macro_f1"], "median_f1": m["median_f1"], "balanced_acc": m["balanced_accuracy"],
                "accuracy": m["accuracy"],
                "smallest3_recall": float(np.mean([s["recall"] for s in m["smallest_classes"]])),
                "smallest": "; ".join(f"{s['class']}({s['support']}): R={s['recall']:.2f}" for s in m["smallest_classes"])})
    return row


def model_options(model: str, preset: str, options: list[tuple[str, object]]) -> dict:
    """``model``'s registry preset, then the ``--option``s meant for it (``model.key`` or a bare key it has)."""
    from dataclasses import fields

    from scapp.models.registry import get_spec

    spec = get_spec(model)
    known = {f.name for f in fields(spec.load().Config)}
    out = dict(spec.presets.get(preset, {}))
    for key, value in options:
        target, _, name = key.rpartition(".")
        if (target == model) or (not target and name in known):
            out[name] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="*", default=list(TASKS))
    ap.add_argument("--models", nargs="*", default=["logreg", "sims"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="cap epochs (default: method's own early stopping)")
    ap.add_argument("--json", help="also write rows to this JSON file")
    ap.add_argument("--option", action="append", default=[], metavar="[MODEL.]KEY=JSON",
                    help="model option, e.g. sims.monitor='\"valid_loss\"' (ablations); without MODEL. it applies to "
                         "every model that has the option")
    ap.add_argument("--preset", default="default", help="each model's registry preset (fast/default/thorough)")
    ap.add_argument("--keep", help="keep the run folders here (default: a temporary folder)")
    ap.add_argument("--ensemble", nargs="*", metavar="MODEL",
                    help="also combine these models' runs of each task and seed (as 'scapp ensemble' does) and score "
                         "the ensemble; runs not trained in this call are looked up in --keep")
    a = ap.parse_args()
    options = [(o.split("=", 1)[0], json.loads(o.split("=", 1)[1])) for o in a.option]
    print(f"# scapp accuracy benchmark — {machine()}; preset {a.preset}" + (f"; options {options}" if options else ""))
    rows = []

    def show(row: dict) -> None:
        rows.append(row)
        print(f"  {row['task']:16s} {row['model']:10s} seed {row['seed']}: macro-F1 {row['macro_f1']:.3f}  median-F1 "
              f"{row['median_f1']:.3f}  bal-acc {row['balanced_acc']:.3f}  ({row['epochs']} epochs, best "
              f"{row['best_epoch']}, {row['train_s']} s)  smallest: {row['smallest']}"
              + (f"  weights: {row['weights']}" if row.get("weights") else ""), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for task in a.tasks:
            for seed in a.seeds:
                done = {}
                for model in a.models:
                    show(run_one(task, model, seed, a.epochs, work, model_options(model, a.preset, options)))
                    done[model] = Path(rows[-1]["run"])
                if a.ensemble:
                    members = [done[m] if m in done else work / run_name(task, m, seed) for m in a.ensemble]
                    show(ensemble_one(task, seed, members, work))
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
        print(f"| {task} | {model} | {int(r.n)} | {r.macro_f1:.3f}{sd(r.macro_f1_sd)} | {r.median_f1:.3f}{sd(r.median_f1_sd)}"
              f" | {r.balanced_acc:.3f}{sd(r.balanced_acc_sd)} | {r.smallest3:.3f} | {r.train_s:.0f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
