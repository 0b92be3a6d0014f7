"""Plot builders: pure functions from tidy data to ``plotly.graph_objects.Figure``.

No file I/O, no Streamlit, no global plotly settings. Pages call
``st.plotly_chart(fig)``; the CLI may call ``fig.write_html``. Pass the same
:func:`class_colors` mapping to every builder of a run so a class keeps its colour.
"""

from __future__ import annotations

from scapp.viz.colors import UNASSIGNED, UNASSIGNED_COLOR, class_colors
from scapp.viz.compare import (
    agreement_heatmap,
    ensemble_members_bars,
    metrics_comparison_bars,
    pretraining_recall_bars,
)
from scapp.viz.embedding import downsample_idx, embedding_scatter
from scapp.viz.explain import (
    cell_explain_bar,
    class_gene_heatmap,
    dotplot_data,
    expression_dotplot,
    gene_importance_bar,
)
from scapp.viz.markers import marker_overlap_bars, rare_common_recall
from scapp.viz.metrics import class_f1_bars, confusion_heatmap, reliability_diagram
from scapp.viz.qc import class_sizes_bar, counts_histograms
from scapp.viz.training import training_curves

__all__ = [
    "UNASSIGNED",
    "UNASSIGNED_COLOR",
    "agreement_heatmap",
    "cell_explain_bar",
    "class_colors",
    "class_f1_bars",
    "class_gene_heatmap",
    "class_sizes_bar",
    "confusion_heatmap",
    "counts_histograms",
    "dotplot_data",
    "ensemble_members_bars",
    "downsample_idx",
    "embedding_scatter",
    "expression_dotplot",
    "gene_importance_bar",
    "marker_overlap_bars",
    "metrics_comparison_bars",
    "pretraining_recall_bars",
    "rare_common_recall",
    "reliability_diagram",
    "training_curves",
]
