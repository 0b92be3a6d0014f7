"""Hydra's VAE phase, batch by batch: the loss split into reconstruction, KL / F and cross-entropy.

Why the training-loss curve of Hydra spiked (issue 11, defect 8): this trains only the main VAE on
the demo (or a file of ../shared/data) with the engine's split and recipe, and prints for every
batch the weighted loss, its parts, the largest log σ² and the gradient norm before clipping.

    python bench/hydra_loss_terms.py --option n_models=5                  # demo, fast-preset sizes
    python bench/hydra_loss_terms.py --option n_models=5 --option logvar_limit=null   # before the fix
    python bench/hydra_loss_terms.py --full --data mouse_pancreas_endocrinogenesis.h5ad  # whole fit, test scores

Raw output of issue 11: bench/results/issue11_hydra_*.txt.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import DATA, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def prepared(data: str, label: str, seed: int):
    """The engine's split and Hydra recipe of ``data``: (Xp train, y train, Xp valid, y valid, classes)."""
    from scapp.data import load_dataset
    from scapp.data.preprocess import PreprocessConfig, Recipe
    from scapp.data.validate import get_labels, get_matrix
    from scapp.models.hydra import HydraModel
    from scapp.train.engine import TrainRequest, _split_labelled

    adata, _ = load_dataset(data)
    X = get_matrix(adata, None)
    codes, classes, labelled = get_labels(adata, label)
    cells = np.flatnonzero(labelled)
    X, y = X[cells], codes[cells].astype(np.int64)
    req = TrainRequest(data=data, label=label, model="hydra", seed=seed)
    split = _split_labelled(y, req, classes)
    genes = adata.var_names.astype(str).tolist()
    recipe = Recipe.fit(X, genes, PreprocessConfig.from_dict(dict(HydraModel.preprocess_defaults)), train_idx=split.train)
    Xp = recipe.transform(X[:, [genes.index(g) for g in recipe.genes]] if recipe.dropped_genes else X)
    return Xp[split.train], y[split.train], Xp[split.valid], y[split.valid], classes, (Xp[split.test], y[split.test])


