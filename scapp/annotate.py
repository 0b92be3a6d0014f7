"""Apply a saved run to a query dataset: align, predict, calibrate, threshold, write back.

Modelled on CellTypist's ``AnnotationResult``, but the result does not hold the
user's AnnData; it takes one as an argument when writing back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from scapp import __version__, runs
from scapp.data.align import GeneOverlap, align_genes
from scapp.data.preprocess import Recipe
from scapp.data.validate import UNASSIGNED, check_counts, empty_cells, get_matrix
from scapp.errors import RunError
from scapp.evaluate.calibration import DEFAULT_THRESHOLD, softmax
from scapp.models.registry import Capabilities, Explanation, ModelSpec, config_from_dict, get_spec


@dataclass
class LoadedRun:
    """A finished run folder turned back into a working model."""

    path: Path
    config: dict[str, Any]
    model: Any
    recipe: Recipe
    classes: list[str]
    temperature: float
    important_genes: list[str]
    protein: Any = None
    """``ProteinRecipe`` of a multimodal (RNA + protein) run, else None."""

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def spec(self) -> ModelSpec:
        return get_spec(self.config["model"])

    @property
    def capabilities(self) -> Capabilities:
        """What this run does: a label-optional method (ZiPo) trained without labels embeds and denoises but
        does not classify."""
        return self.spec.capabilities.for_run(self.config.get("label"))

    @cached_property
    def denoised_layers(self) -> tuple[str, ...]:
        """The layers ``scapp.denoise.write_denoised`` adds for this run: ``scapp_denoised`` and, for a
        zero-inflated model, ``scapp_denoised_nonzero``; empty for a run that does not denoise."""
        if not self.capabilities.denoises:
            return ()
        import scipy.sparse as sp

        probe = self.model.denoise_batch(sp.csr_matrix((1, len(self.recipe.features)), dtype=np.float32))
        return ("scapp_denoised",) + (("scapp_denoised_nonzero",) if probe.zero_prob is not None else ())

    def denoised_bytes(self, n_cells: int, n_genes: int) -> int:
        """Size of the denoised layers on ``n_cells`` × ``n_genes`` (float32, one array per layer, uncompressed)."""
        return int(n_cells) * int(n_genes) * 4 * len(self.denoised_layers)

    @property
    def threshold(self) -> float:
        """The unknown-cell threshold chosen when the run was trained: the default wherever it is applied."""
        t = self.config.get("threshold")
        return float(t) if t is not None else DEFAULT_THRESHOLD

    @property
    def genes(self) -> list[str]:
        """The genes a query is aligned to, in the model's order."""
        return self.recipe.genes

    def proba_from_counts(self, counts: Any) -> np.ndarray:
        """Calibrated probabilities (cells × ``classes``) of raw counts aligned to ``genes`` (an RNA-only run):
        what an ensemble asks of each member."""
        return softmax(self.model.predict_logits(self.features(counts, None)) / self.temperature)

    def features(self, Xcounts: Any, adata: ad.AnnData) -> Any:
        """Model input from counts aligned to the run's genes (and the protein panel of a multimodal run)."""
        Xp = self.recipe.transform(Xcounts)
        if self.protein is not None:  # multimodal run: the query needs the same antibody panel
            from scapp.data.modalities import get_protein, stack

            P, names = get_protein(adata, self.protein.key)
            Xp = stack(Xp, self.protein.transform(self.protein.align(P, names)))
        return Xp


