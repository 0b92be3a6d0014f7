"""ZiPo: a zero-inflated Poisson (or negative-binomial) count autoencoder (methods.md §3, issue 12).

ZiPo answers "what is the true expression behind these zeros?": from the raw counts of a cell it
predicts, for every gene, an expression rate ``m = l·μ`` (library size × proportion) and the
probability ``z`` that a zero is a technical dropout. Its first layer is pushed to be sparse, so each
of its neurons reads a small set of genes: a gene program. Paper: Sharifitabar et al., IEEE/ACM TCBB
22(6), 2025 (Methods §II, results §III).

Network (paper defaults; ``ZiPoConfig``)
    encoder ``Linear → sigmoid → BatchNorm`` layers 2048-1024-512-256 and a latent layer of 128 built the
    same way; **residuals**: every encoder layer's output also goes through its own bias-free linear
    projection to the latent width, and these projections are *added* to the latent layer's output
    (``U = G_t(h) + Σ_i R_i(h_i)``; the paper says residuals go "from any encoder layer to the latent
    layer" but not how: a sum of projections is what we chose). Encoder input: ``log1p`` of the raw counts
    (the paper is silent). Heads from the latent, linear (deeper decoders were worse in the paper):
    zero-inflation logit ``r``; ``log μ = log_softmax(A·V + b)`` (μ sums to 1 over genes); ``log l`` from a
    small MLP (``Linear → BatchNorm → sigmoid``, hidden 16 and 4); for NB, ``log φ`` (dispersion, per cell
    and gene, as the paper's ``θ_c(j) = Θ_j(V_c)``).
Likelihood (``log_likelihood``), in log space without epsilon-truncated logs
    ZIP: ``x = 0``: ``logsigmoid(−r) + logaddexp(r, −m)``; ``x > 0``: ``logsigmoid(−r) + x·log m − m − lgamma(x+1)``,
    with ``log m = log l + log μ``. (The paper's printed text has ``log sig(r)`` where ``log(1 − z)`` is
    meant.) NB with ``var = m + φm²``: ``f(x) = lgamma(x+1/φ) − lgamma(1/φ) − lgamma(x+1) − softplus(a)/φ −
    x·softplus(−a)``, ``a = log φ + log m``; the lgamma difference is taken in float64 (in float32 it
    cancels catastrophically when φ is small, which is where the α_θ penalty drives it).
Loss
    ``−mean log L + α_z·mean(z²) + α_w·mean_i(mean_g|W_ig| / sqrt(mean_g W_ig²)) + α_θ·mean(φ²)``
    (+ ``0.1·mean((l·μ − x)²)`` for NB/ZINB, the paper's extra term), α_z = α_w = 0.1. The α_w term is the
    L1/L2 ratio of each first-layer neuron's weights: scale-invariant, so the BatchNorm after the sigmoid
    cannot undo it by rescaling.
Optimizer (through the shared ``Trainer``)
    Adam, lr 0.0212 × 0.9 per epoch down to 0.001 (reached at epoch 30; NB / ZINB start at 0.001, see
    ``ZiPoConfig.lr``), ReduceLROnPlateau on the
    validation loss (patience 15, 0.1 % relative threshold, factor 0.1: the paper cites ignite's class,
    whose factor it does not give; 0.1 is PyTorch's default), early stopping after 30 epochs without a
    better validation loss, best weights restored.
Pruning
    After training each first-layer neuron's weights are divided by its largest ``|w|`` and those below
    δ = 1e-4 are set to zero; the sparsity reached and the validation NLL / rate-MSE before and after are
    kept in ``fit_info["pruning"]`` (with a histogram of the relative weights for the app).
Annotation
    With labels, a light classifier (multinomial logistic regression, classes weighted inversely to
    size, on the standardized latent of the training cells) is fitted after the autoencoder, so a ZiPo
    run can annotate like the others. The paper makes no classification claim; its accuracy is reported
    like any other method's.

Choices where the paper is silent (also in the README)
    * batch size: about 30 optimizer steps per epoch, between 64 and 512 cells (``auto_batch_size``);
    * the μ head's bias starts at the log of the training genes' share of all counts and the library
      head's output bias at the mean log library size, so the untrained model *is* the library-size-scaled
      gene-mean baseline and training starts from there (the paper used PyTorch's default initialisation
      and a large learning rate to cover the distance);
    * batch-norm statistics are recomputed on up to ``bn_recompute_cells`` training cells before each
      validation (running averages lag far behind on small data);
    * the weights kept are those of the best validation epoch, then pruned.

Whole transcriptome: training data stay sparse (CSR on the device) and only one batch is ever dense.

Presets (registry): ``fast`` is the CPU demo network (512-256-128 → 64); ``default`` the paper's;
``thorough`` the paper's best first layer (4096); ``dca_like`` the DCA-style baseline the paper compares
against (NB autoencoder 128-64-128, ReLU, on normalized log input, observed library size, no zero
inflation, no weight sparsity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from scapp.errors import ConfigError, InputKindError
from scapp.models.base import Denoised, FitData, Phase, ScappModel, StepOutput, TrainerAPI
from scapp.tensors import DeviceMatrix, batch_slices

LIKELIHOODS = ("zip", "zinb", "poisson", "nb")
ACTIVATIONS = ("sigmoid", "relu")
INPUTS = ("log1p", "normalized_log1p")
LIBRARIES = ("predicted", "observed")


@dataclass
class ZiPoConfig:
    """Defaults: the ZiPo paper (methods.md §3, issue 12). Presets in the registry change a few of them."""

    encoder_widths: tuple[int, ...] = (2048, 1024, 512, 256)
    """Encoder layers before the latent layer (paper: 2048-1024-512-256; 4096 first was best, 2048 not
    significantly worse)."""
    latent: int = 128
    """Latent units (paper: 128; 512 gave no significant gain)."""
    residual: bool = True
    """Project every encoder layer's output into the latent layer and add it (paper: better with residuals)."""
    activation: str = "sigmoid"
    """``sigmoid`` (paper: keeps the first-layer sparsity meaningful) or ``relu`` (the DCA-like preset)."""
    decoder_hidden: tuple[int, ...] = ()
    """Hidden layers between the latent and the heads; () = linear heads (paper: deeper decoders were worse)."""
    likelihood: str = "zip"
    """``zip`` (default, UMI data), ``zinb``, ``poisson`` or ``nb`` (no zero inflation)."""
    input_transform: str = "log1p"
    """What the encoder reads: ``log1p`` of the raw counts, or ``normalized_log1p`` (counts scaled to 1e4 per
    cell, then log1p; the DCA-like preset). The likelihood is always on the raw counts."""
    library: str = "predicted"
    """``predicted`` from the latent (paper) or ``observed`` (each cell's total counts, as DCA's size factors)."""
    library_hidden: tuple[int, ...] = (16, 4)
    alpha_z: float = 0.1
    """Weight of ``mean(z²)``: larger means less zero inflation (paper Fig. 8)."""
    alpha_w: float = 0.1
    """Weight of the scale-invariant L1/L2 penalty on the first layer: sparsity (paper Fig. 9-10)."""
    alpha_theta: float = 0.1
    """Weight of ``mean(φ²)`` on the NB dispersion (NB/ZINB only): shrinks toward Poisson. The paper gives no
    value; 0.1 like the other two."""
    mse_weight: float | None = None
    """Weight of ``mean((l·μ − x)²)``; None: 0.1 for NB/ZINB (the paper's extra term), 0 for Poisson/ZIP."""
    lr: float | None = None
    """Starting learning rate; None: 0.0212 for ZIP / Poisson (paper), 0.001 for NB / ZINB. At 0.0212 ZINB's rates
    diverge in the first epochs (pancreas: a rate of 2,855 for a count of 19, validation NLL 1.37 after 300
    epochs against 0.79 at 0.001 in 24); 0.001 is also DCA's own rate."""
    lr_decay: float = 0.9
    lr_floor: float = 0.001
    plateau_patience: int = 15
    plateau_threshold: float = 1e-3
    plateau_factor: float = 0.1
    early_stopping_patience: int = 30
    max_epochs: int = 500
    batch_size: int | None = None
    """None: about 30 steps per epoch, 64…512 cells (``auto_batch_size``)."""
    init_from_data: bool = True
    """Start the μ head at the training genes' log share and the library head at the mean log library size."""
    bn_recompute_cells: int = 1024
    prune_delta: float | None = 1e-4
    """Zero first-layer weights below this fraction of their neuron's largest |w| after training (None: keep)."""
    classifier_C: float = 1.0
    """Inverse regularization of the latent classifier fitted when the run has labels."""
    programs_top: int = 50
    """Genes kept per unit in the gene-program table written into the run."""
    seed: int = 0
    inference_batch_size: int = 512

    def __post_init__(self) -> None:
        self.encoder_widths = tuple(int(w) for w in self.encoder_widths)
        self.decoder_hidden = tuple(int(w) for w in self.decoder_hidden)
        self.library_hidden = tuple(int(w) for w in self.library_hidden)
        for name, val, allowed in (("likelihood", self.likelihood, LIKELIHOODS),
                                   ("activation", self.activation, ACTIVATIONS),
                                   ("input_transform", self.input_transform, INPUTS),
                                   ("library", self.library, LIBRARIES)):
            if val not in allowed:
                msg = f"ZiPo {name} must be one of {', '.join(allowed)}, not {val!r}."
                raise ConfigError(msg)
        if self.latent < 1 or any(w < 1 for w in self.encoder_widths + self.decoder_hidden + self.library_hidden):
            msg = "ZiPo layer widths must be positive integers."
            raise ConfigError(msg)
        if min(self.alpha_z, self.alpha_w, self.alpha_theta) < 0 or (self.mse_weight or 0) < 0:
            msg = "ZiPo penalty weights (alpha_z, alpha_w, alpha_theta, mse_weight) cannot be negative."
            raise ConfigError(msg)

    @property
    def zero_inflated(self) -> bool:
        return self.likelihood in ("zip", "zinb")

    @property
    def negative_binomial(self) -> bool:
        return self.likelihood in ("zinb", "nb")

    @property
    def learning_rate(self) -> float:
        return (0.001 if self.negative_binomial else 0.0212) if self.lr is None else float(self.lr)

    @property
    def mse(self) -> float:
        return (0.1 if self.negative_binomial else 0.0) if self.mse_weight is None else float(self.mse_weight)


