"""Named option sets per method, and what each is for (shown on the Model page and usable from the CLI)."""

from __future__ import annotations

from typing import Any

METHODS: dict[str, dict[str, str]] = {
    "sims": {
        "title": "SIMS — TabNet with gene masks",
        "paper": "Gonzalez-Ferrer et al., SIMS: scalable, interpretable modelling for single-cell RNA-seq (thesis)",
        "about": ("A deep classifier that, for every cell, picks a small set of genes to look at in a few "
                  "steps (sparse attention masks). The masks are its explanation: which genes each prediction "
                  "used, per cell and per cell type. Strong on large, well-labelled references."),
    },
    "logreg": {
        "title": "Logistic regression (CellTypist-style baseline)",
        "paper": "Domínguez Conde et al., Science 2022 (CellTypist)",
        "about": ("One linear score per cell type over scaled log-expression. Trains in seconds, hard to beat "
                  "on small data; its coefficients are readable marker weights. Use it as the yardstick."),
    },
    "hydra": {
        "title": "Hydra — VAE ensemble with synthetic balancing",
        "paper": "Wagle et al., Interpretable deep generative ensemble learning for single-cell omics with Hydra "
                 "(bioRxiv 2025)",
        "about": ("A variational autoencoder learns a compact picture of every cell while 25 small heads learn "
                  "the cell types. Rare types are topped up with cells the autoencoder generates, 25 copies are "
                  "fine-tuned on their own balanced sets, and Integrated Gradients then ranks, per cell type, the "
                  "genes (and proteins, when given) that drive each copy's decision: the marker lists. A final "
                  "ensemble of 25 small networks, reading only those marker genes, annotates the cells and "
                  "averages its probabilities. Slower than the others on a CPU; best when you want markers and "
                  "help for rare types."),
    },
    "zipo": {
        "title": "ZiPo — zero-inflated count autoencoder",
        "paper": "ZiPo paper",
        "about": "Denoises counts, predicts library size and gives a sparse, interpretable latent space. Coming.",
    },
    "ssl": {
        "title": "Self-supervised pretraining",
        "paper": "SSL review",
        "about": "Masked-autoencoder pretraining on unlabelled cells, then fine-tuning. Coming.",
    },
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "sims": {
        "fast": {"max_epochs": 40, "early_stopping_patience": 5},
        "default": {},
        "thorough": {"n_d": 32, "n_a": 32, "early_stopping_patience": 20},
    },
    "logreg": {"fast": {"max_iter": 200}, "default": {}, "thorough": {"max_iter": 3000}},
    "hydra": {
        "fast": {"n_models": 5, "max_epochs": 20, "refine_epochs": 10, "ig_cells_per_class": 50},
        "default": {},
        "thorough": {"refine_epochs": 50, "ig_cells_per_class": 2000},
    },
}

# Rough CPU cost on a 2-core machine, seconds per 1,000 cells (bench/RESULTS.md): used for the
# "what it costs" line; SIMS ≈ 30–60 epochs at ~2–4k cells/s.
_SECONDS_PER_1K = {"sims": {"fast": 8.0, "default": 15.0, "thorough": 45.0},
                   "logreg": {"fast": 0.3, "default": 0.5, "thorough": 1.0},
                   # Hydra (bench/hydra_markers.py): fast ≈ 7 s/1k (pancreas 3.7k cells, 25 s); default (25 models,
                   # 30 refinement epochs, IG on ≤500 cells/class) ≈ 170 s/1k (pbmc3k 2.6k cells, 441 s); refinement
                   # and IG dominate and grow with the ensemble size × epochs / cells attributed.
                   "hydra": {"fast": 7.0, "default": 170.0, "thorough": 400.0}}


def estimate_seconds(model: str, preset: str, n_cells: int, *, gpu: bool = False) -> float:
    """Order-of-magnitude training time on this machine, for the preset buttons."""
    s = _SECONDS_PER_1K.get(model, {}).get(preset, 10.0) * max(n_cells, 1) / 1000
    return s / 10 if gpu and model == "sims" else s


# The options the Model page shows first, per method (the rest stay at the paper defaults and can be set
# from a JSON config with the CLI). Defaults and types come from each method's Config dataclass.
MAIN_OPTIONS: dict[str, tuple[str, ...]] = {
    "sims": ("max_epochs", "lr", "early_stopping_patience", "n_d", "n_a", "n_steps", "lambda_sparse"),
    "hydra": ("max_epochs", "n_models", "refine_epochs", "lr", "ig_cells_per_class", "balance", "dynamic_sampling"),
    "logreg": ("max_iter",),
}

OPTION_LABELS: dict[str, str] = {
    "max_epochs": "Max epochs", "lr": "Learning rate", "early_stopping_patience": "Early-stopping patience",
    "n_d": "Decision width (n_d)", "n_a": "Attention width (n_a)", "n_steps": "Attention steps",
    "lambda_sparse": "Mask sparsity weight", "n_models": "Ensemble size", "refine_epochs": "Refinement epochs",
    "ig_cells_per_class": "IG cells per class", "balance": "Synthetic balancing",
    "dynamic_sampling": "Dynamic class sampling", "max_iter": "Max iterations",
}


def option_defaults(model: str, preset: str = "default") -> dict[str, Any]:
    """The main options of ``model`` with their values under ``preset`` (paper defaults, then the preset)."""
    from dataclasses import fields

    from scapp.models import get_model_class

    cfg = get_model_class(model).Config
    base = {f.name: f.default for f in fields(cfg)}
    merged = {**base, **PRESETS.get(model, {}).get(preset, {})}
    return {k: merged[k] for k in MAIN_OPTIONS.get(model, ()) if k in merged}
