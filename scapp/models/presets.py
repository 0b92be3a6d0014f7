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
        "paper": "Hydra preprint",
        "about": "Integrated-Gradients marker genes per cell type and generated cells for rare types. Coming.",
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
}

# Rough CPU cost on a 2-core machine, seconds per 1,000 cells (bench/RESULTS.md): used for the
# "what it costs" line; SIMS ≈ 30–60 epochs at ~2–4k cells/s.
_SECONDS_PER_1K = {"sims": {"fast": 8.0, "default": 15.0, "thorough": 45.0},
                   "logreg": {"fast": 0.3, "default": 0.5, "thorough": 1.0}}


def estimate_seconds(model: str, preset: str, n_cells: int, *, gpu: bool = False) -> float:
    """Order-of-magnitude training time on this machine, for the preset buttons."""
    s = _SECONDS_PER_1K.get(model, {}).get(preset, 10.0) * max(n_cells, 1) / 1000
    return s / 10 if gpu and model == "sims" else s
