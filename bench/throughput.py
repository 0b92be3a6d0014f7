"""SIMS training and prediction throughput and peak memory, against the reference loop.

For each size (real pbmc3k cells resampled with binomial thinning, 2,000 genes):
* scapp: ``SIMSModel.fit`` (data on the device, large batches, batching by index),
  training cells/s over fixed epochs; prediction of every cell with explain
  aggregates (one pass), cells/s and seconds; peak RSS of the process.
* reference: the same ``pytorch_tabnet`` TabNet trained the way the SIMS
  reference does: a ``DataLoader`` over a dense array, batch 32, the library's
  own forward (dense identity group matrix, sort-based sparsemax).

Each measurement runs in a fresh subprocess so peak RSS is its own.

    python bench/throughput.py                 # 10k and 100k on this machine
    python bench/throughput.py --sizes 1000000 --device cuda
    python bench/throughput.py --compare-with ../before   # also time another checkout's scapp (engine cost)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import DATA, machine  # noqa: E402


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _data(n: int):
    import anndata as ad
    import numpy as np

    from scapp.data.demo import resample_cells
    from scapp.data.preprocess import PreprocessConfig, Recipe

    src = ad.read_h5ad(DATA / "pbmc3k_seurat_hvg2000.h5ad")
    big = resample_cells(src, n, seed=0)
    classes = sorted(big.obs["cell_type"].astype(str).unique())
    y = big.obs["cell_type"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy().astype(np.int64)
    genes = big.var_names.tolist()
    recipe = Recipe.fit(big.X, genes, PreprocessConfig(), train_idx=np.arange(n))
    return big.X, recipe, y, classes


def worker_scapp(n: int, device: str, epochs: int) -> dict:
    import numpy as np

    from scapp.models.base import FitData
    from scapp.models.sims import SIMSConfig, SIMSModel

    try:
        from scapp.train.trainer import Trainer as driver  # the shared engine
    except ImportError:  # an older checkout (--compare-with): the model's own loop
        from scapp.models.base import Progress as driver

    counts, recipe, y, classes = _data(n)
    t0 = time.perf_counter()
    Xp = recipe.transform(counts)
    prep_s = time.perf_counter() - t0
    n_val = max(n // 10, 100)
    rng = np.random.default_rng(0)
    perm = rng.permutation(n)
    va, tr = perm[:n_val], perm[n_val:]
    cfg = SIMSConfig(max_epochs=epochs, early_stopping_patience=10**6)
    model = SIMSModel(cfg, n_features=Xp.shape[1], classes=classes, device=device)
    t0 = time.perf_counter()
    model.fit(FitData(Xp[tr], y[tr]), FitData(Xp[va], y[va]), driver())
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
    fit_s = time.perf_counter() - t0
    # prediction as a user runs it: counts -> recipe -> logits + embedding + explain aggregates
    t0 = time.perf_counter()
    Xq = recipe.transform(counts)
    logits, emb, expl = model.infer(Xq)
    pred_s = time.perf_counter() - t0
    acc = float((logits.argmax(1) == y).mean())
    return {"impl": "scapp", "n_cells": n, "train_cells_per_s": len(tr) * epochs / fit_s, "fit_s": fit_s,
            "epochs": epochs, "batch_size": getattr(model, "batch_size_used", None) or model.fit_info["batch_size"], "predict_s": pred_s,
            "predict_cells_per_s": n / pred_s, "preprocess_s": prep_s, "peak_rss_gib": _peak_rss_gib(),
            "train_accuracy_resampled": acc}


def worker_reference(n: int, device: str, batches: int) -> dict:
    """The reference loop: DataLoader over a dense array, batch 32, library forward."""
    import numpy as np
    import torch
    from pytorch_tabnet.tab_network import TabNet
    from pytorch_tabnet.utils import create_group_matrix
    from torch.utils.data import DataLoader, Dataset

    counts, recipe, y, classes = _data(n)
    X = recipe.transform(counts).toarray()  # the reference holds a dense array

    class Cells(Dataset):
        def __len__(self):
            return X.shape[0]

        def __getitem__(self, i):
            x = X[i]
            return x / max(np.linalg.norm(x), 1e-12), y[i]  # the reference loader L2-normalizes each cell

    dev = torch.device(device)
    D = X.shape[1]
    net = TabNet(D, len(classes), n_d=8, n_a=8, n_steps=3, virtual_batch_size=128, momentum=0.02,
                 group_attention_matrix=create_group_matrix([], D).to(dev)).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=0.01, weight_decay=1e-3)
    loader = DataLoader(Cells(), batch_size=32, shuffle=True, drop_last=True)
    net.train()
    seen, t0 = 0, None
    for i, (xb, yb) in enumerate(loader):
        if i == 5:  # warm-up batches excluded
            t0, seen = time.perf_counter(), 0
        xb, yb = xb.float().to(dev), yb.to(dev)
        out, m_loss = net(xb)
        loss = torch.nn.functional.cross_entropy(out, yb) - 1e-3 * m_loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        seen += len(yb)
        if i >= batches + 5:
            break
    if device == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    return {"impl": "reference (batch 32, DataLoader)", "n_cells": n, "train_cells_per_s": seen / secs,
            "batches_timed": batches, "peak_rss_gib": _peak_rss_gib()}


def _spawn(args: list[str], root: str | None = None) -> dict:
    """One measurement in a fresh process; ``root``: import scapp from that checkout instead of this one."""
    extra = ["--scapp-root", root] if root else []
    out = subprocess.run([sys.executable, __file__, *args, *extra], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="*", type=int, default=[10_000, 100_000])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--ref-batches", type=int, default=150)
    ap.add_argument("--worker", choices=["scapp", "reference"])
    ap.add_argument("--n", type=int)
    ap.add_argument("--compare-with", help="another scapp checkout to time beside this one (same run, same machine)")
    ap.add_argument("--scapp-root", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.scapp_root:
        sys.path.insert(0, str(Path(a.scapp_root).resolve()))
    if a.worker == "scapp":
        print(json.dumps(worker_scapp(a.n, a.device, a.epochs)))
        return
    if a.worker == "reference":
        print(json.dumps(worker_reference(a.n, a.device, a.ref_batches)))
        return
    import torch

    print(f"# scapp SIMS throughput — {machine()}, torch threads {torch.get_num_threads()}, device {a.device}")
    print("| cells | scapp train cells/s | reference train cells/s | speed-up | batch | predict 100% cells (s) "
          "| predict cells/s | peak RSS scapp (GiB) | peak RSS reference (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in a.sizes:
        s = _spawn(["--worker", "scapp", "--n", str(n), "--device", a.device, "--epochs", str(a.epochs)])
        r = _spawn(["--worker", "reference", "--n", str(n), "--device", a.device, "--ref-batches", str(a.ref_batches)])
        print(f"| {n:,} | {s['train_cells_per_s']:,.0f} | {r['train_cells_per_s']:,.0f} | "
              f"{s['train_cells_per_s'] / r['train_cells_per_s']:.1f}× | {s['batch_size']} | {s['predict_s']:.1f} | "
              f"{s['predict_cells_per_s']:,.0f} | {s['peak_rss_gib']:.2f} | {r['peak_rss_gib']:.2f} |", flush=True)
        print(f"    detail: {json.dumps(s)}", flush=True)
        if a.compare_with:
            o = _spawn(["--worker", "scapp", "--n", str(n), "--device", a.device, "--epochs", str(a.epochs)],
                       root=a.compare_with)
            print(f"    {a.compare_with}: train {o['train_cells_per_s']:,.0f} cells/s, predict {o['predict_s']:.1f} s; "
                  f"this checkout / that one: train {s['train_cells_per_s'] / o['train_cells_per_s']:.3f}, predict "
                  f"{o['predict_s'] / s['predict_s']:.3f}", flush=True)


if __name__ == "__main__":
    main()
