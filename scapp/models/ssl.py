"""Self-supervised pretraining, then fine-tuning (methods.md §4, issue 13).

Design from the primary evidence only (Richter et al., Nat Mach Intell 2024; scSSL-Bench), as the issue says:

Input
    The model reads the raw counts of its genes (recipe output ``counts``) and makes the size-factor-normalized
    ``log1p(counts / total · target_sum)`` itself, so that the reconstruction can be scored either on that log
    input (MSE, default) or on the counts (negative binomial) from the same batch. Masked genes are set to 0 in
    the log input.
Masked autoencoder (``method="mae"``, default)
    Each gene of each cell is masked with probability ``mask_rate`` (0.5: the primary study's code; the issue
    asks for a sweep of 0.15-0.75 in the benchmark). Encoder MLP 512-512-256-256-64 (hidden blocks ``Linear →
    LayerNorm → ReLU → Dropout``; the 64-d output is linear: the embedding), decoder mirrored (64 → 256-256-512-
    512 → genes). Loss on the masked positions only: mean squared error on the log input, or (``loss="nb"``)
    the negative-binomial NLL of the counts with mean ``library · softmax(decoder)`` and one dispersion per gene.
Contrastive (``method="vicreg"`` or ``"simclr"``)
    Two views of each cell, each with its own random mask (same rate) and Gaussian noise (``noise_sd``) on the
    log input; a projector (``Linear → BatchNorm → ReLU → Linear``) after the encoder; VICReg (invariance 25,
    variance 25, covariance 1, as the VICReg paper) or SimCLR's NT-Xent (temperature ``temperature``). The
    embedding is the encoder output, never the projector's (scSSL-Bench: keeping the projector did not help).
Optimizer (through the shared ``Trainer``)
    Pretraining: AdamW (decoupled weight decay, AMSGrad, as the primary study's code) lr 1e-3, weight decay 0.01,
    step decay ×0.9 every 2 epochs, gradient clip 1, dropout 0.1. With torch's coupled ``Adam`` the 0.01 acted as an
    L2 term that Adam's normalisation turns into a steady shrink of every weight fed by small gradients: 100
    epochs on pancreas left the first layer at sd 0.0006 (0.0149 at init) and the fine-tune 0.13 macro-F1 below
    training from scratch (bench/RESULTS.md, Issue 13).
    Fine-tuning (encoder + linear head, class-weighted cross-entropy ``N / (C · n_c)`` as SIMS): AdamW, lr 9e-4, weight
    decay 0.05, dropout 0, same step decay and clip. ``lr``, ``weight_decay`` and ``dropout`` left at None take
    the value of the phase being run. Early stopping on the validation loss, best weights kept.

What one ``fit`` does depends on the run: without labels, masked-autoencoder (or contrastive) pretraining on
the training cells; with labels, a classifier: from a pretrained encoder when ``warm_start`` loaded one (the
engine does that for ``scapp train --from RUN``), else the same network from scratch (optionally after
``pretrain_epochs`` of pretraining on this run's own training cells, labelled or not). ``pretrain`` is the
same pretraining over batches from anywhere (``scapp.train.pretrain`` streams them from several files).

Choices where the sources are silent (also in the README): LayerNorm (batch-independent, so small and streamed
batches behave alike), a linear 64-d embedding layer, VICReg's weights and SimCLR's temperature from their
papers, the noise level, the projector's width, per-phase early stopping.

TabNet pretraining for SIMS (``TabNetPretrainer``, methods.md §1 "optional SSL warm start"): pytorch-tabnet's
``TabNetPretraining`` network (its encoder and decoder), its random obfuscation (each gene hidden with probability ``pretraining_ratio``,
the encoder's attention prior set to 0 there) and a reconstruction loss on the hidden genes divided by each
gene's variance in the batch, floored at ``var_floor`` × the batch's mean gene variance (pytorch-tabnet replaces
a zero variance by the gene's mean, which can be 0 or, on scaled input, negative). Its encoder warm-starts a SIMS
run (``load_tabnet_encoder``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scapp.errors import ConfigError
from scapp.models.base import Explanation, FitData, Phase, ScappModel, StepOutput, TrainerAPI, config_from_dict
from scapp.models.sims import SIMSConfig
from scapp.tensors import DeviceMatrix, batch_slices, dense_batches

METHODS = ("mae", "vicreg", "simclr")
PRETRAIN_METHODS = (*METHODS, "tabnet")
"""What ``scapp pretrain --method`` accepts: the three objectives of ``SSLModel`` and TabNet pretraining for SIMS."""
LOSSES = ("mse", "nb")
ENCODER_PREFIX = "encoder."
"""Keys of the encoder's tensors in a saved state: what a fine-tune takes from a pretraining run."""