# -- the likelihood -------------------------------------------------------------------------------------
def log_likelihood(x: torch.Tensor, log_m: torch.Tensor, r: torch.Tensor | None = None,
                   log_phi: torch.Tensor | None = None) -> torch.Tensor:
    """Elementwise log-probability of counts ``x`` under a (zero-inflated) Poisson or NB with mean ``m``.

    ``log_m``: log of the rate (``log l + log μ``; never ``log`` of a rate that may underflow).
    ``r``: zero-inflation logit (``z = sigmoid(r)``), None for no zero inflation.
    ``log_phi``: log NB dispersion (``var = m + φ m²``), None for Poisson.
    Stable over the whole range (tested against scipy in float64: r = ±50, m = 1e-30…1e6, x ≤ 1e5).
    """
    m = torch.exp(log_m)
    if log_phi is None:
        f = x * log_m - m - torch.lgamma(x + 1)
        f0 = -m
    else:
        inv = torch.exp(-log_phi)  # 1/φ
        a = log_phi + log_m  # log(φ m)
        sp_a = F.softplus(a)  # log(1 + φ m)
        xd, invd = x.double(), inv.double()
        lg = (torch.lgamma(xd + invd) - torch.lgamma(invd)).to(x.dtype)  # float32 would cancel at small φ
        f = lg - torch.lgamma(x + 1) - inv * sp_a - x * F.softplus(-a)
        f0 = -inv * sp_a
    if r is None:
        return torch.where(x > 0, f, f0)
    return F.logsigmoid(-r) + torch.where(x > 0, f, torch.logaddexp(r, f0))


