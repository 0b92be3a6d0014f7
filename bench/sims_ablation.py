"""SIMS ablations on one task: fit SIMS with some options over several seeds and print each seed's test macro-F1.

Lighter than ``bench/accuracy.py`` (no run folder, no calibration, explanations or reference markers): the
split, recipe and early stopping are the engine's (``stratified_split``, ``Recipe``, ``SIMSModel.fit`` through
the ``Trainer``), the seed sets both the split and the model, and torch uses ``NT`` threads (default 1, so two
ablations can share a 2-core machine). Issue 10's SIMS choices were measured with it (bench/RESULTS.md).

    python bench/sims_ablation.py pbmc3k-rare '{"batch_size": 64, "n_d": 8, "n_a": 8}' 0 1 2 3 4
    python bench/sims_ablation.py pbmc4k '{"monitor": "valid_balanced_accuracy", "pp": {"min_gene_cells": 3}}' 0 1 2

The JSON holds SIMSConfig options; its ``pp`` entry holds PreprocessConfig options (default: none, i.e. all
genes; SIMS's own default adds ``min_gene_cells=3``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import DATA, machine  # noqa: E402
from bench.accuracy import TASKS, task_data  # noqa: E402


def main() -> None:
    import anndata as ad
    import torch

    from scapp.data.align import align_genes
    from scapp.data.preprocess import PreprocessConfig, Recipe
    from scapp.data.split import stratified_split
    from scapp.evaluate.metrics import classification_metrics
    from scapp.models.base import FitData
    from scapp.models.sims import SIMSConfig, SIMSModel
    from scapp.train.trainer import Trainer

    torch.set_num_threads(int(os.environ.get("NT", "1")))
    task, opts = sys.argv[1], json.loads(sys.argv[2])
    seeds = [int(x) for x in sys.argv[3:]] or [0, 1, 2]
    spec = TASKS[task]
    print(f"# {machine()}; torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        a = ad.read_h5ad(task_data(task, Path(os.environ.get("SCAPP_BENCH_WORK", tmp))))
    lab = a.obs[spec["label"]].astype("category")
    y = lab.cat.codes.to_numpy().astype(np.int64)
    classes = list(lab.cat.categories)
    cross = "query" in spec
    pp = opts.pop("pp", {})
    res = []
    for seed in seeds:
        s = stratified_split(y, valid=0.15 if cross else 0.1, test=0.15 if cross else 0.2, seed=seed)
        rec = Recipe.fit(a.X, list(a.var_names), PreprocessConfig(**pp), train_idx=s.train)
        X = rec.transform(a[:, rec.genes].X)
        m = SIMSModel(SIMSConfig(**{**opts, "seed": seed}), n_features=X.shape[1], classes=classes)
        tr = Trainer()
        t0 = time.time()
        m.fit(FitData(X[s.train], y[s.train]), FitData(X[s.valid], y[s.valid]), tr)
        if cross:  # score on the query, in its vocabulary
            q = ad.read_h5ad(DATA / spec["query"])
            counts, _ = align_genes(q.X, q.var, rec.genes)
            pred = m.predict_logits(rec.transform(counts)).argmax(1)
            truth = q.obs[spec["label"]].astype(str).to_numpy()
            vocab = list(classes)
            if "query_map" in spec:
                mapped = [spec["query_map"][c] for c in vocab]
                vocab = list(dict.fromkeys(mapped))
                pred = np.array([vocab.index(x) for x in mapped])[pred]
            known = np.isin(truth, vocab) & (truth != spec["query_drop"])
            te = classification_metrics(np.array([vocab.index(t) for t in truth[known]]), pred[known], vocab)
        else:
            te = classification_metrics(y[s.test], m.predict_logits(X[s.test]).argmax(1), classes)
        res.append(te["macro_f1"])
        print(f"  seed {seed}: test macro-F1 {te['macro_f1']:.3f}  bal-acc {te['balanced_accuracy']:.3f}  "
              f"{len(tr.history)} epochs, best {tr.best_epoch}, {time.time() - t0:.0f} s", flush=True)
    print(f"{task} {json.dumps(opts)} pp={pp}: {np.mean(res):.3f} ± {np.std(res):.3f}  {[round(r, 3) for r in res]}")


if __name__ == "__main__":
    main()