@dataclass
class SSLConfig:
    """Defaults: the primary study's masked autoencoder (methods.md §4); presets in the registry."""

    method: str = "mae"
    """Pretraining objective: ``mae`` (masked autoencoder, the primary study's best for annotation), ``vicreg``
    or ``simclr`` (contrastive, two masked noisy views; scSSL-Bench's best for kNN on frozen embeddings)."""
    encoder_widths: tuple[int, ...] = (512, 512, 256, 256, 64)
    """Encoder layer widths; the last is the embedding (scSSL-Bench: 128-512 beat 32-64 for kNN; the primary
    study used 64)."""
    mask_rate: float = 0.5
    """Share of genes masked (set to 0 in the log input) per cell and view."""
    loss: str = "mse"
    """Masked-autoencoder reconstruction: ``mse`` on the log input or ``nb`` (negative binomial) on the counts."""
    noise_sd: float = 0.1
    """Gaussian noise added to the log input of each contrastive view."""
    projector_widths: tuple[int, ...] = (256, 256)
    """Contrastive projector after the encoder (hidden, output)."""
    vicreg_weights: tuple[float, float, float] = (25.0, 25.0, 1.0)
    """VICReg invariance, variance and covariance weights (VICReg paper)."""
    temperature: float = 0.5
    """SimCLR NT-Xent temperature."""
    lr: float | None = None
    """None: 1e-3 when pretraining, 9e-4 when fine-tuning (primary study)."""
    weight_decay: float | None = None
    """None: 0.01 when pretraining, 0.05 when fine-tuning."""
    dropout: float | None = None
    """None: 0.1 when pretraining, 0 when fine-tuning."""
    lr_step_epochs: int = 2
    lr_gamma: float = 0.9
    grad_clip: float = 1.0
    max_epochs: int = 200
    early_stopping_patience: int = 10
    batch_size: int | None = None
    """None: 256 when pretraining; about 50 steps per epoch (16…256 cells) when fine-tuning."""
    pretrain_epochs: int = 0
    """With labels: pretrain on this run's own training cells (labelled or not) for this many epochs first
    (the primary study found no gain from pretraining on the cells one fine-tunes on). 0: none."""
    class_weights: bool = True
    target_sum: float = 1e4
    seed: int = 0
    inference_batch_size: int = 1024
    ig_cells_per_class: int = 50
    """Integrated Gradients (gene scores per cell type, after fine-tuning) on at most this many cells of each
    class: the cost is classes × cells × ``ig_steps`` passes of a small network (seconds on a CPU)."""
    ig_steps: int = 50
    """Steps of IG's path integral from a cell with no expression (captum's default)."""

    def __post_init__(self) -> None:
        self.encoder_widths = tuple(int(w) for w in self.encoder_widths)
        self.projector_widths = tuple(int(w) for w in self.projector_widths)
        self.vicreg_weights = tuple(float(w) for w in self.vicreg_weights)  # type: ignore[assignment]
        if self.method not in METHODS:
            raise ConfigError(f"SSL method must be one of {', '.join(METHODS)}, not {self.method!r} "
                              "(TabNet pretraining for SIMS: scapp pretrain --method tabnet).")
        if self.loss not in LOSSES:
            raise ConfigError(f"SSL loss must be one of {', '.join(LOSSES)}, not {self.loss!r}.")
        if not 0.0 < self.mask_rate < 1.0:
            raise ConfigError(f"mask_rate is a fraction between 0 and 1 (exclusive), not {self.mask_rate}.")
        if not self.encoder_widths or min(self.encoder_widths) < 1 or min(self.projector_widths or (1,)) < 1:
            raise ConfigError("SSL layer widths must be positive integers.")
        if len(self.vicreg_weights) != 3:
            raise ConfigError("vicreg_weights holds three numbers: invariance, variance, covariance.")
        if self.noise_sd < 0 or self.temperature <= 0:
            raise ConfigError("noise_sd cannot be negative and temperature must be positive.")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout is a fraction in [0, 1), not {self.dropout}.")

    @property
    def latent(self) -> int:
        return self.encoder_widths[-1]

    def phase_options(self, phase: str) -> dict[str, float]:
        """lr, weight decay and dropout of ``pretrain`` or ``finetune`` (None options take the paper's value)."""
        paper = {"pretrain": (1e-3, 0.01, 0.1), "finetune": (9e-4, 0.05, 0.0)}[phase]
        lr, wd, dp = (v if v is not None else d for v, d in zip((self.lr, self.weight_decay, self.dropout), paper))
        return {"lr": float(lr), "weight_decay": float(wd), "dropout": float(dp)}


# -- the pieces (pure functions, tested against hand computations) ------------------------------------------
def normalize_log(counts: torch.Tensor, target_sum: float = 1e4) -> torch.Tensor:
    """``log1p(counts / total · target_sum)`` per cell (as ``scapp.data.preprocess.normalize_log``); empty cells
    stay 0."""
    total = counts.sum(dim=1, keepdim=True)
    scale = torch.where(total > 0, target_sum / total.clamp_min(1e-12), torch.zeros_like(total))
    return torch.log1p(counts * scale)


