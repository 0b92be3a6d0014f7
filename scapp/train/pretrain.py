"""Pretraining runs: learn an encoder from the cells of one or more files, labels ignored (issue 13).

``run_pretraining`` is what ``python -m scapp pretrain FILE [FILE ...] --out RUN`` executes. Pretraining sets
are the big ones, so cells are **streamed**: an ``.h5ad`` file is opened backed (read from disk block by block)
and never loaded whole; other formats are read once (scapp reads them into memory anyway). Every file is aligned
to one gene list (the genes of ``genes_of``, default the first file, keeping those detected in at least
``min_gene_cells`` of all the pretraining cells), as a query is aligned to a model: by name, Ensembl versions
stripped, missing genes zero.

A pretraining run is a run folder like the others (``scapp.runs``): its config (``kind: "pretraining"``, the
method, the files), the gene list, the recipe, the weights, its loss curve, the embedding of a sample of its
cells (for the cell map) and its metrics (held-out reconstruction loss, cells per second, peak memory). A
classifier fine-tuned from it (``scapp train DATA --label L --model ssl --from RUN``) records it as its parent;
``load_pretraining`` is what the engine reads back.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scapp import runs
from scapp.data.preprocess import PreprocessConfig, Recipe
from scapp.errors import ConfigError, InputError, RunError, TrainingCancelled
from scapp.models.registry import REGISTRY, ModelSpec, config_from_dict
from scapp.train import timing

log = logging.getLogger(__name__)


def pretraining_spec() -> ModelSpec:
    """The registered method that pretrains encoders (capability ``pretrains``): its class makes the networks."""
    for spec in REGISTRY.values():
        if spec.available and spec.capabilities.pretrains:
            return spec
    raise ConfigError("No method that pretrains is available in this version of scapp.")


@dataclass
class PretrainRequest:
    """Everything a pretraining run needs; saved in its config so the run can be repeated."""

    data: list[str]
    """The files whose cells are pretrained on (labels, if any, are ignored)."""
    method: str = "mae"
    """``mae`` (masked autoencoder), ``vicreg``, ``simclr`` (an ``ssl`` encoder) or ``tabnet`` (SIMS's encoder)."""
    genes_of: str | None = None
    """The file whose genes every file is aligned to (typically the labelled reference to fine-tune on, which
    need not be pretrained on); None: the first of ``data``."""
    layer: str | None = None
    epochs: int | None = None
    device: str = "auto"
    seed: int = 0
    model_config: dict[str, Any] = field(default_factory=dict)
    min_gene_cells: int = 3
    """Keep only genes detected in at least this many pretraining cells (0: keep every gene of ``genes_of``)."""
    valid_frac: float = 0.05
    max_valid_cells: int = 2000
    """Held-out cells whose loss picks the kept epoch: ``valid_frac`` of the cells, at most this many."""
    cells: dict[str, list[str]] | None = None
    """Per file (as written in ``data``), the cell names (obs names) to use; a file not named: every cell. For
    benchmarks that pretrain on a split's training cells only."""
    block_cells: int = 4096
    """Cells read from disk at a time."""
    max_embed_cells: int = 50_000
    """Cells whose embedding is kept in the run (a random sample beyond this)."""
    orientation: str = "auto"

    def held_out(self, n_cells: int) -> int:
        """How many of ``n_cells`` pretraining cells are held out to pick the kept epoch (none below 20)."""
        return min(self.max_valid_cells, round(self.valid_frac * n_cells)) if n_cells >= 20 else 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainRequest:
        return config_from_dict(cls, d)


# -- reading cells block by block ---------------------------------------------------------------------------
class CellSource:
    """One file's cells, read in row blocks (backed for .h5ad), each block aligned to the run's genes."""

    def __init__(self, path: str, *, layer: str | None = None, orientation: str = "auto") -> None:
        self.path = str(path)
        p = Path(path)
        self._adata = None
        if p.is_file() and p.name.lower().endswith(".h5ad") and orientation != "genes_x_cells":
            import anndata as ad

            from scapp.data.io import _h5_top_keys  # the same header checks as a full read

            _h5_top_keys(p, "h5ad", "Write it again with anndata (adata.write_h5ad).")
            try:
                self._adata = ad.read_h5ad(p, backed="r")
            except Exception as e:
                raise InputError(f"Could not open {p.name} as an .h5ad file ({type(e).__name__}: {e}).") from e
            adata = self._adata
        else:
            from scapp.data import read_data

            adata, _ = read_data(p, orientation=orientation)
        from scapp.data.validate import check_genes, get_matrix

        self.var = adata.var.copy()
        check_genes(adata.var_names, what=p.name)
        self.obs_names = adata.obs_names.astype(str)
        self.n_obs = int(adata.n_obs)
        self._X = get_matrix(adata, layer)
        self._cols: np.ndarray | None = None
        self._S: sp.csr_matrix | None = None
        self.n_shared = 0

    def close(self) -> None:
        if self._adata is not None and getattr(self._adata, "file", None) is not None:
            self._adata.file.close()
        self._adata = None

    def align_to(self, genes: list[str]) -> None:
        """Match this file's genes to ``genes`` (as a query is matched to a model); blocks come out aligned."""
        from scapp.data.align import match_genes

        idx, _, _ = match_genes(self.var, genes)
        hit = np.flatnonzero(idx >= 0)
        self.n_shared = int(hit.size)
        self._S = sp.csr_matrix((np.ones(hit.size, dtype=np.float32), (idx[hit], hit)),
                                shape=(len(self.var), len(genes)))

    def block(self, start: int, stop: int, rows: np.ndarray | None = None) -> sp.csr_matrix:
        """Counts of cells ``start:stop`` (then ``rows`` of them, relative to ``start``), aligned."""
        B = self._X[start:stop]
        B = sp.csr_matrix(B, dtype=np.float32) if sp.issparse(B) else sp.csr_matrix(np.asarray(B, dtype=np.float32))
        if rows is not None:
            B = B[rows]
        if self._S is not None:
            B = (B @ self._S).tocsr()
        return B


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


# -- the run -------------------------------------------------------------------------------------------------------
@dataclass
class _Plan:
    sources: list[CellSource]
    keep: list[np.ndarray]
    """Per source: cells used for training (bool, in file order)."""
    genes: list[str]
    recipe: Recipe
    valid: sp.csr_matrix
    valid_ids: list[tuple[int, int]]
    notes: list[str]
    files: list[dict[str, Any]]
    n_train: int


def _scan(req: PretrainRequest, candidate: list[str], sources: list[CellSource], rng: np.random.Generator,
          run: Path) -> _Plan:
    """One pass over every cell: which genes are detected where, which cells are empty, the held-out cells."""
    from scapp.data.validate import check_counts

    notes: list[str] = []
    G = len(candidate)
    detected = np.zeros(G, dtype=np.int64)
    selected: list[np.ndarray] = []
    for src, path in zip(sources, req.data):
        sel = np.ones(src.n_obs, bool)
        if req.cells and path in req.cells:
            sel = src.obs_names.isin(pd.Index(map(str, req.cells[path])))
            if not sel.any():
                raise InputError(f"None of the cells named for {Path(path).name} are in it.")
        selected.append(np.asarray(sel))
    n_sel = sum(int(s.sum()) for s in selected)
    n_valid = req.held_out(n_sel)
    flat = rng.choice(n_sel, size=n_valid, replace=False) if n_valid else np.zeros(0, np.int64)
    is_valid: list[np.ndarray] = []
    offset = 0
    for sel in selected:
        v = np.zeros(sel.size, bool)
        pos = np.flatnonzero(sel)
        here = flat[(flat >= offset) & (flat < offset + pos.size)] - offset
        v[pos[here]] = True
        is_valid.append(v)
        offset += pos.size
    keep: list[np.ndarray] = []
    valid_raw: list[sp.csr_matrix] = []
    valid_ids: list[tuple[int, int]] = []
    files: list[dict[str, Any]] = []
    for s, (src, path) in enumerate(zip(sources, req.data)):
        if src.n_shared < min(250, G):
            raise InputError(f"{Path(path).name} shares only {src.n_shared:,} of the {G:,} genes of "
                             f"{Path(req.genes_of or req.data[0]).name}; check species and gene identifiers.")
        nonempty = np.zeros(src.n_obs, bool)
        for i, (a, b) in enumerate(_blocks(src.n_obs, req.block_cells)):
            if runs.stop_requested(run):
                raise TrainingCancelled("Stopped by user while reading the pretraining files; nothing was trained.")
            B = src.block(a, b)
            if i == 0:
                check_counts(B, what=Path(path).name)
            tot = np.asarray(B.sum(axis=1)).ravel()
            nonempty[a:b] = tot > 0
            use = selected[s][a:b] & (tot > 0)
            Bu = B[np.flatnonzero(use)]
            detected += np.bincount(Bu.indices[Bu.data > 0], minlength=G)
            vrows = np.flatnonzero(is_valid[s][a:b] & (tot > 0))
            if vrows.size:
                valid_raw.append(B[vrows])
                valid_ids += [(s, a + int(r)) for r in vrows]
        k = selected[s] & nonempty & ~is_valid[s]
        keep.append(k)
        n_empty = int((selected[s] & ~nonempty).sum())
        if n_empty:
            notes.append(f"{n_empty:,} cells of {Path(path).name} have no counts in the run's genes and were left out.")
        files.append({"path": str(Path(path).resolve()), "n_cells": src.n_obs, "n_selected": int(selected[s].sum()),
                      "n_train": int(k.sum()), "n_valid": int((is_valid[s] & nonempty).sum()),
                      "n_genes_shared": src.n_shared})
    n_train = int(sum(k.sum() for k in keep))
    if n_train < 2:
        raise InputError("Fewer than 2 cells with counts to pretrain on.")
    genes_idx = np.flatnonzero(detected >= req.min_gene_cells) if req.min_gene_cells else np.arange(G)
    if genes_idx.size < 2:
        raise InputError(f"Fewer than 2 genes are detected in at least {req.min_gene_cells} pretraining cells.")
    if genes_idx.size < G:
        notes.append(f"kept {genes_idx.size:,} of {G:,} genes detected in ≥{req.min_gene_cells} pretraining cells")
    genes = [candidate[j] for j in genes_idx]
    valid = (sp.vstack(valid_raw).tocsr()[:, genes_idx] if valid_raw
             else sp.csr_matrix((0, genes_idx.size), dtype=np.float32))
    output = pretraining_spec().load().pretrain_input(req.method)  # what the fine-tuned model reads (SIMS: log1p)
    recipe = Recipe(config=PreprocessConfig(output=output, min_gene_cells=req.min_gene_cells or None), genes=genes,
                    dropped_genes=int(G - genes_idx.size), notes=list(notes[-1:]) if genes_idx.size < G else [])
    for src in sources:
        src.align_to(genes)
    return _Plan(sources=sources, keep=keep, genes=genes, recipe=recipe, valid=valid, valid_ids=valid_ids,
                 notes=notes, files=files, n_train=n_train)


def _epoch_batches(plan: _Plan, *, batch_size: int, block_cells: int, seed: int, device: Any):
    """``batches(epoch)``: the training cells of every file in a fresh random order of blocks, shuffled within
    pairs of blocks, as dense count tensors of ``batch_size`` cells on ``device``."""
    import torch

    blocks = [(s, a, b) for s, src in enumerate(plan.sources) for a, b in _blocks(src.n_obs, block_cells)
              if plan.keep[s][a:b].any()]

    def batches(epoch: int):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(blocks))
        carry: sp.csr_matrix | None = None
        for i in range(0, len(order), 2):
            parts = [plan.sources[s].block(a, b, np.flatnonzero(plan.keep[s][a:b]))
                     for s, a, b in (blocks[j] for j in order[i:i + 2])]
            if carry is not None:
                parts.insert(0, carry)
            buf = sp.vstack(parts).tocsr()
            buf = buf[rng.permutation(buf.shape[0])]
            n_full = buf.shape[0] // batch_size * batch_size
            last = i + 2 >= len(order)
            stop = buf.shape[0] if last else n_full
            for a in range(0, stop, batch_size):
                chunk = buf[a:min(a + batch_size, stop)]
                if chunk.shape[0] < 2 and a > 0:
                    continue  # a single cell left at the very end: BatchNorm (contrastive, TabNet) needs 2
                yield torch.as_tensor(chunk.toarray(), device=device)
            carry = None if last else buf[n_full:]

    return batches