def load_run(ref: str | os.PathLike, *, device: str = "cpu") -> LoadedRun:
    """Load config, genes, recipe, classes, temperature and weights; refuse unfinished runs."""
    store = runs.RunStore.open(ref)
    st = store.status()
    if st is None or not st.get("has_model") or not store.has_weights:
        state = (st or {}).get("state", "unknown")
        msg = f"Run {store.id} has no trained model (state: {state}); pick a finished run."
        raise RunError(msg)
    cfg = store.config()  # refuses a run of a newer format
    if cfg.get("kind") == "pretraining":
        msg = (f"Run {store.id} is a pretraining run: an encoder learnt without labels, with no classifier to "
               f"annotate cells. Fine-tune it on labelled cells first (scapp train DATA --label COLUMN --model "
               f"{'sims' if cfg.get('method') == 'tabnet' else 'ssl'} --from {store.path}), then annotate with "
               "that run.")
        raise RunError(msg)
    classes = store.classes()
    T = store.temperature()
    prot_dict = store.protein()
    try:
        recipe = Recipe.from_dict(store.recipe(), store.genes())
        protein = None
        if prot_dict is not None:
            from scapp.data.modalities import ProteinRecipe

            protein = ProteinRecipe.from_dict(prot_dict)
    except (KeyError, TypeError, ValueError) as e:
        msg = (f"Run {store.id}: its preprocessing recipe is incomplete or does not fit its gene list ({e}); "
               "the run may be damaged.")
        raise RunError(msg) from e
    spec = get_spec(cfg["model"])
    cls = spec.load()
    n_features = len(recipe.features) + (len(protein.names) if protein is not None else 0)
    model = cls(config_from_dict(cls.Config, cfg["model_config"]), n_features=n_features,
                classes=classes, device=device)
    store.load_weights(model.load_weights)  # checked against the size and checksum saved with them
    if spec.capabilities.combines:  # an ensemble: its member runs live inside its folder
        members = [load_run(store.existing_member(rid).path, device=device) for rid in model.config.member_runs]
        model.attach(members, recipe.genes)
    important: list[str] = []
    if spec.capabilities.explain_kind:
        try:
            important = store.global_importance()["gene"].astype(str).head(50).tolist()
        except RunError:  # a run made before its method explained (ssl before issue 13's IG): no gene ranking
            important = []
    return LoadedRun(path=store.path, config=cfg, model=model, recipe=recipe, classes=classes, temperature=T,
                     important_genes=important, protein=protein)


@dataclass
class Annotation:
    """Labels, calibrated probabilities and confidence for each query cell."""

    cell_ids: pd.Index
    proba: pd.DataFrame
    threshold: float
    overlap: GeneOverlap
    run_id: str
    model: str
    embedding: np.ndarray | None = None
    explanation: Explanation | None = None
    empty: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @cached_property
    def predicted(self) -> pd.Series:
        """Top class per cell (computed once: the threshold slider only re-derives labels)."""
        return pd.Series(self.proba.columns[self.proba.to_numpy().argmax(1)], index=self.cell_ids)

    @cached_property
    def confidence(self) -> pd.Series:
        conf = self.proba.to_numpy().max(1)
        conf = np.where(self.empty, 0.0, conf) if self.empty.size else conf
        return pd.Series(conf, index=self.cell_ids)

    def unassigned(self, threshold: float | None = None) -> pd.Series:
        t = self.threshold if threshold is None else threshold
        return self.confidence < t

    def labels(self, threshold: float | None = None) -> pd.Series:
        lab = self.predicted.astype(object).copy()
        lab[self.unassigned(threshold).to_numpy()] = UNASSIGNED
        return lab

    def to_table(self, threshold: float | None = None) -> pd.DataFrame:
        """The CLI's CSV: cell_id, label, confidence, unassigned, then p_<class> for every class."""
        df = pd.DataFrame({"cell_id": np.asarray(self.cell_ids), "label": self.labels(threshold).to_numpy(),
                           "confidence": self.confidence.to_numpy(), "unassigned": self.unassigned(threshold).to_numpy()})
        probs = self.proba.reset_index(drop=True)
        probs.columns = [f"p_{c}" for c in probs.columns]
        return pd.concat([df, probs], axis=1)

    def summary(self, threshold: float | None = None) -> pd.DataFrame:
        """Cells per predicted label (Unassigned included), largest first."""
        lab = self.labels(threshold)
        return lab.value_counts().rename_axis("label").reset_index(name="cells")

    def to_adata(self, adata: ad.AnnData, *, prefix: str = "scapp_", copy: bool = True,
                 umap: np.ndarray | None = None, embedding: bool = True) -> ad.AnnData:
        """Write labels, confidence, unassigned flag, latent and provenance into AnnData.

        Writes ``obs[prefix+'label'|'confidence'|'unassigned']``, ``obsm['X_scapp_<model>']`` (unless
        ``embedding`` is False: the denoised file writes the same latent itself),
        ``obsm['X_umap']`` when the map ``umap`` (cells × 2) is given, and ``uns['scapp']``.
        An existing column is never overwritten: a numbered suffix is added.
        """
        out = adata.copy() if copy else adata
        if list(out.obs_names.astype(str)) != list(self.cell_ids.astype(str)):
            msg = "This AnnData's cells are not the annotated cells."
            raise ValueError(msg)
        names = {}
        for key, values in (("label", pd.Categorical(self.labels().to_numpy())),
                            ("confidence", self.confidence.to_numpy().astype(np.float32)),
                            ("unassigned", self.unassigned().to_numpy())):
            col = _free_name(out.obs.columns, prefix + key)
            out.obs[col] = values
            names[key] = col
        if embedding and self.embedding is not None:
            out.obsm[_free_name(list(out.obsm.keys()), f"X_scapp_{self.model}")] = self.embedding
        if umap is not None:
            if len(umap) != out.n_obs:
                msg = f"The map has {len(umap)} rows for {out.n_obs} cells."
                raise ValueError(msg)
            out.obsm[_free_name(list(out.obsm.keys()), "X_umap")] = np.asarray(umap, dtype=np.float32)
        out.uns[_free_name(list(out.uns.keys()), "scapp")] = {
            "run_id": self.run_id, "model": self.model, "scapp_version": __version__, "threshold": float(self.threshold),
            "classes": list(self.proba.columns), "obs_columns": names,
            "gene_overlap": {k: v for k, v in self.overlap.to_dict().items() if v is not None},
        }
        return out

    def __repr__(self) -> str:
        un = float(self.unassigned().mean()) if len(self.cell_ids) else 0.0
        return (f"Annotation({len(self.cell_ids):,} cells × {self.proba.shape[1]} classes, run {self.run_id}, "
                f"threshold {self.threshold:.2f}, {un:.1%} unassigned; {self.overlap.summary()})")


