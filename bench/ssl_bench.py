"""Self-supervised pretraining (issue 13, "Must show"): when does pretraining on unlabeled cells help?

Every arm of one task sees the same cells: a fixed split per seed, the same labelled cells, the same early-stopping
cells and the same test cells. No arm is tuned: each runs at its registry preset (``--preset``, default ``fast``)
with the same epoch caps; this is the "same tuning budget" (zero) for every arm.

Arms
    A      the ssl network (encoder + linear head) from scratch on the labelled cells.
    B      the same network fine-tuned from a masked-autoencoder pretraining on the task's own training cells
           (the whole training pool, labels ignored; a negative control: the primary study found no gain).
    C      pretrained on auxiliary unlabeled cells that exclude the test cells. PBMC: pbmc3k training cells + the
           half of pbmc4k that is not scored (the only other PBMC file in ../shared/data is the query itself, so
           it is split in two per seed: one half auxiliary, the other half test). Pancreas and bone marrow: not
           available: ../shared/data holds no other file of either tissue (the pancreas file's unspliced layer
           and the bone-marrow proteins are the same cells), and the report says so instead of faking one.
    Cp     (C′) pretrained on the training pool plus the unlabeled query / test cells (transductive).
    D_<X>  the frozen encoder of pretraining X (B, C, Cp): kNN (k = 5, 15) and a linear probe on its embedding
           of the labelled cells (``scapp.evaluate.probe``).
    E      logistic regression: the registry's ``logreg`` and ``logreg_hvg`` (arms ``E_logreg``, ``E_logreg_hvg``).
    F      SIMS from scratch (``F_sims``) and from a TabNet pretraining on the training pool (``F_sims_tabnet``).

Tasks
    label-eff   pancreas / bone marrow; per seed a stratified split 70 / 15 / 15 (pool / valid / test); of the
                pool a stratified fraction (1, 5, 10, 100 %; at least one cell per class; nested) keeps its
                labels, and the same fraction of the valid cells is the early-stopping set (what a lab with that
                few labels would have). Pretraining runs depend only on the seed (pool cells), so one serves all
                fractions.
    cross       pbmc3k → pbmc4k on ``cell_type_coarse``; pbmc3k split 85 / 15 (train / valid) per seed, pbmc4k
                split 50 / 50 per seed (auxiliary / test; its 'Unknown' cells never scored).
    mask-sweep  arm B and its frozen-encoder probes at mask rates {0.15, 0.3, 0.5, 0.75} on one task.
    throughput  ``scapp pretrain`` (a fresh process each) on 100k resampled cells: cells/s and peak RSS from the
                run's metrics.json.

Preprocessing statistics (genes kept, scaling) are fitted on the training pool's cells without labels; the ssl
arms keep genes detected in ≥ 3 pool cells (a pretraining run: ≥ 3 of its own cells), as ``scapp pretrain``.

(The issue names it ``bench/ssl.py``; that name would shadow the standard ``ssl`` module for any script run
from ``bench/``, so the benchmark is ``bench/ssl_bench.py``.)

    python bench/ssl_bench.py label-eff --data pancreas --seeds 0 1 2 --arms A B D E
    python bench/ssl_bench.py cross --seeds 0 1 2
    python bench/ssl_bench.py mask-sweep --data pancreas --seeds 0
    python bench/ssl_bench.py throughput --data pancreas --n 100000 --epochs 2
    python bench/ssl_bench.py report            # markdown tables of everything kept

Results are appended as JSON lines to ``bench/results/ssl_<task>.jsonl``; a run already kept (same task, data,
arm, seed, fraction, caps, mask rate) is skipped, so an interrupted benchmark resumes. Pretraining runs are kept
in ``--runs`` (default /tmp/scapp_ssl_bench) and reused when finished. Wrap heavy calls in the shared CPU lock.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import DATA, machine
from scapp.runs import RunStore

RESULTS = Path(os.environ.get("SSL_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
FILES = {"pancreas": ("mouse_pancreas_endocrinogenesis.h5ad", "cell_type"),
         "bonemarrow": ("bonemarrow_triana2021_abseq_multimodal.h5ad", "cell_type"),
         "pbmc3k": ("pbmc3k_seurat_hvg2000.h5ad", "cell_type_coarse"),
         "pbmc4k": ("pbmc4k_10x_soupx.h5ad", "cell_type_coarse")}
NO_AUX = {"pancreas": "no other mouse-pancreas file in ../shared/data",
          "bonemarrow": "no other bone-marrow file in ../shared/data"}
FRACTIONS = (0.01, 0.05, 0.1, 1.0)
MASK_RATES = (0.15, 0.3, 0.5, 0.75)
PRETRAINED = ("B", "C", "Cp")


# -- data and splits ------------------------------------------------------------------------------------------
@dataclass
class Data:
    X: Any  # counts, CSR float32
    var: Any
    obs_names: np.ndarray
    y: np.ndarray  # class codes, -1 unlabelled / not scored
    classes: list[str]
    path: str


def load(name: str, classes: list[str] | None = None) -> Data:
    """A file's counts and labels; ``classes`` given: codes in that vocabulary (others → -1)."""
    import anndata as ad
    import scipy.sparse as sp

    fname, label = FILES[name]
    a = ad.read_h5ad(DATA / fname)
    X = sp.csr_matrix(a.X, dtype=np.float32)
    lab = a.obs[label].astype(str).to_numpy()
    if classes is None:
        classes = sorted(set(lab) - {"Unknown", "nan"})
    code = {c: i for i, c in enumerate(classes)}
    y = np.array([code.get(v, -1) for v in lab], dtype=np.int64)
    return Data(X, a.var.copy(), a.obs_names.astype(str).to_numpy(), y, classes, str(DATA / fname))