def _fixed_batches(X: sp.csr_matrix, batch_size: int, device: Any):
    import torch

    def batches():
        for a in range(0, X.shape[0], batch_size):
            yield torch.as_tensor(X[a:a + batch_size].toarray(), device=device)

    return batches if X.shape[0] else None


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_pretraining(req: PretrainRequest, run: Path) -> dict[str, Any]:
    """Pretrain on the cells of ``req.data`` into run folder ``run``; returns the run's metrics.

    Raises ``ScappError`` subclasses for user mistakes and ``TrainingCancelled`` when stopped before an epoch
    finished; the caller (``scapp.cli``) records those in status.json.
    """
    import torch

    from scapp.train.device import describe_device, resolve_device
    from scapp.train.engine import _Reporter, environment, file_digest
    from scapp.train.trainer import Trainer

    run = Path(run)
    store = runs.RunStore(run)
    t_start = time.monotonic()
    if not req.data:
        raise InputError("Name at least one file of cells to pretrain on.")
    spec = pretraining_spec()
    cls = spec.load()
    for p in [*req.data, *([req.genes_of] if req.genes_of else [])]:
        if not Path(p).exists():
            raise InputError(f"No such file or folder: {p}")
    mc = dict(req.model_config)
    if req.epochs is not None:
        mc["max_epochs"] = req.epochs
    mc.setdefault("seed", req.seed)
    cfg = cls.pretrain_config(req.method, mc)
    device = resolve_device(req.device)
    base = {"format_version": runs.FORMAT_VERSION, "created": runs.now_iso(), "kind": "pretraining",
            "model": spec.name, "method": req.method, "data": str(Path(req.data[0]).resolve()),
            "data_files": [str(Path(p).resolve()) for p in req.data], "label": None,
            "request": asdict(req) | {"cells": {k: len(v) for k, v in (req.cells or {}).items()} or None},
            "model_config": asdict(cfg), "device_used": str(device), "seed": req.seed}
    store.write_config(base)
    store.write_env(environment(describe_device(device)))
    runs.write_status(run, "running", pid=os.getpid(), phase="reading the pretraining files", progress=0.0,
                      started=runs.now_iso(), error=None)
    torch.manual_seed(req.seed)
    rng = np.random.default_rng(req.seed)

    sources: list[CellSource] = []
    try:
        for p in req.data:
            sources.append(CellSource(p, layer=req.layer, orientation=req.orientation))
        ref = CellSource(req.genes_of, layer=None, orientation=req.orientation) if req.genes_of else sources[0]
        candidate = ref.var.index.astype(str).tolist()
        if ref is not sources[0] and req.genes_of:
            ref.close()
        for src in sources:
            src.align_to(candidate)
        plan = _scan(req, candidate, sources, rng, run)
        G = len(plan.genes)
        store.write_genes(plan.genes)
        store.write_labels([], None)
        store.write_recipe(plan.recipe.to_dict())
        arch = cls.pretrain_architecture(req.method, cfg)
        store.write_config({**base, "preprocess": asdict(plan.recipe.config), "architecture": arch,
                            "genes_of": req.genes_of})
        store.write_data_info({"path": base["data"], "sha256": file_digest(req.data[0]),
                               "files": [{**f, "sha256": file_digest(f["path"])} for f in plan.files],
                               "n_cells": int(sum(f["n_cells"] for f in plan.files)), "n_genes": G,
                               "n_cells_used": plan.n_train + plan.valid.shape[0],
                               "n_unlabelled_used": plan.n_train + plan.valid.shape[0], "label": None,
                               "layer": req.layer, "class_counts": {}, "input_kind": "counts",
                               "notes": plan.notes, "parent_run": None})
        for n in plan.notes:
            log.warning("%s", n)

        model = cls.pretrainer(req.method, cfg, n_features=G, device=str(device))
        bs = cfg.batch_size or 256
        max_epochs = cfg.max_epochs
        reporter = _Reporter(run, max_epochs)
        timing_key = timing.pretraining_key(req.method, arch)
        try:  # the estimate only informs the progress line: never let it cost a run
            reporter.set_estimate(timing.pretraining_estimate(
                req.method, plan.n_train, G, max_epochs, architecture=arch, gpu=str(device).startswith("cuda"),
                root=run.parent))
        except Exception:  # noqa: BLE001
            log.warning("no time estimate for this pretraining run", exc_info=True)
        trainer = Trainer(reporter.emit, reporter.should_stop)
        runs.write_status(run, "running", phase="pretraining", progress=0.05, epoch=0, max_epochs=max_epochs)
        log.info("pretraining %s on %s cells × %s genes from %d file(s), device %s", req.method, plan.n_train, G,
                 len(sources), device)
        fit_t0 = time.monotonic()
        model.pretrain(trainer, batches=_epoch_batches(plan, batch_size=bs, block_cells=req.block_cells,
                                                       seed=req.seed, device=device),
                       valid=_fixed_batches(plan.valid, cfg.inference_batch_size, device), max_epochs=max_epochs)
        fit_s = time.monotonic() - fit_t0
        if trainer.stopped and trainer.best_epoch is None:
            raise TrainingCancelled("Stopped by user before the first pretraining epoch finished; nothing was saved.")

        reporter.enter("evaluate", "embedding a sample of the cells", 0.9)
        emb, pred = _embed_sample(plan, model, req, rng)
        store.write_embedding(emb)
        store.write_predictions(pred)
        store.write_history(pd.DataFrame(trainer.history))
        store.write_temperature(1.0)
        store.write_weights(model.save_weights)
        hist = trainer.history
        best = next((e for e in hist if e.get("epoch") == trainer.best_epoch), hist[-1] if hist else {})
        epochs_run = len(hist)
        metrics = {"kind": "pretraining", "method": req.method, "n_train": plan.n_train,
                   "n_valid": int(plan.valid.shape[0]), "n_genes": G, "n_files": len(sources),
                   "best_epoch": trainer.best_epoch, "epochs_run": epochs_run,
                   "valid_loss": best.get("valid_loss"), "train_loss": best.get("train_loss"),
                   "fit_seconds": fit_s, "total_seconds": time.monotonic() - t_start,
                   "cells_per_s": plan.n_train * epochs_run / fit_s if fit_s > 0 else None,
                   "peak_rss_mib": peak_rss_mib(), "batch_size": bs, "stopped_by_user": trainer.stopped,
                   "notes": plan.notes, "fit_info": model.fit_info, "files": plan.files}
        store.write_metrics(metrics)
        if not trainer.stopped and epochs_run:  # what later estimates of the same kind of run learn from
            try:
                store.write_timing(timing.timing_record(
                    timing_key, {}, n_cells=plan.n_train, n_genes=G, device=str(device), phases={"main": fit_s},
                    epoch_s=fit_s / epochs_run, epochs_run=epochs_run, total_s=time.monotonic() - t_start))
            except Exception:  # noqa: BLE001 - a timing log that cannot be written must not fail a finished run
                log.warning("could not record this pretraining run's timing", exc_info=True)
    finally:
        for src in sources:
            src.close()
    final = "cancelled" if trainer.stopped else "finished"
    msg = (f"Stopped by user after epoch {epochs_run}; the best encoder so far (epoch {trainer.best_epoch}) was "
           "saved." if trainer.stopped else None)
    runs.write_status(run, final, phase="done", progress=1.0, finished=runs.now_iso(), message=msg, has_model=True,
                      eta_s=0)
    log.info("pretraining run %s: %s, held-out loss %s", run.name, final, metrics["valid_loss"])
    return metrics


