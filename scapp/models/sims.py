"""SIMS: TabNet classifier with sparse attentive gene masks (methods.md §1).

The network is ``pytorch_tabnet.tab_network.TabNet``. scapp adds the training
loop the SIMS thesis describes (class-weighted cross-entropy, Adam, validation-
driven ReduceLROnPlateau, early stopping with the best weights restored) with
the data kept on the device and batched by index, and the explain matrices.
Deviations from the reference code, each on purpose:

* class weights ``N / (C · n_c)`` are on by default (the thesis weights inversely
  to frequency; the reference leaves them off);
* the batch size scales with the training set (about 50 steps per epoch, 64…4096)
  instead of a fixed 1,024 with ``drop_last``, which on 3k cells gave 1–2 steps per
  epoch and unstable results; batches are near-equal splits of a fresh permutation,
  so nothing is dropped;
* ``n_d = n_a = 32`` instead of 8, and genes seen in fewer than 3 training cells are
  dropped (both measured on issue 10's dev cases: see ``SIMSConfig.n_d``);
* sparsemax and the identity group matrix are computed by exact, cheaper code
  (``_tabnet_ops``);
* batch-norm statistics are recomputed on training cells before each validation
  (TabNet's slow running averages made early validation scores meaningless);
* early stopping keeps the epoch with the best validation accuracy (``monitor``,
  as the thesis), while the LR schedule follows the validation loss;
* a class's marker ranking counts mask attention only in cells that express the gene
  (the paper ranks by the plain mean explain matrix; see ``SIMSModel.infer``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from scapp.models._tabnet_ops import encode, sparse_identity, use_fast_sparsemax
from scapp.models.base import Explanation, FitData, Phase, ScappModel, StepOutput, TrainerAPI
from scapp.sampling import first_per_group
from scapp.tensors import DeviceMatrix, batch_slices, dense_batches


@dataclass
class SIMSConfig:
    """Defaults: SIMS reference / thesis (methods.md §1)."""

    n_d: int = 32
    n_a: int = 32
    """Widths of the decision and attention layers. The reference's 8 is a rank-8 map from the attention state
    to thousands of gene logits; 32 (the thesis's preset for larger data) learned faster and held up better on
    issue 10's dev cases, 5 seeds each: rare-class PBMC file 0.729 → 0.808 macro-F1 (16: 0.796, 64: 0.803),
    pbmc4k on all genes 0.944 → 0.954 (3 seeds), pbmc3k→pbmc4k fine types 0.758 → 0.757 (bench/RESULTS.md)."""
    n_steps: int = 3
    gamma: float = 1.3
    n_independent: int = 2
    n_shared: int = 2
    virtual_batch_size: int = 128
    momentum: float = 0.02
    mask_type: str = "sparsemax"
    lambda_sparse: float = 1e-3
    lr: float = 0.01
    weight_decay: float = 1e-3
    grad_clip: float = 1.0
    lr_factor: float = 0.75
    lr_patience: int = 3
    early_stopping_patience: int = 10
    monitor: str = "valid_accuracy"
    """Early stopping and the kept checkpoint follow this validation metric (valid_accuracy, valid_loss,
    valid_balanced_accuracy or valid_macro_f1); the learning-rate schedule always follows the validation
    loss. The thesis stops on validation accuracy. Balanced accuracy (the default before issue 10) weighs a
    class of 1-4 validation cells as much as one of 100: on small files its peaks were single lucky cells,
    and the kept epoch was often an early one with poor large classes. Same preprocessing and seeds
    (issue 10, bench/RESULTS.md): bone marrow 0.859 ± 0.040 → 0.915 ± 0.003 macro-F1, the rare-class PBMC
    file 0.789 → 0.811 (8 seeds), pancreas 0.878 → 0.863; validation loss 0.782 and macro-F1 0.793 on the
    rare-class file."""
    max_epochs: int = 500
    batch_size: int | None = None
    """None: scale with the training set (n/50 rounded to a power of two, 64…4096; ``auto_batch_size``)."""
    class_weights: bool = True
    l2_normalize: bool = True
    """Divide each cell's log-expression vector by its L2 norm (reference loader; scale invariance)."""
    bn_recompute_cells: int = 4096
    """Training cells sampled per epoch to recompute batch-norm statistics before validating."""
    seed: int = 0
    inference_batch_size: int | None = None
    """None: 1,024 cells on CPU (cache-sized; 8,192 was 1.4× slower there), 8,192 on a GPU."""


def auto_batch_size(n_train: int) -> int:
    """About 50 optimizer steps per epoch: n/50 rounded to a power of two, between 64 and 4,096.

    The floor was 256 until issue 10's dev cases showed what it cost on small files: 1,400-2,200 training cells
    gave 6-9 steps per epoch, TabNet spent the first 10-30 epochs near chance (its masks search thousands of
    genes) and early stopping often ended the run there (bench/RESULTS.md: pbmc3k→pbmc4k fine types 0.719 →
    0.758 macro-F1 over 5 seeds, pbmc4k all genes 0.788 → 0.95, the rare-class file 0.40 → 0.73). The thesis
    found small batches (8-32) best for SIMS; 64 keeps CPU epochs affordable.
    """
    if n_train <= 0:
        return 64
    b = 2 ** int(round(math.log2(max(n_train / 50, 1))))
    return int(min(4096, max(64, b)))


class _LogitsOnly(torch.nn.Module):
    """Adapter so torch utilities can call the SIMS forward pass."""

    def __init__(self, model: SIMSModel) -> None:
        super().__init__()
        self.net = model.net
        self._model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._model._forward(x)[0]


class SIMSModel(ScappModel):
    Config: ClassVar[type] = SIMSConfig
    # Genes seen in fewer than 3 training cells are dropped (scanpy's usual filter_genes(min_cells=3)): nothing can
    # be learned from them, and on a whole transcriptome they are over half the columns every step pays for.
    preprocess_defaults: ClassVar[dict[str, Any]] = {"min_gene_cells": 3}

    def __init__(self, config: SIMSConfig, *, n_features: int, classes: list[str], device: str = "cpu") -> None:
        if config.monitor not in ("valid_loss", "valid_accuracy", "valid_balanced_accuracy", "valid_macro_f1"):
            from scapp.errors import ConfigError

            msg = (f"monitor must be valid_loss, valid_accuracy, valid_balanced_accuracy or valid_macro_f1, not "
                   f"{config.monitor!r}.")
            raise ConfigError(msg)
        super().__init__(config, n_features=n_features, classes=classes, device=device)
        from pytorch_tabnet.tab_network import TabNet

        torch.manual_seed(config.seed)
        self._device = torch.device(device)
        self.net = TabNet(
            n_features, self.n_classes, n_d=config.n_d, n_a=config.n_a, n_steps=config.n_steps,
            gamma=config.gamma, n_independent=config.n_independent, n_shared=config.n_shared,
            virtual_batch_size=config.virtual_batch_size, momentum=config.momentum,
            mask_type=config.mask_type, group_attention_matrix=sparse_identity(n_features),
        )
        use_fast_sparsemax(self.net)
        self.net.to(self._device)
        self._infer_bs = config.inference_batch_size or (8192 if self._device.type == "cuda" else 1024)

    # -- forward -----------------------------------------------------------------
    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.l2_normalize:
            x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return x

    def _forward(self, x: torch.Tensor, *, explain: bool = False):
        res, m_loss, m_explain = encode(self.net, self._prep(x), explain=explain)
        return self.net.tabnet.final_mapping(res), res, m_loss, m_explain

    # -- training ------------------------------------------------------------------
    def class_weights(self, y: np.ndarray) -> np.ndarray:
        """``N / (C · n_c)`` over the classes present (thesis), or ones when ``class_weights`` is off."""
        counts = np.bincount(y, minlength=self.n_classes).astype(np.float64)
        if not self.config.class_weights:
            return np.ones(self.n_classes)
        return np.where(counts > 0, counts.sum() / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)

    def batch_loss(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss, cross-entropy, mask entropy)`` of one batch: loss = CE + λ_sparse · entropy.

        pytorch-tabnet's encoder returns ``M_loss = mean Σ M log M`` (the negative
        mask entropy) and its trainer subtracts ``λ · M_loss``; so minimizing the
        loss lowers the entropy of the masks, i.e. makes them sparser.
        """
        logits, _, m_loss, _ = self._forward(x)
        ce = F.cross_entropy(logits, y, weight=weight)
        entropy = -m_loss
        return ce + self.config.lambda_sparse * entropy, ce, entropy

    def fit(self, train: FitData, valid: FitData, trainer: TrainerAPI) -> None:
        cfg = self.config
        dev = self._device
        # Adam's second-moment estimates of near-zero gradients (genes a batch never
        # sees) decay into subnormal floats, and CPU arithmetic on those is ~50× slower:
        # single epochs took 60 s instead of 1.5 s. Flushing them to zero changes
        # nothing measurable and removes the stalls.
        torch.set_flush_denormal(True)
        gen = torch.Generator().manual_seed(cfg.seed)
        Xtr = DeviceMatrix(train.X, dev)
        ytr = torch.as_tensor(train.y, dtype=torch.long, device=dev)
        Xva = DeviceMatrix(valid.X, dev) if len(valid.y) else None
        yva = torch.as_tensor(valid.y, dtype=torch.long, device=dev)
        weight = torch.as_tensor(self.class_weights(np.asarray(train.y)), dtype=torch.float32, device=dev)
        bs = cfg.batch_size or auto_batch_size(len(train.y))
        self.fit_info["batch_size"] = bs
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        def step(idx: torch.Tensor) -> StepOutput:
            loss, _, _ = self.batch_loss(Xtr.rows(idx), ytr[idx], weight)
            return StepOutput(loss, idx.numel())

        trainer.run(Phase(
            name="training", module=self.net, optimizer=opt, step=step, max_epochs=cfg.max_epochs,
            n_items=len(train.y), batch_size=bs, generator=gen, device=dev,
            before_validate=lambda: self._recompute_bn_stats(Xtr, gen, cfg.bn_recompute_cells),
            validate=(lambda: self._validate(Xva, yva, weight)) if Xva is not None else None,
            monitor=cfg.monitor, mode="min" if cfg.monitor == "valid_loss" else "max",
            patience=cfg.early_stopping_patience,
            scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_factor,
                                                                 patience=cfg.lr_patience),
            scheduler_metric="valid_loss", grad_clip=cfg.grad_clip, epoch_fields=lambda e: {"batch_size": bs},
        ))

    def _recompute_bn_stats(self, Xtr: DeviceMatrix, gen: torch.Generator, max_cells: int = 4096) -> None:
        """Exact batch-norm statistics from (a sample of) training cells before validating.

        TabNet's running averages (momentum 0.01–0.02) lag far behind the
        weights on small data: on pbmc3k, validation accuracy sat at ~10% for
        15 epochs and early stopping kept a random epoch. Recomputing them
        ("precise BN", via ``torch.optim.swa_utils.update_bn``) makes every
        validation score, and the checkpoint it selects, meaningful. A fresh
        random 4,096 training cells per epoch estimate means and variances to
        ~1.5% of a standard deviation; going through every cell cost a third of
        each epoch at 10k cells and bought nothing measurable.
        """
        from torch.optim.swa_utils import update_bn

        n = len(Xtr)
        idx = torch.randperm(n, generator=gen)[:max_cells].to(self._device)
        bs = max(self.config.virtual_batch_size, min(4096, idx.numel()))
        batches = (Xtr.rows(b) for b in torch.split(idx, bs))  # one dense batch in memory at a time
        update_bn(batches, _LogitsOnly(self), device=self._device)

    @torch.no_grad()
    def _validate(self, Xva: DeviceMatrix, yva: torch.Tensor, weight: torch.Tensor) -> dict[str, float]:
        self.net.eval()
        n = len(Xva)
        logits = torch.cat([self._forward(Xva.rows(idx))[0]
                            for idx in batch_slices(n, self._infer_bs, shuffle=False, device=self._device)])
        loss = float(F.cross_entropy(logits, yva, weight=weight))
        from scapp.evaluate.metrics import classification_metrics

        m = classification_metrics(yva.cpu().numpy(), logits.argmax(1).cpu().numpy(), self.classes)
        return {"valid_loss": loss, "valid_accuracy": m["accuracy"], "valid_macro_f1": m["macro_f1"],
                "valid_balanced_accuracy": m["balanced_accuracy"]}

    # -- inference -----------------------------------------------------------------
    @torch.no_grad()
    def predict_logits(self, X: Any) -> np.ndarray:
        self.net.eval()
        out = [self._forward(xb)[0].cpu() for _, xb in dense_batches(X, self._infer_bs, self._device)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.n_classes), np.float32)

    @torch.no_grad()
    def embed(self, X: Any) -> np.ndarray:
        """The summed step decision outputs (n_d dims), the representation the classifier reads."""
        self.net.eval()
        out = [self._forward(xb)[1].cpu() for _, xb in dense_batches(X, self._infer_bs, self._device)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.config.n_d), np.float32)

    @torch.no_grad()
    def infer(self, X: Any, *, by: np.ndarray | None = None, cells_per_class: int = 50, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray, Explanation]:
        """Logits, embedding and explanation from one pass (``by=None``: group by predicted class).

        Explain rows are aggregated batch by batch; only ``cells_per_class``
        sampled rows per class are kept whole, never a cells × genes matrix.

        A class's gene scores (``class_scores``, its marker ranking) are the class mean of each cell's
        normalized mask times [the gene is expressed in that cell] (model input > 0: any count when unscaled,
        above the training mean with the ``scale`` option). The SIMS paper ranks by the explain matrix, i.e. the
        plain class mean mask, kept here as ``extra["mean_mask"]``. But a mask carries no sign and TabNet also
        looks at genes whose *absence* is informative: on the demo (fast preset, seed 0) 46% of CD4 naive T
        cells' attention went to RBP7, a monocyte gene (in 31% of CD14 monocytes, 3 of 697 CD4 naive T cells),
        and the plain mean put it first for that class (issue 11 saw LYZ first). Counting attention only where the gene is expressed ranks
        the genes a class looked at *and* expresses, as a biologist reads a marker list: the share of each
        class's top 5 that are higher in the class than in the other cells went 0.41 → 0.52 on the demo (3
        seeds), 0.50 → 0.62 on pancreas and 0.40 → 0.50 on pbmc4k. Mask × expression scored the same (±0.03);
        bench/results/issue11_sims_class_ranking.txt has every list.
        """
        self.net.eval()
        C, D = self.n_classes, self.n_features
        dev = self._device
        n = X.shape[0]
        rng = np.random.default_rng(seed)
        # Which cells to keep whole is only known for `by`; for predicted classes use a random score.
        keep_key = rng.random(n)
        class_sum = torch.zeros((C, D), dtype=torch.float64, device=dev)  # mask on genes the cell expresses
        mask_sum = torch.zeros((C, D), dtype=torch.float64, device=dev)  # mask, expressed or not
        class_n = torch.zeros(C, dtype=torch.float64, device=dev)
        glob = torch.zeros(D, dtype=torch.float64, device=dev)
        logits_all, emb_all = [], []
        sample_rows: list[torch.Tensor] = []
        sample_idx: list[np.ndarray] = []
        sample_score: list[np.ndarray] = []
        for start, xb in dense_batches(X, self._infer_bs, dev):
            logits, res, _, m_exp = self._forward(xb, explain=True)
            logits_all.append(logits.cpu())
            emb_all.append(res.cpu())
            glob += m_exp.sum(0, dtype=torch.float64)
            norm = m_exp / m_exp.sum(1, keepdim=True).clamp_min(1e-12)
            g = torch.as_tensor(by[start : start + len(xb)], device=dev) if by is not None else logits.argmax(1)
            mask_sum.index_add_(0, g, norm.double())
            class_sum.index_add_(0, g, (norm * (xb > 0)).double())
            class_n += torch.bincount(g, minlength=C).double()
            # Candidate sample: lowest keep_key per class within this batch (merged below).
            keys = keep_key[start : start + len(xb)]
            pick = first_per_group(g.cpu().numpy(), keys, cells_per_class)
            sample_rows.append(norm[torch.as_tensor(pick, device=dev)].float().cpu())
            sample_idx.append(start + pick)
            sample_score.append(keys[pick])
        logits_np = torch.cat(logits_all).numpy() if logits_all else np.zeros((0, C), np.float32)
        emb_np = torch.cat(emb_all).numpy() if emb_all else np.zeros((0, self.config.n_d), np.float32)
        # Markers are ranked by the class mean of mask × [gene expressed in the cell] (``expressed_mask_scores``).
        # Dividing by each gene's maximum over classes (kept only as the heatmap's colour, "display_scores")
        # made every gene score exactly 1 in the class where it peaks, so hundreds of genes tied at the top.
        denom = class_n.clamp_min(1)[:, None]
        mean = (class_sum / denom).float().cpu().numpy()
        mean_mask = (mask_sum / denom).float().cpu().numpy()
        colmax = mean.max(axis=0, keepdims=True)
        per_gene = np.divide(mean, colmax, out=np.zeros_like(mean), where=colmax > 0)
        fi = (glob / glob.sum().clamp_min(1e-12)).float().cpu().numpy()
        rows = torch.cat(sample_rows).numpy() if sample_rows else np.zeros((0, D), np.float32)
        idx = np.concatenate(sample_idx) if sample_idx else np.zeros(0, np.int64)
        score = np.concatenate(sample_score) if sample_score else np.zeros(0)
        groups = (by if by is not None else logits_np.argmax(1))[idx] if idx.size else idx
        keep = np.sort(first_per_group(groups, score, cells_per_class))
        expl = Explanation(class_scores=mean, global_importance=fi, cell_masks=rows[keep], cell_index=idx[keep],
                           kind="tabnet_mask", extra={"display_scores": per_gene, "mean_mask": mean_mask,
                                                      "class_n": class_n.cpu().numpy()})
        return logits_np, emb_np, expl

    def explain(self, X: Any, by: np.ndarray) -> Explanation:
        return self.infer(X, by=by)[2]

    # -- weights -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().cpu().numpy().copy() for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
        self.net.to(self._device)
        self.net.eval()

    def warm_start(self, state: dict[str, Any]) -> dict[str, Any]:
        """Start from the encoder of a TabNet pretraining run (``scapp pretrain --method tabnet``; issue 13)."""
        from scapp.models.ssl import load_tabnet_encoder

        return load_tabnet_encoder(self.net, state)