def strat_split(y: np.ndarray, fracs: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Split the labelled cells of each class in the given proportions: every part after the first gets
    ``max(1, round(f · n))`` cells of a class, the first the rest (a class with fewer cells than parts stays in
    the first). Unlabelled cells (-1) go to the first part."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fracs]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = idx.size
        if c < 0 or n < len(fracs):
            parts[0].append(idx)
            continue
        sizes = [max(1, round(f * n)) for f in fracs[1:]]
        start = n - sum(sizes)
        parts[0].append(idx[:start])
        for p, k in zip(parts[1:], sizes):
            p.append(idx[start:start + k])
            start += k
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def label_subset(idx: np.ndarray, y: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """A stratified ``frac`` of cells ``idx`` (≥ 1 per class present); nested across fractions for one seed."""
    idx = idx[y[idx] >= 0]
    if frac >= 1.0:
        return idx
    rng = np.random.default_rng([seed, 99])
    keep = []
    for c in np.unique(y[idx]):
        ci = rng.permutation(idx[y[idx] == c])
        keep.append(ci[:max(1, round(frac * ci.size))])
    return np.sort(np.concatenate(keep))


@dataclass
class Setup:
    """One task at one seed: the reference (labelled pool / valid), the test cells, and the pretraining sets."""

    task: str
    data: str
    ref: Data
    pool: np.ndarray  # training pool (ref rows)
    valid: np.ndarray  # early-stopping cells (ref rows)
    test: Data
    test_idx: np.ndarray  # rows of ``test``
    pretrain_sets: dict[str, tuple[list[str], dict[str, list[str]]]]  # arm → (files, cells per file)
    unavailable: dict[str, str]


def setup(task: str, data: str, seed: int) -> Setup:
    if task == "cross":
        ref, q = load("pbmc3k"), None
        q = load("pbmc4k", ref.classes)
        pool, valid = strat_split(ref.y, (0.85, 0.15), seed)
        aux, test = strat_split(q.y, (0.5, 0.5), seed + 1000)  # Unknown cells: in aux (never scored)
        pool_ids = ref.obs_names[pool].tolist()
        sets = {"B": ([ref.path], {ref.path: pool_ids}),
                "C": ([ref.path, q.path], {ref.path: pool_ids, q.path: q.obs_names[aux].tolist()}),
                "Cp": ([ref.path, q.path], {ref.path: pool_ids})}
        return Setup(task, "pbmc3k_to_pbmc4k", ref, pool, valid, q, test[q.y[test] >= 0], sets, {})
    d = load(data)
    pool, valid, test = strat_split(d.y, (0.7, 0.15, 0.15), seed)
    sets = {"B": ([d.path], {d.path: d.obs_names[pool].tolist()}),
            "Cp": ([d.path], {d.path: d.obs_names[np.concatenate([pool, test])].tolist()})}
    return Setup(task, data, d, pool, valid, d, test, sets, {"C": NO_AUX.get(data, "no auxiliary file")})


# -- scoring ---------------------------------------------------------------------------------------------------
def score(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    from scapp.evaluate.metrics import classification_metrics

    m = classification_metrics(y_true, y_pred, classes)
    return {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
            "rare3_f1": float(np.mean([s["f1"] for s in m["smallest_classes"]])),
            "smallest_classes": m["smallest_classes"], "n_test": m["n_cells"]}


# -- pretraining runs ------------------------------------------------------------------------------------------
def ssl_options(preset: str) -> dict[str, Any]:
    from scapp.models.registry import get_spec

    return dict(get_spec("ssl").presets[preset])


def pretrain_run(s: Setup, arm: str, seed: int, a: argparse.Namespace, *, method: str = "mae",
                 mask_rate: float | None = None) -> Path:
    """The finished pretraining run of ``arm`` at ``seed`` (made now unless kept in ``--runs``)."""
    from scapp import runs
    from scapp.train.pretrain import PretrainRequest, run_pretraining

    tag = f"{s.task}_{s.data}_{arm}_{method}_s{seed}_e{a.pre_epochs}_p{a.pre_patience}_{a.preset}"
    if mask_rate is not None:
        tag += f"_m{mask_rate}"
    if a.variant:
        tag += f"_{a.variant}"
    run = Path(a.runs) / tag
    if (runs.read_status(run) or {}).get("state") == "finished":
        return run
    files, cells = s.pretrain_sets[arm]
    if method == "tabnet":
        mc = {"early_stopping_patience": a.pre_patience}
    else:
        mc = {**ssl_options(a.preset), "early_stopping_patience": a.pre_patience}
        if mask_rate is not None:
            mc["mask_rate"] = mask_rate
    mc.update(a.pre_options)
    req = PretrainRequest(data=files, method=method, genes_of=s.ref.path, epochs=a.pre_epochs, device="cpu",
                          seed=seed, model_config=mc, cells=cells)
    if run.exists():
        import shutil

        shutil.rmtree(run)
    run.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    run_pretraining(req, run)
    print(f"  pretrained {tag} in {time.monotonic() - t0:.0f} s", flush=True)
    return run


def pretrain_info(run: Path) -> dict[str, Any]:
    m = RunStore(run).metrics()
    return {k: m.get(k) for k in ("n_train", "n_valid", "n_genes", "epochs_run", "best_epoch", "valid_loss",
                                  "fit_seconds", "cells_per_s", "peak_rss_mib")} | {"run": run.name}


# -- the arms ----------------------------------------------------------------------------------------------------
def _fit(model: Any, Xtr: Any, ytr: np.ndarray, Xva: Any, yva: np.ndarray) -> dict[str, Any]:
    from scapp.models.base import FitData
    from scapp.train.trainer import Trainer

    ev: list[dict[str, Any]] = []
    t0 = time.monotonic()
    model.fit(FitData(Xtr, ytr), FitData(Xva, yva), Trainer(ev.append))
    hist = [e for e in ev if "epoch" in e and "valid_loss" in e]
    return {"fit_s": round(time.monotonic() - t0, 1), "epochs": len(hist),
            "best_epoch": hist[-1].get("best_epoch") if hist else None}


def _inputs(s: Setup, preprocess_defaults: dict[str, Any], run: Path | None) -> tuple[Any, Any, Any]:
    """Reference and test matrices as a model reads them, and the pretraining run (None from scratch): from
    scratch, a recipe fitted on the pool's cells (no labels); from a pretraining run, that run's genes and recipe."""
    from scapp.data.align import align_genes
    from scapp.data.preprocess import PreprocessConfig, Recipe

    if run is None:
        genes = s.ref.var.index.astype(str).tolist()
        recipe, pre = Recipe.fit(s.ref.X, genes, PreprocessConfig(**preprocess_defaults), train_idx=s.pool), None
    else:
        from scapp.train.pretrain import load_pretraining

        pre = load_pretraining(run)
        recipe = pre.recipe
    Xr = recipe.transform(align_genes(s.ref.X, s.ref.var, recipe.genes)[0])
    Xt = recipe.transform(align_genes(s.test.X, s.test.var, recipe.genes)[0])
    return Xr, Xt, pre


def arm_ssl(s: Setup, lab: np.ndarray, val: np.ndarray, seed: int, a: argparse.Namespace,
            run: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Arms A (run None) and B / C / Cp: the ssl classifier, from scratch or fine-tuned from ``run``."""
    from scapp.models.base import config_from_dict
    from scapp.models.ssl import SSLConfig, SSLModel

    opts = {**ssl_options(a.preset), "max_epochs": a.ft_epochs, "early_stopping_patience": a.patience, "seed": seed}
    Xr, Xt, pre = _inputs(s, SSLModel.preprocess_defaults, run)
    warm = None if pre is None else pre.state
    if pre is not None:
        opts.update(pre.architecture)
    model = SSLModel(config_from_dict(SSLConfig, opts), n_features=Xr.shape[1], classes=s.ref.classes, device="cpu")
    if warm is not None:
        model.warm_start(warm)
    info = _fit(model, Xr[lab], s.ref.y[lab], Xr[val], s.ref.y[val])
    info["n_genes"] = int(Xr.shape[1])
    pred = model.predict_logits(Xt[s.test_idx]).argmax(1)
    return score(s.test.y[s.test_idx], pred, s.ref.classes), info


def arm_probe(s: Setup, lab: np.ndarray, seed: int, run: Path) -> dict[str, dict[str, Any]]:
    """Arm D: the frozen encoder of ``run``; kNN and linear probe from the labelled cells' embedding."""
    from scapp.evaluate.probe import knn_transfer, linear_probe
    from scapp.train.pretrain import FrozenEncoder

    enc = FrozenEncoder(run)
    Zr = enc.embed(s.ref.X[lab], s.ref.var)
    Zt = enc.embed(s.test.X[s.test_idx], s.test.var)
    yt = s.test.y[s.test_idx]
    out = {f"knn_{k}": score(yt, p, s.ref.classes) for k, p in knn_transfer(Zr, s.ref.y[lab], Zt).items()}
    out["linear_probe"] = score(yt, linear_probe(Zr, s.ref.y[lab], Zt, seed=seed), s.ref.classes)
    return out


def arm_registry(s: Setup, name: str, lab: np.ndarray, val: np.ndarray, seed: int, a: argparse.Namespace,
                 run: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Arms E (logreg, logreg_hvg) and F (sims, and sims from a TabNet pretraining ``run``) at their preset."""
    from scapp.models.base import config_from_dict
    from scapp.models.registry import get_spec

    spec = get_spec(name)
    cls = spec.load()
    opts = {**spec.presets[a.preset], "seed": seed}
    if "max_epochs" in cls.Config.__dataclass_fields__:
        opts["max_epochs"] = a.ft_epochs
        opts["early_stopping_patience"] = a.patience
    Xr, Xt, pre = _inputs(s, cls.preprocess_defaults, run)
    warm = None if pre is None else pre.state
    if pre is not None:
        opts.update({k: v for k, v in pre.architecture.items() if k in cls.Config.__dataclass_fields__})
    model = cls(config_from_dict(cls.Config, opts), n_features=Xr.shape[1], classes=s.ref.classes, device="cpu")
    if warm is not None:
        model.warm_start(warm)
    info = _fit(model, Xr[lab], s.ref.y[lab], Xr[val], s.ref.y[val])
    info["n_genes"] = int(Xr.shape[1])
    pred = model.predict_logits(Xt[s.test_idx]).argmax(1)
    return score(s.test.y[s.test_idx], pred, s.ref.classes), info


# -- results file ------------------------------------------------------------------------------------------------
def results_path(task: str) -> Path:
    return RESULTS / f"ssl_{task.replace('-', '_')}.jsonl"


def kept(task: str) -> list[dict[str, Any]]:
    p = results_path(task)
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []


def _key(r: dict[str, Any]) -> tuple:
    return (r["data"], r["arm"], r["seed"], r.get("fraction"), json.dumps(r.get("cap"), sort_keys=True),
            r.get("mask_rate"))


def _append(task: str, rec: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    with open(results_path(task), "a") as f:
        f.write(json.dumps(rec, default=float) + "\n")


def _cap(a: argparse.Namespace) -> dict[str, Any]:
    return {"preset": a.preset, "pretrain_max_epochs": a.pre_epochs, "pretrain_patience": a.pre_patience,
            "finetune_max_epochs": a.ft_epochs, "patience": a.patience}


def _machine() -> str:
    import torch

    return f"{machine()}, {torch.get_num_threads()} torch threads"


def run_task(task: str, data: str, a: argparse.Namespace, *, fractions: tuple[float, ...],
             mask_rates: tuple[float | None, ...] = (None,)) -> None:
    cap = _cap(a)
    done = {_key(r) for r in kept(task)}
    mach = _machine()
    for seed in a.seeds:
        s = setup(task, data, seed)
        for mr in mask_rates:
            runs_of: dict[str, Path] = {}

            def todo(arm: str, frac: float | None, s: Setup = s, seed: int = seed, mr: float | None = mr) -> bool:
                label = arm + (f"+{a.variant}" if a.variant else "")
                return (s.data, label, seed, frac, json.dumps(cap, sort_keys=True), mr) not in done

            def rec(arm: str, frac: float | None, lab: np.ndarray, val: np.ndarray, metrics: dict[str, Any],
                    s: Setup = s, seed: int = seed, mr: float | None = mr, **extra: Any) -> None:
                r = {"task": task, "data": s.data, "arm": arm + (f"+{a.variant}" if a.variant else ""), "seed": seed, "fraction": frac, "mask_rate": mr,
                     "cap": cap, "n_labelled": int(lab.size), "n_valid": int(val.size),
                     "n_test": int(s.test_idx.size), "metrics": metrics, **extra, "machine": mach}
                _append(task, r)
                done.add(_key(r))
                m = metrics if "macro_f1" in metrics else metrics.get("knn_15", {})
                print(f"{task} {s.data} {arm} seed {seed} frac {frac} mask {mr}: macro-F1 {m.get('macro_f1', 0):.3f} "
                      f"acc {m.get('accuracy', 0):.3f}", flush=True)

            for arm in a.arms:
                if arm.removeprefix("D_") in s.unavailable:
                    continue
                for frac in fractions:
                    lab = label_subset(s.pool, s.ref.y, frac, seed)
                    val = label_subset(s.valid, s.ref.y, frac, seed)
                    if arm.startswith("D_"):
                        src = arm[2:]
                        if src in s.unavailable or not todo(arm, frac):
                            continue
                        if src not in runs_of:
                            runs_of[src] = pretrain_run(s, src, seed, a, method=a.method, mask_rate=mr)
                        rec(arm, frac, lab, val, arm_probe(s, lab, seed, runs_of[src]),
                            pretrain=pretrain_info(runs_of[src]))
                        continue
                    if not todo(arm, frac):
                        continue
                    if arm == "A":
                        m, info = arm_ssl(s, lab, val, seed, a, None)
                        rec(arm, frac, lab, val, m, fit=info)
                    elif arm in PRETRAINED:
                        if arm not in runs_of:
                            runs_of[arm] = pretrain_run(s, arm, seed, a, method=a.method, mask_rate=mr)
                        m, info = arm_ssl(s, lab, val, seed, a, runs_of[arm])
                        rec(arm, frac, lab, val, m, fit=info, pretrain=pretrain_info(runs_of[arm]))
                    elif arm in ("E_logreg", "E_logreg_hvg", "F_sims"):
                        m, info = arm_registry(s, arm.split("_", 1)[1], lab, val, seed, a)
                        rec(arm, frac, lab, val, m, fit=info)
                    elif arm == "F_sims_tabnet":
                        if "tabnet" not in runs_of:
                            runs_of["tabnet"] = pretrain_run(s, "B", seed, a, method="tabnet")
                        m, info = arm_registry(s, "sims", lab, val, seed, a, runs_of["tabnet"])
                        rec(arm, frac, lab, val, m, fit=info, pretrain=pretrain_info(runs_of["tabnet"]))
                    else:
                        raise SystemExit(f"unknown arm {arm}")


ARMS_ALL = ["A", "B", "C", "Cp", "D_B", "D_C", "D_Cp", "E_logreg", "E_logreg_hvg", "F_sims", "F_sims_tabnet"]


def _expand(arms: list[str]) -> list[str]:
    out: list[str] = []
    for x in arms:
        out += {"D": ["D_B", "D_C", "D_Cp"], "E": ["E_logreg", "E_logreg_hvg"], "F": ["F_sims", "F_sims_tabnet"],
                "C'": ["Cp"]}.get(x, [x])
    return out


def cmd_label_eff(a: argparse.Namespace) -> None:
    a.arms = _expand(a.arms)
    for data in a.data:
        run_task("label-eff", data, a, fractions=tuple(a.fractions))


def cmd_cross(a: argparse.Namespace) -> None:
    a.arms = _expand(a.arms)
    run_task("cross", "pbmc", a, fractions=(1.0,))


def cmd_mask_sweep(a: argparse.Namespace) -> None:
    a.arms = _expand(a.arms)
    run_task("mask-sweep", a.data, a, fractions=tuple(a.fractions), mask_rates=tuple(a.rates))


# -- throughput ----------------------------------------------------------------------------------------------------
def cmd_throughput(a: argparse.Namespace) -> None:
    """``scapp pretrain`` on ``--n`` resampled cells, a fresh process per run; cells/s and peak RSS from its
    metrics.json (accuracy is never judged on resampled cells)."""
    import tempfile

    import anndata as ad

    from scapp.data.demo import resample_cells

    src = ad.read_h5ad(DATA / FILES[a.data][0])
    for n in a.n:
        with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
            inp, out = Path(tmp) / "big.h5ad", Path(tmp) / "run"
            big = resample_cells(src, n, seed=0)
            big.write_h5ad(inp)
            nnz = int(big.X.nnz)
            del big
            t0 = time.monotonic()
            cmd = [sys.executable, "-m", "scapp", "pretrain", str(inp), "--out", str(out), "--preset", a.preset,
                   "--epochs", str(a.epochs), "--device", "cpu", "--quiet"]
            p = subprocess.run(cmd, capture_output=True, text=True, check=False,
                               cwd=Path(__file__).resolve().parents[1])
            wall = time.monotonic() - t0
            if p.returncode != 0:
                print(p.stdout[-2000:], p.stderr[-3000:])
                continue
            m = RunStore(out).metrics()
            rec = {"data": a.data, "n_cells": n, "nnz": nnz, "preset": a.preset, "epochs": a.epochs,
                   "n_genes": m["n_genes"], "n_train": m["n_train"], "epochs_run": m["epochs_run"],
                   "cells_per_s": m["cells_per_s"], "peak_rss_mib": m["peak_rss_mib"],
                   "fit_seconds": m["fit_seconds"], "total_seconds": m["total_seconds"], "wall_s": wall,
                   "batch_size": m["batch_size"], "machine": _machine()}
            _append("throughput", rec)
            print(f"pretrain {n:,} × {m['n_genes']:,} genes ({a.preset}, {m['epochs_run']} epochs): "
                  f"{m['cells_per_s']:.0f} cells/s, peak RSS {m['peak_rss_mib']:.0f} MiB, wall {wall:.0f} s", flush=True)


# -- report ----------------------------------------------------------------------------------------------------------
def _ms(vals: list[float], fmt: str = "{:.3f}") -> str:
    v = np.array([x for x in vals if x is not None], dtype=np.float64)
    if v.size == 0:
        return "–"
    if v.size == 1:
        return fmt.format(v[0])
    return f"{fmt.format(v.mean())} ± {fmt.format(v.std(ddof=1))}"


def _metric_rows(recs: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """(data, fraction, mask rate, arm label) → per-seed metric dicts (probe arms split into their heads)."""
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in recs:
        heads = {"": r["metrics"]} if "macro_f1" in r["metrics"] else r["metrics"]
        for h, m in heads.items():
            label = r["arm"] if not h else f"{r['arm']} {h}"
            out.setdefault((r["data"], r.get("fraction"), r.get("mask_rate"), label), []).append(m)
    return out


ARM_NAMES = {"A": "A scratch", "B": "B pretrained: own training cells", "C": "C pretrained: auxiliary cells",
             "Cp": "C′ pretrained: incl. query/test cells", "E_logreg": "E logreg", "E_logreg_hvg": "E logreg_hvg",
             "F_sims": "F SIMS scratch", "F_sims_tabnet": "F SIMS + TabNet pretraining"}


def _arm_name(label: str) -> str:
    label, _, head = label.partition(" ")
    arm, _, variant = label.partition("+")
    var = f" [{variant}]" if variant else ""
    if arm.startswith("D_"):
        src = arm[2:]
        return f"D frozen {ARM_NAMES.get(src, src).split(' ')[0]}{var} encoder: {head}"
    return ARM_NAMES.get(arm, arm) + var


def _order(label: str) -> int:
    keys = ["A", "B", "C", "Cp", "D_B", "D_C", "D_Cp", "E_logreg", "E_logreg_hvg", "F_sims", "F_sims_tabnet"]
    base = label.split(" ")[0].split("+")[0]
    return keys.index(base) if base in keys else 99


def _describe(recs: list[dict[str, Any]]) -> str:
    seeds = sorted({r["seed"] for r in recs})
    caps = sorted({json.dumps(r["cap"], sort_keys=True) for r in recs})
    return f"seeds {seeds}; caps {', '.join(caps)}; {recs[0]['machine']}"


def report_task(task: str, title: str) -> None:
    recs = kept(task)
    if not recs:
        print(f"\n({title}: nothing kept yet)")
        return
    rows = _metric_rows(recs)
    print(f"\n### {title}\n\n{_describe(recs)}\n")
    datas = sorted({k[0] for k in rows})
    for data in datas:
        fr = sorted({k[1] for k in rows if k[0] == data}, key=lambda x: -1 if x is None else x)
        mrs = sorted({k[2] for k in rows if k[0] == data}, key=lambda x: -1 if x is None else x)
        arms = sorted({k[3] for k in rows if k[0] == data}, key=lambda s: (_order(s), s))
        ex = next(r for r in recs if r["data"] == data)
        print(f"**{data}** ({ex['n_test']} test cells) — macro-F1, mean ± sd over seeds (n seeds)\n")
        cols = [(f, m) for m in mrs for f in fr]
        swept = mrs != [None]
        print(("| arm | mask rate | " if swept else "| arm | ") + " | ".join(f"labels {f:.0%}" for f in fr) + " |")
        print("|---|" + "---|" * (len(fr) + swept))
        for arm in arms:
            for m in mrs:
                cells = []
                for f in fr:
                    v = rows.get((data, f, m, arm), [])
                    cells.append(f"{_ms([x['macro_f1'] for x in v])} ({len(v)})" if v else "–")
                if swept and all(c == "–" for c in cells):
                    continue
                print(f"| {_arm_name(arm)} | " + (f"{m} | " if swept else "") + " | ".join(cells) + " |")
        if data in NO_AUX:
            print(f"\nArm C not available for {data}: {NO_AUX[data]}.")
        print(f"\n**{data}**: accuracy / balanced accuracy / F1 of the 3 rarest test classes\n")
        print("| arm | labels | accuracy | balanced accuracy | rarest-3 F1 |" + (" mask |" if mrs != [None] else ""))
        print("|---|---|---|---|---|" + ("---|" if mrs != [None] else ""))
        for arm in arms:
            for f, m in cols:
                v = rows.get((data, f, m, arm), [])
                if not v:
                    continue
                print(f"| {_arm_name(arm)} | {f:.0%} | {_ms([x['accuracy'] for x in v])} | "
                      f"{_ms([x['balanced_accuracy'] for x in v])} | {_ms([x['rare3_f1'] for x in v])} |"
                      + (f" {m} |" if mrs != [None] else ""))
        # gains vs A, per seed (paired)
        if any(k[3] == "A" for k in rows if k[0] == data):
            print(f"\n**{data}**: paired gain over A in macro-F1 (same seed), mean ± sd of the differences; "
                  "'gain' / 'loss' only where |mean Δ| exceeds both that sd and the reference arm's own seed sd\n")
            print("| arm | labels | Δ macro-F1 vs A | reference sd over seeds | verdict |")
            print("|---|---|---|---|---|")
            by_seed = {(r["arm"], r.get("fraction"), r.get("mask_rate"), r["seed"]): r["metrics"] for r in recs
                       if r["data"] == data and "macro_f1" in r["metrics"]}
            pre_arms = sorted({r["arm"] for r in recs if r["data"] == data and "macro_f1" in r["metrics"]
                               and r["arm"].split("+")[0] in ("B", "C", "Cp", "F_sims_tabnet")},
                              key=lambda x: (_order(x), x))
            for arm in pre_arms:
                for f, m in cols:
                    ref = "F_sims" if arm.startswith("F_sims_tabnet") else "A"
                    d = [by_seed[(arm, f, m, sd)]["macro_f1"] - by_seed[(ref, f, m, sd)]["macro_f1"]
                         for sd in sorted({k[3] for k in by_seed}) if (arm, f, m, sd) in by_seed
                         and (ref, f, m, sd) in by_seed]
                    if not d:
                        continue
                    dv = np.array(d)
                    refv = np.array([v["macro_f1"] for k, v in by_seed.items() if k[:3] == (ref, f, m)])
                    sd_ = max(dv.std(ddof=1), refv.std(ddof=1)) if dv.size > 1 and refv.size > 1 else float("nan")
                    verdict = ("gain" if dv.mean() > sd_ else "loss" if -dv.mean() > sd_ else "≈ 0 (within sd)"
                               ) if dv.size > 1 else "1 seed"
                    print(f"| {_arm_name(arm)}{' (vs F SIMS scratch)' if ref != 'A' else ''} | {f:.0%} | "
                          f"{dv.mean():+.3f} ± {dv.std(ddof=1) if dv.size > 1 else float('nan'):.3f} | {refv.std(ddof=1) if refv.size > 1 else float('nan'):.3f} | "
                          f"{verdict} |")
        ep = [r for r in recs if r["data"] == data and r.get("pretrain")]
        if ep:
            print(f"\n**{data}**: pretraining runs (per arm, mean over seeds): cells, genes, epochs run / best, "
                  "held-out masked loss, seconds\n")
            print("| pretraining | cells | genes | epochs run | best epoch | held-out loss | fit s |")
            print("|---|---|---|---|---|---|---|")
            seen: dict[tuple, dict[str, Any]] = {}
            for r in ep:
                src = r["arm"].removeprefix("D_")
                seen[(src, r.get("mask_rate"), r["seed"])] = r["pretrain"]
            for key in sorted({(k[0], k[1]) for k in seen}, key=lambda t: (_order(t[0]), t[1] or 0)):
                ps = [v for k, v in seen.items() if (k[0], k[1]) == key]
                name = key[0] + (f" mask {key[1]}" if key[1] is not None else "")
                print(f"| {name} | {_ms([p['n_train'] for p in ps], '{:.0f}')} | "
                      f"{_ms([p['n_genes'] for p in ps], '{:.0f}')} | {_ms([p['epochs_run'] for p in ps], '{:.1f}')} | "
                      f"{_ms([p['best_epoch'] for p in ps], '{:.1f}')} | {_ms([p['valid_loss'] for p in ps], '{:.4f}')} | "
                      f"{_ms([p['fit_seconds'] for p in ps], '{:.0f}')} |")
        print()


def cmd_report(a: argparse.Namespace) -> None:
    report_task("label-eff", "Label efficiency (pancreas, bone marrow)")
    report_task("cross", "Cross-study pbmc3k → pbmc4k (coarse labels; half of pbmc4k scored)")
    report_task("mask-sweep", "Masking-rate sweep")
    tp = kept("throughput")
    if tp:
        print("\n### Pretraining throughput (scapp pretrain, fresh process, resampled cells)\n")
        print("| data | cells | genes | preset | epochs | cells/s | peak RSS MiB | wall s | machine |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in tp:
            print(f"| {r['data']} | {r['n_cells']:,} | {r['n_genes']:,} | {r['preset']} | {r['epochs_run']} | "
                  f"{r['cells_per_s']:.0f} | {r['peak_rss_mib']:.0f} | {r['wall_s']:.0f} | {r['machine']} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(q: argparse.ArgumentParser, arms: list[str]) -> None:
        q.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
        q.add_argument("--arms", nargs="+", default=arms, help="A B C Cp D_B D_C D_Cp E_logreg E_logreg_hvg "
                                                               "F_sims F_sims_tabnet (D, E, F: all of that letter)")
        q.add_argument("--preset", default="fast", choices=["fast", "default", "thorough"])
        q.add_argument("--pre-epochs", type=int, default=100, help="pretraining epoch cap")
        q.add_argument("--pre-patience", type=int, default=10, help="pretraining early-stopping patience")
        q.add_argument("--ft-epochs", type=int, default=40, help="fine-tuning / training epoch cap (fast preset: 40)")
        q.add_argument("--patience", type=int, default=5, help="fine-tuning early-stopping patience (fast: 5)")
        q.add_argument("--runs", default="/tmp/scapp_ssl_bench", help="where pretraining runs are kept")
        q.add_argument("--method", default="mae", choices=["mae", "vicreg", "simclr"],
                       help="pretraining objective of arms B / C / Cp and their D probes (give --variant too)")
        q.add_argument("--variant", default="", help="name of an ablation: recorded as arm '<arm>+<variant>'")
        q.add_argument("--pre-options", type=json.loads, default={},
                       help="JSON of ssl options for the pretraining runs only (an ablation; give --variant)")

    le = sub.add_parser("label-eff")
    le.add_argument("--data", nargs="+", default=["pancreas"], choices=["pancreas", "bonemarrow"])
    le.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    common(le, ["A", "B", "D_B", "E"])
    le.set_defaults(func=cmd_label_eff)
    cr = sub.add_parser("cross")
    common(cr, ["A", "B", "C", "Cp", "D", "E"])
    cr.set_defaults(func=cmd_cross)
    ms = sub.add_parser("mask-sweep")
    ms.add_argument("--data", default="pancreas", choices=["pancreas", "bonemarrow"])
    ms.add_argument("--rates", nargs="+", type=float, default=list(MASK_RATES))
    ms.add_argument("--fractions", nargs="+", type=float, default=[0.1, 1.0])
    common(ms, ["B", "D_B"])
    ms.set_defaults(func=cmd_mask_sweep, seeds=[0])
    tp = sub.add_parser("throughput")
    tp.add_argument("--data", default="pancreas", choices=list(FILES))
    tp.add_argument("--n", nargs="+", type=int, default=[100_000])
    tp.add_argument("--epochs", type=int, default=2)
    tp.add_argument("--preset", default="default", choices=["fast", "default", "thorough"])
    tp.add_argument("--tmp", default=None)
    tp.set_defaults(func=cmd_throughput)
    rp = sub.add_parser("report")
    rp.set_defaults(func=cmd_report)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