def weight_sparsity_penalty(W: torch.Tensor) -> torch.Tensor:
    """``mean_i( mean_g |W_ig| / sqrt(mean_g W_ig²) )`` for a weight matrix of neurons × genes.

    Each neuron's L1/L2 ratio: unchanged when a neuron's weights are multiplied by any non-zero
    constant (so BatchNorm cannot absorb it), smallest when a neuron reads a single gene.
    """
    # ‖w‖₁ / (√G ‖w‖₂) equals mean|w| / sqrt(mean w²); the fused norms are twice as fast as the means on a CPU
    l1 = torch.linalg.vector_norm(W, 1, dim=1)
    l2 = torch.linalg.vector_norm(W, 2, dim=1)
    return (l1 / l2.clamp_min(1e-30)).mean() / math.sqrt(W.shape[1])


class DecayThenPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """The paper's schedule: ×``decay`` after every epoch until ``floor``, and ReduceLROnPlateau throughout.

    A ``ReduceLROnPlateau`` so the shared Trainer steps it with the validation loss once per epoch.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, decay: float, floor: float, factor: float,
                 patience: int, threshold: float) -> None:
        super().__init__(optimizer, mode="min", factor=factor, patience=patience, threshold=threshold,
                         threshold_mode="rel")
        self.decay, self.floor = decay, floor

    def step(self, metrics: Any, epoch: int | None = None) -> None:  # type: ignore[override]
        for g in self.optimizer.param_groups:
            if g["lr"] > self.floor:
                g["lr"] = max(g["lr"] * self.decay, self.floor)
        super().step(metrics)


def auto_batch_size(n_train: int) -> int:
    """About 30 optimizer steps per epoch: n/30 rounded to a power of two, 64…512 cells."""
    if n_train <= 0:
        return 64
    return int(min(512, max(64, 2 ** round(math.log2(max(n_train / 30, 1))))))


# -- the network ----------------------------------------------------------------------------------------
def _act(name: str) -> nn.Module:
    return nn.Sigmoid() if name == "sigmoid" else nn.ReLU()


class ClippedBatchNorm(nn.BatchNorm1d):
    """BatchNorm whose normalized values are clipped to ``±clip`` at inference (before the affine map).

    Why: a sparse first-layer neuron that reads one rare gene is constant in almost every cell, so its
    running variance is ~0; at inference the one cell that expresses the gene is divided by ``sqrt(eps)``
    and lands hundreds of standard deviations out (measured on pbmc4k: 384, and a predicted 20,000 counts
    of a gene observed once). In training a value can never exceed ``sqrt(B − 1)`` (one cell of a batch of
    B), so inference clips to that same range. ``clip`` is a buffer, saved with the weights.
    """

    def __init__(self, num_features: int, clip: float = 8.0) -> None:
        super().__init__(num_features)
        self.register_buffer("clip", torch.tensor(float(clip)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.running_mean is None:
            return super().forward(x)
        xn = (x - self.running_mean) / torch.sqrt(self.running_var + self.eps)
        xn = xn.clamp(-self.clip, self.clip)
        return xn * self.weight + self.bias if self.affine else xn


class ZiPoNet(nn.Module):
    """Encoder with residual projections into the latent, linear heads, and the library-size MLP."""

    def __init__(self, n_genes: int, cfg: ZiPoConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = [*cfg.encoder_widths, cfg.latent]
        dims = [n_genes, *widths]
        self.encoder = nn.ModuleList(nn.Sequential(nn.Linear(dims[i], dims[i + 1]), _act(cfg.activation),
                                                   ClippedBatchNorm(dims[i + 1])) for i in range(len(widths)))
        self.residuals = nn.ModuleList(nn.Linear(w, cfg.latent, bias=False) for w in cfg.encoder_widths) \
            if cfg.residual else nn.ModuleList()
        dec, d = [], cfg.latent
        for w in cfg.decoder_hidden:
            dec.append(nn.Sequential(nn.Linear(d, w), _act(cfg.activation), ClippedBatchNorm(w)))
            d = w
        self.decoder = nn.Sequential(*dec)
        self.mu = nn.Linear(d, n_genes)
        self.zero = nn.Linear(d, n_genes) if cfg.zero_inflated else None
        self.dispersion = nn.Linear(d, n_genes) if cfg.negative_binomial else None
        if cfg.library == "predicted":
            lib, d = [], cfg.latent
            for w in cfg.library_hidden:
                lib += [nn.Linear(d, w), ClippedBatchNorm(w), nn.Sigmoid()]
                d = w
            lib.append(nn.Linear(d, 1))
            self.library = nn.Sequential(*lib)
        else:
            self.library = None

    @property
    def first_layer(self) -> nn.Linear:
        return self.encoder[0][0]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Raw counts (dense batch) → latent ``V``."""
        if self.cfg.input_transform == "log1p":
            h = torch.log1p(x)
        else:
            h = torch.log1p(x * (1e4 / x.sum(1, keepdim=True).clamp_min(1.0)))
        res = None
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            if i < len(self.residuals):
                p = self.residuals[i](h)
                res = p if res is None else res + p
        return h if res is None else h + res

    def heads(self, v: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Latent → ``log_l`` (cells × 1), ``log_mu``, ``r`` and ``log_phi`` (cells × genes; absent: None)."""
        d = self.decoder(v)
        out = {"log_mu": F.log_softmax(self.mu(d), dim=1),
               "r": self.zero(d) if self.zero is not None else None,
               "log_phi": self.dispersion(d).clamp(-10.0, 10.0) if self.dispersion is not None else None}
        if self.library is not None:
            out["log_l"] = self.library(v)
        else:
            out["log_l"] = torch.log(x.sum(1, keepdim=True).clamp_min(1.0))
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        v = self.encode(x)
        out = self.heads(v, x)
        out["latent"] = v
        return out


class _Encoder(nn.Module):
    """Adapter for ``update_bn``: a forward pass through every batch-norm layer."""

    def __init__(self, net: ZiPoNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["log_mu"]


# -- the model ------------------------------------------------------------------------------------------
class ZiPoModel(ScappModel):
    Config: ClassVar[type] = ZiPoConfig
    preprocess_defaults: ClassVar[dict[str, Any]] = {"output": "counts"}

    def __init__(self, config: ZiPoConfig, *, n_features: int, classes: list[str], device: str = "cpu") -> None:
        super().__init__(config, n_features=n_features, classes=classes, device=device)
        torch.manual_seed(config.seed)
        self._device = torch.device(device)
        self.net = ZiPoNet(n_features, config).to(self._device)
        self.clf: dict[str, np.ndarray] | None = None
        """Latent classifier: ``coef`` (classes or 1 × latent), ``intercept``, ``mean``, ``std``; None: unlabelled."""

    # -- the loss -------------------------------------------------------------------------------------
    def loss_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every term of the objective for one dense batch of raw counts, and the total ``loss``."""
        cfg = self.config
        out = self.net(x)
        log_m = out["log_l"] + out["log_mu"]
        ll = log_likelihood(x, log_m, out["r"], out["log_phi"])
        t = {"nll": -ll.mean(), "rate_mse": (torch.exp(log_m) - x).pow(2).mean()}
        loss = t["nll"]
        if out["r"] is not None:
            z = torch.sigmoid(out["r"])
            t["zero_prob"] = z.mean()
            loss = loss + cfg.alpha_z * z.pow(2).mean()
        if cfg.alpha_w:
            t["weight_penalty"] = weight_sparsity_penalty(self.net.first_layer.weight)
            loss = loss + cfg.alpha_w * t["weight_penalty"]
        if out["log_phi"] is not None:
            t["dispersion"] = torch.exp(out["log_phi"]).pow(2).mean()
            loss = loss + cfg.alpha_theta * t["dispersion"]
        if cfg.mse:
            loss = loss + cfg.mse * t["rate_mse"]
        t["loss"] = loss
        return t

    # -- training -------------------------------------------------------------------------------------
    @staticmethod
    def check_counts(X: Any) -> None:
        """Refuse input that is not raw counts (ZiPo's likelihood is on integers), naming what to use."""
        v = X.data if sp.issparse(X) else np.asarray(X).ravel()
        if v.size == 0:
            return
        sample = v[:: max(1, v.size // 200_000)]
        if (sample < 0).any() or not np.all(np.mod(sample, 1) == 0):
            what = "negative values (scaled data)" if (sample < 0).any() else "non-integer values (normalized or log data)"
            msg = (f"ZiPo models raw integer counts, but its input has {what}. Train on the raw count matrix: "
                   "a counts layer (--layer counts) or .raw (--layer raw).")
            raise InputKindError(msg)

    def _init_from_data(self, Xtr: Any) -> None:
        """Start at the library-size-scaled gene-mean baseline (see the module docstring)."""
        X = Xtr if sp.issparse(Xtr) else sp.csr_matrix(np.asarray(Xtr))
        gene = np.asarray(X.sum(axis=0), dtype=np.float64).ravel()
        lib = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
        share = gene / max(gene.sum(), 1.0)
        with torch.no_grad():
            self.net.mu.bias.copy_(torch.as_tensor(np.log(np.maximum(share, 1e-12)), dtype=torch.float32))
            if self.net.library is not None:
                self.net.library[-1].bias.fill_(float(np.log(np.maximum(lib, 1.0)).mean()))

    def fit(self, train: FitData, valid: FitData, trainer: TrainerAPI) -> None:
        cfg = self.config
        dev = self._device
        self.check_counts(train.X)
        torch.set_flush_denormal(True)  # Adam's tiny second moments: subnormal floats are ~50× slower on CPU
        gen = torch.Generator().manual_seed(cfg.seed)
        Xtr = DeviceMatrix(train.X, dev, dense_fraction=0.0)  # sparse; only a batch is ever dense
        Xva = DeviceMatrix(valid.X, dev, dense_fraction=0.0) if valid.X.shape[0] else None
        if cfg.init_from_data:
            self._init_from_data(train.X)
        bs = cfg.batch_size or auto_batch_size(len(Xtr))
        self.fit_info["batch_size"] = bs
        for mod in self.net.modules():
            if isinstance(mod, ClippedBatchNorm):
                mod.clip.fill_(math.sqrt(max(min(bs, len(Xtr)) - 1, 1)))
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.learning_rate)
        sched = DecayThenPlateau(opt, decay=cfg.lr_decay, floor=cfg.lr_floor, factor=cfg.plateau_factor,
                                 patience=cfg.plateau_patience, threshold=cfg.plateau_threshold)
        acc: dict[str, float] = {}

        def step(idx: torch.Tensor) -> StepOutput:
            t = self.loss_terms(Xtr.rows(idx))
            n = idx.numel()
            for k in ("nll", "rate_mse", "zero_prob"):
                if k in t:
                    acc[k] = acc.get(k, 0.0) + float(t[k].detach()) * n
            acc["n"] = acc.get("n", 0.0) + n
            return StepOutput(t["loss"], n)

        def fields(epoch: int) -> dict[str, Any]:
            n = max(acc.pop("n", 0.0), 1.0)
            out = {f"train_{k}": v / n for k, v in acc.items()}
            acc.clear()
            out["batch_size"] = bs
            return out

        result = trainer.run(Phase(
            name="training", module=self.net, optimizer=opt, step=step, max_epochs=cfg.max_epochs,
            n_items=len(Xtr), batch_size=bs, generator=gen, device=dev,
            before_validate=lambda: self._recompute_bn(Xtr, gen),
            validate=(lambda: self.evaluate(Xva, prefix="valid_")) if Xva is not None else None,
            monitor="valid_loss", mode="min", patience=cfg.early_stopping_patience,
            scheduler=sched, scheduler_metric="valid_loss", epoch_fields=fields,
        ))
        if result.epochs_run == 0:  # stopped before an epoch finished: nothing to prune or classify
            return
        check = Xva if Xva is not None else Xtr
        if cfg.prune_delta is not None:
            trainer.event("pruning the first layer", 0.96)
            self.fit_info["pruning"] = self.prune(cfg.prune_delta, check=check)
        if self.n_classes >= 2:
            trainer.event("fitting the latent classifier", 0.98)
            self._fit_classifier(train, valid)

    def _recompute_bn(self, Xtr: DeviceMatrix, gen: torch.Generator) -> None:
        from torch.optim.swa_utils import update_bn

        idx = torch.randperm(len(Xtr), generator=gen)[: self.config.bn_recompute_cells].to(self._device)
        bs = max(64, min(self.config.inference_batch_size, idx.numel()))
        update_bn((Xtr.rows(b) for b in torch.split(idx, bs)), _Encoder(self.net), device=self._device)

    @torch.no_grad()
    def evaluate(self, Xd: DeviceMatrix, *, prefix: str = "") -> dict[str, float]:
        """Mean loss terms over the cells of ``Xd`` (eval mode, in batches): ``loss``, ``nll``, ``rate_mse`` …"""
        self.net.eval()
        tot: dict[str, float] = {}
        n = len(Xd)
        for idx in batch_slices(n, self.config.inference_batch_size, shuffle=False, device=self._device):
            t = self.loss_terms(Xd.rows(idx))
            for k, v in t.items():
                if k != "weight_penalty":
                    tot[k] = tot.get(k, 0.0) + float(v) * idx.numel()
        out = {f"{prefix}{k}": v / max(n, 1) for k, v in tot.items()}
        return out

    # -- pruning ----------------------------------------------------------------------------------------
    def relative_weights(self) -> np.ndarray:
        """First-layer ``|W_ig| / max_g |W_ig|`` (neurons × genes)."""
        W = self.net.first_layer.weight.detach().abs()
        return (W / W.max(dim=1, keepdim=True).values.clamp_min(1e-30)).cpu().numpy()

    @torch.no_grad()
    def prune(self, delta: float, *, check: DeviceMatrix | None = None) -> dict[str, Any]:
        """Zero first-layer weights below ``delta`` of their neuron's max |w|; what it cost, measured on ``check``."""
        rel = self.relative_weights()
        edges = np.arange(-10.0, 0.01, 0.5)
        hist, _ = np.histogram(np.log10(np.maximum(rel, 1e-10)).ravel(), bins=np.append(edges, 0.5))
        before = self.evaluate(check) if check is not None else {}
        mask = torch.as_tensor(rel >= delta, device=self._device)
        self.net.first_layer.weight.mul_(mask)
        after = self.evaluate(check) if check is not None else {}
        kept = mask.sum(dim=1).cpu().numpy()
        return {"delta": delta, "sparsity": float(1 - mask.float().mean()),
                "frac_above_0.01": float((rel >= 0.01).mean()), "frac_above_1e-5": float((rel >= 1e-5).mean()),
                "genes_per_neuron_median": float(np.median(kept)), "genes_per_neuron_max": int(kept.max()),
                "nll_before": before.get("nll"), "nll_after": after.get("nll"),
                "rate_mse_before": before.get("rate_mse"), "rate_mse_after": after.get("rate_mse"),
                "hist_log10_edges": edges.tolist(), "hist_counts": hist.astype(int).tolist()}

    def sparsity(self) -> float:
        """Fraction of first-layer weights that are exactly zero."""
        return float((self.net.first_layer.weight == 0).float().mean())

    # -- the latent classifier ----------------------------------------------------------------------------
    def _fit_classifier(self, train: FitData, valid: FitData) -> None:
        from sklearn.linear_model import LogisticRegression

        lab = np.flatnonzero(np.asarray(train.y) >= 0)
        Z = self.embed(train.X[lab])
        y = np.asarray(train.y)[lab]
        mean, std = Z.mean(0), Z.std(0)
        std[std == 0] = 1.0
        clf = LogisticRegression(C=self.config.classifier_C, max_iter=2000, class_weight="balanced")
        clf.fit((Z - mean) / std, y)
        C = self.n_classes
        coef = np.zeros((C, Z.shape[1]), np.float32)
        icpt = np.zeros(C, np.float32)
        present = clf.classes_
        if present.size == 2:  # sklearn keeps one row: logits (0, d) give the same softmax
            coef[present[1]], icpt[present[1]] = clf.coef_[0], clf.intercept_[0]
            if C > 2:
                absent = np.setdiff1d(np.arange(C), present)
                icpt[absent] = -1e4
        else:
            coef[present], icpt[present] = clf.coef_, clf.intercept_
            icpt[np.setdiff1d(np.arange(C), present)] = -1e4  # a class without training cells is never predicted
        self.clf = {"coef": coef, "intercept": icpt, "mean": mean.astype(np.float32), "std": std.astype(np.float32)}
        vl = np.flatnonzero(np.asarray(valid.y) >= 0)
        if vl.size:
            pred = self.predict_logits(valid.X[vl]).argmax(1)
            self.fit_info["latent_classifier_valid_accuracy"] = float((pred == np.asarray(valid.y)[vl]).mean())

    # -- inference ----------------------------------------------------------------------------------------
    def _blocks(self, X: Any, batch_size: int | None = None):
        """``(start, dense float32 block on the device)``; refuses non-count input first."""
        self.check_counts(X)
        bs = batch_size or self.config.inference_batch_size
        for i in range(0, X.shape[0], bs):
            chunk = X[i : i + bs]
            arr = chunk.toarray() if sp.issparse(chunk) else np.asarray(chunk)
            yield i, torch.as_tensor(np.ascontiguousarray(arr, dtype=np.float32), device=self._device)

    @torch.no_grad()
    def embed(self, X: Any) -> np.ndarray:
        """The latent ``V`` of every cell (cells × ``latent``)."""
        self.net.eval()
        out = [self.net.encode(xb).cpu() for _, xb in self._blocks(X)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.config.latent), np.float32)

    @torch.no_grad()
    def denoise_batch(self, X: Any) -> Denoised:
        """Rates ``l·μ``, zero-inflation probabilities, predicted library size, latent and per-cell NLL of a
        block of raw counts (cells × genes; keep blocks small: the outputs are dense)."""
        self.net.eval()
        x = next(self._blocks(X, batch_size=X.shape[0]))[1] if X.shape[0] else None
        if x is None:
            G = self.n_features
            return Denoised(rates=np.zeros((0, G), np.float32))
        out = self.net(x)
        log_m = out["log_l"] + out["log_mu"]
        ll = log_likelihood(x, log_m, out["r"], out["log_phi"])
        return Denoised(rates=torch.exp(log_m).cpu().numpy(),
                        zero_prob=torch.sigmoid(out["r"]).cpu().numpy() if out["r"] is not None else None,
                        library=torch.exp(out["log_l"]).squeeze(1).cpu().numpy(),
                        latent=out["latent"].cpu().numpy(), nll=(-ll.mean(1)).cpu().numpy())

    def denoise(self, X: Any) -> np.ndarray:
        """Expected counts ``l·μ`` of every cell (dense cells × genes: prefer ``denoise_batch`` on blocks)."""
        bs = self.config.inference_batch_size
        parts = [self.denoise_batch(X[i : i + bs]).rates for i in range(0, X.shape[0], bs)]
        return np.concatenate(parts) if parts else np.zeros((0, self.n_features), np.float32)

    def predict_logits(self, X: Any) -> np.ndarray:
        if self.clf is None:
            from scapp.errors import RunError

            msg = "This ZiPo run was trained without labels, so it cannot annotate cells; train it with --label."
            raise RunError(msg)
        Z = (self.embed(X) - self.clf["mean"]) / self.clf["std"]
        return (Z @ self.clf["coef"].T + self.clf["intercept"]).astype(np.float32)

    def input_sd(self, X: Any, *, block: int = 4096) -> np.ndarray:
        """Per-gene standard deviation over the cells of ``X`` (raw counts) of what the encoder reads (``log1p``
        of the counts, or of the counts scaled to 1e4 per cell): the spread that scales a first-layer weight into
        how much the gene moves its unit. Streamed over blocks of a sparse matrix, from sums of x and x²; never a
        dense cells × genes array."""
        X = X.tocsr() if sp.issparse(X) else sp.csr_matrix(np.asarray(X, dtype=np.float32))
        n, G = X.shape
        s1, s2 = np.zeros(G, np.float64), np.zeros(G, np.float64)
        for i in range(0, n, block):
            b = X[i : i + block].astype(np.float64)
            if self.config.input_transform != "log1p":
                lib = np.maximum(np.asarray(b.sum(1)).ravel(), 1.0)
                b = sp.csr_matrix(sp.diags(1e4 / lib) @ b)
            b.data = np.log1p(b.data)
            s1 += np.asarray(b.sum(0)).ravel()
            b.data **= 2
            s2 += np.asarray(b.sum(0)).ravel()
        nn_ = max(n, 1)
        mean = s1 / nn_
        return np.sqrt(np.maximum(s2 / nn_ - mean**2, 0.0))

    def gene_programs(self, genes: list[str], *, top: int | None = None, input_sd: np.ndarray | None = None) -> Any:
        """The genes each unit reads, strongest first: ``layer, unit, rank, gene, weight, relative`` (+
        ``input_sd, contribution`` for the first layer when ``input_sd`` is given).

        ``layer = "encoder"``: first-layer neurons (non-zero weights only, after pruning: the paper's gene
        programs); ``layer = "latent"``: each latent unit's decoder weights into log μ (positive: genes it
        raises), only for linear heads. ``relative`` is ``|w|`` over the unit's largest ``|w|`` (the paper's
        pruning measure). With ``input_sd`` (``input_sd()`` over the training cells) the first layer is ranked
        by ``contribution = w · sd``: the encoder input is not standardised, so a rare gene (tiny spread) can
        carry a large weight and still barely move its unit (a display choice, see ``scapp.explain.programs``).
        """
        import pandas as pd

        top = top or self.config.programs_top
        genes_arr = np.asarray(genes, dtype=object)
        rows = []
        W = self.net.first_layer.weight.detach().cpu().numpy()
        sd = None if input_sd is None else np.asarray(input_sd, dtype=np.float64).ravel()
        mats = [("encoder", W, sd)]
        if not self.config.decoder_hidden:
            mats.append(("latent", self.net.mu.weight.detach().cpu().numpy().T, None))
        for layer, M, s in mats:
            k = min(top, M.shape[1])
            if layer != "encoder":
                A = M
            elif s is None:
                A = np.abs(M)
            else:
                A = np.abs(M) * s[None, :]
            order = np.argsort(-A, axis=1, kind="stable")[:, :k]
            vals = np.take_along_axis(M, order, axis=1)
            amax = np.abs(M).max(axis=1, keepdims=True)
            rel = np.take_along_axis(np.abs(M), order, axis=1) / np.maximum(amax, 1e-30)
            keep = vals != 0
            unit = np.repeat(np.arange(M.shape[0]), k).reshape(M.shape[0], k)
            rank = np.tile(np.arange(1, k + 1), (M.shape[0], 1))
            df = pd.DataFrame({"layer": layer, "unit": unit[keep], "rank": rank[keep],
                               "gene": genes_arr[order[keep]], "weight": vals[keep].astype(np.float32),
                               "relative": rel[keep].astype(np.float32)})
            if sd is not None:  # the same columns on every layer; NaN where they do not apply
                sg = s[order[keep]] if s is not None else np.full(int(keep.sum()), np.nan)
                df["input_sd"] = sg.astype(np.float32)
                df["contribution"] = (vals[keep] * sg).astype(np.float32)
            rows.append(df)
        return pd.concat(rows, ignore_index=True)

    # -- weights -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        out = {f"net.{k}": v.detach().cpu().numpy().copy() for k, v in self.net.state_dict().items()}
        if self.clf is not None:
            out.update({f"clf.{k}": v for k, v in self.clf.items()})
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        net = {k[4:]: torch.as_tensor(v) for k, v in state.items() if k.startswith("net.")}
        missing, unexpected = self.net.load_state_dict(net, strict=False)
        if unexpected or any(not k.endswith(".clip") for k in missing):  # runs of 2026-12-05 had no clip buffers
            msg = f"ZiPo weights do not fit the network: missing {missing}, unexpected {unexpected}."
            raise RuntimeError(msg)
        self.net.to(self._device)
        self.net.eval()
        clf = {k[4:]: np.asarray(v) for k, v in state.items() if k.startswith("clf.")}
        self.clf = clf or None
