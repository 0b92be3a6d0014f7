"""Gene programs of a denoising autoencoder (ZiPo): which genes each unit reads, and which units read a gene.

The table comes from the run (``RunStore.gene_programs()``, written by ``scapp.denoise.write_run_artifacts``):
``layer, unit, rank, gene, weight, relative`` (+ ``input_sd, contribution`` in runs written since genes are
ranked by contribution, below), the strongest ``programs_top`` genes per unit.

Which units are the programs: the ZiPo paper (Methods §II-B) expects "each feature in the second layer to
represent a pathway or an eigengene, incorporating only a small subset of the genes": the outputs of the *first
encoder layer*, whose weights the scale-invariant α_w penalty makes sparse and pruning at δ = 1e-4 zeroes
(§III, Fig. 10). So the programs are the first-layer neurons and their non-zero weights (``layer ==
"encoder"``). The latent units' decoder weights into ``log μ`` (``layer == "latent"``: the genes a latent unit
raises in the denoised output) are kept as a second view, but the paper makes no claim that they are sparse or
readable; the page says so.

How a unit's genes are ranked (a departure from the paper, display only; training untouched): the paper reads a
program by its weights, but ZiPo's encoder input is ``log1p`` of the counts, not standardised, so a rare gene (a
tiny spread across cells) can carry a large weight and still barely move its unit; ranked by ``|w|`` such genes
crowded out the cell-type genes (a 30-epoch demo run's unit 425 read FAM3D, C1orf51, C19orf77, … with LYZ 29th).
So the first layer is ranked by ``contribution = w_ig × sd_g``, ``sd_g`` the gene's standard deviation of the
encoder input over the training cells (``input_sd``, computed from sparse sums of x and x²): how much a typical
change in the gene moves the unit's input. ``weight`` and ``relative`` (``|w|`` over the unit's largest: the
paper's pruning measure, the one δ = 1e-4 is applied to) stay as columns. Runs written before this have no
``contribution``: their table is ranked by ``|w|`` and the page says so (``ranked_by_contribution``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PAPER_LAYER = "encoder"
LAYER_NAMES = {"encoder": "first-layer unit", "latent": "latent unit"}
CONTRIBUTION_MEANING = ("weight × the gene's spread across cells: how much a typical change in this gene moves "
                        "the unit")
WEIGHT_FALLBACK_NOTE = ("This run was trained before gene spreads were kept, so its genes are ranked by raw weight "
                        "|w|, which favours rare genes (the encoder input is not standardised); retrain to rank "
                        "them by contribution.")


def ranked_by_contribution(programs: pd.DataFrame, layer: str = PAPER_LAYER) -> bool:
    """Whether ``layer``'s genes are ranked by contribution (weight × spread), not by raw weight (older runs)."""
    if "contribution" not in programs:
        return False
    return bool(programs.loc[programs["layer"] == layer, "contribution"].notna().any())


def _with_share(p: pd.DataFrame, layer: str) -> pd.DataFrame:
    """``p`` (one layer) with ``share``: the gene's strength in the ranking (|contribution|, or |weight| for runs
    without it) over the strongest of its unit; equals ``relative`` for runs ranked by weight."""
    if not ranked_by_contribution(p, layer):
        return p.assign(share=p["relative"].astype(float))
    a = p["contribution"].abs().astype(float)
    return p.assign(share=(a / a.groupby(p["unit"]).transform("max").clip(lower=1e-30)).fillna(0.0))


def layers(programs: pd.DataFrame) -> list[str]:
    """The layers the table holds, the paper's programs first."""
    have = set(programs["layer"].astype(str))
    return [k for k in ("encoder", "latent") if k in have] + sorted(have - set(LAYER_NAMES))


def _cap(programs: pd.DataFrame) -> int:
    """How many genes per unit the table keeps at most (the run's ``programs_top``)."""
    return int(programs["rank"].max()) if len(programs) else 0


def program_summary(programs: pd.DataFrame, layer: str = PAPER_LAYER, *, top: int = 8) -> pd.DataFrame:
    """One row per unit of ``layer`` that reads any gene: ``unit``, ``n_genes`` (genes kept for it; the table
    holds at most ``programs_top`` per unit, see ``capped``), ``capped``, ``top_genes`` (its ``top`` strongest,
    comma-separated) and ``top_relative`` (the strength of its ``top``-th gene over its strongest, by the measure
    the genes are ranked by: how fast it falls off)."""
    p = _with_share(programs[programs["layer"] == layer], layer).sort_values(["unit", "rank"], kind="stable")
    if not len(p):
        return pd.DataFrame(columns=["unit", "n_genes", "capped", "top_genes", "top_relative"])
    cap = _cap(programs)
    g = p.groupby("unit", sort=True)
    n = g.size()
    tops = g["gene"].apply(lambda s: ", ".join(s.head(top).astype(str)))
    last = g["share"].apply(lambda s: float(s.head(top).iloc[-1]))
    out = pd.DataFrame({"unit": n.index.astype(int), "n_genes": n.to_numpy(int), "capped": (n >= cap).to_numpy(),
                        "top_genes": tops.to_numpy(), "top_relative": last.to_numpy(float)})
    return out.reset_index(drop=True)


def _cols(programs: pd.DataFrame, layer: str) -> list[str]:
    return ["weight", "relative"] + (["input_sd", "contribution"] if ranked_by_contribution(programs, layer) else [])


def unit_genes(programs: pd.DataFrame, unit: int, layer: str = PAPER_LAYER) -> pd.DataFrame:
    """The genes of one unit, strongest first: ``rank, gene, weight, relative`` (+ ``input_sd, contribution``
    when the run ranks by contribution)."""
    p = programs[(programs["layer"] == layer) & (programs["unit"] == int(unit))]
    return p.sort_values("rank", kind="stable")[["rank", "gene", *_cols(programs, layer)]].reset_index(drop=True)


def units_with_gene(programs: pd.DataFrame, gene: str, layer: str = PAPER_LAYER, *, top: int = 8) -> pd.DataFrame:
    """Every unit of ``layer`` whose kept genes include ``gene`` (case-insensitive), the units where the gene
    counts most first (``share``: its contribution, or weight for older runs, over the unit's strongest):
    ``unit, rank`` (of the gene in the unit), ``weight``, ``relative`` (+ ``input_sd, contribution``), ``share``,
    ``n_genes``, ``top_genes`` (the unit's strongest genes)."""
    p = _with_share(programs[programs["layer"] == layer], layer)
    hit = p[p["gene"].astype(str).str.upper() == str(gene).strip().upper()]
    cols = ["unit", "rank", *_cols(programs, layer), "share", "n_genes", "top_genes"]
    if not len(hit):
        return pd.DataFrame(columns=cols)
    summ = program_summary(p[p["unit"].isin(hit["unit"])], layer, top=top).set_index("unit")
    out = hit[["unit", "rank", *_cols(programs, layer), "share"]].copy()
    out["n_genes"] = summ.loc[out["unit"], "n_genes"].to_numpy()
    out["top_genes"] = summ.loc[out["unit"], "top_genes"].to_numpy()
    return out.sort_values(["share", "rank"], ascending=[False, True], kind="stable")[cols].reset_index(drop=True)


def program_genes(programs: pd.DataFrame, layer: str = PAPER_LAYER) -> list[str]:
    """Every gene some unit of ``layer`` reads, those read by most units first (what the search box offers)."""
    p = programs[programs["layer"] == layer]
    counts = p["gene"].astype(str).value_counts(sort=False)
    order = np.lexsort((counts.index.to_numpy(str), -counts.to_numpy()))
    return counts.index[order].tolist()