def format_probability(p: float) -> str:
    """A probability for people, as a percentage with 3 significant digits: "97.3%", "0.12%".

    Values too small or too close to 1 to mean anything at that precision read "<0.1%" and
    ">99.9%" (a softmax prints 0.0000000000000002 otherwise). Tables and files keep full precision.
    """
    if p is None or not np.isfinite(p):
        return "–"
    p = float(p)
    if p <= 0:
        return "0%"
    if p >= 1:
        return "100%"
    if p < 0.001:
        return "<0.1%"
    if p > 0.999:
        return ">99.9%"
    return f"{p * 100:.3g}%"


def query_latent(ann: Annotation) -> tuple[np.ndarray, str]:
    """What a query's map is drawn from: the model's latent space, else its calibrated probabilities
    (as Explore does for a run without one); with a phrase saying which."""
    if ann.embedding is not None and len(ann.embedding) == len(ann.cell_ids):
        return np.asarray(ann.embedding, dtype=np.float32), "the model's latent space"
    return ann.proba.to_numpy(np.float32), "the predicted class probabilities (this model has no latent space)"


def _free_name(existing: Any, name: str) -> str:
    existing = set(map(str, existing))
    if name not in existing:
        return name
    i = 2
    while f"{name}_{i}" in existing:
        i += 1
    return f"{name}_{i}"


def cannot_annotate(run: LoadedRun) -> str:
    """Why a run cannot label cells, and what it can do instead (a ZiPo run trained without labels)."""
    caps = run.capabilities
    why = ("was trained without labels" if run.spec.capabilities.classifies and not run.config.get("label")
           else "does not classify cells")
    msg = f"Run {run.run_id} ({run.config['model']}) {why}, so it cannot name the cell types of a query."
    if caps.denoises:
        msg += (f" It can denoise its counts and place its cells in its latent space: "
                f"scapp denoise {run.path} QUERY --out denoised.h5ad.")
    elif caps.embeds:
        msg += " It can place the query's cells in its latent space."
    return msg


def write_annotated(ann: Annotation, run: LoadedRun, adata: ad.AnnData, out: str | os.PathLike, *,
                    umap: np.ndarray | None = None, denoised: bool = False, layer: str | None = None,
                    min_frac: float = 0.5, min_shared: int = 250) -> Path:
    """Write the annotated query (``Annotation.to_adata``) to ``out``; ``denoised``: with the run's denoised
    layers too (``scapp_denoised``, ``scapp_denoised_nonzero``: the query's genes, NaN for genes the run does not
    model), plus the per-cell library and zero-inflation columns of ``scapp denoise``. The layers are computed and
    written a block of cells at a time (``scapp.denoise.write_denoised``), never as one dense array in memory.
    """
    out = Path(out)
    if not denoised:
        runs.write_atomic(out, ann.to_adata(adata, umap=umap).write_h5ad)
        return out
    from scapp.denoise import write_denoised

    labelled = ann.to_adata(adata, umap=umap, embedding=False)  # write_denoised adds the latent (the same one)
    write_denoised(run, labelled, out, layer=layer, genes="query", min_frac=min_frac, min_shared=min_shared)
    return out