def main() -> None:
    import torch

    from scapp.models.hydra import HydraConfig, HydraModel
    from scapp.models.registry import FitData, config_from_dict
    from scapp.train.trainer import Trainer

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / "assets" / "demo_pbmc3k.h5ad"))
    ap.add_argument("--label", default="cell_type")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--option", action="append", default=[], metavar="KEY=JSON")
    ap.add_argument("--json", help="write the per-batch and per-epoch records here")
    ap.add_argument("--full", action="store_true", help="run the whole fit (refinement, IG, MLPs) and score it")
    a = ap.parse_args()
    data = a.data if Path(a.data).exists() else str(DATA / a.data)
    opts = {"max_epochs": a.epochs, "n_models": 25, "seed": a.seed,
            **{k: json.loads(v) for k, v in (o.split("=", 1) for o in a.option)}}
    cfg = config_from_dict(HydraConfig, opts)
    Xtr, ytr, Xva, yva, classes, test = prepared(data, a.label, a.seed)
    print(f"# Hydra VAE loss terms — {machine()}")
    print(f"# {Path(data).name}: {Xtr.shape[0]} train × {Xtr.shape[1]} features, {len(classes)} classes; "
          f"options {opts}")
    model = HydraModel(cfg, n_features=Xtr.shape[1], classes=classes)
    batches: list[dict] = []
    orig = model.loss_terms

    def loss_terms(net, x, y, *, sample):
        t = orig(net, x, y, sample=sample)
        if net.training and net.M == 1:
            logvar = seen["logvar"]  # from a forward hook: a second forward would draw other dropout masks
            batches.append({"loss": float(t["loss"][0].detach()), "recon": float(t["recon"][0]),
                            "kl_over_F": float(t["kl"][0]) / net.n_features, "kl": float(t["kl"][0]),
                            "ce": float(t["ce"][0]), "max_logvar": float(logvar.max()),
                            "kl_weight": float(t.get("kl_weight", torch.tensor(1.0)))})
        return t

    model.loss_terms = loss_terms  # type: ignore[method-assign]
    seen: dict = {}
    model.net.logvar.register_forward_hook(lambda mod, inp, out: seen.__setitem__("logvar", out.detach()))
    # gradient norm of each step, before any clipping: hook the optimizer's step
    orig_step = torch.optim.Adam.step

    def step(self, *args, **kw):
        if batches and "grad_norm" not in batches[-1] and len(self.param_groups[0]["params"]) > 4:
            g = torch.sqrt(sum((p.grad.detach() ** 2).sum() for grp in self.param_groups for p in grp["params"]
                               if p.grad is not None))
            batches[-1]["grad_norm"] = float(g)
        return orig_step(self, *args, **kw)

    torch.optim.Adam.step = step  # type: ignore[method-assign]
    epochs: list[dict] = []
    later: list[dict] = []  # refinement and annotation-MLP epochs
    trainer = Trainer(lambda e: epochs.append(e) if "train_loss" in e else
                      later.append(e) if ("refine_loss" in e or "mlp_loss" in e) else None)
    class _VAEDone(Exception):
        pass

    def after_vae(*args, **kw):  # fit() as the engine calls it, ended once the VAE is trained
        raise _VAEDone

    if not a.full:
        model.balanced_sets = after_vae  # type: ignore[method-assign]
    t0 = time.monotonic()
    try:
        model.fit(FitData(Xtr, ytr), FitData(Xva, yva), trainer)
    except _VAEDone:
        pass
    wall = time.monotonic() - t0
    per_epoch = max(1, len(batches) // max(len(epochs), 1))
    print("\nbatch  epoch     loss    recon   KL/F        KL       CE  max logσ²  grad norm")
    for i, b in enumerate(batches):
        print(f"{i + 1:5d} {i // per_epoch + 1:6d} {b['loss']:8.3f} {b['recon']:8.3f} {b['kl_over_F']:6.3f} "
              f"{b['kl']:9.1f} {b['ce']:8.3f} {b['max_logvar']:9.2f} {b.get('grad_norm', float('nan')):10.2f}")
    print("\nepoch  train loss  valid loss  valid acc  valid macro-F1")
    for e in epochs:
        print(f"{e['epoch']:5d} {e['train_loss']:11.3f} {e.get('valid_loss', float('nan')):11.3f} "
              f"{e.get('valid_accuracy', float('nan')):10.3f} {e.get('valid_macro_f1', float('nan')):15.3f}")
    best = trainer.best_epoch
    kept = next((e for e in epochs if e["epoch"] == best), {})
    print(f"\nkept epoch {best}: valid accuracy {kept.get('valid_accuracy', float('nan')):.3f}, macro-F1 "
          f"{kept.get('valid_macro_f1', float('nan')):.3f}; max train loss {max(e['train_loss'] for e in epochs):.2f}"
          f" / final {epochs[-1]['train_loss']:.3f}; {wall:.0f} s")
    for e in later:
        k = "refine" if "refine_loss" in e else "mlp"
        print(f"{k} epoch {e[k + '_epoch']:3d}: loss {e[k + '_loss']:.3f}")
    if a.full:
        from scapp.evaluate.metrics import classification_metrics

        Xte, yte = test
        m = classification_metrics(yte, model.predict_logits(Xte).argmax(1), classes)
        print(f"test macro-F1 {m['macro_f1']:.3f}, accuracy {m['accuracy']:.3f}, balanced accuracy "
              f"{m['balanced_accuracy']:.3f} ({len(yte)} cells)")
        epochs.append({"test": m})
    if a.json:
        Path(a.json).write_text(json.dumps({"options": opts, "batches": batches, "epochs": epochs}, default=float))


if __name__ == "__main__":
    main()
