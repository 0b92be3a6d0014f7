"""ZiPo (issue 12, "Must show"): the shape of the paper's figures on our data, and speed / memory.

Every training run here works on the same corrupted data: 10 % of each cell's non-zero counts (at least
one) are set to zero ("masked") and kept aside. A run trains on 70 % of the cells, stops early on 15 %,
and is scored on the other 15 % (test cells, never seen). From each run we keep, in one JSON line:

* **sparsity** (paper Fig. 10): the fraction of first-layer weights zeroed at δ = 1e-4 of their neuron's
  max, the fraction of relative weights above 0.01 (before pruning), and the validation NLL / rate-MSE
  before and after pruning;
* **zero inflation** (Fig. 8): the mean zero-inflation probability z and the NLL on validation cells;
* **denoising by masking**: on the masked entries of the test cells, the Poisson NLL of the held-out
  counts under the predicted rate ``l·μ`` (and under ``(1 − z)·l·μ``), and the Pearson correlation of
  ``log1p(count)`` with ``log(rate)``; beside the no-model baseline, library-size-scaled gene means
  (``L_c · share_g``, shares from the training cells; L_c the cell's observed, masked total);
* **library size**: correlation of predicted with observed library size on the test cells (log scale,
  and linear).

Configurations (on top of a base network; ``--base fast`` is the CPU preset 512-256-128 → 64):
``zip`` (α_w = α_z = 0.1), ``zip_aw0`` / ``zip_aw0.01`` / ``zip_aw1`` (α_w), ``zip_az0`` / ``zip_az10`` (α_z), ``zinb``,
``dca_like`` (the registry preset), and the one-seed ablations ``abl_decoder2`` (a hidden layer of 128 before
the heads) and ``abl_noresid`` (no residual projections).

    python bench/zipo.py runs --data pancreas --seeds 0 1 2            # appends to bench/results/zipo_pancreas.jsonl
    python bench/zipo.py runs --data pbmc4k --seeds 0 --configs zip zinb dca_like
    python bench/zipo.py report --data pancreas pbmc4k                 # tables from the kept runs
    python bench/zipo.py scale --sizes 10000 100000                    # training cells/s and peak RSS (subprocesses)

Runs already in the results file (same data, config, seed and epoch cap) are skipped, so an interrupted
benchmark resumes. Wrap heavy calls in the shared CPU lock on the shared machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import DATA, machine

RESULTS = Path(__file__).resolve().parent / "results"
FILES = {"pbmc4k": "pbmc4k_10x_soupx.h5ad", "pancreas": "mouse_pancreas_endocrinogenesis.h5ad"}
CONFIGS: dict[str, dict[str, Any]] = {
    "zip": {},
    "zip_aw0": {"alpha_w": 0.0},
    "zip_aw0.01": {"alpha_w": 0.01},
    "zip_aw1": {"alpha_w": 1.0},
    "zip_az0": {"alpha_z": 0.0},
    "zip_az10": {"alpha_z": 10.0},
    "zinb": {"likelihood": "zinb"},
    "dca_like": "dca_like",  # type: ignore[dict-item]  # the registry preset, not on top of the base
    "abl_decoder2": {"decoder_hidden": [128]},
    "abl_noresid": {"residual": False},
}
MAIN = ["zip", "zip_aw0", "zip_aw0.01", "zip_aw1", "zip_az0", "zip_az10", "zinb", "dca_like"]
ABLATIONS = ["abl_decoder2", "abl_noresid"]


# -- data ---------------------------------------------------------------------------------------------------
def load(name: str):
    import anndata as ad
    import scipy.sparse as sp

    a = ad.read_h5ad(DATA / FILES[name])
    X = sp.csr_matrix(a.X, dtype=np.float32)
    X.sort_indices()
    return X, a.var_names.astype(str).tolist()


def mask_nonzero(X, frac: float = 0.1, seed: int = 0):
    """Zero ``frac`` of each cell's non-zero entries (at least one where a cell has ≥ 2); returns the masked
    matrix and the held-out entries (row, col, count)."""
    rng = np.random.default_rng(seed)
    Xm = X.copy()
    nnz = np.diff(X.indptr)
    k = np.where(nnz >= 2, np.maximum(1, np.round(frac * nnz)), 0).astype(np.int64)
    # a random key per entry; an entry is held out when its rank within its row is below k
    key = rng.random(X.nnz)
    row = np.repeat(np.arange(X.shape[0]), nnz)
    order = np.lexsort((key, row))
    rank = np.empty(X.nnz, np.int64)
    rank[order] = np.arange(X.nnz) - np.repeat(X.indptr[:-1], nnz)
    held = rank < k[row]
    rows, cols, vals = row[held], X.indices[held], X.data[held].copy()
    Xm.data[held] = 0
    Xm.eliminate_zeros()
    return Xm, rows, cols, vals


def split(n: int, seed: int):
    rng = np.random.default_rng(seed)
    p = rng.permutation(n)
    a, b = int(0.7 * n), int(0.85 * n)
    return np.sort(p[:a]), np.sort(p[a:b]), np.sort(p[b:])


# -- one run ------------------------------------------------------------------------------------------------
def config_for(name: str, base: str, seed: int, cap: dict[str, Any]) -> dict[str, Any]:
    from scapp.models.registry import get_spec

    presets = get_spec("zipo").presets
    over = CONFIGS[name]
    cfg = dict(presets[over]) if isinstance(over, str) else {**presets[base], **over}
    return {**cfg, **cap, "seed": seed}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def heldout(rates_at: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    """Poisson NLL of the held-out counts under the predicted rates, and correlation on the log scale."""
    from scipy.special import gammaln

    m = np.maximum(rates_at.astype(np.float64), 1e-12)
    x = counts.astype(np.float64)
    return {"poisson_nll": float(np.mean(m - x * np.log(m) + gammaln(x + 1))),
            "pearson_log": _pearson(np.log1p(x), np.log(m))}


def run_one(data: str, name: str, seed: int, base: str, cap: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    import torch

    from scapp.models.base import FitData
    from scapp.models.zipo import ZiPoConfig, ZiPoModel
    from scapp.train.trainer import Trainer

    torch.manual_seed(seed)
    X, _ = load(data)
    Xm, rows, cols, vals = mask_nonzero(X, 0.1, seed=seed)
    tr, va, te = split(X.shape[0], seed)
    cfg_d = config_for(name, base, seed, cap)
    model = ZiPoModel(ZiPoConfig(**cfg_d), n_features=X.shape[1], classes=[], device=device)
    events: list[dict[str, Any]] = []
    t0 = time.monotonic()
    model.fit(FitData(Xm[tr], np.full(tr.size, -1)), FitData(Xm[va], np.full(va.size, -1)), Trainer(events.append))
    fit_s = time.monotonic() - t0
    hist = [e for e in events if "valid_nll" in e]
    best = next(e for e in hist if e["epoch"] == hist[-1]["best_epoch"]) if hist else {}
    # test cells: rates, zero probabilities and library at the held-out entries
    pos = {c: i for i, c in enumerate(te)}
    sel = np.isin(rows, te)
    r_rows, r_cols, r_vals = np.array([pos[r] for r in rows[sel]]), cols[sel], vals[sel]
    rate_at = np.empty(r_vals.size, np.float32)
    rate_nz_at = np.empty(r_vals.size, np.float32)
    lib_pred, lib_obs = [], []
    B = 256
    for i in range(0, te.size, B):
        d = model.denoise_batch(Xm[te[i : i + B]])
        m = (r_rows >= i) & (r_rows < i + B)
        rate_at[m] = d.rates[r_rows[m] - i, r_cols[m]]
        z = d.zero_prob[r_rows[m] - i, r_cols[m]] if d.zero_prob is not None else 0.0
        rate_nz_at[m] = (1 - z) * rate_at[m]
        lib_pred.append(d.library)
        lib_obs.append(np.asarray(Xm[te[i : i + B]].sum(1)).ravel())
    lp, lo = np.concatenate(lib_pred), np.concatenate(lib_obs)
    pr = model.fit_info.get("pruning") or {}
    out = {"data": data, "config": name, "seed": seed, "base": base, "cap": cap, "options": cfg_d,
           "lr": model.config.learning_rate,
           "fit_s": round(fit_s, 1), "epochs": len(hist), "best_epoch": hist[-1]["best_epoch"] if hist else None,
           "s_per_epoch": round(float(np.median([e["epoch_s"] for e in hist])), 2) if hist else None,
           "valid_nll": best.get("valid_nll"), "valid_rate_mse": best.get("valid_rate_mse"),
           "valid_zero_prob": best.get("valid_zero_prob"),
           "sparsity": pr.get("sparsity"), "frac_above_0.01": pr.get("frac_above_0.01"),
           "frac_above_1e-5": pr.get("frac_above_1e-5"),
           "nll_before": pr.get("nll_before"), "nll_after": pr.get("nll_after"),
           "mse_before": pr.get("rate_mse_before"), "mse_after": pr.get("rate_mse_after"),
           "genes_per_neuron_median": pr.get("genes_per_neuron_median"),
           "n_heldout": int(r_vals.size), "heldout": heldout(rate_at, r_vals),
           "heldout_nonzero_rate": heldout(rate_nz_at, r_vals),
           "library_corr_log": _pearson(np.log(np.maximum(lo, 1)), np.log(lp)), "library_corr": _pearson(lo, lp),
           "n_genes": X.shape[1], "n_cells": X.shape[0], "machine": machine()}
    return out


def baseline(data: str, seed: int) -> dict[str, Any]:
    """Library-size-scaled gene means: ``L_c · share_g`` (shares from the training cells)."""
    X, _ = load(data)
    Xm, rows, cols, vals = mask_nonzero(X, 0.1, seed=seed)
    tr, _, te = split(X.shape[0], seed)
    share = np.asarray(Xm[tr].sum(0), dtype=np.float64).ravel() / Xm[tr].sum()
    lib = np.asarray(Xm.sum(1), dtype=np.float64).ravel()
    sel = np.isin(rows, te)
    rate_at = lib[rows[sel]] * share[cols[sel]]
    return {"data": data, "config": "baseline", "seed": seed, "n_heldout": int(sel.sum()),
            "heldout": heldout(rate_at, vals[sel]), "heldout_nonzero_rate": heldout(rate_at, vals[sel])}


def results_path(data: str) -> Path:
    return RESULTS / f"zipo_{data}.jsonl"


def kept(data: str) -> list[dict[str, Any]]:
    p = results_path(data)
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []


def cmd_runs(a: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    cap = {"max_epochs": a.max_epochs, "early_stopping_patience": a.patience}
    for data in a.data:
        done = {(r["config"], r["seed"], json.dumps(r.get("cap"), sort_keys=True), r.get("base")) for r in kept(data)}
        for seed in a.seeds:
            if ("baseline", seed, "null", None) not in done:
                _append(data, baseline(data, seed))
            for name in a.configs:
                if name in ABLATIONS and seed != a.seeds[0]:
                    continue
                if (name, seed, json.dumps(cap, sort_keys=True), a.base) in done:
                    continue
                r = run_one(data, name, seed, a.base, cap, a.device)
                _append(data, r)
                print(f"{data} {name} seed {seed}: {r['epochs']} epochs in {r['fit_s']:.0f} s, valid NLL "
                      f"{r['valid_nll']:.4f}, held-out NLL {r['heldout']['poisson_nll']:.3f}, sparsity "
                      f"{r['sparsity'] if r['sparsity'] is not None else float('nan'):.3f}", flush=True)


def _append(data: str, rec: dict[str, Any]) -> None:
    with open(results_path(data), "a") as f:
        f.write(json.dumps(rec, default=float) + "\n")


# -- report -------------------------------------------------------------------------------------------------
def _ms(vals: list[float | None], fmt: str = "{:.3f}") -> str:
    v = np.array([x for x in vals if x is not None], dtype=np.float64)
    if v.size == 0:
        return "–"
    if v.size == 1:
        return fmt.format(v[0])
    return f"{fmt.format(v.mean())} ± {fmt.format(v.std(ddof=1))}"


def cmd_report(a: argparse.Namespace) -> None:
    for data in a.data:
        recs = kept(data)
        if not recs:
            print(f"(no runs kept for {data})")
            continue
        by: dict[str, list[dict[str, Any]]] = {}
        for r in recs:
            by.setdefault(r["config"], []).append(r)
        any_run = next(r for r in recs if r["config"] != "baseline")
        print(f"\n### {data}: {any_run['n_cells']:,} cells × {any_run['n_genes']:,} genes; base network "
              f"`{any_run['base']}`, epoch cap {any_run['cap']}; {any_run['machine']}\n")
        def g(c: str, k: str, by: dict = by) -> list:
            return [r.get(k) for r in by.get(c, [])]

        def sub(c: str, k: str, kk: str, by: dict = by) -> list:
            return [(r.get(k) or {}).get(kk) for r in by.get(c, [])]

        print("Sparsity (first layer, δ = 1e-4) vs α_w  — mean ± sd over seeds")
        print("| α_w | seeds | zeroed at 1e-4 | rel. weights > 0.01 | valid NLL before → after pruning | "
              "valid rate-MSE before → after | epochs |")
        print("|---|---|---|---|---|---|---|")
        for c, aw in (("zip_aw0", 0), ("zip_aw0.01", 0.01), ("zip", 0.1), ("zip_aw1", 1)):
            if c in by:
                print(f"| {aw} | {len(by[c])} | {_ms(g(c, 'sparsity'))} | {_ms(g(c, 'frac_above_0.01'))} | "
                      f"{_ms(g(c, 'nll_before'), '{:.4f}')} → {_ms(g(c, 'nll_after'), '{:.4f}')} | "
                      f"{_ms(g(c, 'mse_before'))} → {_ms(g(c, 'mse_after'))} | {_ms(g(c, 'epochs'), '{:.0f}')} |")
        print("\nZero inflation vs α_z")
        print("| α_z | seeds | mean z (valid) | valid NLL | valid rate-MSE |")
        print("|---|---|---|---|---|")
        for c, az in (("zip_az0", 0), ("zip", 0.1), ("zip_az10", 10)):
            if c in by:
                print(f"| {az} | {len(by[c])} | {_ms(g(c, 'valid_zero_prob'))} | {_ms(g(c, 'valid_nll'), '{:.4f}')} | "
                      f"{_ms(g(c, 'valid_rate_mse'))} |")
        print("\nDenoising by masking (10 % of each test cell's non-zero counts held out) and library size")
        print("| model | seeds | held-out Poisson NLL, rate l·μ | … rate (1−z)·l·μ | Pearson log1p(x) ~ log rate | "
              "library corr (log) | library corr | s/epoch | epochs |")
        print("|---|---|---|---|---|---|---|---|---|")
        for c in ("baseline", "zip", "zinb", "dca_like", *ABLATIONS):
            if c in by:
                lib = "–" if c == "baseline" else _ms(g(c, "library_corr_log"))
                lib2 = "–" if c == "baseline" else _ms(g(c, "library_corr"))
                print(f"| {c} | {len(by[c])} | {_ms(sub(c, 'heldout', 'poisson_nll'))} | "
                      f"{_ms(sub(c, 'heldout_nonzero_rate', 'poisson_nll'))} | {_ms(sub(c, 'heldout', 'pearson_log'))} | "
                      f"{lib} | {lib2} | {_ms(g(c, 's_per_epoch'), '{:.1f}')} | {_ms(g(c, 'epochs'), '{:.0f}')} |")


# -- scale ----------------------------------------------------------------------------------------------------
def worker_scale(n: int, epochs: int, device: str, base: str) -> dict[str, Any]:
    import anndata as ad

    from scapp.data.demo import resample_cells
    from scapp.models.base import FitData
    from scapp.models.registry import get_spec
    from scapp.models.zipo import ZiPoConfig, ZiPoModel
    from scapp.train.trainer import Trainer

    src = ad.read_h5ad(DATA / FILES["pbmc4k"])
    big = resample_cells(src, n, seed=0)
    X = big.X.tocsr()
    del big, src
    cfg = ZiPoConfig(**{**get_spec("zipo").presets[base], "max_epochs": epochs, "prune_delta": None})
    model = ZiPoModel(cfg, n_features=X.shape[1], classes=[], device=device)
    ev: list[dict[str, Any]] = []
    t0 = time.monotonic()
    model.fit(FitData(X, np.full(n, -1)), FitData(X[:0], np.zeros(0, np.int64)), Trainer(ev.append))
    fit_s = time.monotonic() - t0
    ep = [e["epoch_s"] for e in ev if "epoch_s" in e]
    t1 = time.monotonic()
    model.embed(X[: min(n, 20_000)])
    emb_s = time.monotonic() - t1
    return {"n_cells": n, "n_genes": X.shape[1], "nnz": int(X.nnz), "epochs": len(ep), "fit_s": fit_s,
            "epoch_s": ep, "train_cells_per_s": n / float(np.median(ep)) if ep else None,
            "embed_cells_per_s": min(n, 20_000) / emb_s, "batch_size": model.fit_info.get("batch_size"),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "device": device,
            "base": base, "machine": machine()}


def cmd_scale(a: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    for n in a.sizes:
        # as a module from the repository root: run as a script, bench/ would come first on sys.path and a
        # bench script named like a standard module would shadow it
        cmd = [sys.executable, "-m", "bench.zipo", "_scale_worker", str(n), str(a.epochs), a.device, a.base]
        p = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1])
        if p.returncode != 0:
            print(p.stderr[-3000:])
            continue
        rec = json.loads(p.stdout.strip().splitlines()[-1])
        with open(RESULTS / "zipo_scale.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"{n:,} cells × {rec['n_genes']:,} genes ({a.base}, {a.device}): {rec['train_cells_per_s']:.0f} "
              f"training cells/s (batch {rec['batch_size']}), embed {rec['embed_cells_per_s']:.0f} cells/s, peak RSS "
              f"{rec['peak_rss_gib']:.2f} GiB", flush=True)


def cmd_denoise_scale(a: argparse.Namespace) -> None:
    """``scapp denoise`` of resampled pbmc4k cells with a run trained on pbmc4k: seconds, peak RSS, file size.

    The output's two dense layers are far larger than the memory the command uses when it streams."""
    import tempfile

    import anndata as ad

    from scapp.data.demo import resample_cells

    src = ad.read_h5ad(DATA / FILES["pbmc4k"])
    for n in a.sizes:
        with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
            inp, out = Path(tmp) / "in.h5ad", Path(tmp) / "out.h5ad"
            resample_cells(src, n, seed=0).write_h5ad(inp)
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            t0 = time.monotonic()
            p = subprocess.run([sys.executable, "-m", "scapp", "denoise", a.run, str(inp), "--out", str(out)],
                               capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1])
            secs = time.monotonic() - t0
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            if p.returncode != 0:
                print(p.stderr[-2000:])
                continue
            rec = {"n_cells": n, "seconds": secs, "peak_rss_gib": peak / 2**20, "grew": peak > before,
                   "out_gib": out.stat().st_size / 2**30, "machine": machine()}
            with open(RESULTS / "zipo_denoise_scale.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"denoise {n:,} cells × 33,694 genes: {secs:.0f} s, peak RSS {rec['peak_rss_gib']:.2f} GiB, "
                  f"output {rec['out_gib']:.2f} GiB", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_scale_worker":
        n, epochs, device, base = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
        print(json.dumps(worker_scale(n, epochs, device, base)))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("runs")
    r.add_argument("--data", nargs="+", default=["pancreas"], choices=list(FILES))
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--configs", nargs="+", default=MAIN + ABLATIONS, choices=list(CONFIGS))
    r.add_argument("--base", default="fast", choices=["fast", "default", "thorough"])
    r.add_argument("--max-epochs", type=int, default=60)
    r.add_argument("--patience", type=int, default=10)
    r.add_argument("--device", default="cpu")
    r.set_defaults(func=cmd_runs)
    rep = sub.add_parser("report")
    rep.add_argument("--data", nargs="+", default=["pancreas", "pbmc4k"], choices=list(FILES))
    rep.set_defaults(func=cmd_report)
    s = sub.add_parser("scale")
    s.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    s.add_argument("--epochs", type=int, default=1)
    s.add_argument("--device", default="cpu")
    s.add_argument("--base", default="fast", choices=["fast", "default", "thorough"])
    s.set_defaults(func=cmd_scale)
    dn = sub.add_parser("denoise-scale")
    dn.add_argument("--run", required=True, help="a ZiPo run trained on pbmc4k (all genes)")
    dn.add_argument("--sizes", nargs="+", type=int, default=[10_000])
    dn.add_argument("--tmp", default=None, help="folder for the temporary input and output files")
    dn.set_defaults(func=cmd_denoise_scale)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
