"""A cells × features matrix that lives on the device and is batched by index, and the batch iterators.

Shared by the models (inference, attribution) and the training engine (``scapp.train.trainer``):
data stays on the GPU when it fits and no Python loop ever touches single cells.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch


def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil is a dependency
        return 4 << 30


class DeviceMatrix:
    """Cells × genes float32 on a device; ``rows(idx)`` returns a dense batch.

    Stored dense when it takes under a quarter of the free device memory, else as
    CSR on the device and densified per batch with vectorized gathers. Either way
    no Python loop touches cells and no host↔device copy happens per batch.
    """

    def __init__(self, X: Any, device: torch.device, *, dense_fraction: float = 0.25) -> None:
        self.device = device
        self.shape = tuple(X.shape)
        dense_bytes = 4 * self.shape[0] * self.shape[1]
        self.dense = (not sp.issparse(X)) or dense_bytes <= dense_fraction * _free_bytes(device)
        if self.dense:
            arr = X.toarray() if sp.issparse(X) else np.asarray(X)
            self._x = torch.as_tensor(np.ascontiguousarray(arr, dtype=np.float32), device=device)
        else:
            Xc = sp.csr_matrix(X, dtype=np.float32)
            self._indptr = torch.as_tensor(Xc.indptr.astype(np.int64), device=device)
            self._indices = torch.as_tensor(Xc.indices.astype(np.int64), device=device)
            self._data = torch.as_tensor(Xc.data, device=device)

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        idx = idx.to(self.device)
        if self.dense:
            return self._x.index_select(0, idx)
        start = self._indptr[idx]
        lens = self._indptr[idx + 1] - start
        total = int(lens.sum())
        out = torch.zeros((idx.numel(), self.shape[1]), dtype=torch.float32, device=self.device)
        if total == 0:
            return out
        row = torch.repeat_interleave(torch.arange(idx.numel(), device=self.device), lens)
        first = torch.cumsum(lens, 0) - lens
        pos = torch.arange(total, device=self.device) - torch.repeat_interleave(first, lens) + start[row]
        out[row, self._indices[pos]] = self._data[pos]
        return out


def batch_slices(n: int, batch_size: int, *, generator: torch.Generator | None = None, shuffle: bool = True,
                 device: torch.device | None = None) -> list[torch.Tensor]:
    """Indices split into near-equal batches: nothing dropped, no batch under half the size."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    n_batches = max(1, -(-n // batch_size))
    parts = torch.tensor_split(order, n_batches)
    return [p.to(device) if device is not None else p for p in parts]


def dense_batches(X: Any, batch_size: int, device: torch.device):
    """``(start, dense float32 tensor)`` for consecutive row blocks of ``X`` (CSR or array): one block in memory."""
    for i in range(0, X.shape[0], batch_size):
        chunk = X[i : i + batch_size]
        arr = chunk.toarray() if sp.issparse(chunk) else np.asarray(chunk)
        yield i, torch.as_tensor(np.ascontiguousarray(arr, dtype=np.float32), device=device)
