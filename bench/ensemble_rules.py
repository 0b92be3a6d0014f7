"""Which weighting rule should an ensemble use? Scores several rules on runs that ``bench/accuracy.py --keep``
left behind, without retraining anything.

For every task and seed it reads the member runs (same split), computes each rule's weights on the validation
cells from the members' calibrated probabilities, and scores the weighted mean on the test cells (or, for a
cross-dataset task, on the query, predicted by each member as annotation does):

* ``balanced-nll`` — scapp's rule: lowest class-balanced log-loss on a 0.1 grid;
* ``nll`` — the same with every cell weighted equally;
* ``macro-f1`` — highest validation macro-F1 on the grid (ties: most even weights);
* ``equal`` — the plain mean;
* ``best-member`` — the member with the best validation macro-F1 alone.

    python bench/ensemble_rules.py --keep /tmp/runs --tasks pancreas bonemarrow --members logreg_hvg sims hydra
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import DATA, machine  # noqa: E402
from bench.accuracy import TASKS, run_name  # noqa: E402


def _query_truth(task: str, classes: list[str]) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """(query cells to score, their codes, the scored vocabulary, model class → scored class)."""
    import anndata as ad

    spec = TASKS[task]
    q = ad.read_h5ad(DATA / spec["query"], backed="r")
    truth = q.obs[spec["label"]].astype(str).to_numpy()
    mapped = [spec.get("query_map", {}).get(c, c) for c in classes]
    vocab = list(dict.fromkeys(mapped))
    known = np.isin(truth, vocab) & (truth != spec["query_drop"])
    y = np.array([vocab.index(t) for t in truth[known]])
    return known, y, vocab, np.array([vocab.index(m) for m in mapped])


def member_probas(task: str, runs_: list[Path]) -> dict:
    """Validation and scoring-set probabilities of each member (in the first member's class order)."""
    from scapp import runs

    stores = [runs.RunStore(r) for r in runs_]
    classes = stores[0].classes()
    cols = [f"p_{c}" for c in classes]
    preds = [s.predictions() for s in stores]
    split = preds[0]["split"].to_numpy()
    y = preds[0]["true"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    va = np.flatnonzero(split == "valid")
    out = {"classes": classes, "y_valid": y[va].astype(int),
           "valid": [p[cols].to_numpy(dtype=np.float64)[va] for p in preds]}
    if "query" in TASKS[task]:
        import anndata as ad

        from scapp.annotate import annotate, load_run

        q = ad.read_h5ad(DATA / TASKS[task]["query"])
        known, yq, vocab, to_vocab = _query_truth(task, classes)
        out["score"] = [annotate(load_run(r), q, explain=False).proba[classes].to_numpy(dtype=np.float64)[known]
                        for r in runs_]
        out["y_score"], out["vocab"], out["to_vocab"] = yq, vocab, to_vocab
    else:
        te = np.flatnonzero(split == "test")
        out["score"] = [p[cols].to_numpy(dtype=np.float64)[te] for p in preds]
        out["y_score"], out["vocab"], out["to_vocab"] = y[te].astype(int), classes, np.arange(len(classes))
    return out


def rule_weights(rule: str, valid: list[np.ndarray], y: np.ndarray, classes: list[str]) -> np.ndarray:
    from scapp.evaluate.metrics import classification_metrics
    from scapp.models.ensemble import choose_weights, simplex_grid

    n = len(valid)
    grid = simplex_grid(n, 0.1)
    spread = np.abs(grid - 1 / n).sum(1)
    stack = np.stack(valid)
    if rule == "balanced-nll":
        return choose_weights(valid, y)[0]
    if rule == "equal":
        return np.full(n, 1 / n)
    if rule == "nll":
        s = [float(np.mean(-np.log(np.clip(np.tensordot(w, stack, 1)[np.arange(len(y)), y], 1e-12, 1)))) for w in grid]
        return grid[np.lexsort((spread, np.round(s, 9)))[0]]
    f1 = lambda p: classification_metrics(y, p.argmax(1), classes)["macro_f1"]  # noqa: E731
    if rule == "macro-f1":
        s = [-f1(np.tensordot(w, stack, 1)) for w in grid]
        return grid[np.lexsort((spread, np.round(s, 9)))[0]]
    if rule == "best-member":
        return np.eye(n)[int(np.argmax([f1(v) for v in valid]))]
    raise ValueError(rule)


RULES = ("balanced-nll", "nll", "macro-f1", "equal", "best-member")


def main() -> None:
    from scapp.evaluate.metrics import classification_metrics

    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", required=True, help="the run folder bench/accuracy.py --keep wrote")
    ap.add_argument("--tasks", nargs="*", default=list(TASKS))
    ap.add_argument("--members", nargs="*", default=["logreg_hvg", "sims", "hydra"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    a = ap.parse_args()
    print(f"# ensemble weighting rules — {machine()}; members {a.members}")
    rows = []
    for task in a.tasks:
        for seed in a.seeds:
            runs_ = [Path(a.keep) / run_name(task, m, seed) for m in a.members]
            if not all(r.is_dir() for r in runs_):
                print(f"  {task} seed {seed}: member runs missing, skipped")
                continue
            d = member_probas(task, runs_)
            for rule in RULES:
                w = rule_weights(rule, d["valid"], d["y_valid"], d["classes"])
                p = np.tensordot(w, np.stack(d["score"]), 1)
                pred = d["to_vocab"][p.argmax(1)]
                m = classification_metrics(d["y_score"], pred, d["vocab"])
                rows.append({"task": task, "seed": seed, "rule": rule, "macro_f1": m["macro_f1"],
                             "balanced_acc": m["balanced_accuracy"],
                             "weights": " ".join(f"{x:.1f}" for x in w)})
                print(f"  {task:20s} seed {seed} {rule:13s} macro-F1 {m['macro_f1']:.3f}  weights {rows[-1]['weights']}",
                      flush=True)
    df = pd.DataFrame(rows)
    tab = df.pivot_table(index="task", columns="rule", values="macro_f1", aggfunc="mean", sort=False)[list(RULES)]
    print("\nmean test macro-F1 over seeds (members: " + ", ".join(a.members) + ")\n")
    print("| task | " + " | ".join(RULES) + " |")
    print("|---|" + "---|" * len(RULES))
    for task, r in tab.iterrows():
        print(f"| {task} | " + " | ".join(f"{v:.3f}" for v in r) + " |")
    print("| mean | " + " | ".join(f"{v:.3f}" for v in tab.mean()) + " |")


if __name__ == "__main__":
    main()