def random_mask(shape: tuple[int, ...], rate: float, *, generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean mask, True where a gene is masked: each entry independently with probability ``rate``."""
    u = torch.rand(shape, generator=generator, device="cpu" if generator is not None else device)
    return (u < rate).to(device) if device is not None else u < rate


def masked_mse(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked entries only (0 when nothing is masked)."""
    m = mask.to(recon.dtype)
    return ((recon - target).pow(2) * m).sum() / m.sum().clamp_min(1.0)


def nb_nll(x: torch.Tensor, log_mu: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """Elementwise negative log-likelihood of counts ``x`` under NB(mean ``exp(log_mu)``, inverse dispersion
    ``exp(log_theta)``), in log space: ``var = μ + μ²/θ``."""
    theta = torch.exp(log_theta)
    log_theta_mu = torch.logaddexp(log_theta, log_mu)
    ll = (torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1)
          + theta * (log_theta - log_theta_mu) + x * (log_mu - log_theta_mu))
    return -ll


def masked_nb(x: torch.Tensor, log_mu: torch.Tensor, log_theta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean NB negative log-likelihood over the masked entries only."""
    m = mask.to(log_mu.dtype)
    return (nb_nll(x, log_mu, log_theta.expand_as(log_mu)) * m).sum() / m.sum().clamp_min(1.0)


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, weights: tuple[float, float, float] = (25.0, 25.0, 1.0),
                *, eps: float = 1e-4) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """VICReg (Bardes, Ponce & LeCun 2022): ``λ·inv + μ·var + ν·cov`` of two batches of projections (n × d).

    inv: mean squared difference; var: mean over dimensions of ``relu(1 − sqrt(var + eps))``, averaged over the
    two views (unbiased variance); cov: sum of squared off-diagonal covariances divided by d, summed over views.
    """
    n, d = z1.shape
    inv = F.mse_loss(z1, z2)
    std1 = torch.sqrt(z1.var(dim=0) + eps)
    std2 = torch.sqrt(z2.var(dim=0) + eps)
    var = (F.relu(1 - std1).mean() + F.relu(1 - std2).mean()) / 2

    def off_diag_sq(z: torch.Tensor) -> torch.Tensor:
        zc = z - z.mean(dim=0)
        cov = zc.T @ zc / max(n - 1, 1)
        return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / d

    cov = off_diag_sq(z1) + off_diag_sq(z2)
    lam, mu, nu = weights
    return lam * inv + mu * var + nu * cov, {"invariance": inv, "variance": var, "covariance": cov}


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020): cross-entropy of each of the 2n projections picking its partner among
    the other 2n − 1 by cosine similarity / temperature, averaged over all 2n."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def mlp(widths: Iterable[int], n_in: int, *, dropout: float, last_linear: bool = True) -> nn.Sequential:
    """``Linear → LayerNorm → ReLU → Dropout`` blocks; the last layer plain linear when ``last_linear``."""
    widths = list(widths)
    layers: list[nn.Module] = []
    prev = n_in
    for i, w in enumerate(widths):
        layers.append(nn.Linear(prev, w))
        if not (last_linear and i == len(widths) - 1):
            layers += [nn.LayerNorm(w), nn.ReLU(), nn.Dropout(dropout)]
        prev = w
    return nn.Sequential(*layers)


def auto_batch_size(n_train: int) -> int:
    """About 50 optimizer steps per epoch when fine-tuning: n/50 as a power of two, 16…256 (few labels need
    small batches: 1 % of a 3k-cell reference is ~20 cells)."""
    if n_train <= 0:
        return 16
    return min(256, max(16, 2 ** round(math.log2(max(n_train / 50, 1)))))


class _Classifier(nn.Module):
    """Encoder + linear head, one module (what the fine-tuning phase trains and keeps)."""

    def __init__(self, encoder: nn.Module, head: nn.Module, target_sum: float) -> None:
        super().__init__()
        self.encoder, self.head, self.target_sum = encoder, head, target_sum

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(normalize_log(counts, self.target_sum)))


def _misfits(own: dict[str, torch.Tensor], saved: dict[str, np.ndarray]) -> list[str]:
    """Names of ``own`` tensors that ``saved`` lacks or holds with another number of values (a saved scalar comes
    back with shape (1,): safetensors files hold no 0-d arrays)."""
    return [k for k in own if k not in saved or own[k].numel() != np.size(saved[k])]


def _as_tensors(own: dict[str, torch.Tensor], saved: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.asarray(saved[k])).reshape(own[k].shape) for k in own}


# -- the model ----------------------------------------------------------------------------------------------
class SSLModel(ScappModel):
    """Masked-autoencoder / contrastive pretraining and an encoder + linear-head classifier (module docstring)."""

    Config: ClassVar[type] = SSLConfig
    # Counts in: the model normalizes itself (NB needs the counts); genes seen in < 3 training cells dropped.
    preprocess_defaults: ClassVar[dict[str, Any]] = {"output": "counts", "min_gene_cells": 3}
    architecture_options: ClassVar[tuple[str, ...]] = ("encoder_widths", "target_sum")
    """Options a model fine-tuned from this one's encoder must share with it (the engine copies them)."""
    pretrain_methods: ClassVar[tuple[str, ...]] = PRETRAIN_METHODS

    # -- what a pretraining run (scapp.train.pretrain) asks of the method --------------------------------------
    @classmethod
    def pretrain_config(cls, method: str, options: dict[str, Any]) -> Any:
        """The validated config of pretraining ``method`` (``ConfigError`` on an unknown method or option)."""
        if method not in PRETRAIN_METHODS:
            raise ConfigError(f"--method must be one of {', '.join(PRETRAIN_METHODS)}, not {method!r}.")
        if method == "tabnet":
            return config_from_dict(TabNetPretrainConfig, options)
        return config_from_dict(SSLConfig, {**options, "method": method})

    @classmethod
    def pretrainer(cls, method: str, config: Any, *, n_features: int, device: str = "cpu") -> Any:
        """The network pretraining ``method`` trains: an ``SSLModel`` without classes, or a ``TabNetPretrainer``.
        Both have ``pretrain``, ``embed``, ``save_weights``, ``load_state_dict`` and ``fit_info``."""
        if method == "tabnet":
            return TabNetPretrainer(config, n_features=n_features, device=device)
        return cls(config, n_features=n_features, classes=[], device=device)

    @classmethod
    def pretrain_architecture(cls, method: str, config: Any) -> dict[str, Any]:
        """The options a model started from this pretraining must share with it (SIMS's for ``tabnet``)."""
        keys = TABNET_ARCHITECTURE if method == "tabnet" else cls.architecture_options
        return {k: getattr(config, k) for k in keys}

    @staticmethod
    def pretrain_input(method: str) -> str:
        """What the fine-tuned model reads (the pretraining run's recipe output): SIMS reads log1p."""
        return "log1p" if method == "tabnet" else "counts"

    def __init__(self, config: SSLConfig, *, n_features: int, classes: list[str], device: str = "cpu") -> None:
        super().__init__(config, n_features=n_features, classes=classes, device=device)
        torch.manual_seed(config.seed)
        self._device = torch.device(device)
        self.encoder = mlp(config.encoder_widths, n_features, dropout=config.phase_options("pretrain")["dropout"])
        self.encoder.to(self._device)
        self.head: nn.Module | None = None
        if self.n_classes >= 1:
            self.head = nn.Linear(config.latent, self.n_classes).to(self._device)
        self.decoder: nn.Module | None = None
        self.log_theta: nn.Parameter | None = None
        self.projector: nn.Module | None = None
        if self.n_classes == 0:  # a pretraining model: its pretext modules are part of what it saves
            self._build_pretext()
        self.warm_started: dict[str, Any] | None = None

    # -- modules ------------------------------------------------------------------------------------------
    def _build_pretext(self) -> None:
        cfg = self.config
        if self.decoder is not None or self.projector is not None:
            return
        dp = cfg.phase_options("pretrain")["dropout"]
        if cfg.method == "mae":
            hidden = list(reversed(cfg.encoder_widths[:-1]))
            self.decoder = mlp([*hidden, self.n_features], cfg.latent, dropout=dp).to(self._device)
            if cfg.loss == "nb":
                self.log_theta = nn.Parameter(torch.zeros(self.n_features, device=self._device))
        else:
            *hid, out = cfg.projector_widths or (cfg.latent,)
            layers: list[nn.Module] = []
            prev = cfg.latent
            for w in hid:
                layers += [nn.Linear(prev, w), nn.BatchNorm1d(w), nn.ReLU()]
                prev = w
            layers.append(nn.Linear(prev, out))
            self.projector = nn.Sequential(*layers).to(self._device)

    def _pretext_module(self) -> nn.Module:
        """Everything the pretraining phase trains (and whose best state it keeps)."""
        mods = nn.ModuleDict({"encoder": self.encoder})
        if self.decoder is not None:
            mods["decoder"] = self.decoder
        if self.projector is not None:
            mods["projector"] = self.projector
        if self.log_theta is not None:
            holder = nn.Module()
            holder.log_theta = self.log_theta
            mods["nb"] = holder
        return mods

    def _set_dropout(self, p: float) -> None:
        for m in (self.encoder, self.decoder):
            if m is not None:
                for d in m.modules():
                    if isinstance(d, nn.Dropout):
                        d.p = p

    # -- pretraining losses ---------------------------------------------------------------------------------
    def pretext_loss(self, counts: torch.Tensor, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The pretraining loss of one dense batch of counts, and its parts."""
        cfg = self.config
        x = normalize_log(counts, cfg.target_sum)
        if cfg.method == "mae":
            mask = random_mask(tuple(x.shape), cfg.mask_rate, generator=generator, device=x.device)
            out = self.decoder(self.encoder(x.masked_fill(mask, 0.0)))
            if cfg.loss == "nb":
                lib = counts.sum(dim=1, keepdim=True).clamp_min(1.0)
                log_mu = F.log_softmax(out, dim=1) + torch.log(lib)
                loss = masked_nb(counts, log_mu, self.log_theta, mask)
            else:
                loss = masked_mse(out, x, mask)
            return loss, {"masked_frac": mask.float().mean()}
        views = []
        for _ in range(2):
            mask = random_mask(tuple(x.shape), cfg.mask_rate, generator=generator, device=x.device)
            noise = torch.randn(tuple(x.shape), generator=generator, device="cpu" if generator is not None
                                else x.device).to(x.device) * cfg.noise_sd
            views.append(self.projector(self.encoder(x.masked_fill(mask, 0.0) + noise)))
        if cfg.method == "vicreg":
            return vicreg_loss(views[0], views[1], cfg.vicreg_weights)
        return nt_xent(views[0], views[1], cfg.temperature), {}

    @torch.no_grad()
    def pretext_eval(self, batches: Iterable[torch.Tensor], *, seed: int) -> float:
        """Mean pretraining loss over fixed batches with a fixed random draw (comparable from epoch to epoch)."""
        mods = self._pretext_module()
        mods.eval()
        gen = torch.Generator().manual_seed(seed)
        tot, n = 0.0, 0
        for xb in batches:
            if xb.shape[0] < 2 and self.config.method != "mae":
                continue
            loss, _ = self.pretext_loss(xb, gen)
            tot += float(loss) * xb.shape[0]
            n += xb.shape[0]
        return tot / max(n, 1)

    # -- pretraining ------------------------------------------------------------------------------------------
    def pretrain(self, trainer: TrainerAPI, *, batches: Callable[[int], Iterable[torch.Tensor]],
                 valid: Callable[[], Iterable[torch.Tensor]] | None, max_epochs: int, key: str | None = None,
                 span: tuple[float, float] = (0.0, 1.0)) -> Any:
        """Pretrain the encoder on batches of counts (``batches(epoch)`` yields dense cells × genes tensors on
        the model's device; ``valid()`` the held-out ones). ``key``: None when it is the run's main curve."""
        cfg = self.config
        opts = cfg.phase_options("pretrain")
        self._build_pretext()
        self._set_dropout(opts["dropout"])
        torch.set_flush_denormal(True)  # Adam's tiny second moments: subnormal floats are ~50x slower on CPU
        mods = self._pretext_module()
        opt = torch.optim.AdamW(mods.parameters(), lr=opts["lr"], weight_decay=opts["weight_decay"], amsgrad=True)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_epochs, gamma=cfg.lr_gamma)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        acc: dict[str, float] = {}

        def step(xb: torch.Tensor) -> StepOutput:
            loss, parts = self.pretext_loss(xb, gen)
            for k, v in parts.items():
                acc[k] = acc.get(k, 0.0) + float(v.detach()) * xb.shape[0]
            acc["n"] = acc.get("n", 0.0) + xb.shape[0]
            return StepOutput(loss, int(xb.shape[0]))

        def fields(epoch: int) -> dict[str, Any]:
            n = max(acc.pop("n", 0.0), 1.0)
            out = {f"train_{k}": v / n for k, v in acc.items()}
            acc.clear()
            return {**out, "pretext": cfg.method}

        result = trainer.run(Phase(
            name="pretraining" if key is None else f"pretraining ({cfg.method})", module=mods, optimizer=opt,
            step=step, max_epochs=max_epochs, batches=batches,
            validate=(lambda: {"valid_loss": self.pretext_eval(valid(), seed=cfg.seed + 7)}) if valid else None,
            monitor="valid_loss" if valid else "train_loss", mode="min", patience=cfg.early_stopping_patience,
            scheduler=sched, grad_clip=cfg.grad_clip, key=key, span=span, epoch_fields=fields,
        ))
        self.fit_info["pretrain"] = {"method": cfg.method, "mask_rate": cfg.mask_rate, "loss": cfg.loss,
                                     "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, **opts}
        return result

    def _device_batches(self, Xd: DeviceMatrix, bs: int, gen: torch.Generator) -> Callable[[int], Iterator]:
        def batches(epoch: int) -> Iterator[torch.Tensor]:
            for idx in batch_slices(len(Xd), bs, generator=gen, device=self._device):
                yield Xd.rows(idx)
        return batches

    def _fixed_batches(self, Xd: DeviceMatrix | None) -> Callable[[], Iterator[torch.Tensor]] | None:
        if Xd is None or len(Xd) == 0:
            return None
        bs = self.config.inference_batch_size

        def batches() -> Iterator[torch.Tensor]:
            for idx in batch_slices(len(Xd), bs, shuffle=False, device=self._device):
                yield Xd.rows(idx)
        return batches

    # -- fit: pretrain (no labels) or classify --------------------------------------------------------------------
    def fit(self, train: FitData, valid: FitData, trainer: TrainerAPI) -> None:
        cfg = self.config
        dev = self._device
        gen = torch.Generator().manual_seed(cfg.seed)
        ytr = np.asarray(train.y)
        labelled = ytr >= 0
        if self.n_classes == 0 or not labelled.any():  # a pretraining run
            Xtr = DeviceMatrix(train.X, dev, dense_fraction=0.0)
            Xva = DeviceMatrix(valid.X, dev, dense_fraction=0.0) if valid.X.shape[0] else None
            bs = cfg.batch_size or 256
            self.fit_info["batch_size"] = bs
            self.pretrain(trainer, batches=self._device_batches(Xtr, bs, gen), valid=self._fixed_batches(Xva),
                          max_epochs=cfg.max_epochs)
            return
        if cfg.pretrain_epochs > 0 and self.warm_started is None:
            Xall = DeviceMatrix(train.X, dev, dense_fraction=0.0)
            Xva = DeviceMatrix(valid.X, dev, dense_fraction=0.0) if valid.X.shape[0] else None
            self.pretrain(trainer, batches=self._device_batches(Xall, cfg.batch_size or 256, gen),
                          valid=self._fixed_batches(Xva), max_epochs=cfg.pretrain_epochs, key="pretrain",
                          span=(0.0, 0.4))
            del Xall
        self._finetune(train, valid, trainer, gen, span=(0.4, 1.0) if cfg.pretrain_epochs > 0 else (0.0, 1.0))

    def class_weights(self, y: np.ndarray) -> np.ndarray:
        counts = np.bincount(y, minlength=self.n_classes).astype(np.float64)
        if not self.config.class_weights:
            return np.ones(self.n_classes)
        return np.where(counts > 0, counts.sum() / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)

    def _finetune(self, train: FitData, valid: FitData, trainer: TrainerAPI, gen: torch.Generator, *,
                  span: tuple[float, float]) -> None:
        cfg = self.config
        dev = self._device
        opts = cfg.phase_options("finetune")
        self._set_dropout(opts["dropout"])
        torch.set_flush_denormal(True)
        lab = np.flatnonzero(np.asarray(train.y) >= 0)
        Xtr = DeviceMatrix(train.X[lab], dev)
        ytr = torch.as_tensor(np.asarray(train.y)[lab], dtype=torch.long, device=dev)
        vlab = np.flatnonzero(np.asarray(valid.y) >= 0)
        Xva = DeviceMatrix(valid.X[vlab], dev) if vlab.size else None
        yva = torch.as_tensor(np.asarray(valid.y)[vlab], dtype=torch.long, device=dev)
        weight = torch.as_tensor(self.class_weights(ytr.cpu().numpy()), dtype=torch.float32, device=dev)
        bs = cfg.batch_size or auto_batch_size(lab.size)
        self.fit_info["batch_size"] = bs
        net = _Classifier(self.encoder, self.head, cfg.target_sum)
        opt = torch.optim.AdamW(net.parameters(), lr=opts["lr"], weight_decay=opts["weight_decay"], amsgrad=True)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_epochs, gamma=cfg.lr_gamma)

        def step(idx: torch.Tensor) -> StepOutput:
            return StepOutput(F.cross_entropy(net(Xtr.rows(idx)), ytr[idx], weight=weight), idx.numel())

        result = trainer.run(Phase(
            name="fine-tuning" if self.warm_started else "training", module=net, optimizer=opt, step=step,
            max_epochs=cfg.max_epochs, n_items=lab.size, batch_size=bs, generator=gen, device=dev,
            validate=(lambda: self._validate(net, Xva, yva, weight)) if Xva is not None else None,
            monitor="valid_loss", mode="min", patience=cfg.early_stopping_patience, scheduler=sched,
            grad_clip=cfg.grad_clip, span=span, epoch_fields=lambda e: {"batch_size": bs},
        ))
        self.fit_info["finetune"] = {"from_pretrained": self.warm_started is not None, "epochs_run": result.epochs_run,
                                     "best_epoch": result.best_epoch, "n_labelled": int(lab.size), **opts}

    @torch.no_grad()
    def _validate(self, net: nn.Module, Xva: DeviceMatrix, yva: torch.Tensor, weight: torch.Tensor
                  ) -> dict[str, float]:
        from scapp.evaluate.metrics import classification_metrics

        net.eval()
        logits = torch.cat([net(Xva.rows(idx)) for idx in batch_slices(len(Xva), self.config.inference_batch_size,
                                                                          shuffle=False, device=self._device)])
        m = classification_metrics(yva.cpu().numpy(), logits.argmax(1).cpu().numpy(), self.classes)
        return {"valid_loss": float(F.cross_entropy(logits, yva, weight=weight)), "valid_accuracy": m["accuracy"],
                "valid_macro_f1": m["macro_f1"], "valid_balanced_accuracy": m["balanced_accuracy"]}

    # -- warm start -----------------------------------------------------------------------------------------------
    def warm_start(self, state: dict[str, np.ndarray]) -> dict[str, Any]:
        """Load the encoder of a pretraining run (its ``encoder.*`` tensors); the head stays freshly initialised.

        Raises ``ConfigError`` when the state holds no MLP encoder (e.g. a TabNet pretraining run) or one of
        another shape.
        """
        enc = {k[len(ENCODER_PREFIX):]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
        if not enc:
            raise ConfigError("This pretraining run holds no MLP encoder (was it a TabNet pretraining for SIMS? "
                              "Start a SIMS run from it instead).")
        own = self.encoder.state_dict()
        bad = _misfits(own, enc)
        if bad:
            raise ConfigError(f"The pretraining run's encoder does not fit this network ({len(bad)} tensors differ, "
                              f"e.g. {bad[0]}); fine-tune with the pretraining run's genes and layer widths.")
        self.encoder.load_state_dict(_as_tensors(own, enc))
        self.encoder.to(self._device)
        self.warm_started = {"tensors": len(own), "parameters": int(sum(np.asarray(enc[k]).size for k in own))}
        return dict(self.warm_started)

    # -- inference ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, X: Any) -> np.ndarray:
        """The encoder's output (``encoder_widths[-1]`` dims): the frozen embedding for kNN, probes and maps."""
        self.encoder.eval()
        out = [self.encoder(normalize_log(xb, self.config.target_sum)).cpu()
               for _, xb in dense_batches(X, self.config.inference_batch_size, self._device)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.config.latent), np.float32)

    @torch.no_grad()
    def predict_logits(self, X: Any) -> np.ndarray:
        if self.head is None:
            return np.zeros((X.shape[0], 0), np.float32)
        net = _Classifier(self.encoder, self.head, self.config.target_sum).eval()
        out = [net(xb).cpu() for _, xb in dense_batches(X, self.config.inference_batch_size, self._device)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.n_classes), np.float32)

    def explain(self, X: Any, by: np.ndarray) -> Explanation | None:
        """Integrated Gradients (captum) of the fine-tuned encoder + head, per class: the mean signed attribution
        of each gene to the class's logit over at most ``ig_cells_per_class`` of its cells, in the log-normalized
        space the encoder reads (baseline: no expression). None for an encoder without a head (pretraining)."""
        if self.head is None:
            return None
        from scapp.explain.attribution import class_integrated_gradients

        dev = self._device
        cfg = self.config

        def rows(idx: np.ndarray) -> torch.Tensor:
            block = X[idx]
            dense = block.toarray() if hasattr(block, "toarray") else np.asarray(block)
            return normalize_log(torch.as_tensor(dense, dtype=torch.float32, device=dev), cfg.target_sum)

        net = nn.Sequential(self.encoder, self.head).eval()
        res = class_integrated_gradients(net, rows, by, self.n_classes, cells_per_class=cfg.ig_cells_per_class,
                                         n_steps=cfg.ig_steps, seed=cfg.seed)
        glob = np.abs(res.scores).mean(0).astype(np.float64)
        glob = glob / glob.sum() if glob.sum() > 0 else np.full(glob.size, 1 / max(glob.size, 1))
        return Explanation(class_scores=res.scores, global_importance=glob.astype(np.float32),
                           kind="integrated_gradients",
                           extra={"ig_completeness_rel_error": np.array([res.completeness], np.float32),
                                  "ig_alpha": res.alpha, "ig_cells_per_class": res.cells.astype(np.float32)})

    @torch.no_grad()
    def reconstruct(self, X: Any) -> np.ndarray:
        """The masked autoencoder's output for unmasked input (log space for MSE, expected counts for NB)."""
        if self.decoder is None:
            raise ConfigError("Only a masked-autoencoder pretraining run reconstructs expression.")
        self.encoder.eval()
        self.decoder.eval()
        outs = []
        for _, xb in dense_batches(X, self.config.inference_batch_size, self._device):
            o = self.decoder(self.encoder(normalize_log(xb, self.config.target_sum)))
            if self.config.loss == "nb":
                o = torch.softmax(o, dim=1) * xb.sum(dim=1, keepdim=True)
            outs.append(o.cpu())
        return torch.cat(outs).numpy() if outs else np.zeros((0, self.n_features), np.float32)

    # -- weights -------------------------------------------------------------------------------------------------
    def _parts(self) -> dict[str, nn.Module]:
        parts = {"encoder": self.encoder}
        for name in ("head", "decoder", "projector"):
            mod = getattr(self, name)
            if mod is not None:
                parts[name] = mod
        return parts

    def state_dict(self) -> dict[str, Any]:
        out = {f"{name}.{k}": v.detach().cpu().numpy().copy()
               for name, mod in self._parts().items() for k, v in mod.state_dict().items()}
        if self.log_theta is not None:
            out["log_theta"] = self.log_theta.detach().cpu().numpy().copy()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if any(k.startswith(("decoder.", "projector.")) for k in state):
            self._build_pretext()
        for name, mod in self._parts().items():
            sub = {k[len(name) + 1:]: torch.as_tensor(np.asarray(v)) for k, v in state.items()
                   if k.startswith(f"{name}.")}
            if name != "encoder" and not sub:
                continue  # e.g. a pretraining state in a classifier: the head stays as it is (and the reverse)
            mod.load_state_dict(sub)
            mod.to(self._device)
            mod.eval()
        if "log_theta" in state and self.log_theta is not None:
            with torch.no_grad():
                self.log_theta.copy_(torch.as_tensor(np.asarray(state["log_theta"])))


# -- TabNet pretraining for SIMS ----------------------------------------------------------------------------------
TABNET_PREFIX = "tabnet_pretraining."
"""Keys of a TabNet pretraining state (pytorch-tabnet ``TabNetPretraining``'s own names after this prefix)."""
TABNET_ARCHITECTURE = ("n_d", "n_a", "n_steps", "gamma", "n_independent", "n_shared", "virtual_batch_size",
                       "momentum", "mask_type", "l2_normalize")
"""The SIMS options a warm-started SIMS run must share with its TabNet pretraining."""


@dataclass
class TabNetPretrainConfig:
    """TabNet pretraining (methods.md §1 "optional SSL warm start"); the network options (``TABNET_ARCHITECTURE``)
    default to SIMS's own, so a SIMS run with default settings can start from it."""

    n_d: int = SIMSConfig.n_d
    n_a: int = SIMSConfig.n_a
    n_steps: int = SIMSConfig.n_steps
    gamma: float = SIMSConfig.gamma
    n_independent: int = SIMSConfig.n_independent
    n_shared: int = SIMSConfig.n_shared
    virtual_batch_size: int = SIMSConfig.virtual_batch_size
    momentum: float = SIMSConfig.momentum
    mask_type: str = SIMSConfig.mask_type
    l2_normalize: bool = SIMSConfig.l2_normalize
    """As SIMS reads its input: log1p of normalized counts divided by the cell's L2 norm."""
    pretraining_ratio: float = 0.5
    """Share of genes obfuscated per cell (methods.md: 0.2-0.5)."""
    var_floor: float = 0.1
    """Per-gene variance floor, as a fraction of the batch's mean gene variance (zero-variance genes)."""
    lr: float = 0.01
    weight_decay: float = 1e-3
    grad_clip: float = 1.0
    lr_step_epochs: int = 2
    lr_gamma: float = 0.9
    max_epochs: int = 100
    early_stopping_patience: int = 10
    batch_size: int | None = None
    target_sum: float = 1e4
    seed: int = 0
    inference_batch_size: int = 1024

    def __post_init__(self) -> None:
        if not 0.0 < self.pretraining_ratio < 1.0:
            raise ConfigError(f"pretraining_ratio is a fraction between 0 and 1, not {self.pretraining_ratio}.")
        if self.var_floor <= 0:
            raise ConfigError("var_floor must be positive.")


def tabnet_reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, obf: torch.Tensor, *,
                               var_floor: float = 0.1) -> torch.Tensor:
    """pytorch-tabnet's pretraining loss with a safe variance floor.

    Per cell: ``Σ_j obf_ij (recon_ij − x_ij)² / v_j`` divided by the number of obfuscated genes, averaged over
    cells; ``v_j`` the gene's variance in the batch, floored at ``var_floor`` × the batch's mean gene variance
    (so a gene constant in the batch — a zero column — weighs like a low-variance gene, never infinitely).
    """
    var = target.var(dim=0, unbiased=True) if target.shape[0] > 1 else torch.ones_like(target[0])
    floor = (var_floor * var.mean()).clamp_min(1e-12)
    v = torch.maximum(var, floor)
    err = ((recon - target) * obf).pow(2) / v
    return (err.sum(dim=1) / obf.sum(dim=1).clamp_min(1.0)).mean()


class TabNetPretrainer:
    """pytorch-tabnet's pretraining network (``TabNetEncoder`` + ``TabNetDecoder``, as ``TabNetPretraining``)
    trained on counts normalized as SIMS reads them."""

    def __init__(self, config: TabNetPretrainConfig, *, n_features: int, device: str = "cpu") -> None:
        from pytorch_tabnet.tab_network import TabNetDecoder, TabNetEncoder

        from scapp.models._tabnet_ops import sparse_identity, use_fast_sparsemax

        self.config = config
        self.n_features = n_features
        self._device = torch.device(device)
        self.fit_info: dict[str, Any] = {}
        torch.manual_seed(config.seed)
        # pytorch-tabnet's TabNetPretraining holds exactly these two modules (plus a parameter-free embedder and
        # obfuscator); it is built here from them because its obfuscator cannot take the sparse identity group
        # matrix, and a dense one is D x D (1.6 GB at 20k genes). The obfuscation is done in ``loss``.
        self.net = nn.Module()
        self.net.encoder = TabNetEncoder(
            input_dim=n_features, output_dim=n_features, n_d=config.n_d, n_a=config.n_a, n_steps=config.n_steps,
            gamma=config.gamma, n_independent=config.n_independent, n_shared=config.n_shared,
            virtual_batch_size=config.virtual_batch_size, momentum=config.momentum, mask_type=config.mask_type,
            group_attention_matrix=sparse_identity(n_features))
        self.net.decoder = TabNetDecoder(n_features, n_d=config.n_d, n_steps=config.n_steps, n_independent=1,
                                         n_shared=1, virtual_batch_size=config.virtual_batch_size,
                                         momentum=config.momentum)
        use_fast_sparsemax(self.net)
        self.net.to(self._device)

    def prepare(self, counts: torch.Tensor) -> torch.Tensor:
        x = normalize_log(counts, self.config.target_sum)
        if self.config.l2_normalize:
            x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return x

    def _encode(self, x: torch.Tensor, prior: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's step outputs with an implicit identity group matrix (``_tabnet_ops.encode`` with a
        prior: obfuscated genes cannot be attended to)."""
        enc = self.net.encoder
        x = enc.initial_bn(x)
        att = enc.initial_splitter(x)[:, enc.n_d:]
        steps = []
        for step in range(enc.n_steps):
            m = enc.att_transformers[step](prior, att)
            prior = (enc.gamma - m) * prior
            out = enc.feat_transformers[step](m * x)
            steps.append(torch.relu(out[:, : enc.n_d]))
            att = out[:, enc.n_d:]
        return steps

    def loss(self, counts: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reconstruction loss of one batch of counts: genes obfuscated at random (``pretraining_ratio``), the
        encoder's attention prior 0 on them, the loss on them only (``tabnet_reconstruction_loss``)."""
        x = self.prepare(counts)
        obf = random_mask(tuple(x.shape), self.config.pretraining_ratio, generator=generator,
                          device=x.device).to(x.dtype)
        recon = self.net.decoder(self._encode(x * (1 - obf), 1 - obf))
        return tabnet_reconstruction_loss(recon, x, obf, var_floor=self.config.var_floor)

    def pretrain(self, trainer: TrainerAPI, *, batches: Callable[[int], Iterable[torch.Tensor]],
                 valid: Callable[[], Iterable[torch.Tensor]] | None, max_epochs: int) -> Any:
        cfg = self.config
        torch.set_flush_denormal(True)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_epochs, gamma=cfg.lr_gamma)
        gen = torch.Generator().manual_seed(cfg.seed + 1)

        @torch.no_grad()
        def validate() -> dict[str, float]:
            g = torch.Generator().manual_seed(cfg.seed + 7)
            tot, n = 0.0, 0
            for xb in valid():
                if xb.shape[0] < 2:
                    continue
                tot += float(self.loss(xb, g)) * xb.shape[0]
                n += xb.shape[0]
            return {"valid_loss": tot / max(n, 1)}

        result = trainer.run(Phase(
            name="pretraining (TabNet)", module=self.net, optimizer=opt,
            step=lambda xb: StepOutput(self.loss(xb, gen), int(xb.shape[0])),
            max_epochs=max_epochs, batches=batches, validate=validate if valid else None,
            monitor="valid_loss" if valid else "train_loss", patience=cfg.early_stopping_patience,
            scheduler=sched, grad_clip=cfg.grad_clip, epoch_fields=lambda e: {"pretext": "tabnet"},
        ))
        self.fit_info["pretrain"] = {"method": "tabnet", "pretraining_ratio": cfg.pretraining_ratio,
                                     "epochs_run": result.epochs_run, "best_epoch": result.best_epoch}
        return result

    @torch.no_grad()
    def embed(self, X: Any) -> np.ndarray:
        """Summed step outputs of the encoder (as SIMS's embedding), no obfuscation."""
        self.net.eval()
        out = []
        for _, xb in dense_batches(X, self.config.inference_batch_size, self._device):
            x = self.prepare(xb)
            out.append(torch.stack(self._encode(x, torch.ones_like(x))).sum(0).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.config.n_d), np.float32)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"{TABNET_PREFIX}{k}": v.detach().cpu().numpy().copy() for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict({k[len(TABNET_PREFIX):]: torch.as_tensor(np.asarray(v)) for k, v in state.items()
                                  if k.startswith(TABNET_PREFIX)})
        self.net.to(self._device)
        self.net.eval()

    def save_weights(self, path: str) -> None:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in self.state_dict().items()}, path)


