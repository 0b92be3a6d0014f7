"""The model registry: one declared entry per method, and the only place model names are spelled out.

Everything that lists or chooses methods derives from ``REGISTRY``: the CLI's
``--model`` choices, the Model page's cards, presets and option form, the
Explore page's panels (from ``capabilities``), the engine's data path (raw
counts or log input, labels needed or not) and the contract tests. Adding a
method is its module under ``scapp/models/`` plus one ``ModelSpec`` here.

The class is named as ``"module:Class"`` and imported on first use, so pages
that only show the cards never import torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import Any

from scapp.errors import ConfigError
from scapp.models.base import (  # noqa: F401 - the interface, re-exported for the engine and the trainer
    Explanation,
    FitData,
    Phase,
    PhaseResult,
    ScappModel,
    StepOutput,
    TrainerAPI,
    config_from_dict,
)

EXPLAIN_KINDS = ("tabnet_mask", "integrated_gradients", "coefficient")


@dataclass(frozen=True)
class Capabilities:
    """What a method does and needs; the engine, the CLI and the pages read only this, never the name."""

    classifies: bool = True
    embeds: bool = False
    explain_kind: str | None = None
    """How its per-class gene scores are made (one of ``EXPLAIN_KINDS``), None when it has none."""
    denoises: bool = False
    pretrains: bool = False
    needs_raw_counts: bool = False
    """True: the model receives integer counts of its genes (a count likelihood); False: log1p-normalized input."""
    needs_labels: bool = True
    """False: cells without a label are kept for training (pretraining, autoencoders)."""
    modalities: tuple[str, ...] = ("rna",)
    combines: bool = False
    """True: an ensemble. Its predictions are a weighted mean of the calibrated probabilities of member runs on the
    same cells and split (``scapp.train.ensemble`` builds it; annotation loads the members), not a network fitted
    on features; its explanations are its members'."""

    def for_run(self, label: str | None) -> Capabilities:
        """What one run of the method does: a method that classifies but learns without labels
        (``needs_labels`` False, e.g. ZiPo) classifies only when it was trained with a label column, and explains
        (per-class gene scores) only then."""
        if self.classifies and not self.needs_labels and not label:
            return replace(self, classifies=False, explain_kind=None)
        return self


@dataclass(frozen=True)
class CurvePanel:
    """One panel of a method's training chart: per-epoch history columns (``RunStore.epochs()``) against epoch.

    A method declares its panels in ``ModelSpec.curves`` so the Train and Explore pages draw what it logs (ZiPo:
    likelihood and rate error, no accuracy) without knowing its name; ``scapp.viz.training_curves`` draws them.
    """

    title: str
    series: tuple[tuple[str, str], ...]
    """``(history column, legend name)``; a column the history lacks is skipped, a panel with none is dropped."""
    y_title: str = ""
    log_y: bool = False
    unit_range: bool = False
    """True: scores between 0 and 1 (the axis is fixed to [0, 1])."""
    help: str = ""
    """One plain sentence saying what the curve means, shown under the chart."""