def _embed_sample(plan: _Plan, model: Any, req: PretrainRequest, rng: np.random.Generator
                  ) -> tuple[np.ndarray, pd.DataFrame]:
    """Embedding of the held-out cells and a random sample of the training cells (≤ ``max_embed_cells`` in all),
    with the predictions-table rows (cell, split, source file) it belongs to."""
    n_tr = max(req.max_embed_cells - plan.valid.shape[0], 0)
    total = plan.n_train
    take = np.sort(rng.choice(total, size=min(n_tr, total), replace=False)) if n_tr else np.zeros(0, np.int64)
    embs, ids, split, source = [], [], [], []
    offset = 0
    for s, src in enumerate(plan.sources):
        pos = np.flatnonzero(plan.keep[s])
        here = pos[take[(take >= offset) & (take < offset + pos.size)] - offset]
        offset += pos.size
        for a, b in _blocks(src.n_obs, req.block_cells):
            rows = here[(here >= a) & (here < b)]
            if rows.size:
                embs.append(model.embed(src.block(a, b, rows - a)))
                ids += src.obs_names[rows].tolist()
                split += ["train"] * rows.size
                source += [Path(src.path).name] * rows.size
    if plan.valid.shape[0]:
        embs.append(model.embed(plan.valid))
        ids += [plan.sources[s].obs_names[i] for s, i in plan.valid_ids]
        split += ["valid"] * plan.valid.shape[0]
        source += [Path(plan.sources[s].path).name for s, _ in plan.valid_ids]
    emb = np.concatenate(embs) if embs else np.zeros((0, 1), np.float32)
    pred = pd.DataFrame({"cell_id": ids, "split": split, "true": None, "source": source})
    return emb.astype(np.float32), pred


