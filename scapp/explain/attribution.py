"""Integrated Gradients per class for a single network (captum), as class × gene scores.

Hydra attributes a stack of 25 models at once and keeps the paper's unsigned consensus
(``scapp.models.hydra``); a single classifier (the self-supervised network) needs only the plain
form: the mean signed attribution of each gene to the class's logit over (a sample of) that class's
cells, from a baseline of no expression. Positive: the gene moved those cells towards their class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class ClassAttribution:
    """Mean signed IG per class and gene, what it rests on and how well it adds up."""

    scores: np.ndarray
    """classes × genes: mean attribution to the class's own logit over the class's sampled cells."""
    alpha: np.ndarray
    """classes × genes: mean |attribution| (how much a gene mattered, either way)."""
    cells: np.ndarray
    """cells attributed per class (0: no cell of that class)."""
    completeness: float
    """Relative error of IG's completeness (Σ attributions vs f(x) − f(baseline)) over the attributed cells."""


def class_integrated_gradients(forward: nn.Module, rows: Callable[[np.ndarray], torch.Tensor], by: np.ndarray,
                               n_classes: int, *, cells_per_class: int = 50, n_steps: int = 50, seed: int = 0,
                               chunk: int = 64) -> ClassAttribution:
    """IG of ``forward``'s logit of class c on at most ``cells_per_class`` random cells of class c (``by == c``).

    ``rows(idx)`` returns the network's input for those cells (already on the network's device), so the
    attribution lives in the space the network reads (e.g. log-normalized expression, never raw counts:
    a per-cell normalization is flat along IG's straight path from zero and would attribute nothing).
    Work is bounded by ``n_classes × cells_per_class × n_steps`` forward passes, in chunks of ``chunk`` cells.
    """
    from captum.attr import IntegratedGradients

    forward.eval()
    ig = IntegratedGradients(forward)
    by = np.asarray(by, dtype=np.int64)
    rng = np.random.default_rng(seed)
    scores: np.ndarray | None = None
    alpha: np.ndarray | None = None
    cells = np.zeros(n_classes, np.int64)
    err_num = err_den = 0.0
    for c in range(n_classes):
        members = np.flatnonzero(by == c)
        if members.size > cells_per_class:
            members = np.sort(rng.choice(members, cells_per_class, replace=False))
        for s in range(0, members.size, chunk):
            x = rows(members[s:s + chunk])
            base = torch.zeros_like(x)
            attr, delta = ig.attribute(x, baselines=base, target=c, n_steps=n_steps, internal_batch_size=chunk,
                                       return_convergence_delta=True)
            if scores is None:
                scores = np.zeros((n_classes, x.shape[1]), np.float64)
                alpha = np.zeros_like(scores)
            scores[c] += attr.sum(0, dtype=torch.float64).detach().cpu().numpy()
            alpha[c] += attr.abs().sum(0, dtype=torch.float64).detach().cpu().numpy()
            total = attr.sum(1, dtype=torch.float64)
            err_num += float(delta.abs().sum())
            err_den += float((total - delta).abs().sum())  # captum's delta = Σ attr − (f(x) − f(base))
        cells[c] = members.size
    if scores is None:
        msg = "No labelled cell to attribute."
        raise ValueError(msg)
    n = np.maximum(cells, 1)[:, None]
    return ClassAttribution(scores=(scores / n).astype(np.float32), alpha=(alpha / n).astype(np.float32),
                            cells=cells, completeness=err_num / err_den if err_den > 0 else float("nan"))