def h5ad_bytes(write: Callable[[Path], Any]) -> bytes:
    """The bytes of a file made by ``write(path)`` in a temporary folder: what a download button serves."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "out.h5ad"
        write(f)
        return f.read_bytes()


def check_query(run: LoadedRun, adata: ad.AnnData, *, layer: str | None = None,
                min_frac: float = 0.5, min_shared: int = 250) -> GeneOverlap:
    """The overlap report alone (no prediction), e.g. for a panel before predicting."""
    X = get_matrix(adata, layer)
    _, report = align_genes(X[:0], adata.var, run.recipe.genes, important_genes=run.important_genes,
                            min_frac=min_frac, min_shared=min_shared, raise_on_low=False)
    return report


def annotate(run: LoadedRun, adata: ad.AnnData, *, layer: str | None = None, threshold: float | None = None,
             min_frac: float = 0.5, min_shared: int = 250, explain: bool = True) -> Annotation:
    """Align the query to the model's genes, check it is counts, predict with calibrated probabilities.

    ``threshold`` None: the run's own unknown-cell threshold (chosen before training). Cells with
    zero counts over the model's genes get confidence 0, so they are Unassigned.
    """
    if not run.capabilities.classifies:
        raise RunError(cannot_annotate(run))
    X = get_matrix(adata, layer)
    check_counts(X, what="The query", layer_hint=True)
    counts, report = align_genes(X, adata.var, run.recipe.genes, important_genes=run.important_genes,
                                 min_frac=min_frac, min_shared=min_shared)
    Xp = run.features(counts, adata)
    expl = None
    if explain:
        logits, emb, expl = run.model.infer(Xp)
    else:
        logits, emb = run.model.predict_logits(Xp), run.model.embed(Xp)
    proba = softmax(logits / run.temperature)
    return Annotation(cell_ids=adata.obs_names.astype(str), proba=pd.DataFrame(proba, columns=run.classes),
                      threshold=run.threshold if threshold is None else float(threshold), overlap=report,
                      run_id=run.run_id, model=run.config["model"], embedding=emb, explanation=expl,
                      empty=empty_cells(counts))


def denoise(run: LoadedRun, adata: ad.AnnData, *, layer: str | None = None, min_frac: float = 0.5,
            min_shared: int = 250) -> ad.AnnData:
    """A copy of ``adata`` restricted to the run's genes, with the model's expected counts as
    ``layers['scapp_denoised']`` (and its latent in ``obsm`` when it has one); for methods that denoise."""
    caps = run.spec.capabilities
    if not caps.denoises:
        from scapp.models.registry import REGISTRY

        which = ", ".join(n for n, s in REGISTRY.items() if s.capabilities.denoises) or "none yet"
        msg = (f"Run {run.run_id} was trained with {run.config['model']}, which does not denoise counts; "
               f"methods that do: {which}.")
        raise RunError(msg)
    X = get_matrix(adata, layer)
    check_counts(X, what="The data to denoise", layer_hint=True)
    counts, report = align_genes(X, adata.var, run.recipe.genes, min_frac=min_frac, min_shared=min_shared)
    Xp = run.features(counts, adata)
    genes = run.recipe.features
    raw = counts if run.recipe.feature_idx is None else counts[:, run.recipe.feature_idx]
    out = ad.AnnData(X=raw, obs=adata.obs.copy(), var=pd.DataFrame(index=pd.Index(genes)))
    out.layers["scapp_denoised"] = np.asarray(run.model.denoise(Xp), dtype=np.float32)
    if caps.embeds:
        out.obsm[f"X_scapp_{run.config['model']}"] = run.model.embed(Xp)
    out.uns["scapp"] = {"run_id": run.run_id, "model": run.config["model"], "scapp_version": __version__,
                        "layer": "scapp_denoised",
                        "gene_overlap": {k: v for k, v in report.to_dict().items() if v is not None}}
    return out