# -- reading a pretraining run back ----------------------------------------------------------------------------------
@dataclass
class Pretrained:
    """What a fine-tune takes from a pretraining run: genes, recipe, the shared options and the weights."""

    path: Path
    genes: list[str]
    recipe: Recipe
    architecture: dict[str, Any]
    state: dict[str, np.ndarray]
    method: str
    config: dict[str, Any]

    @property
    def id(self) -> str:
        return self.path.name


def load_pretraining(ref: str | os.PathLike) -> Pretrained:
    """A finished run whose method pretrains (``scapp pretrain``, or an ``ssl`` run), for ``--from``.

    Raises ``RunError`` naming the run when it is unfinished, has no weights, or its method does not pretrain.
    """
    from scapp.models.registry import get_spec

    store = runs.RunStore.open(ref)
    st = store.status() or {}
    if not st.get("has_model") or not store.has_weights:
        raise RunError(f"Run {store.id} has no trained encoder (state: {st.get('state', 'unknown')}); start from a "
                       "finished pretraining run.")
    cfg = store.config()
    spec = get_spec(cfg.get("model") or "")
    if not spec.capabilities.pretrains:
        raise RunError(f"Run {store.id} is a {spec.title} run, which does not pretrain an encoder; start from a run "
                       "made by 'scapp pretrain'.")
    arch = cfg.get("architecture")
    if arch is None:  # an ssl run trained through the engine: its model config holds the shared options
        cls = spec.load()
        arch = {k: cfg["model_config"][k] for k in getattr(cls, "architecture_options", ()) if k in cfg["model_config"]}
    try:
        recipe = Recipe.from_dict(store.recipe(), store.genes())
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"Run {store.id}: its preprocessing recipe does not fit its gene list ({e}).") from e
    state = store.weights()  # checked against the size and checksum saved with them
    return Pretrained(path=store.path, genes=list(recipe.genes), recipe=recipe, architecture=dict(arch),
                      state=state, method=str(cfg.get("method") or cfg["model_config"].get("method") or ""),
                      config=cfg)