def load_tabnet_encoder(tabnet: nn.Module, state: dict[str, np.ndarray]) -> dict[str, Any]:
    """Copy a TabNet pretraining run's encoder into a ``pytorch_tabnet`` ``TabNet`` (SIMS's network): the
    pretraining's ``encoder.*`` tensors become the classifier's ``tabnet.encoder.*``. Raises ``ConfigError`` when
    the state is not a TabNet pretraining or does not fit."""
    enc = {k[len(TABNET_PREFIX) + len("encoder."):]: v for k, v in state.items()
           if k.startswith(f"{TABNET_PREFIX}encoder.")}
    if not enc:
        raise ConfigError("This pretraining run holds no TabNet encoder; a SIMS run starts only from "
                          "'scapp pretrain --method tabnet'.")
    target = tabnet.tabnet.encoder
    own = target.state_dict()
    bad = _misfits(own, enc)
    if bad:
        raise ConfigError(f"The TabNet pretraining's encoder does not fit this SIMS network ({len(bad)} tensors "
                          f"differ, e.g. {bad[0]}); use the pretraining run's genes and n_d / n_a / n_steps.")
    dev = next(target.parameters()).device
    target.load_state_dict(_as_tensors(own, enc))
    target.to(dev)
    return {"tensors": len(own), "parameters": int(sum(np.asarray(enc[k]).size for k in own))}
