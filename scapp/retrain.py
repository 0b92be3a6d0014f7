"""Retrain a run on the genes a query shares with it (issue 10: "queries that share few genes").

A model refuses a query that holds too few of its genes (``scapp.data.align``). The way forward is the same
method with the same settings, trained on the same file but on only the genes the query has: a new run whose
gene list the query covers completely. This module builds that run's ``TrainRequest`` from the old run's
config; the CLI (``scapp retrain``) and the Annotate page only start it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from scapp import runs
from scapp.data.align import shared_genes
from scapp.errors import InputError
from scapp.train.engine import TrainRequest

MIN_GENES = 50
"""Fewer shared genes than this are too few to train on."""


@dataclass
class RetrainOffer:
    """What a retrain of ``run`` on the genes of a query would be: how many genes, and whether it can be done."""

    run: Path
    data: str
    """The run's training file (a retrain reads it again)."""
    n_shared: int
    """Genes of the training file that the query has (what the new run would train on); 0 if unknown."""
    n_training_genes: int
    available: bool
    reason: str = ""
    """Why not, when ``available`` is False (one sentence)."""

    def command(self, query: str | os.PathLike) -> str:
        """The CLI line that does it."""
        return f"python -m scapp retrain {self.run} --genes-from {Path(query).resolve()}"

    def sentence(self, query: str | os.PathLike) -> str:
        """The way forward, to end an error message with: the command, or why a retrain cannot be done."""
        if not self.available:
            return self.reason
        return (f"Retrain the same method and settings on the {self.n_shared:,} shared genes: "
                f"{self.command(query)}")


def request_of(config: dict[str, Any]) -> TrainRequest:
    """The ``TrainRequest`` a run was trained with, from its config (which also holds the format version, the
    creation time and the device used: those are left out)."""
    names = {f.name for f in fields(TrainRequest)}
    return TrainRequest.from_dict({k: v for k, v in config.items() if k in names})


def file_var(data: str | os.PathLike, *, orientation: str = "auto") -> pd.DataFrame:
    """The genes (``var``) of a data file as ``scapp.data.load_dataset`` reads them; an h5ad file is opened backed
    (its matrix is not read)."""
    p = Path(data)
    if p.is_file() and p.name.lower().endswith(".h5ad") and orientation != "genes_x_cells":
        import anndata as ad

        try:
            a = ad.read_h5ad(p, backed="r")
        except Exception:  # noqa: BLE001 - let the ordinary reader say what is wrong with the file
            a = None
        if a is not None:
            try:
                return a.var.copy()
            finally:
                a.file.close()
    from scapp.data import load_dataset

    adata, _ = load_dataset(p, orientation=orientation)
    return adata.var


def _missing_file(data: str) -> InputError:
    return InputError(f"Retraining needs the run's training file, which was at {data} and is no longer there; "
                      "put it back there (or train a new run on the genes you need).")


def _var(query: Any) -> pd.DataFrame:
    return query if isinstance(query, pd.DataFrame) else query.var


def _shared(config: dict[str, Any], query_var: pd.DataFrame) -> tuple[list[str], int]:
    data = str(config.get("data") or "")
    if not data or not Path(data).exists():
        raise _missing_file(data or "(not recorded)")
    var = file_var(data, orientation=config.get("orientation") or "auto")
    genes = [str(g) for g in var.index]
    return shared_genes(query_var, genes), len(genes)


def retrain_offer(run_ref: str | os.PathLike, query: Any) -> RetrainOffer:
    """Whether the run can be retrained on the genes ``query`` (an AnnData, or just its ``var``) shares with its
    training file, and on how many.

    Never raises for a missing training file or too few genes: that is ``available=False`` with the reason.
    """
    store = runs.RunStore.open(run_ref)
    cfg = store.config() or {}
    data = str(cfg.get("data") or "")
    try:
        genes, n_train = _shared(cfg, _var(query))
    except InputError as e:
        return RetrainOffer(run=store.path, data=data, n_shared=0, n_training_genes=0, available=False, reason=str(e))
    if len(genes) < MIN_GENES:
        why = (f"The query shares only {len(genes):,} genes with the run's training file, too few to train on "
               f"(at least {MIN_GENES} are needed).")
        return RetrainOffer(run=store.path, data=data, n_shared=len(genes), n_training_genes=n_train,
                            available=False, reason=why)
    return RetrainOffer(run=store.path, data=data, n_shared=len(genes), n_training_genes=n_train, available=True)


def retrain_request(run_ref: str | os.PathLike, query: Any, *, query_name: str | None = None) -> TrainRequest:
    """The run's own request (method, options, preprocessing, seed, labels, split, threshold ...) restricted to
    the genes of its training file that ``query`` (an AnnData, or just its ``var``) has, with the run recorded as
    the parent; ``query_name`` (the query's file name) goes into the new run's notes.

    Genes are matched as annotation matches them (version-stripped Ensembl IDs, symbols, identifier columns of
    ``var``, unambiguous case differences) and given in the training file's spelling and order, so the new run
    annotates the query with its every gene found. Raises ``InputError`` when the training file is gone or fewer
    than ``MIN_GENES`` genes are shared.
    """
    store = runs.RunStore.open(run_ref)
    cfg = store.config()
    if cfg is None:
        raise InputError(f"Run {store.id} has no saved settings to retrain with; it may not have started.")
    req = request_of(cfg)
    genes, n_train = _shared(cfg, _var(query))
    if len(genes) < MIN_GENES:
        msg = (f"The query shares only {len(genes):,} of the {n_train:,} genes of run {store.id}'s training file, "
               f"too few to train on (at least {MIN_GENES} are needed). Check that it uses the same species and "
               "gene identifiers.")
        raise InputError(msg)
    return replace(req, genes=genes, genes_from=query_name, parent=str(store.path.resolve()))