@dataclass(frozen=True)
class ModelSpec:
    """One method: its class, what the Model page says about it, its presets and its capabilities."""

    name: str
    cls_path: str | None
    """``"package.module:Class"``; None for a method announced but not built yet."""
    title: str
    paper: str
    about: str
    capabilities: Capabilities
    presets: dict[str, dict[str, Any]] = field(default_factory=lambda: {"fast": {}, "default": {}, "thorough": {}})
    main_options: tuple[str, ...] = ()
    """The options the Model page shows first; the rest keep the paper defaults (settable from a JSON config)."""
    explain_heading: str = "**Gene scores per cell type**"
    preset_notes: dict[str, str] = field(default_factory=dict)
    """A line the Model page shows under a preset (what it trains), where the options alone do not say it."""
    seconds_per_1k: dict[str, float] = field(default_factory=dict)
    """Rough CPU cost on a 2-core machine per 1,000 cells, per preset; used only where ``timing`` is empty."""
    timing: dict[str, dict[str, float]] = field(default_factory=dict)
    """Seconds per phase of each preset, measured on the demo on 2 CPU cores (``bench/estimates.py --calibrate``;
    ``scapp.train.timing`` scales them with cells × genes). "epoch_s" and "epochs": the main phase per epoch and
    how many epochs it ran."""
    timing_drivers: dict[str, Any] = field(default_factory=dict)
    """Phase → f(options, n_cells) its cost is proportional to, for options set by hand."""
    gpu_speedup: float = 1.0
    curves: tuple[CurvePanel, ...] = ()
    """Its training chart's panels; empty: a classifier's loss and validation accuracy / macro-F1."""
    pretrain_curves: tuple[CurvePanel, ...] = ()
    """The chart of its pretraining runs (``capabilities.pretrains``: ``scapp pretrain``, or a run of it trained
    without labels)."""
    trainable: bool = True
    """False: made from finished runs (``scapp ensemble``, the Compare page), not offered by ``scapp train`` or the
    Model page."""

    @property
    def available(self) -> bool:
        return self.cls_path is not None

    def load(self) -> type[ScappModel]:
        if self.cls_path is None:
            msg = (f"Model {self.name!r} is not available in this version of scapp yet; "
                   f"available: {', '.join(available())}.")
            raise ConfigError(msg)
        module, cls = self.cls_path.split(":")
        return getattr(importlib.import_module(module), cls)


REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) a method; its name must be a plain identifier (it names run folders and CLI choices)."""
    if not spec.name.isidentifier():
        msg = f"Model names are identifiers, not {spec.name!r}."
        raise ValueError(msg)
    if spec.capabilities.explain_kind not in (None, *EXPLAIN_KINDS):
        msg = f"Unknown explain_kind {spec.capabilities.explain_kind!r}; one of {EXPLAIN_KINDS}."
        raise ValueError(msg)
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        msg = f"Unknown model {name!r}; available: {', '.join(available())}."
        raise ConfigError(msg) from None


def get_model_class(name: str) -> type[ScappModel]:
    """The class of ``name``; a method not built yet gets a clear 'not yet' message."""
    return get_spec(name).load()


def curve_panels(name: str | None) -> tuple[CurvePanel, ...]:
    """The training-chart panels a method declares (``ModelSpec.curves``); empty for an unknown or unset name
    (the chart then shows a classifier's loss and scores)."""
    spec = REGISTRY.get(name) if name else None
    return spec.curves if spec is not None else ()


def run_curve_panels(config: dict[str, Any] | None) -> tuple[CurvePanel, ...]:
    """The panels of one run's training chart, from its config: a pretraining run (``kind: "pretraining"``, or a
    run of a method that pretrains trained without labels) draws its method's ``pretrain_curves``."""
    config = config or {}
    spec = REGISTRY.get(config.get("model") or "")
    if spec is None:
        return ()
    pretraining = config.get("kind") == "pretraining" or (spec.capabilities.pretrains and not config.get("label"))
    return spec.pretrain_curves if pretraining and spec.pretrain_curves else spec.curves


def available() -> tuple[str, ...]:
    return tuple(n for n, s in REGISTRY.items() if s.available)


def names() -> tuple[str, ...]:
    """Every name ``scapp train`` accepts, built or announced (the CLI explains the announced ones)."""
    return tuple(n for n, s in REGISTRY.items() if s.trainable)


# -- the methods --------------------------------------------------------------------------------------------------
register(ModelSpec(
    name="sims", cls_path="scapp.models.sims:SIMSModel",
    title="SIMS — TabNet with gene masks",
    paper=("Lehrer, SIMS: Scalable, Interpretable Machine Learning for Single-Cell Annotation (MS thesis, UC Santa "
           "Cruz, 2022); published as Gonzalez-Ferrer, Lehrer et al., SIMS: a deep-learning label transfer tool for "
           "single-cell RNA sequencing analysis (2024)"),
    about=("A deep classifier that, for every cell, picks a small set of genes to look at in a few "
           "steps (sparse attention masks). The masks are its explanation: which genes each prediction "
           "used, per cell and per cell type. Strong on large, well-labelled references."),
    capabilities=Capabilities(classifies=True, embeds=True, explain_kind="tabnet_mask"),
    presets={"fast": {"max_epochs": 40, "early_stopping_patience": 5}, "default": {},
             "thorough": {"n_d": 64, "n_a": 64, "early_stopping_patience": 20}},
    main_options=("max_epochs", "lr", "early_stopping_patience", "n_d", "n_a", "n_steps", "lambda_sparse"),
    explain_heading="**Genes each cell type's predictions used** (TabNet attention masks)",
    # SIMS ≈ 30–60 epochs at ~2–4k cells/s on 2 cores
    seconds_per_1k={"fast": 8.0, "default": 15.0, "thorough": 45.0}, gpu_speedup=10.0,
    timing={
        "fast": {"load": 0.1, "main": 9.1, "evaluate": 1.5, "epoch_s": 0.458, "epochs": 18},
        "default": {"load": 0.1, "main": 16.1, "evaluate": 1.3, "epoch_s": 0.488, "epochs": 31},
        "thorough": {"load": 0.1, "main": 23.9, "evaluate": 1.3, "epoch_s": 0.723, "epochs": 32},
    },
))
register(ModelSpec(
    name="logreg", cls_path="scapp.models.logreg:LogRegModel",
    title="Logistic regression (CellTypist-style baseline)",
    paper=("Domínguez Conde et al., Cross-tissue immune cell analysis reveals tissue-specific features in humans, "
           "Science 2022 (CellTypist)"),
    about=("One linear score per cell type over scaled log-expression. Trains in seconds, hard to beat "
           "on small data; its coefficients are readable marker weights. Use it as the yardstick."),
    capabilities=Capabilities(classifies=True, embeds=False, explain_kind="coefficient"),
    presets={"fast": {"max_iter": 200}, "default": {}, "thorough": {"max_iter": 3000}},
    main_options=("max_iter",),
    explain_heading="**Marker weights per cell type** (logistic-regression coefficients)",
    seconds_per_1k={"fast": 0.3, "default": 0.5, "thorough": 1.0},
    timing={
        "fast": {"load": 0.1, "main": 0.7, "evaluate": 1.4, "epochs": 1},
        "default": {"load": 0.1, "main": 0.7, "evaluate": 1.5, "epochs": 1},
        "thorough": {"load": 0.1, "main": 1.0, "evaluate": 1.4, "epochs": 1},
    },
))
register(ModelSpec(
    name="logreg_hvg", cls_path="scapp.models.logreg_hvg:LogRegHVGModel",
    title="Logistic regression on variable genes",
    paper="Plain scikit-learn logistic regression on log1p-normalized highly variable genes (baseline)",
    about=("One linear score per cell type over the log-expression of the most variable genes; how many genes "
           "and how much regularisation are picked on the validation cells. Trains in seconds and is often the "
           "one to beat on small, clean references."),
    capabilities=Capabilities(classifies=True, embeds=False, explain_kind="coefficient"),
    presets={"fast": {"n_genes_grid": [2000], "C_grid": [1.0]}, "default": {},
             "thorough": {"n_genes_grid": [500, 1000, 2000, 4000, 8000], "C_grid": [0.01, 0.1, 1.0, 10.0]}},
    main_options=("max_iter",),
    explain_heading="**Marker weights per cell type** (logistic-regression coefficients on log-expression)",
    seconds_per_1k={"fast": 0.5, "default": 3.0, "thorough": 8.0},
    timing={
        "fast": {"load": 0.1, "main": 1.0, "choosing genes and C on validation": 0.4, "evaluate": 0.9},
        "default": {"load": 0.1, "main": 1.0, "choosing genes and C on validation": 1.7, "evaluate": 0.9},
        "thorough": {"load": 0.1, "main": 1.0, "choosing genes and C on validation": 3.2, "evaluate": 0.9},
    },
))
register(ModelSpec(
    name="hydra", cls_path="scapp.models.hydra:HydraModel",
    title="Hydra — VAE ensemble with synthetic balancing",
    paper=("Wagle, Liu, Liu, Wang, Kellis, Patrick & Yang, Interpretable deep generative ensemble learning for "
           "single-cell omics with Hydra, bioRxiv 2025 (doi:10.1101/2025.08.15.670517)"),
    about=("A variational autoencoder learns a compact picture of every cell while 25 small heads learn "
           "the cell types. Rare types are topped up with cells the autoencoder generates, 25 copies are "
           "fine-tuned on their own balanced sets, and Integrated Gradients then ranks, per cell type, the "
           "genes (and proteins, when given) that drive each copy's decision: the marker lists. A final "
           "ensemble of 25 small networks, reading only those marker genes, annotates the cells and "
           "averages its probabilities. Slower than the others on a CPU; best when you want markers and "
           "help for rare types."),
    capabilities=Capabilities(classifies=True, embeds=True, explain_kind="integrated_gradients",
                              modalities=("rna", "protein")),
    presets={"fast": {"n_models": 5, "max_epochs": 20, "refine_epochs": 10, "ig_cells_per_class": 50},
             "default": {}, "thorough": {"refine_epochs": 50, "ig_cells_per_class": 2000}},
    main_options=("max_epochs", "n_models", "refine_epochs", "lr", "ig_cells_per_class", "balance",
                  "dynamic_sampling"),
    explain_heading=("**Integrated-Gradients markers per cell type** (mean |IG| × sign of the log fold change, "
                     "consensus of the ensemble)"),
    # bench/hydra_markers.py: fast ≈ 7 s/1k (pancreas 3.7k cells, 25 s); default (25 models, 30 refinement
    # epochs, IG on ≤500 cells/class) ≈ 170 s/1k (pbmc3k 2.6k cells, 441 s)
    seconds_per_1k={"fast": 7.0, "default": 170.0, "thorough": 400.0},
    timing={
        "fast": {"load": 0.1, "main": 2.5, "balance": 0.1, "refine": 3.5, "ig": 1.6, "mlp": 0.3, "evaluate": 1.1,
                 "epoch_s": 0.085, "epochs": 20},
        "default": {"load": 0.1, "main": 4.3, "balance": 0.3, "refine": 57.5, "ig": 56.1, "mlp": 1.2,
                    "evaluate": 1.2, "epoch_s": 0.089, "epochs": 39},
        "thorough": {"load": 0.1, "main": 4.4, "balance": 0.3, "refine": 93.0, "ig": 48.6, "mlp": 1.1,
                     "evaluate": 1.1, "epoch_s": 0.09, "epochs": 39},
    },
    timing_drivers={
        "balance": lambda o, n: o["n_models"],
        "refine": lambda o, n: o["n_models"] * o["refine_epochs"],
        # IG attributes min(class size, cap) cells per class: about min(all training cells, ~9 classes × cap)
        "ig": lambda o, n: o["n_models"] * o["ig_steps"] * min(1.0, 9 * o["ig_cells_per_class"] / (0.7 * n)),
        "mlp": lambda o, n: o["n_models"] * o["mlp_epochs"],
    },
))
register(ModelSpec(
    name="auto", cls_path="scapp.models.ensemble:EnsembleModel",
    title="Auto — logistic regression, SIMS and Hydra, ensembled",
    paper="An ensemble of scapp's methods; weights picked on the validation cells (scapp.models.ensemble)",
    about=("Trains the logistic regression on variable genes, SIMS and Hydra (fast) on one split, then averages "
           "their calibrated probabilities with weights picked on the validation cells. Often the best answer when "
           "you do not know which method suits your data; Explore shows each member's score beside the "
           "ensemble's, and each member's explanations."),
    capabilities=Capabilities(classifies=True, combines=True),
    presets={"fast": {"members": [{"model": "logreg_hvg", "preset": "fast"}, {"model": "sims", "preset": "fast"},
                                  {"model": "hydra", "preset": "fast"}]},
             "default": {},
             "thorough": {"members": [{"model": "logreg_hvg", "preset": "thorough"},
                                      {"model": "sims", "preset": "default"},
                                      {"model": "hydra", "preset": "default"}]}},
    main_options=("weight_step",),
    explain_heading="**Explanations of each member**",
    preset_notes={"fast": "Trains logistic regression on variable genes (fast), SIMS (fast) and Hydra (fast).",
                  "default": "Trains logistic regression on variable genes, SIMS and Hydra (fast).",
                  "thorough": "Trains logistic regression on variable genes (thorough), SIMS and Hydra (default)."},
    # measured: the demo (2,638 cells) on 2 idle cores took 21 s / 27 s / 138 s (bench/RESULTS.md, issue 10)
    seconds_per_1k={"fast": 8.0, "default": 11.0, "thorough": 55.0},
))
register(ModelSpec(
    name="ensemble", cls_path="scapp.models.ensemble:EnsembleModel", trainable=False,
    title="Ensemble of finished runs",
    paper="Weighted mean of calibrated probabilities; weights picked on the validation cells (scapp.models.ensemble)",
    about=("Combines runs you already trained on the same file, labels and split (Compare page, or "
           "`scapp ensemble RUN RUN …`): their calibrated probabilities are averaged with weights picked on the "
           "validation cells."),
    capabilities=Capabilities(classifies=True, combines=True),
    main_options=("weight_step",),
    explain_heading="**Explanations of each member**",
))
register(ModelSpec(
    name="zipo", cls_path="scapp.models.zipo:ZiPoModel", title="ZiPo — zero-inflated count autoencoder",
    paper=("Sharifitabar, Kazempour, Razavian, Sajedi, Solhjoo & Zare, ZiPo: a deep neural network to de-noise "
           "single-cell RNA sequencing data, IEEE Trans. Comput. Biol. Bioinform. 22(6):2341–2352, 2025 "
           "(doi:10.1109/TCBBIO.2025.3572783)"),
    about=("Estimates the true expression behind each cell's zeros. From the raw counts it predicts, for every "
           "gene in every cell, an expected count (the denoised expression) and the chance that a zero is a "
           "technical dropout rather than a gene that is off, plus each cell's sequencing depth. Each unit of its "
           "first layer is pushed to read only a few genes, so it is a small gene program you can read. Needs no "
           "labels; given a cell-type column it also annotates cells from its compact summary of each cell (a "
           "simple linear classifier, scored like the other methods; the paper makes no annotation claim). Needs "
           "raw counts; the paper's network is slow on a CPU (use the fast preset, or a GPU)."),
    capabilities=Capabilities(classifies=True, embeds=True, denoises=True, needs_raw_counts=True,
                              needs_labels=False),
    presets={"fast": {"encoder_widths": [512, 256, 128], "latent": 64, "max_epochs": 150,
                      "early_stopping_patience": 15},
             "default": {},
             "thorough": {"encoder_widths": [4096, 1024, 512, 256]},
             "dca_like": {"encoder_widths": [128], "latent": 64, "decoder_hidden": [128], "residual": False,
                          "activation": "relu", "likelihood": "nb", "input_transform": "normalized_log1p",
                          "library": "observed", "alpha_w": 0.0, "alpha_z": 0.0, "prune_delta": None,
                          "max_epochs": 150, "early_stopping_patience": 15}},
    preset_notes={"fast": "A smaller network for a CPU (512-256-128 → 64 latents).",
                  "default": "The paper's network (2048-1024-512-256 → 128 latents); best on a GPU.",
                  "thorough": "The paper's widest first layer (4096); a GPU job.",
                  "dca_like": ("The DCA-style baseline the paper compares against: a negative-binomial autoencoder "
                               "128-64-128 on normalized log input, without zero inflation or sparse weights.")},
    main_options=("max_epochs", "likelihood", "alpha_z", "alpha_w", "latent", "early_stopping_patience"),
    explain_heading="**Gene programs** (genes each first-layer unit reads)",
    curves=(
        CurvePanel("Negative log-likelihood (NLL)", (("train_nll", "train"), ("valid_nll", "validation")),
                   y_title="NLL",
                   help=("Negative log-likelihood: how surprising the observed counts are under the model, per "
                         "cell and gene; lower is better. Validation rising while train falls is over-fitting.")),
        CurvePanel("Rate error (MSE)", (("train_rate_mse", "train"), ("valid_rate_mse", "validation")),
                   y_title="mean squared error", log_y=True,
                   help="Mean squared difference between the predicted expected counts and the observed counts."),
        CurvePanel("Mean zero-inflation probability", (("train_zero_prob", "train"),
                                                       ("valid_zero_prob", "validation")),
                   y_title="mean z",
                   help=("The model's average chance that a zero is a technical dropout rather than no "
                         "expression; α_z pulls it down.")),
        CurvePanel("Learning rate", (("lr", "learning rate"),), y_title="learning rate", log_y=True,
                   help="Decays each epoch, then drops when the validation loss stops improving."),
    ),
    # measured on the demo (2,638 cells × 2,000 genes), 2 cores, CPU lock held (bench/estimates.py --calibrate).
    # ZiPo reads every gene of the file, detected or not: on a whole transcriptome (pbmc4k, 33,694 genes) the
    # fast preset ran 8.4 s per epoch (bench/RESULTS.md, issue 12)
    seconds_per_1k={"fast": 31.0, "default": 80.0, "thorough": 240.0, "dca_like": 9.0}, gpu_speedup=20.0,
    timing={
        "fast": {"load": 0.1, "main": 80.1, "evaluate": 0.5, "epoch_s": 0.493, "epochs": 150},
        "default": {"load": 0.1, "main": 207.2, "evaluate": 1.3, "epoch_s": 1.288, "epochs": 152},
        "thorough": {"load": 0.1, "main": 627.0, "evaluate": 2.2, "epoch_s": 3.007, "epochs": 225},
        "dca_like": {"load": 0.1, "main": 21.2, "evaluate": 0.4, "epoch_s": 0.346, "epochs": 52},
    },
))
register(ModelSpec(
    name="ssl", cls_path="scapp.models.ssl:SSLModel", title="Self-supervised pretraining, then fine-tuning",
    paper=("Richter, Bahrami, Xia, Fischer & Theis, Delineating the effective use of self-supervised learning in "
           "single-cell genomics, Nature Machine Intelligence 2024 (doi:10.1038/s42256-024-00934-3)"),
    about=("A network first learns from cells without labels: half of each cell's genes are hidden and it learns "
           "to fill them in (a masked autoencoder; contrastive learning is an option). Its encoder, a compact "
           "64-number picture of every cell, is then fine-tuned with a small classifier on your labels. Pretrain on "
           "other files or the query with 'scapp pretrain', then start from that run; without one the same network "
           "trains from scratch. In the published study pretraining helped mainly when it used far more cells "
           "(millions) than the labelled reference; pretraining on the same cells gave no gain."),
    capabilities=Capabilities(classifies=True, embeds=True, pretrains=True, needs_labels=False,
                              explain_kind="integrated_gradients"),
    presets={"fast": {"encoder_widths": [256, 128, 64], "max_epochs": 40, "early_stopping_patience": 5},
             "default": {},
             "thorough": {"max_epochs": 500, "early_stopping_patience": 20}},
    main_options=("max_epochs", "lr", "early_stopping_patience", "mask_rate"),
    preset_notes={"fast": "A smaller network for a CPU (256-128 → 64).",
                  "default": "The published network (512-512-256-256 → 64).",
                  "thorough": "The published network, trained longer."},
    explain_heading="**Gene scores per cell type**",
    pretrain_curves=(
        CurvePanel("Reconstruction loss (hidden genes)", (("train_loss", "train"), ("valid_loss", "validation")),
                   y_title="loss",
                   help=("How far the network's guesses of the genes hidden from each cell are from their true "
                         "values (mean squared error on log expression, masked autoencoder); lower is better. "
                         "Validation: cells held out of pretraining. With a contrastive objective (VICReg, SimCLR) "
                         "the curve is that objective's loss.")),
        CurvePanel("VICReg terms", (("train_invariance", "invariance"), ("train_variance", "variance"),
                                    ("train_covariance", "covariance")), y_title="term", log_y=True,
                   help=("VICReg: invariance (two views of a cell should embed alike), variance (every dimension "
                         "should vary across cells) and covariance (dimensions should not repeat each other).")),
        CurvePanel("Learning rate", (("lr", "learning rate"),), y_title="learning rate", log_y=True,
                   help="Multiplied by 0.9 every 2 epochs (the published schedule)."),
    ),
    # rough, until bench/estimates.py --calibrate measures it: an MLP epoch on 2k genes is ~0.1 s per 1k cells
    seconds_per_1k={"fast": 4.0, "default": 8.0, "thorough": 20.0}, gpu_speedup=10.0,
))
