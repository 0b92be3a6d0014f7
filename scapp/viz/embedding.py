"""Cells in a 2-D embedding (UMAP or the model's latent space), coloured by label or value.

Drawn with WebGL (``go.Scattergl``) and capped at ``max_points`` by a
class-stratified sample, so a million-cell atlas stays interactive in the
browser while every class, however rare, keeps some of its cells on screen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from scapp.sampling import downsample_idx
from scapp.viz._style import style
from scapp.viz.colors import UNASSIGNED_COLOR, class_colors

__all__ = ["downsample_idx", "embedding_scatter"]

MISSING = "(missing)"


def _infer_kind(values: pd.Series) -> str:
    if isinstance(values.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(values.dtype):
        return "categorical"
    if pd.api.types.is_float_dtype(values.dtype):
        return "continuous"
    if pd.api.types.is_integer_dtype(values.dtype) and values.nunique() > 30:
        return "continuous"
    return "categorical"


def _hover(hover: pd.DataFrame | None, idx: np.ndarray) -> tuple[np.ndarray | None, str]:
    """customdata columns and the matching hovertemplate lines for the shown cells."""
    if hover is None or hover.shape[1] == 0:
        return None, ""
    sub = hover.iloc[idx]
    cols, lines = [], []
    for j, name in enumerate(sub.columns):
        s = sub[name]
        if pd.api.types.is_float_dtype(s.dtype):
            cols.append(s.to_numpy(dtype=np.float64))
            lines.append(f"{name}: %{{customdata[{j}]:.3g}}")
        else:
            cols.append(s.astype(str).to_numpy())
            lines.append(f"{name}: %{{customdata[{j}]}}")
    return np.stack(cols, axis=1) if len(cols) > 1 else np.asarray(cols[0]).reshape(-1, 1), "<br>" + "<br>".join(lines)


def _as_mask(highlight: np.ndarray | None, n: int) -> np.ndarray | None:
    if highlight is None:
        return None
    h = np.asarray(highlight)
    if h.dtype == bool:
        if h.shape != (n,):
            raise ValueError(f"highlight mask has {h.size} entries for {n} cells.")
        return h
    mask = np.zeros(n, dtype=bool)
    mask[h.astype(np.int64)] = True
    return mask


def embedding_scatter(
    coords: np.ndarray,
    color: pd.Series | np.ndarray | Sequence,
    *,
    colors: Mapping[str, str] | None = None,
    kind: Literal["categorical", "continuous"] | None = None,
    hover: pd.DataFrame | None = None,
    max_points: int = 200_000,
    stratify: np.ndarray | pd.Series | Sequence | None = None,
    seed: int = 0,
    highlight: np.ndarray | None = None,
    color_label: str | None = None,
    colorscale: str = "Viridis",
    axis_labels: tuple[str, str] = ("dim 1", "dim 2"),
    point_size: float | None = None,
    title: str | None = None,
    height: int = 640,
) -> go.Figure:
    """Scatter of cells in two dimensions (WebGL), coloured by a label or a value.

    Where labels sit in the embedding shows whether predicted types form
    coherent groups and where the model hesitates (colour by confidence).

    Parameters
    ----------
    coords
        cells × ≥2 coordinates; the first two columns are drawn.
    color
        One value per cell: class labels (``kind="categorical"``, one legend entry per
        class, with its total number of cells, that can be toggled) or numbers (``"continuous"``, with a colour bar).
        By default floats are continuous and everything else categorical.
    colors
        ``{class: colour}`` (:func:`scapp.viz.class_colors` of the run's classes); the
        legend follows its order. Classes not in it get further colours.
    hover
        Extra per-cell columns (rows aligned with ``coords``) shown on hover.
    max_points
        Above this many cells, :func:`downsample_idx` picks the cells to draw, stratified by
        ``stratify`` (default: the categorical ``color``), and a note says "showing N of M cells".
    seed
        Seed of the downsampling.
    highlight
        Boolean mask or indices of cells to emphasise (e.g. cells selected in a table): they are
        drawn on top, enlarged and outlined, and the other cells are faded. They are always
        included, so a downsampled figure may hold up to that many points more than ``max_points``.
    color_label
        Name of the coloured quantity (legend or colour-bar title).
    axis_labels
        Axis titles, e.g. ``("UMAP 1", "UMAP 2")``.
    title
        Default: "Cells coloured by <color_label>".

    Returns
    -------
    plotly.graph_objects.Figure
        ``layout.meta`` holds ``{"shown": N, "total": M}``.
    """
    xy = np.asarray(coords)
    if xy.ndim != 2 or xy.shape[1] < 2:
        raise ValueError(f"coords must be cells × 2 (or more), got shape {xy.shape}.")
    n = xy.shape[0]
    values = color if isinstance(color, pd.Series) else pd.Series(np.asarray(color))
    values = values.reset_index(drop=True)
    if len(values) != n:
        raise ValueError(f"color has {len(values)} values for {n} cells.")
    if hover is not None and len(hover) != n:
        raise ValueError(f"hover has {len(hover)} rows for {n} cells.")
    kind = kind or _infer_kind(values)
    mask = _as_mask(highlight, n)

    stratified = stratify is not None or kind == "categorical"
    if n > max_points:
        strat = stratify if stratify is not None else (values if kind == "categorical" else np.zeros(n, dtype=np.int8))
        idx = downsample_idx(strat, max_points, seed)
        if mask is not None and mask.any():
            hi = np.flatnonzero(mask)
            if hi.size > max_points:
                hi = hi[downsample_idx(np.zeros(hi.size, dtype=np.int8), max_points, seed)]
            idx = np.union1d(idx, hi)
    else:
        idx = np.arange(n, dtype=np.int64)
    shown = int(idx.size)
    size = point_size or (7 if shown <= 5_000 else 5 if shown <= 30_000 else 3 if shown <= 200_000 else 2)
    faded = mask is not None and mask.any()
    opacity = 0.25 if faded else (0.85 if shown <= 30_000 else 0.7)
    custom, hover_lines = _hover(hover, idx)
    x, y = xy[idx, 0].astype(np.float32), xy[idx, 1].astype(np.float32)
    fig = go.Figure()

    if kind == "categorical":
        lab = values.iloc[idx].astype(object).where(values.iloc[idx].notna(), MISSING).astype(str).to_numpy()
        present = pd.unique(lab)
        cmap = {str(k): c for k, c in colors.items()} if colors is not None else {}
        if colors is None and isinstance(values.dtype, pd.CategoricalDtype):
            cmap = class_colors([str(c) for c in values.cat.categories])
        new = sorted(c for c in present if c not in cmap and c != MISSING)
        if new:
            extra = class_colors(list(cmap) + new)
            cmap.update({c: extra[c] for c in new})
        cmap.setdefault(MISSING, UNASSIGNED_COLOR)
        codes = pd.Categorical(lab, categories=list(cmap)).codes
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(cmap) + 1))
        counts = np.bincount(codes, minlength=len(cmap))
        totals = {(MISSING if pd.isna(k) else str(k)): int(c) for k, c in values.value_counts(dropna=False).items()}
        for j, cls in enumerate(cmap):  # one trace per class (legend toggles), never per cell
            if counts[j] == 0:
                continue
            sel = order[bounds[j]:bounds[j + 1]]
            fig.add_trace(
                go.Scattergl(
                    x=x[sel], y=y[sel], mode="markers", name=f"{cls} ({totals.get(cls, counts[j]):,})", legendgroup=cls,
                    marker=dict(color=cmap[cls], size=size, opacity=opacity, line=dict(width=0)),
                    customdata=None if custom is None else custom[sel],
                    hovertemplate=f"<b>{cls}</b>{hover_lines}<extra></extra>",
                )
            )
        point_colors = np.array([cmap[c] for c in cmap], dtype=object)[codes]
        fig.update_layout(legend=dict(itemsizing="constant"))
    else:
        v = pd.to_numeric(values.iloc[idx], errors="coerce").to_numpy(dtype=np.float64)
        cname = color_label or "value"
        finite = v[np.isfinite(v)]
        crange = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
        vcol = 0 if custom is None else custom.shape[1]  # the value is the last customdata column
        fig.add_trace(
            go.Scattergl(
                x=x, y=y, mode="markers", name=cname, showlegend=False,
                marker=dict(color=v, colorscale=colorscale, cmin=crange[0], cmax=crange[1], size=size,
                            opacity=opacity, line=dict(width=0),
                            colorbar=dict(title=dict(text=cname))),
                customdata=v.reshape(-1, 1) if custom is None else np.column_stack([custom, v]),
                hovertemplate=f"{cname}: %{{customdata[{vcol}]:.3g}}{hover_lines}<extra></extra>",
            )
        )
        point_colors = v

    if faded:
        sel = np.flatnonzero(mask[idx])
        fig.add_trace(
            go.Scattergl(
                x=x[sel], y=y[sel], mode="markers", name=f"highlighted ({sel.size:,})",
                marker=dict(
                    color=point_colors[sel], size=size + 5, opacity=1.0, line=dict(color="black", width=1.5),
                    **({"colorscale": colorscale, "cmin": crange[0], "cmax": crange[1]} if kind != "categorical" else {}),
                ),
                customdata=None if custom is None else custom[sel],
                hovertemplate=f"highlighted{hover_lines}<extra></extra>",
            )
        )

    if title is None:
        title = f"Cells coloured by {color_label}" if color_label else "Cells in the embedding"
    style(fig, title=title, height=height, legend_title=color_label if kind == "categorical" else None)
    fig.update_xaxes(title_text=axis_labels[0], showgrid=False, showticklabels=False, showline=False)
    fig.update_yaxes(title_text=axis_labels[1], showgrid=False, showticklabels=False, showline=False,
                     scaleanchor="x", scaleratio=1)
    fig.update_layout(meta={"shown": shown, "total": int(n)})
    if shown < n:
        fig.add_annotation(
            text=f"showing {shown:,} of {n:,} cells" + (" (sampled per class)" if stratified else " (random sample)"),
            x=0, y=1, xref="paper", yref="paper",
            xanchor="left", yanchor="bottom", showarrow=False, font=dict(color="#555555"),
        )
    return fig
