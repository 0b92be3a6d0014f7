"""SIMS specifics: batching, class weights, explain matrices, stop requests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from scapp.models.base import FitData
from scapp.train.trainer import Trainer
from scapp.models.sims import SIMSConfig, SIMSModel, auto_batch_size
from scapp.tensors import DeviceMatrix, batch_slices


def test_auto_batch_size_scales_with_data():
    """About 50 steps per epoch, never fewer than 64 cells (issue 10: a floor of 256 gave 6-9 steps per epoch on
    1-2k cells, and TabNet sat at chance until early stopping ended the run)."""
    assert auto_batch_size(1_400) == 64  # 22 steps
    assert auto_batch_size(1_800) == 64
    assert auto_batch_size(6_800) == 128  # bone marrow's training cells: 53 steps
    assert auto_batch_size(70_000) == 1024
    assert auto_batch_size(700_000) == 4096
    for n in (3_000, 10_000, 100_000):
        assert 25 <= n / auto_batch_size(n) <= 100


def test_sims_drops_genes_seen_in_fewer_than_three_training_cells():
    from scapp.data.preprocess import PreprocessConfig, Recipe

    X = sp.random(300, 50, density=0.2, format="csr", random_state=0, dtype=np.float32)
    X.data[:] = 1
    X = X.tolil()
    X[:, 7] = 0
    X[:2, 7] = 1  # in 2 cells: dropped
    X[:, 8] = 0
    X[:3, 8] = 1  # in 3 cells: kept
    train = np.arange(300)
    r = Recipe.fit(X.tocsr(), [f"g{i}" for i in range(50)], PreprocessConfig(**SIMSModel.preprocess_defaults),
                   train_idx=train)
    assert "g7" not in r.genes and "g8" in r.genes


def test_batch_slices_cover_every_cell_once_without_tiny_batches():
    parts = batch_slices(1030, 256, generator=torch.Generator().manual_seed(0))
    allidx = torch.cat(parts).sort().values
    assert torch.equal(allidx, torch.arange(1030))
    assert min(len(p) for p in parts) >= 128


def test_device_matrix_sparse_gather_equals_dense():
    rng = np.random.default_rng(0)
    X = sp.random(500, 80, density=0.1, format="csr", random_state=0, dtype=np.float32)
    dense = DeviceMatrix(X, torch.device("cpu"))
    sparse = DeviceMatrix(X, torch.device("cpu"), dense_fraction=0.0)
    assert dense.dense and not sparse.dense
    idx = torch.as_tensor(rng.integers(0, 500, 64))
    assert torch.equal(dense.rows(idx), sparse.rows(idx))
    assert np.allclose(sparse.rows(idx).numpy(), X[idx.numpy()].toarray())


def _toy(n=600, d=60, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    X = rng.gamma(0.5, 1.0, (n, d)).astype(np.float32)
    for k in range(c):
        X[y == k, k * 5 : k * 5 + 5] += 4
    return np.log1p(X), y


def test_stop_request_ends_training_and_keeps_best():
    X, y = _toy()
    m = SIMSModel(SIMSConfig(max_epochs=50), n_features=X.shape[1], classes=["a", "b", "c"])
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 8  # a few batches into epoch 2+

    trainer = Trainer(should_stop=stop)
    m.fit(FitData(X[:500], y[:500]), FitData(X[500:], y[500:]), trainer)
    assert trainer.stopped
    assert len(trainer.history) < 50


def test_explain_aggregates_by_class_without_dense_cells_by_genes():
    X, y = _toy()
    m = SIMSModel(SIMSConfig(max_epochs=3), n_features=X.shape[1], classes=["a", "b", "c"])
    m.fit(FitData(X[:500], y[:500]), FitData(X[500:], y[500:]), Trainer())
    logits, emb, ex = m.infer(X, by=y, cells_per_class=7)
    assert ex.class_scores.shape == (3, 60)
    assert np.allclose(ex.extra["mean_mask"].sum(1), 1, atol=1e-4)  # class mean of row-normalized masks
    # the ranking: that mean counted only where the gene is expressed (every value of _toy is > 0: the same here)
    assert np.allclose(ex.class_scores, ex.extra["mean_mask"], atol=1e-6)
    shown = ex.extra["display_scores"]  # heatmap colour: each gene divided by its maximum over classes
    assert np.allclose(shown.max(0)[shown.max(0) > 0], 1)
    assert ex.cell_masks.shape[0] == 21 and np.bincount(y[ex.cell_index]).tolist() == [7, 7, 7]
    assert np.allclose(ex.cell_masks.sum(1), 1, atol=1e-4)  # row-normalized explain rows
    assert np.allclose(logits, m.predict_logits(X), atol=1e-5)
    assert emb.shape == (600, m.config.n_d)
