"""A second modality beside RNA: protein / antibody-derived tag (ADT) counts from ``obsm``.

Protein columns are appended after the gene columns of the model input, so
every model reads them as extra features and Hydra gives them their own encoder
branch (``FitData.extra["modalities"]``). Their names carry a `` (protein)`` tag
in marker tables and explanations.

Preprocessing: CLR per cell (``log1p(x) − mean_j log1p(x_j)``, the centred
log-ratio Seurat and totalVI users know, robust to each cell's total antibody
capture), then per-protein standardization with the *training* mean and std,
clipped at ±10, like the RNA recipe of Hydra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scapp.errors import ModalityError

TAG = " (protein)"


def get_protein(adata: Any, key: str) -> tuple[np.ndarray, list[str]]:
    """The cells × proteins count matrix in ``adata.obsm[key]`` (float32) and the protein names.

    Names come from the DataFrame's columns, else ``uns['<key>_names']`` or
    ``uns['protein_names']`` when the length fits, else ``protein_1..n``.
    """
    if key not in adata.obsm:
        have = ", ".join(map(str, adata.obsm.keys())) or "none"
        msg = f"The data has no protein matrix obsm[{key!r}]; obsm keys present: {have}."
        raise ModalityError(msg)
    return protein_matrix(adata.obsm[key], adata.obs_names, adata.uns, key=key)


def protein_matrix(obj: Any, obs_names: pd.Index, uns: Any = None, *,
                   key: str = "protein") -> tuple[np.ndarray, list[str]]:
    """Validate and convert one protein table; refuse mismatched cells and unusable values."""
    obs_names = pd.Index(obs_names).astype(str)
    if isinstance(obj, pd.DataFrame):
        idx = obj.index.astype(str)
        if len(idx) != len(obs_names) or not idx.equals(obs_names):
            shared = len(idx.intersection(obs_names))
            msg = (f"The protein matrix {key!r} lists other cells than the RNA data ({shared:,} of "
                   f"{len(obs_names):,} barcodes shared, or in another order); align it to obs_names first.")
            raise ModalityError(msg)
        names = [str(c) for c in obj.columns]
        P = obj.to_numpy(dtype=np.float32)
    else:
        P = obj.toarray() if sp.issparse(obj) else np.asarray(obj)
        if P.ndim != 2 or P.shape[0] != len(obs_names):
            msg = f"The protein matrix {key!r} has shape {P.shape}; expected {len(obs_names):,} cells in rows."
            raise ModalityError(msg)
        P = P.astype(np.float32)
        names = None
        for cand in (f"{key}_names", "protein_names"):
            if uns is not None and cand in uns and len(uns[cand]) == P.shape[1]:
                names = [str(n) for n in uns[cand]]
                break
        names = names or [f"protein_{i + 1}" for i in range(P.shape[1])]
    if P.shape[1] == 0:
        raise ModalityError(f"The protein matrix {key!r} has no columns.")
    if not np.isfinite(P).all() or (P < 0).any():
        msg = f"The protein matrix {key!r} holds negative or non-finite values; give raw antibody counts."
        raise ModalityError(msg)
    if len(set(names)) != len(names):
        raise ModalityError(f"The protein matrix {key!r} has duplicate protein names.")
    return P, names


def clr(P: np.ndarray) -> np.ndarray:
    """Centred log-ratio per cell: ``log1p(x) − mean_j log1p(x_j)``."""
    L = np.log1p(np.asarray(P, dtype=np.float32))
    return L - L.mean(1, keepdims=True)


@dataclass
class ProteinRecipe:
    """The fitted protein preprocessing: which proteins, in what order, and the training scaling."""

    key: str
    names: list[str]
    mean: np.ndarray
    std: np.ndarray
    clip: float = 10.0

    @property
    def features(self) -> list[str]:
        return [n + TAG for n in self.names]

    @classmethod
    def fit(cls, P: np.ndarray, names: list[str], key: str, *, train_idx: np.ndarray) -> ProteinRecipe:
        """Learn the scaling from the training cells; all-zero proteins there are refused."""
        Ptr = np.asarray(P)[train_idx]
        zero = np.flatnonzero(~(Ptr > 0).any(0))
        if zero.size:
            shown = ", ".join(names[i] for i in zero[:10]) + (" …" if zero.size > 10 else "")
            msg = (f"{zero.size} protein column(s) of {key!r} are zero in every training cell ({shown}); "
                   "remove them (they carry no signal and cannot be scaled).")
            raise ModalityError(msg)
        C = clr(Ptr)
        std = C.std(0)
        std[std == 0] = 1.0
        return cls(key=key, names=list(names), mean=C.mean(0).astype(np.float32), std=std.astype(np.float32))

    def transform(self, P: np.ndarray) -> np.ndarray:
        out = (clr(P) - self.mean) / self.std
        return np.clip(out, -self.clip, self.clip).astype(np.float32)

    def align(self, P: np.ndarray, names: list[str]) -> np.ndarray:
        """Reorder a query's protein columns to the model's; missing proteins are an error."""
        pos = pd.Index(names).get_indexer(self.names)
        if (pos < 0).any():
            missing = [n for n, p in zip(self.names, pos) if p < 0]
            msg = (f"The query lacks {len(missing)} of the model's {len(self.names)} proteins "
                   f"({', '.join(missing[:10])}); give the same antibody panel.")
            raise ModalityError(msg)
        return np.asarray(P)[:, pos]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "names": self.names, "method": "clr+scale", "mean": self.mean.tolist(),
                "std": self.std.tolist(), "clip": self.clip}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProteinRecipe:
        return cls(key=d["key"], names=list(d["names"]), mean=np.asarray(d["mean"], np.float32),
                   std=np.asarray(d["std"], np.float32), clip=float(d.get("clip", 10.0)))


def stack(Xp: Any, Pp: np.ndarray) -> Any:
    """Gene columns then protein columns, keeping CSR input sparse."""
    if sp.issparse(Xp):
        return sp.hstack([Xp, sp.csr_matrix(Pp)], format="csr", dtype=np.float32)
    return np.hstack([np.asarray(Xp, dtype=np.float32), Pp])