class FrozenEncoder:
    """A run's encoder, frozen: the embedding of any cells (aligned to its genes), for kNN transfer, linear
    probes and maps. Works on pretraining runs (every method) and on ``ssl`` runs with or without labels."""

    def __init__(self, ref: str | os.PathLike, *, device: str = "cpu") -> None:
        from scapp.models.registry import get_spec

        pre = load_pretraining(ref)
        self.pre = pre
        self.genes = pre.genes
        self.recipe = pre.recipe
        mc = dict(pre.config["model_config"])
        cls = get_spec(pre.config["model"]).load()
        if pre.config.get("kind") == "pretraining":  # a pretraining run: the network its method trained
            mc.pop("method", None)
            self.model: Any = cls.pretrainer(pre.method, cls.pretrain_config(pre.method, mc),
                                             n_features=len(pre.genes), device=device)
        else:  # a run of the method itself (e.g. ssl trained with or without labels)
            self.model = cls(config_from_dict(cls.Config, mc), n_features=len(pre.genes),
                             classes=runs.RunStore(pre.path).classes(), device=device)
        self.model.load_state_dict(pre.state)

    def embed_counts(self, counts_aligned: Any) -> np.ndarray:
        """Embedding of raw counts already aligned to ``genes`` (cells × genes)."""
        counts = sp.csr_matrix(counts_aligned, dtype=np.float32)
        if self.recipe.dropped_genes and counts.shape[1] != len(self.genes):
            raise ValueError(f"expected {len(self.genes)} aligned genes, got {counts.shape[1]}")
        return self.model.embed(counts)

    def embed(self, X: Any, var: pd.DataFrame, *, min_frac: float = 0.5, min_shared: int = 250) -> np.ndarray:
        """Embedding of a file's counts (``X`` cells × its genes, ``var`` its gene table), aligned by name."""
        from scapp.data.align import align_genes

        Xa, _ = align_genes(X, var, self.genes, min_frac=min_frac, min_shared=min_shared)
        return self.embed_counts(Xa)
